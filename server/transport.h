#pragma once

// How a connection's bytes cross its socket: plain TCP, or TLS over it. The
// protocol code above (client session, peer link) never sees the difference.
//
// Threading: Read and Handshake run on the connection's owner thread. Writev
// runs on whichever thread holds the OutboundBuffer's writer role: any thread
// for plain TCP, only the owner thread when writes_from_any_thread() is false
// (an OpenSSL session must not be used by two threads at once).

#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string_view>

namespace zmesh::server {

class Transport {
 public:
  enum class Handshake { kDone, kWantRead, kWantWrite, kFailed };

  virtual ~Transport() = default;

  // > 0 bytes read; 0 at end of stream; -1 with *err (EAGAIN when nothing is
  // available yet).
  virtual ssize_t Read(char* buf, size_t n, int* err) = 0;
  // > 0 bytes consumed from iov; -1 with *err (EAGAIN: try again when writable).
  virtual ssize_t Writev(const iovec* iov, int count, int* err) = 0;
  // Bytes already decrypted and waiting: the socket may not signal them.
  virtual size_t buffered_input() const { return 0; }

  virtual bool writes_from_any_thread() const = 0;
  // Drives the TLS handshake; plain TCP has none.
  virtual Handshake DoHandshake() { return Handshake::kDone; }
  virtual bool handshake_done() const { return true; }
  // Why the handshake failed, for the log.
  virtual const char* last_error() const { return ""; }
  // When the handshake failed because the other side does not speak TLS at
  // all: its first bytes (up to 8), so that the protocol can say what it was.
  virtual std::string_view plaintext_prefix() const { return {}; }
  // After the handshake: does the other side's verified certificate name
  // `node_id` (auth::CertificateNamesNode)? False without one.
  virtual bool PeerCertificateNames(std::string_view /*node_id*/) const { return false; }
};

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  ssize_t Read(char* buf, size_t n, int* err) override {
    const ssize_t r = ::read(fd_, buf, n);
    if (r < 0) *err = errno;
    return r;
  }
  ssize_t Writev(const iovec* iov, int count, int* err) override {
    const ssize_t r = ::writev(fd_, iov, count);
    if (r < 0) *err = errno;
    return r;
  }
  bool writes_from_any_thread() const override { return true; }

 private:
  const int fd_;
};

}  // namespace zmesh::server

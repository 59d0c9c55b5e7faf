#pragma once

// The byte stream under a connection: plain TCP or TLS, behind one small
// interface so the protocol code never calls OpenSSL (redis' connection-type
// idea). All I/O is non-blocking; the caller waits for socket readiness with
// libevent and calls again.
//
// Thread safety: none; used by the client's I/O thread only.

#include <cstddef>
#include <string>

#include <zmesh/status.h>

#include "client/server_url.h"

namespace zmesh::client {

enum class IoStatus {
  kOk,          // `bytes` transferred (> 0)
  kWouldBlock,  // try again when the socket is ready
  kEof,         // orderly close by the peer (reads only)
  kError,       // see `error`; the connection is unusable
};

struct IoResult {
  IoStatus status = IoStatus::kOk;
  size_t bytes = 0;
  std::string error;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Reads up to `len` bytes of plaintext.
  virtual IoResult Read(char* buf, size_t len) = 0;
  // Writes up to `len` bytes of plaintext; `bytes` says how many were taken.
  // len == 0 only pushes out bytes the transport still holds (TLS).
  virtual IoResult Write(const char* data, size_t len) = 0;
  // True while the transport holds bytes it could not hand to the kernel
  // yet: wait for writability and call Write(nullptr, 0).
  virtual bool WantsWrite() const { return false; }
};

class PlainTransport : public Transport {
 public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  IoResult Read(char* buf, size_t len) override;
  IoResult Write(const char* data, size_t len) override;

 private:
  int fd_;  // not owned
};

// Creates a non-blocking TCP socket (TCP_NODELAY, close-on-exec) and starts
// connecting to `url`. Returns the fd, or -1 with *status set. Resolving a
// host name that is not a numeric address blocks (getaddrinfo).
int StartTcpConnect(const ServerUrl& url, Status* status);
// After the socket became writable: OK if the connect succeeded.
Status FinishTcpConnect(int fd);

// recv()/send() with MSG_NOSIGNAL on a non-blocking socket, as IoResults.
IoResult SocketRecv(int fd, char* buf, size_t len);
IoResult SocketSend(int fd, const char* data, size_t len);

}  // namespace zmesh::client

#pragma once

// TLS over a connection's socket with OpenSSL, non-blocking. Records are
// written at most 16 KiB at a time from the outbound queue; a write that
// OpenSSL asks to retry is retried with exactly the same bytes (OpenSSL's
// rule), which stay at the head of the queue until written.
//
// Threading: owner thread only (writes_from_any_thread() is false), see
// Transport.

#include <openssl/ssl.h>

#include <atomic>
#include <string>

#include "server/transport.h"

namespace zmesh::server {

class TlsTransport final : public Transport {
 public:
  // A session from `ctx` on `fd`, accepting (server side) or connecting.
  // When connecting with a non-empty `expected_host`, the peer certificate
  // must name it (an IP address or a DNS name). `app_data` is the SSL's app
  // data, for the context's callbacks (peer links: their keyring). With
  // `sniff_plaintext`, bytes from the other side that cannot start a TLS
  // record fail the handshake at once and are kept for plaintext_prefix().
  TlsTransport(SSL_CTX* ctx, int fd, bool server_side, const std::string& expected_host, void* app_data = nullptr,
               bool sniff_plaintext = false);
  ~TlsTransport() override;

  ssize_t Read(char* buf, size_t n, int* err) override;
  ssize_t Writev(const iovec* iov, int count, int* err) override;
  size_t buffered_input() const override;
  bool writes_from_any_thread() const override { return false; }
  Handshake DoHandshake() override;
  bool handshake_done() const override { return done_.load(std::memory_order_acquire); }
  const char* last_error() const override { return error_.c_str(); }
  std::string_view plaintext_prefix() const override { return plaintext_prefix_; }
  bool PeerCertificateNames(std::string_view node_id) const override;

 private:
  // Looks at the first bytes waiting on the socket without consuming them.
  enum class Sniff { kNothingYet, kTls, kPlaintext };
  Sniff SniffPlaintext();

  SSL* ssl_;
  const int fd_;
  const bool server_side_;
  bool sniffing_;
  bool hello_sent_ = false;  // sniffing client: the ClientHello went out
  bool wants_write_ = false;  // the last handshake step could not write everything
  std::string plaintext_prefix_;
  std::atomic<bool> done_{false};  // read by flushing threads
  size_t retry_len_ = 0;  // length of a write OpenSSL asked us to repeat
  std::string error_;
};

}  // namespace zmesh::server

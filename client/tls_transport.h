#pragma once

// TLS for client connections (OpenSSL). NATS servers send INFO in plain text
// and then expect the TLS handshake on the same socket, so a connection starts
// plain and switches to a TlsTransport after INFO.
//
// The SSL object talks to memory BIOs and this class moves ciphertext between
// them and the socket with send(MSG_NOSIGNAL)/recv: no SIGPIPE ever, and the
// same non-blocking contract as PlainTransport.
//
// Thread safety: a TlsContext is immutable after Create and may be shared by
// threads; a TlsTransport belongs to the I/O thread.

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include <zmesh/options.h>
#include <zmesh/status.h>

#include "client/transport.h"

namespace zmesh::client {

class TlsContext {
 public:
  // Loads CA / client certificate per `options`. nullptr with *status set
  // when a file cannot be loaded.
  static std::shared_ptr<TlsContext> Create(const TlsOptions& options, Status* status);
  ~TlsContext();
  SSL_CTX* ctx() const { return ctx_; }
  const TlsOptions& options() const { return options_; }

 private:
  TlsContext(SSL_CTX* ctx, TlsOptions options) : ctx_(ctx), options_(std::move(options)) {}
  SSL_CTX* ctx_;
  TlsOptions options_;
};

class TlsTransport : public Transport {
 public:
  // `host` is verified against the certificate (name or IP) unless the
  // options skip verification or name another server_name.
  static std::unique_ptr<TlsTransport> Create(std::shared_ptr<TlsContext> context, int fd,
                                              const std::string& host, Status* status);
  ~TlsTransport() override;

  // Drives the handshake: kOk when done, kWouldBlock when it needs the
  // socket to be readable (or WantsWrite()), kError on failure.
  IoResult Handshake();

  IoResult Read(char* buf, size_t len) override;
  IoResult Write(const char* data, size_t len) override;
  bool WantsWrite() const override { return out_pos_ < out_.size(); }

 private:
  TlsTransport(std::shared_ptr<TlsContext> context, int fd, SSL* ssl, BIO* rbio, BIO* wbio)
      : context_(std::move(context)), fd_(fd), ssl_(ssl), rbio_(rbio), wbio_(wbio) {}
  // Moves ciphertext from the SSL object to the socket; false on a socket error.
  bool SendCipher(std::string* error);
  // Moves ciphertext from the socket into the SSL object.
  IoResult RecvCipher();
  std::string SslError(const char* what, int rc);

  std::shared_ptr<TlsContext> context_;
  int fd_;
  SSL* ssl_;
  BIO* rbio_;  // owned by ssl_
  BIO* wbio_;  // owned by ssl_
  std::string out_;  // ciphertext not yet accepted by the kernel
  size_t out_pos_ = 0;
};

}  // namespace zmesh::client

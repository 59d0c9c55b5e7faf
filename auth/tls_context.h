#pragma once

// The OpenSSL context of a node's client port, loaded from PEM files (SPEC
// §5). Client certificates are required (against the CA bundle) only when
// asked. Peer links have contexts of their own (auth/peer_tls.h), checked
// against another CA, so that a client certificate is never a peer's.
//
// Threading: built once at start-up; SSL_CTX objects are then shared
// read-only by every thread that creates sessions from them.

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace zmesh::auth {

struct TlsFiles {
  std::string cert;  // PEM certificate chain
  std::string key;   // PEM private key
  std::string ca;    // PEM CA bundle for client certificates
};

class TlsContexts {
 public:
  // Fails with a message naming the file when a file cannot be loaded or the
  // key does not match the certificate.
  static absl::StatusOr<std::unique_ptr<TlsContexts>> Create(const TlsFiles& files, bool verify_clients);
  ~TlsContexts();
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  SSL_CTX* client_port() const { return client_port_; }  // accepts clients

 private:
  TlsContexts() = default;
  SSL_CTX* client_port_ = nullptr;
};

// The OpenSSL error queue as text (and cleared), for logs and errors.
std::string DrainOpenSslErrors();

}  // namespace zmesh::auth

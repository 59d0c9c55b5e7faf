#pragma once

// The OpenSSL contexts of a node, loaded from PEM files (SPEC §5): one for
// the client port (server side), and for peer links one per side. With a CA
// bundle, peer links are mutual: each end presents its certificate and
// verifies the other's; client certificates are required only when asked.
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
  std::string ca;    // PEM CA bundle; empty = no verification of the other side
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
  SSL_CTX* peer_server() const { return peer_server_; }  // accepts peer links
  SSL_CTX* peer_client() const { return peer_client_; }  // dials peer links
  bool mutual_peers() const { return mutual_peers_; }

 private:
  TlsContexts() = default;
  SSL_CTX* client_port_ = nullptr;
  SSL_CTX* peer_server_ = nullptr;
  SSL_CTX* peer_client_ = nullptr;
  bool mutual_peers_ = false;
};

// The OpenSSL error queue as text (and cleared), for logs and errors.
std::string DrainOpenSslErrors();

}  // namespace zmesh::auth

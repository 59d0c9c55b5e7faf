#pragma once

// The OpenSSL contexts of peer links (SPEC §3). Peer links always run TLS 1.3
// (only --insecure_peers, for demos, goes without), in one of two modes:
//
//  - kPsk (the default): the cluster secret is an external pre-shared key
//    (auth/peer_keys.h). The dialler offers the current key's identity; the
//    acceptor accepts any key of its ring. There are no certificates: a side
//    without a matching key cannot complete the handshake. Key exchange is
//    psk_dhe_ke, so recorded traffic stays secret even if the secret leaks
//    later.
//  - kCertificates (--peer_tls): mutual TLS against the *peer* CA only (not
//    the client port's CA), so a client certificate is no peer certificate.
//    Which node a certificate belongs to is checked after the handshake,
//    against the node id in HELLO (CertificateNamesNode).
//
// Every session made from these contexts needs its keyring set as the SSL's
// app data (SSL_set_app_data) in PSK mode; the callbacks read it from there,
// so a link keeps the ring it started with across a reload.
//
// Threading: built once at start-up; the SSL_CTX objects are then shared
// read-only by every thread that creates sessions from them.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace zmesh::auth {

class PeerTlsContexts {
 public:
  enum class Mode { kPsk, kCertificates };

  static absl::StatusOr<std::unique_ptr<PeerTlsContexts>> CreatePsk();
  // `ca` is required: a peer certificate is only as good as the CA it is checked against.
  static absl::StatusOr<std::unique_ptr<PeerTlsContexts>> CreateCertificates(const std::string& cert,
                                                                              const std::string& key,
                                                                              const std::string& ca);
  ~PeerTlsContexts();
  PeerTlsContexts(const PeerTlsContexts&) = delete;
  PeerTlsContexts& operator=(const PeerTlsContexts&) = delete;

  Mode mode() const { return mode_; }
  SSL_CTX* server() const { return server_; }  // accepts peer links
  SSL_CTX* client() const { return client_; }  // dials peer links

 private:
  PeerTlsContexts() = default;
  Mode mode_ = Mode::kPsk;
  SSL_CTX* server_ = nullptr;
  SSL_CTX* client_ = nullptr;
};

// Does the (verified) certificate name this node: a DNS subjectAltName equal
// to `node_id`, or a common name equal to it? No wildcards.
bool CertificateNamesNode(X509* cert, std::string_view node_id);

}  // namespace zmesh::auth

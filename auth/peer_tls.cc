#include "auth/peer_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "auth/peer_keys.h"
#include "auth/tls_context.h"

namespace zmesh::auth {
namespace {

// TLS_AES_128_GCM_SHA256: the PSK is bound to one hash (SHA-256), and both
// suites below use it.
constexpr unsigned char kPskCipher[2] = {0x13, 0x01};
constexpr const char* kSuites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

SSL_SESSION* NewPskSession(SSL* ssl, const PeerPsk& psk) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskCipher);
  if (cipher == nullptr) return nullptr;
  SSL_SESSION* session = SSL_SESSION_new();
  if (session == nullptr) return nullptr;
  if (SSL_SESSION_set1_master_key(session, reinterpret_cast<const unsigned char*>(psk.key.data()), psk.key.size()) != 1 ||
      SSL_SESSION_set_cipher(session, cipher) != 1 || SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

// Dialling side: offer the current key.
int UsePskSession(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len, SSL_SESSION** session) {
  *session = nullptr;
  *id = nullptr;
  *id_len = 0;
  const auto* ring = static_cast<const PeerKeyring*>(SSL_get_app_data(ssl));
  if (ring == nullptr) return 0;
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskCipher);
  // After a HelloRetryRequest the hash is fixed; ours is SHA-256.
  if (md != nullptr && (cipher == nullptr || md != SSL_CIPHER_get_handshake_digest(cipher))) return 1;
  const PeerPsk& psk = ring->current();
  *session = NewPskSession(ssl, psk);
  if (*session == nullptr) return 0;
  *id = reinterpret_cast<const unsigned char*>(psk.identity.data());
  *id_len = psk.identity.size();
  return 1;
}

// Accepting side: any key of the ring; an unknown identity gets no session,
// and without a certificate the handshake then fails.
int FindPskSession(SSL* ssl, const unsigned char* identity, size_t identity_len, SSL_SESSION** session) {
  *session = nullptr;
  const auto* ring = static_cast<const PeerKeyring*>(SSL_get_app_data(ssl));
  if (ring == nullptr) return 0;
  const PeerPsk* psk = ring->Find(std::string_view(reinterpret_cast<const char*>(identity), identity_len));
  if (psk == nullptr) return 1;
  *session = NewPskSession(ssl, *psk);
  return *session != nullptr ? 1 : 0;
}

absl::StatusOr<SSL_CTX*> NewPeerContext(bool server) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new: " + DrainOpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_set_ciphersuites(ctx, kSuites) != 1) {
    SSL_CTX_free(ctx);
    return absl::InternalError("TLS 1.3 cipher suites: " + DrainOpenSslErrors());
  }
  // Links are long-lived and never resumed: no session tickets.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
  // The outbound buffer may hand a retried write from a different address.
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerTlsContexts>> PeerTlsContexts::CreatePsk() {
  std::unique_ptr<PeerTlsContexts> t(new PeerTlsContexts);
  t->mode_ = Mode::kPsk;
  auto server = NewPeerContext(true);
  if (!server.ok()) return server.status();
  t->server_ = *server;
  auto client = NewPeerContext(false);
  if (!client.ok()) return client.status();
  t->client_ = *client;
  SSL_CTX_set_psk_find_session_callback(t->server_, FindPskSession);
  SSL_CTX_set_psk_use_session_callback(t->client_, UsePskSession);
  return t;
}

absl::StatusOr<std::unique_ptr<PeerTlsContexts>> PeerTlsContexts::CreateCertificates(const std::string& cert,
                                                                                     const std::string& key,
                                                                                     const std::string& ca) {
  if (cert.empty() || key.empty()) return absl::InvalidArgumentError("--peer_tls needs a certificate and a key");
  if (ca.empty()) {
    return absl::InvalidArgumentError("--peer_tls needs --peer_tls_ca: without a CA nothing would be verified");
  }
  std::unique_ptr<PeerTlsContexts> t(new PeerTlsContexts);
  t->mode_ = Mode::kCertificates;
  for (bool server : {true, false}) {
    auto made = NewPeerContext(server);
    if (!made.ok()) return made.status();
    SSL_CTX* ctx = *made;
    (server ? t->server_ : t->client_) = ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
      return absl::InvalidArgumentError("peer TLS certificate " + cert + ": " + DrainOpenSslErrors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      return absl::InvalidArgumentError("peer TLS key " + key + ": " + DrainOpenSslErrors());
    }
    // Only the peer CA: the system store and the client CA vouch for no node.
    if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError("peer TLS CA bundle " + ca + ": " + DrainOpenSslErrors());
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return t;
}

PeerTlsContexts::~PeerTlsContexts() {
  SSL_CTX_free(server_);
  SSL_CTX_free(client_);
}

bool CertificateNamesNode(X509* cert, std::string_view node_id) {
  if (cert == nullptr || node_id.empty()) return false;
  if (X509_check_host(cert, node_id.data(), node_id.size(),
                      X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr) == 1) {
    return true;
  }
  X509_NAME* subject = X509_get_subject_name(cert);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    if (cn != nullptr && static_cast<size_t>(ASN1_STRING_length(cn)) == node_id.size() &&
        std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)), node_id.size()) == node_id) {
      return true;
    }
  }
  return false;
}

}  // namespace zmesh::auth

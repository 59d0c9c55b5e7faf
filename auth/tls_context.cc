#include "auth/tls_context.h"

#include <openssl/err.h>

namespace zmesh::auth {
namespace {

// A context with our certificate and key; `server` picks the method.
absl::StatusOr<SSL_CTX*> NewContext(const TlsFiles& files, bool server) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new: " + DrainOpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // A peer that closes the TCP connection without close_notify has simply
  // gone away (what nats-server reports as "Client Closed"); OpenSSL 3 would
  // otherwise make it a protocol error.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  // The outbound buffer may hand a retried write from a different address.
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError("TLS certificate " + files.cert + ": " + DrainOpenSslErrors());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError("TLS key " + files.key + ": " + DrainOpenSslErrors());
  }
  if (!files.ca.empty() && SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError("TLS CA bundle " + files.ca + ": " + DrainOpenSslErrors());
  }
  return ctx;
}

}  // namespace

std::string DrainOpenSslErrors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown error" : out;
}

absl::StatusOr<std::unique_ptr<TlsContexts>> TlsContexts::Create(const TlsFiles& files, bool verify_clients) {
  std::unique_ptr<TlsContexts> t(new TlsContexts);
  auto client_port = NewContext(files, true);
  if (!client_port.ok()) return client_port.status();
  t->client_port_ = *client_port;
  if (verify_clients) {
    if (files.ca.empty()) return absl::InvalidArgumentError("verifying client certificates needs --tls_ca");
    SSL_CTX_set_verify(t->client_port_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return t;
}

TlsContexts::~TlsContexts() {
  SSL_CTX_free(client_port_);
}

}  // namespace zmesh::auth

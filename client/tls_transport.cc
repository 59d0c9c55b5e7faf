#include "client/tls_transport.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace zmesh::client {
namespace {

constexpr size_t kCipherChunk = 64 * 1024;
// Plaintext per SSL_write; bounds the ciphertext a single Write can queue.
constexpr size_t kMaxPlainPerWrite = 256 * 1024;

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::shared_ptr<TlsContext> TlsContext::Create(const TlsOptions& options, Status* status) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    *status = Status(StatusCode::kTlsError, "SSL_CTX_new: " + OpenSslErrors());
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  auto fail = [&](const std::string& what) -> std::shared_ptr<TlsContext> {
    *status = Status(StatusCode::kTlsError, what + ": " + OpenSslErrors());
    SSL_CTX_free(ctx);
    return nullptr;
  };
  if (!options.insecure_skip_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!options.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
        return fail("load CA file " + options.ca_file);
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return fail("load default CA paths");
    }
  }
  if (!options.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
      return fail("load certificate " + options.cert_file);
    }
    const std::string& key = options.key_file.empty() ? options.cert_file : options.key_file;
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) return fail("load key " + key);
  }
  return std::shared_ptr<TlsContext>(new TlsContext(ctx, options));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<TlsTransport> TlsTransport::Create(std::shared_ptr<TlsContext> context, int fd,
                                                   const std::string& host, Status* status) {
  ERR_clear_error();
  SSL* ssl = SSL_new(context->ctx());
  if (ssl == nullptr) {
    *status = Status(StatusCode::kTlsError, "SSL_new: " + OpenSslErrors());
    return nullptr;
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl);
    *status = Status(StatusCode::kTlsError, "BIO_new failed");
    return nullptr;
  }
  BIO_set_mem_eof_return(rbio, -1);  // empty means "retry", not EOF
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  const TlsOptions& opts = context->options();
  const std::string name = opts.server_name.empty() ? host : opts.server_name;
  if (!IsIpAddress(name)) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (!opts.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    const int ok = IsIpAddress(name) ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                                     : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
    if (ok != 1) {
      SSL_free(ssl);
      *status = Status(StatusCode::kTlsError, "cannot verify against '" + name + "'");
      return nullptr;
    }
  }
  return std::unique_ptr<TlsTransport>(new TlsTransport(std::move(context), fd, ssl, rbio, wbio));
}

TlsTransport::~TlsTransport() { SSL_free(ssl_); }

std::string TlsTransport::SslError(const char* what, int rc) {
  const int err = SSL_get_error(ssl_, rc);
  std::string msg = std::string(what) + ": ";
  if (err == SSL_ERROR_SSL) {
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      msg += std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
      ERR_clear_error();
      return msg;
    }
  }
  return msg + OpenSslErrors();
}

bool TlsTransport::SendCipher(std::string* error) {
  // Collect what the SSL object produced, then push as much as the kernel takes.
  char chunk[kCipherChunk];
  int n;
  while ((n = BIO_read(wbio_, chunk, sizeof(chunk))) > 0) {
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    }
    out_.append(chunk, static_cast<size_t>(n));
  }
  while (out_pos_ < out_.size()) {
    IoResult r = SocketSend(fd_, out_.data() + out_pos_, out_.size() - out_pos_);
    if (r.status == IoStatus::kWouldBlock) return true;
    if (r.status != IoStatus::kOk) {
      *error = r.error;
      return false;
    }
    out_pos_ += r.bytes;
  }
  out_.clear();
  out_pos_ = 0;
  return true;
}

IoResult TlsTransport::RecvCipher() {
  char chunk[kCipherChunk];
  IoResult r = SocketRecv(fd_, chunk, sizeof(chunk));
  if (r.status == IoStatus::kOk && BIO_write(rbio_, chunk, static_cast<int>(r.bytes)) != static_cast<int>(r.bytes)) {
    return {IoStatus::kError, 0, "TLS: BIO_write failed"};
  }
  return r;
}

IoResult TlsTransport::Handshake() {
  for (int round = 0; round < 64; ++round) {
    ERR_clear_error();
    const int rc = SSL_do_handshake(ssl_);
    std::string error;
    if (!SendCipher(&error)) return {IoStatus::kError, 0, "TLS handshake: " + error};
    if (rc == 1) return {IoStatus::kOk, 0, {}};
    const int err = SSL_get_error(ssl_, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      return {IoStatus::kError, 0, SslError("TLS handshake", rc)};
    }
    IoResult r = RecvCipher();
    if (r.status == IoStatus::kWouldBlock) return r;
    if (r.status == IoStatus::kEof) return {IoStatus::kError, 0, "TLS handshake: connection closed"};
    if (r.status == IoStatus::kError) return r;
  }
  return {IoStatus::kWouldBlock, 0, {}};
}

IoResult TlsTransport::Read(char* buf, size_t len) {
  for (int round = 0; round < 64; ++round) {
    ERR_clear_error();
    const int rc = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, 1 << 30)));
    std::string error;
    if (!SendCipher(&error)) return {IoStatus::kError, 0, error};  // post-handshake messages
    if (rc > 0) return {IoStatus::kOk, static_cast<size_t>(rc), {}};
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_ZERO_RETURN) return {IoStatus::kEof, 0, "TLS connection closed by the server"};
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return {IoStatus::kError, 0, SslError("TLS read", rc)};
    IoResult r = RecvCipher();
    if (r.status != IoStatus::kOk) return r;
  }
  return {IoStatus::kWouldBlock, 0, {}};
}

IoResult TlsTransport::Write(const char* data, size_t len) {
  std::string error;
  if (!SendCipher(&error)) return {IoStatus::kError, 0, error};
  if (len == 0) return {IoStatus::kOk, 0, {}};
  // Back-pressure: accept no plaintext while ciphertext is stuck.
  if (WantsWrite()) return {IoStatus::kWouldBlock, 0, {}};
  ERR_clear_error();
  const int rc = SSL_write(ssl_, data, static_cast<int>(std::min(len, kMaxPlainPerWrite)));
  if (rc <= 0) {
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return {IoStatus::kWouldBlock, 0, {}};
    return {IoStatus::kError, 0, SslError("TLS write", rc)};
  }
  if (!SendCipher(&error)) return {IoStatus::kError, 0, error};
  return {IoStatus::kOk, static_cast<size_t>(rc), {}};
}

}  // namespace zmesh::client

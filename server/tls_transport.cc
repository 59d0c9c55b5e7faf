#include "server/tls_transport.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>

#include "auth/peer_tls.h"
#include "auth/tls_context.h"

namespace zmesh::server {
namespace {
constexpr size_t kRecordBytes = 16 * 1024;  // a TLS record's plaintext limit
}

TlsTransport::TlsTransport(SSL_CTX* ctx, int fd, bool server_side, const std::string& expected_host, void* app_data,
                           bool sniff_plaintext)
    : ssl_(SSL_new(ctx)), fd_(fd), server_side_(server_side), sniffing_(sniff_plaintext) {
  SSL_set_fd(ssl_, fd);
  if (app_data != nullptr) SSL_set_app_data(ssl_, app_data);
  if (server_side) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  if (expected_host.empty()) return;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  in6_addr addr;
  if (inet_pton(AF_INET, expected_host.c_str(), &addr) == 1 || inet_pton(AF_INET6, expected_host.c_str(), &addr) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(param, expected_host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, expected_host.c_str());
    X509_VERIFY_PARAM_set1_host(param, expected_host.c_str(), 0);
  }
}

TlsTransport::~TlsTransport() { SSL_free(ssl_); }

TlsTransport::Sniff TlsTransport::SniffPlaintext() {
  unsigned char head[8];
  const ssize_t n = ::recv(fd_, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return Sniff::kNothingYet;
  sniffing_ = false;
  if (n == 0) return Sniff::kTls;  // the end: OpenSSL will tell
  // Every TLS record the other side may send first is a handshake (22) or an
  // alert (21); anything else is another protocol.
  if (head[0] == 22 || head[0] == 21) return Sniff::kTls;
  plaintext_prefix_.assign(reinterpret_cast<const char*>(head), static_cast<size_t>(n));
  error_ = "the other side does not speak TLS";
  return Sniff::kPlaintext;
}

bool TlsTransport::PeerCertificateNames(std::string_view node_id) const {
  return SSL_get_verify_result(ssl_) == X509_V_OK && auth::CertificateNamesNode(SSL_get0_peer_certificate(ssl_), node_id);
}

Transport::Handshake TlsTransport::DoHandshake() {
  if (done_.load(std::memory_order_relaxed)) return Handshake::kDone;
  if (sniffing_) {
    switch (SniffPlaintext()) {
      case Sniff::kPlaintext:
        return Handshake::kFailed;
      case Sniff::kNothingYet:
        // OpenSSL must not read before we have looked at the first bytes;
        // only a client has something to send first (its ClientHello).
        if (server_side_ || (hello_sent_ && !wants_write_)) return Handshake::kWantRead;
        hello_sent_ = true;
        break;
      case Sniff::kTls:
        break;
    }
  }
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_.store(true, std::memory_order_release);
    return Handshake::kDone;
  }
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      wants_write_ = false;
      return Handshake::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      wants_write_ = true;
      return Handshake::kWantWrite;
    case SSL_ERROR_SYSCALL:
    case SSL_ERROR_ZERO_RETURN:
      if (ERR_peek_error() == 0) {  // nothing wrong with TLS: the other side left
        error_ = "the connection closed during the handshake";
        return Handshake::kFailed;
      }
      [[fallthrough]];
    default: {
      error_ = auth::DrainOpenSslErrors();
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) error_ += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
      return Handshake::kFailed;
    }
  }
}

ssize_t TlsTransport::Read(char* buf, size_t n, int* err) {
  ERR_clear_error();
  const int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
  if (r > 0) return r;
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      *err = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      if (errno == 0) return 0;  // EOF without close_notify
      *err = errno;
      return -1;
    default:
      error_ = auth::DrainOpenSslErrors();
      *err = EPROTO;
      return -1;
  }
}

ssize_t TlsTransport::Writev(const iovec* iov, int count, int* err) {
  thread_local char scratch[kRecordBytes];
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  // A retried write must carry exactly the same bytes; they are still the
  // head of the queue, and the queue only grows at its tail.
  const size_t want = retry_len_ != 0 ? retry_len_ : std::min(total, kRecordBytes);
  size_t filled = 0;
  for (int i = 0; i < count && filled < want; ++i) {
    const size_t k = std::min(iov[i].iov_len, want - filled);
    std::memcpy(scratch + filled, iov[i].iov_base, k);
    filled += k;
  }
  ERR_clear_error();
  const int r = SSL_write(ssl_, scratch, static_cast<int>(filled));
  if (r > 0) {
    retry_len_ = 0;
    return r;
  }
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_WRITE:
    case SSL_ERROR_WANT_READ:
      retry_len_ = filled;
      *err = EAGAIN;
      return -1;
    case SSL_ERROR_SYSCALL:
      *err = errno != 0 ? errno : EPIPE;
      return -1;
    default:
      error_ = auth::DrainOpenSslErrors();
      *err = EPROTO;
      return -1;
  }
}

size_t TlsTransport::buffered_input() const { return static_cast<size_t>(SSL_pending(ssl_)); }

}  // namespace zmesh::server

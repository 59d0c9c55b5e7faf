#include "tests/support/scripted_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <memory>

#include "auth/peer_keys.h"
#include "auth/peer_tls.h"
#include "proto/peer_protocol.h"

namespace zmesh::testing {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

int MsLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

bool WaitIo(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, MsLeft(deadline)) == 1;
}

}  // namespace

ScriptedPeer::~ScriptedPeer() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  delete static_cast<const auth::PeerKeyring*>(keys_);
  if (fd_ >= 0) ::close(fd_);
}

bool ScriptedPeer::Dial(uint16_t port) {
  // OpenSSL writes with write(): a node closing the link must be an error
  // return here, not a SIGPIPE that kills the test.
  std::signal(SIGPIPE, SIG_IGN);
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

bool ScriptedPeer::Adopt(int fd) {
  if (fd < 0 || fd_ >= 0) return false;
  fd_ = fd;
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

uint16_t ScriptedPeer::local_port() const {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

bool ScriptedPeer::StartTls(const std::string& secret, std::string* error, milliseconds timeout) {
  return Handshake(secret, /*server_side=*/false, error, timeout);
}

bool ScriptedPeer::AcceptTls(const std::string& secret, std::string* error, milliseconds timeout) {
  return Handshake(secret, /*server_side=*/true, error, timeout);
}

bool ScriptedPeer::Handshake(const std::string& secret, bool server_side, std::string* error,
                             milliseconds timeout) {
  auto ring = auth::PeerKeyring::FromSecrets({secret});
  if (!ring.ok()) {
    *error = std::string(ring.status().message());
    return false;
  }
  auto tls = auth::PeerTlsContexts::CreatePsk();
  if (!tls.ok()) {
    *error = std::string(tls.status().message());
    return false;
  }
  // Keep a context of our own: PeerTlsContexts frees its contexts with it.
  ctx_ = server_side ? (*tls)->server() : (*tls)->client();
  SSL_CTX_up_ref(ctx_);
  keys_ = new auth::PeerKeyring(**ring);
  ssl_ = SSL_new(ctx_);
  SSL_set_app_data(ssl_, const_cast<void*>(keys_));
  SSL_set_fd(ssl_, fd_);
  if (server_side) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  const int flags = fcntl(fd_, F_GETFL);
  fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  const auto deadline = Clock::now() + timeout;
  while (true) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (r == 1) return true;
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (!WaitIo(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
        *error = "TLS handshake timed out";
        return false;
      }
      continue;
    }
    char buf[256] = "the node closed the connection";
    if (unsigned long code = ERR_get_error(); code != 0) ERR_error_string_n(code, buf, sizeof buf);
    *error = buf;
    return false;
  }
}

bool ScriptedPeer::Send(std::string_view bytes) {
  const auto deadline = Clock::now() + milliseconds(5000);
  while (!bytes.empty()) {
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int r = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
      if (r <= 0) {
        const int e = SSL_get_error(ssl_, r);
        if ((e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) &&
            WaitIo(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          continue;
        }
        return false;
      }
      n = r;
    } else {
      n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN && WaitIo(fd_, POLLOUT, deadline)) continue;
      if (n <= 0) return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool ScriptedPeer::SendHello(const std::string& node_id, uint64_t incarnation) {
  return SendHello(node_id, incarnation, "127.0.0.1:1", "nats://127.0.0.1:1");
}

bool ScriptedPeer::SendHello(const std::string& node_id, uint64_t incarnation, const std::string& peer_url,
                             const std::string& client_url) {
  std::string frame;
  proto::peer::Hello hello;
  hello.node_id = node_id;
  hello.incarnation = incarnation;
  hello.peer_url = peer_url;
  hello.client_url = client_url;
  proto::peer::EncodeHello(hello, &frame);
  return Send(frame);
}

int ScriptedPeer::ReadOnce() {
  char buf[16384];
  if (ssl_ != nullptr) {
    ERR_clear_error();
    const int r = SSL_read(ssl_, buf, sizeof buf);
    if (r > 0) {
      in_.append(buf, static_cast<size_t>(r));
      received_.append(buf, static_cast<size_t>(r));
      return r;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
    closed_ = true;
    return 0;
  }
  const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
  if (n > 0) {
    in_.append(buf, static_cast<size_t>(n));
    received_.append(buf, static_cast<size_t>(n));
    return static_cast<int>(n);
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
  closed_ = true;
  return 0;
}

bool ScriptedPeer::ReadSome(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const int r = ReadOnce();
    if (r > 0) return true;
    if (r == 0) return false;
    if (!WaitIo(fd_, POLLIN, deadline)) return false;
  }
}

int ScriptedPeer::ReadFrame(std::string* body, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (in_.size() >= 5) {
      uint32_t len = 0;
      for (int k = 0; k < 4; ++k) len |= static_cast<uint32_t>(static_cast<uint8_t>(in_[k])) << (8 * k);
      if (len == 0) return -1;
      if (in_.size() >= 4 + static_cast<size_t>(len)) {
        const int type = static_cast<uint8_t>(in_[4]);
        if (body != nullptr) body->assign(in_, 5, len - 1);
        in_.erase(0, 4 + len);
        if (type == static_cast<int>(proto::peer::FrameType::kPing)) {
          std::string pong;
          proto::peer::EncodeEmpty(proto::peer::FrameType::kPong, &pong);
          Send(pong);
          continue;
        }
        return type;
      }
    }
    if (!ReadSome(milliseconds(MsLeft(deadline)))) return -1;
  }
}

bool ScriptedPeer::WaitFrame(uint8_t type, milliseconds timeout, std::string* body) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const int t = ReadFrame(body, milliseconds(MsLeft(deadline)));
    if (t < 0) return false;
    if (t == type) return true;
  }
  return false;
}

bool ScriptedPeer::ClosedWithin(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const int r = ReadOnce();
    if (r == 0) return true;
    if (r < 0) WaitIo(fd_, POLLIN, Clock::now() + milliseconds(50));
  }
  return false;
}

ScriptedListener::~ScriptedListener() {
  if (fd_ >= 0) ::close(fd_);
}

bool ScriptedListener::Listen(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  const int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0) return false;
  socklen_t len = sizeof addr;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  return true;
}

int ScriptedListener::Accept(milliseconds timeout) {
  if (fd_ < 0 || !WaitIo(fd_, POLLIN, Clock::now() + timeout)) return -1;
  return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
}

}  // namespace zmesh::testing

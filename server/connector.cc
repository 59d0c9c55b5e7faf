#include "server/connector.h"

#include <event2/event.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "server/event_loop.h"
#include "server/options.h"

namespace zmesh::server {
namespace {

bool IsWildcardHost(const std::string& host) { return host.empty() || host == "0.0.0.0" || host == "::"; }

// "host:port" -> a socket address; numeric hosts need no DNS round trip.
bool Resolve(const std::string& host_port, sockaddr_storage* out, socklen_t* len, std::string* error) {
  HostPort hp;
  if (!ParseHostPort(host_port, &hp) || hp.host.empty()) {
    *error = "bad peer address '" + host_port + "'";
    return false;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(hp.host.c_str(), std::to_string(hp.port).c_str(), &hints, &res); rc != 0) {
    *error = "resolve " + host_port + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

int64_t Jitter(int64_t ms) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(ms / 4 + 1));
}

}  // namespace

// A connect() in progress.
struct Connector::Pending {
  Connector* connector;
  DoneCallback done;
  event* ev = nullptr;
};

Connector::Connector(EventLoop* loop, std::string source_host, int64_t timeout_ms)
    : loop_(loop), source_host_(std::move(source_host)), timeout_ms_(timeout_ms) {}

Connector::~Connector() {
  loop_->AssertInLoopThread();
  for (Pending* p : pending_) {
    const int fd = static_cast<int>(event_get_fd(p->ev));
    event_free(p->ev);
    ::close(fd);
    delete p;
  }
}

bool Connector::Dial(const std::string& host_port, DoneCallback done, std::string* error) {
  loop_->AssertInLoopThread();
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (!Resolve(host_port, &addr, &len, error)) return false;
  const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return false;
  }
  // Outgoing connections leave from the given address when it is a specific
  // one (multi-homed hosts, firewall rules, partition tests).
  if (!IsWildcardHost(source_host_)) {
    // The port is chosen at connect() time, per destination: a bind() alone
    // would reserve an ephemeral port for good, and a large mesh on one
    // address would run out of them.
    const int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_storage src{};
    socklen_t src_len = 0;
    std::string ignored;
    if (Resolve(source_host_ + ":0", &src, &src_len, &ignored) &&
        bind(fd, reinterpret_cast<sockaddr*>(&src), src_len) != 0) {
      LOG(WARNING) << "cannot bind source address " << source_host_ << " for a connection to " << host_port << ": "
                   << strerror(errno);
    }
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno != EINPROGRESS) {
    *error = "connect " + host_port + ": " + strerror(errno);
    ::close(fd);
    return false;
  }
  auto* pending = new Pending{this, std::move(done)};
  pending->ev = event_new(loop_->base(), fd, EV_WRITE, &Connector::OnConnectEvent, pending);
  const timeval tv{static_cast<time_t>(timeout_ms_ / 1000), static_cast<suseconds_t>((timeout_ms_ % 1000) * 1000)};
  event_add(pending->ev, &tv);
  pending_.insert(pending);
  return true;
}

void Connector::OnConnectEvent(evutil_socket_t fd, short what, void* arg) {
  auto* pending = static_cast<Pending*>(arg);
  pending->connector->loop_->AssertInLoopThread();
  std::string err;
  if (what & EV_TIMEOUT) {
    err = "connect timed out";
  } else {
    int so_error = 0;
    socklen_t l = sizeof so_error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &l);
    if (so_error != 0) err = strerror(so_error);
  }
  if (!err.empty()) {
    ::close(fd);
    fd = -1;
  }
  event_free(pending->ev);
  pending->connector->pending_.erase(pending);
  DoneCallback done = std::move(pending->done);
  delete pending;
  done(fd, err);
}

int64_t DialBackoff::Failed() {
  base_ms_ = std::clamp<int64_t>(base_ms_ * 2, kMinMs, kMaxMs);
  return Jitter(base_ms_);
}

}  // namespace zmesh::server

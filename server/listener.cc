#include "server/listener.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cstring>

#include "server/event_loop.h"

namespace zmesh::server {
namespace {
constexpr int kBacklog = 4096;
}

PeerAddress AddressOf(const sockaddr* addr) {
  PeerAddress out;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    out.port = ntohs(in->sin_port);
  } else if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    out.port = ntohs(in6->sin6_port);
  }
  out.ip = buf;
  return out;
}

Listener::Listener(EventLoop* loop, AcceptCallback on_accept) : loop_(loop), on_accept_(std::move(on_accept)) {}

Listener::~Listener() { Close(); }

bool Listener::Listen(const HostPort& address, std::string* error, bool accept_now) {
  loop_->AssertInLoopThread();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(address.port);
  const char* host = address.host.empty() ? nullptr : address.host.c_str();
  if (int rc = getaddrinfo(host, port.c_str(), &hints, &res); rc != 0) {
    *error = "resolve " + address.ToString() + ": " + gai_strerror(rc);
    return false;
  }
  const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    *error = std::string("socket: ") + strerror(errno);
    return false;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    *error = "bind " + address.ToString() + ": " + strerror(errno);
    freeaddrinfo(res);
    ::close(fd);
    return false;
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  bound_ = {address.host, AddressOf(reinterpret_cast<sockaddr*>(&ss)).port};
  fd_ = fd;
  return !accept_now || StartAccepting(error);
}

bool Listener::StartAccepting(std::string* error) {
  loop_->AssertInLoopThread();
  if (listener_ != nullptr) return true;
  if (fd_ < 0 || listen(fd_, kBacklog) != 0) {
    *error = "listen on " + bound_.ToString() + ": " + strerror(errno);
    return false;
  }
  listener_ = evconnlistener_new(loop_->base(), &Listener::OnAccept, this, LEV_OPT_CLOSE_ON_FREE, -1, fd_);
  if (listener_ == nullptr) {
    *error = "evconnlistener_new failed";
    return false;
  }
  fd_ = -1;  // owned by the evconnlistener now
  evconnlistener_set_error_cb(listener_, &Listener::OnError);
  return true;
}

void Listener::Close() {
  loop_->AssertInLoopThread();
  if (listener_ != nullptr) {
    evconnlistener_free(listener_);
    listener_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void Listener::OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int, void* arg) {
  auto* self = static_cast<Listener*>(arg);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  self->on_accept_(fd, AddressOf(addr));
}

void Listener::OnError(evconnlistener* listener, void* arg) {
  // EMFILE and friends: pause accepting briefly instead of spinning on a
  // readiness that accept() cannot consume; the kernel queue holds the rest.
  auto* self = static_cast<Listener*>(arg);
  LOG(ERROR) << "accept on " << self->bound_.ToString() << " failed: " << strerror(errno) << "; pausing 100 ms";
  evconnlistener_disable(listener);
  const timeval pause{0, 100 * 1000};
  event_base_once(
      self->loop_->base(), -1, EV_TIMEOUT,
      [](evutil_socket_t, short, void* a) {
        auto* l = static_cast<Listener*>(a);
        if (l->listener_ != nullptr) evconnlistener_enable(l->listener_);
      },
      self, &pause);
}

}  // namespace zmesh::server

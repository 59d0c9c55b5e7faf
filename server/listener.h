#pragma once

// A listening TCP socket on an EventLoop; hands each accepted socket (already
// non-blocking, TCP_NODELAY) to a callback.
//
// Threading: created, used and destroyed on its loop's thread.

#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <string>

#include "server/options.h"

namespace zmesh::server {

class EventLoop;

struct PeerAddress {
  std::string ip;
  int port = 0;
};

class Listener {
 public:
  using AcceptCallback = std::function<void(int fd, const PeerAddress& peer)>;

  Listener(EventLoop* loop, AcceptCallback on_accept);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds and listens; port 0 picks a free port (see bound()). With
  // `accept_now` false the port is only bound (connections are refused, not
  // queued) until StartAccepting().
  bool Listen(const HostPort& address, std::string* error, bool accept_now = true);
  bool StartAccepting(std::string* error);
  bool accepting() const { return listener_ != nullptr; }
  // Stops accepting and closes the socket.
  void Close();
  const HostPort& bound() const { return bound_; }

 private:
  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int len, void* arg);
  static void OnError(evconnlistener*, void* arg);

  EventLoop* loop_;
  AcceptCallback on_accept_;
  evconnlistener* listener_ = nullptr;
  int fd_ = -1;  // bound, not yet listening
  HostPort bound_;
};

// The textual IP and port of a socket address.
PeerAddress AddressOf(const sockaddr* addr);

}  // namespace zmesh::server

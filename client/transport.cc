#include "client/transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zmesh::client {

IoResult SocketRecv(int fd, char* buf, size_t len) {
  for (;;) {
    const ssize_t n = ::recv(fd, buf, len, 0);
    if (n > 0) return {IoStatus::kOk, static_cast<size_t>(n), {}};
    if (n == 0) return {IoStatus::kEof, 0, "connection closed by the server"};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::kWouldBlock, 0, {}};
    return {IoStatus::kError, 0, std::string("read: ") + std::strerror(errno)};
  }
}

IoResult SocketSend(int fd, const char* data, size_t len) {
  for (;;) {
    const ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) return {IoStatus::kOk, static_cast<size_t>(n), {}};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::kWouldBlock, 0, {}};
    return {IoStatus::kError, 0, std::string("write: ") + std::strerror(errno)};
  }
}

IoResult PlainTransport::Read(char* buf, size_t len) { return SocketRecv(fd_, buf, len); }

IoResult PlainTransport::Write(const char* data, size_t len) {
  if (len == 0) return {IoStatus::kOk, 0, {}};
  return SocketSend(fd_, data, len);
}

int StartTcpConnect(const ServerUrl& url, Status* status) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res);
  if (rc == EAI_NONAME) {
    hints.ai_flags = AI_NUMERICSERV;
    rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res);
  }
  if (rc != 0 || res == nullptr) {
    *status = Status(StatusCode::kConnectFailed, "resolve " + url.host + ": " + ::gai_strerror(rc));
    return -1;
  }
  const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *status = Status(StatusCode::kIoError, std::string("socket: ") + std::strerror(errno));
    ::freeaddrinfo(res);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  const int err = errno;
  ::freeaddrinfo(res);
  if (rc != 0 && err != EINPROGRESS) {
    *status = Status(StatusCode::kConnectFailed, "connect " + url.key() + ": " + std::strerror(err));
    ::close(fd);
    return -1;
  }
  return fd;
}

Status FinishTcpConnect(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) return Status(StatusCode::kConnectFailed, std::string("connect: ") + std::strerror(err));
  return Status::Ok();
}

}  // namespace zmesh::client

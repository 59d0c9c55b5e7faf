#pragma once

// The kernel's view of a loopback TCP connection, from /proc/net/tcp. Tests
// use it to observe that a server closed a connection whose client is not
// reading (a slow consumer): the client cannot see the FIN behind the unread
// data, but the server's socket leaves ESTABLISHED at once.

#include <cstdint>
#include <optional>

namespace zmesh::testing {

// Linux TCP states as numbered in /proc/net/tcp (include/net/tcp_states.h).
enum class TcpState {
  kEstablished = 1,
  kSynSent = 2,
  kSynRecv = 3,
  kFinWait1 = 4,
  kFinWait2 = 5,
  kTimeWait = 6,
  kClose = 7,
  kCloseWait = 8,
  kLastAck = 9,
  kListen = 10,
  kClosing = 11,
};

// State of the IPv4 socket with local port `local_port` and remote port
// `remote_port` (both on 127.0.0.1), or nullopt if there is none.
std::optional<TcpState> LoopbackTcpState(uint16_t local_port, uint16_t remote_port);

}  // namespace zmesh::testing

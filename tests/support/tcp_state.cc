#include "tests/support/tcp_state.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace zmesh::testing {

std::optional<TcpState> LoopbackTcpState(uint16_t local_port, uint16_t remote_port) {
  // Lines: "sl local_address rem_address st ...", addresses as HEXIP:HEXPORT.
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string sl, local, remote, state;
    if (!(fields >> sl >> local >> remote >> state)) continue;
    unsigned lip = 0, lport = 0, rip = 0, rport = 0, st = 0;
    if (std::sscanf(local.c_str(), "%X:%X", &lip, &lport) != 2) continue;
    if (std::sscanf(remote.c_str(), "%X:%X", &rip, &rport) != 2) continue;
    if (std::sscanf(state.c_str(), "%X", &st) != 1) continue;
    if (lport == local_port && rport == remote_port) return static_cast<TcpState>(st);
  }
  return std::nullopt;
}

}  // namespace zmesh::testing

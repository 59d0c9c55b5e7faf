#pragma once

// Node addresses as users, ZooKeeper znodes and INFO connect_urls write them:
// "nats://[user[:password]@]host[:port]", "tls://...", "host:port", "host",
// "[v6addr]:port". One node has one key ("host:port") whatever its spelling,
// so the same node learned from several sources is one pool entry.
//
// Thread safety: values.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace zmesh::client {

inline constexpr uint16_t kDefaultPort = 4222;

struct ServerUrl {
  bool tls = false;  // "tls://": TLS even if the server does not ask for it
  std::string host;  // without brackets for IPv6
  uint16_t port = kDefaultPort;
  std::string user;
  std::string password;

  // "host:port" ("[v6]:port"), the identity of the node.
  std::string key() const;
  // "nats://host:port" or "tls://host:port", never with credentials (for logs).
  std::string ToString() const;
};

// nullopt (and *error set) for an empty host, a bad port or an unknown scheme.
std::optional<ServerUrl> ParseServerUrl(std::string_view text, std::string* error = nullptr);

}  // namespace zmesh::client

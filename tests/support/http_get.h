#pragma once

// Plain HTTP GETs to a node's monitoring port, for the integration tests.
// Blocking, bounded by a timeout; loopback (or any IPv4 address) only.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace zmesh::testing {

// One HTTP/1.1 GET to host:port (Connection: close); nullopt when nothing
// complete came back within `timeout`.
struct HttpReply {
  int status = 0;
  std::string body;
};
std::optional<HttpReply> HttpGet(const std::string& host, uint16_t port, const std::string& path,
                                 std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
// HttpGet of a monitoring endpoint: its JSON object when the answer is a 200
// with a JSON object body, else nullopt.
std::optional<nlohmann::json> GetJson(const std::string& host, uint16_t port, const std::string& path,
                                      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

}  // namespace zmesh::testing

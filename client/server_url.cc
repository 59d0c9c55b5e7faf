#include "client/server_url.h"

#include <charconv>

namespace zmesh::client {
namespace {

std::string HostPort(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

std::string ServerUrl::key() const { return HostPort(host, port); }

std::string ServerUrl::ToString() const { return (tls ? "tls://" : "nats://") + key(); }

std::optional<ServerUrl> ParseServerUrl(std::string_view text, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<ServerUrl> {
    if (error != nullptr) *error = "bad server address '" + std::string(text) + "': " + why;
    return std::nullopt;
  };
  ServerUrl url;
  std::string_view s = text;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (const size_t scheme = s.find("://"); scheme != std::string_view::npos) {
    const std::string_view name = s.substr(0, scheme);
    if (name == "tls") {
      url.tls = true;
    } else if (name != "nats") {
      return fail("unknown scheme (use nats:// or tls://)");
    }
    s.remove_prefix(scheme + 3);
  }
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  if (const size_t at = s.rfind('@'); at != std::string_view::npos) {
    const std::string_view cred = s.substr(0, at);
    const size_t colon = cred.find(':');
    url.user = std::string(cred.substr(0, colon));
    if (colon != std::string_view::npos) url.password = std::string(cred.substr(colon + 1));
    s.remove_prefix(at + 1);
  }
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return fail("unterminated '['");
    url.host = std::string(s.substr(1, close - 1));
    s.remove_prefix(close + 1);
    if (!s.empty()) {
      if (s.front() != ':') return fail("junk after ']'");
      port = s.substr(1);
    }
  } else {
    const size_t colon = s.rfind(':');
    if (colon != std::string_view::npos && s.find(':') == colon) {
      url.host = std::string(s.substr(0, colon));
      port = s.substr(colon + 1);
    } else {
      url.host = std::string(s);  // no port, or a bare IPv6 address
    }
  }
  if (url.host.empty()) return fail("empty host");
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      return fail("bad port");
    }
    url.port = static_cast<uint16_t>(value);
  }
  return url;
}

}  // namespace zmesh::client

#pragma once

// Text forms monitoring shares with nats-server, so dashboards written for it
// read ours: RFC 3339 timestamps, nats-server's uptime strings ("1d2h3m4s"),
// and the JSON dump used by every endpoint.
//
// Threading: pure functions; any thread.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace zmesh::server::monitor {

// Wall clock, milliseconds since the Unix epoch.
int64_t UnixNowMs();

// "2024-05-01T10:00:00.123Z" (UTC, millisecond precision).
std::string Rfc3339(int64_t unix_ms);

// nats-server's myUptime: whole seconds as "4s", "3m4s", "2h3m4s", "1d2h3m4s",
// "1y1d2h3m4s". Negative durations print as "0s".
std::string UptimeString(int64_t duration_ms);

// Pretty-printed like nats-server's endpoints (two-space indent). Bytes that
// are not UTF-8 (subjects may hold any non-space byte) become U+FFFD rather
// than failing the whole response.
std::string DumpJson(const nlohmann::json& j);

}  // namespace zmesh::server::monitor

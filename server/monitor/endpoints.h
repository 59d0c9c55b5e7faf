#pragma once

// The monitoring endpoints, one file each. Names and shapes follow
// nats-server's monitoring where the concept is the same (SPEC §7).
//
// Threading: every Serve* is called on the main loop and answers through
// `respond` there, at once or after collecting from the workers.

#include "server/monitor/http_response.h"
#include "server/monitor/monitor_context.h"
#include "server/monitor/query.h"

namespace zmesh::server::monitor {

// Largest page any listing returns, whatever `limit` asks for.
inline constexpr int64_t kMaxListLimit = 10000;
// Default page size of /connz and /subsz, as in nats-server.
inline constexpr int64_t kDefaultListLimit = 1024;
// /subsz?subs=1 without test= walks the subject index under its reader lock
// (which SUB and UNSUB wait for) only up to offset+limit entries, and never
// past this many: entries beyond it are not listed ("truncated": true).
// 100,000 entries hold the lock for a few milliseconds.
inline constexpr int64_t kMaxSubszWalk = 100000;
// /connz?subs=1 lists at most this many subjects per connection
// ("subscriptions" stays the exact count; "subscriptions_list_truncated":
// true says the list was cut).
inline constexpr size_t kMaxConnzSubjects = 1024;

// 200 {"status":"ok"}, or 503 {"status":"unavailable","reason":...}.
void ServeHealthz(MonitorContext& mc, const Query& query, Respond respond);
// Server totals and configuration (healthz.cc ... metrics.cc).
void ServeVarz(MonitorContext& mc, const Query& query, Respond respond);
// Client connections: open (from the workers) and recently closed.
void ServeConnz(MonitorContext& mc, const Query& query, Respond respond);
// The subject index, with ?test=<subject> and ?subs=1.
void ServeSubsz(MonitorContext& mc, const Query& query, Respond respond);
// Mesh peers: links, RTT, pending bytes, interest counts.
void ServePeerz(MonitorContext& mc, const Query& query, Respond respond);
// Prometheus text format.
void ServeMetrics(MonitorContext& mc, const Query& query, Respond respond);

}  // namespace zmesh::server::monitor

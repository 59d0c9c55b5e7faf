// /varz: totals and configuration, with nats-server's field names (and
// units: ping_interval and write_deadline are nanoseconds, auth_timeout is
// seconds) so existing dashboards read it; zmesh's own additions are
// node_id, zmesh_version, peers, auth_failures, "limits" (the bounds of
// the flags of the same names) and "mesh".

#include <thread>

#include "server/monitor/endpoints.h"
#include "server/monitor/format.h"
#include "server/monitor/process_stats.h"
#include "server/monitor/server_totals.h"
#include "server/server_context.h"

namespace zmesh::server::monitor {

void ServeVarz(MonitorContext& mc, const Query&, Respond respond) {
  const ServerTotals t = CollectTotals(mc.sources);
  const ServerContext& ctx = *mc.sources.ctx;
  const Options& o = ctx.options;
  const ProcessStats ps = ReadProcessStats();
  const ServerIdentity& id = mc.identity;
  constexpr int64_t kNanosPerMs = 1000000;

  nlohmann::json mesh = {
      {"standalone", t.mesh.standalone},
      {"registered", t.mesh.registered},
      {"healthy", t.mesh.healthy},
      {"members", t.mesh.members},
      {"repairs", t.mesh.repairs},
      {"interest_barrier",
       {{"waits", t.mesh.barrier.waits},
        {"timeouts", t.mesh.barrier.timeouts},
        {"propagations", t.mesh.barrier.propagation_count},
        {"propagation_avg_ms", t.mesh.barrier.propagation_count == 0
                                   ? 0.0
                                   : t.mesh.barrier.propagation_sum_ms /
                                         static_cast<double>(t.mesh.barrier.propagation_count)}}},
  };
  if (!t.mesh.standalone) mesh["zk_root"] = o.zk_root;

  nlohmann::json j = {
      {"server_id", id.server_id},
      {"server_name", id.server_name},
      {"node_id", id.node_id},
      {"version", id.version},
      {"zmesh_version", id.zmesh_version},
      {"proto", 1},
      {"host", id.host},
      {"port", id.port},
      {"auth_required", id.auth_required},
      {"tls_required", id.tls_required},
      {"connect_urls", ctx.info.connect_urls()},
      {"max_connections", o.max_connections},
      {"max_subscriptions", o.max_subs},
      {"ping_interval", o.ping_interval_ms * kNanosPerMs},
      {"ping_max", o.max_pings_out},
      {"http_host", mc.http_address.host},
      {"http_port", mc.http_address.port},
      {"auth_timeout", static_cast<double>(o.auth_timeout_ms) / 1000.0},
      {"max_control_line", o.max_control_line},
      {"max_payload", o.max_payload},
      {"max_pending", o.max_pending_bytes},
      {"write_deadline", o.write_deadline_ms * kNanosPerMs},
      {"start", Rfc3339(ctx.started_unix_ms)},
      {"now", Rfc3339(t.now_unix_ms)},
      {"uptime", UptimeString(t.now_unix_ms - ctx.started_unix_ms)},
      {"mem", ps.resident_bytes},
      {"cores", std::thread::hardware_concurrency()},
      {"io_threads", mc.sources.workers.size()},
      {"cpu", mc.cpu.Percent(ps.cpu_seconds, t.now_unix_ms, ctx.started_unix_ms)},
      {"connections", t.connections},
      {"total_connections", t.total_connections},
      {"peers", t.mesh.linked},
      {"in_msgs", t.in_msgs},
      {"out_msgs", t.out_msgs},
      {"in_bytes", t.in_bytes},
      {"out_bytes", t.out_bytes},
      {"slow_consumers", t.slow_consumers},
      {"subscriptions", t.subscriptions},
      {"auth_failures", t.auth_failures},
      {"auth_overloaded", t.auth_overloaded},
      {"moves",
       {{"out", t.moves_out},
        {"in", t.moves_in},
        {"timed_out", t.move_timeouts},
        {"rebalance_requests", t.rebalance_requests}}},
      {"pending_bytes", t.pending_bytes},
      {"pending_budget", t.pending_budget},
      {"pending_budget_cuts", t.pending_budget_cuts},
      {"http_req_stats", mc.http_req_stats},
      {"limits",
       {{"max_subs_total", o.max_subs_total},
        {"local_subscriptions", ctx.subscription_count.load(std::memory_order_relaxed)},
        {"max_subject_length", o.name_bounds.max_subject_bytes},
        {"max_subject_tokens", o.name_bounds.max_subject_tokens},
        {"max_queue_name_length", o.name_bounds.max_queue_bytes}}},
      {"mesh", std::move(mesh)},
  };
  respond(JsonResponse(j));
}

}  // namespace zmesh::server::monitor

// /metrics: Prometheus text format 0.0.4. Names follow Prometheus
// conventions: a zmesh_ prefix, counters end in _total, base units (seconds,
// bytes) in the name; process_* as client libraries export them. Per-peer
// series carry a peer="<node id>" label.

#include "server/monitor/endpoints.h"
#include "server/monitor/process_stats.h"
#include "server/monitor/prometheus_text.h"
#include "server/monitor/server_totals.h"
#include "server/server_context.h"

namespace zmesh::server::monitor {
namespace {

using Type = PrometheusText::Type;

void PeerSeries(PrometheusText& m, const std::vector<mesh::PeerStatus>& peers) {
  auto family = [&](const char* name, Type type, const char* help, auto value, bool linked_only) {
    m.Family(name, type, help);
    for (const mesh::PeerStatus& p : peers) {
      if (linked_only && !p.linked) continue;
      m.Sample(name, static_cast<double>(value(p)), {{"peer", p.node_id}});
    }
  };
  family("zmesh_peer_linked", Type::kGauge, "1 when the peer has an active link", [](auto& p) { return p.linked; },
         false);
  family("zmesh_peer_synced", Type::kGauge, "1 when the peer's full interest has arrived",
         [](auto& p) { return p.synced; }, false);
  m.Family("zmesh_peer_rtt_seconds", Type::kGauge, "Round-trip time of the peer link's last PING");
  for (const mesh::PeerStatus& p : peers) {
    if (p.linked && p.rtt_ms >= 0) {
      m.Sample("zmesh_peer_rtt_seconds", static_cast<double>(p.rtt_ms) / 1000.0, {{"peer", p.node_id}});
    }
  }
  family("zmesh_peer_pending_bytes", Type::kGauge, "Bytes waiting to be written to the peer link",
         [](auto& p) { return p.pending_bytes; }, true);
  family("zmesh_peer_interest_entries", Type::kGauge, "Interest entries learned from the peer",
         [](auto& p) { return p.interest; }, false);
  family("zmesh_peer_in_messages_total", Type::kCounter, "Messages received on the peer's current link",
         [](auto& p) { return p.in_msgs; }, true);
  family("zmesh_peer_out_messages_total", Type::kCounter, "Messages sent on the peer's current link",
         [](auto& p) { return p.out_msgs; }, true);
}

}  // namespace

void ServeMetrics(MonitorContext& mc, const Query&, Respond respond) {
  const ServerTotals t = CollectTotals(mc.sources);
  const ServerContext& ctx = *mc.sources.ctx;
  const ProcessStats ps = ReadProcessStats();
  PrometheusText m;
  auto d = [](auto v) { return static_cast<double>(v); };

  m.Family("zmesh_info", Type::kGauge, "Identity of this node; the value is always 1");
  m.Sample("zmesh_info", 1,
           {{"server_id", mc.identity.server_id},
            {"node_id", mc.identity.node_id},
            {"version", mc.identity.zmesh_version},
            {"nats_version", mc.identity.version}});
  m.Single("zmesh_up", Type::kGauge, "1 while the node serves its client port", t.serving ? 1 : 0);
  m.Single("zmesh_healthy", Type::kGauge, "1 when /healthz answers 200", t.mesh.healthy ? 1 : 0);
  m.Single("zmesh_registered", Type::kGauge, "1 while the node's znode exists (0 standalone)",
           t.mesh.registered ? 1 : 0);
  m.Single("zmesh_start_time_seconds", Type::kGauge, "Start time of the node since the Unix epoch",
           d(ctx.started_unix_ms) / 1000.0);
  m.Single("zmesh_connections", Type::kGauge, "Open client connections", d(t.connections));
  m.Single("zmesh_max_connections", Type::kGauge, "Configured limit of client connections",
           d(ctx.options.max_connections));
  m.Single("zmesh_accepted_connections_total", Type::kCounter, "Client connections accepted",
           d(t.total_connections));
  m.Single("zmesh_in_messages_total", Type::kCounter, "Messages received from clients and peers", d(t.in_msgs));
  m.Single("zmesh_out_messages_total", Type::kCounter, "Messages delivered to clients", d(t.out_msgs));
  m.Single("zmesh_in_bytes_total", Type::kCounter, "Payload bytes received from clients and peers", d(t.in_bytes));
  m.Single("zmesh_out_bytes_total", Type::kCounter, "Payload bytes delivered to clients", d(t.out_bytes));
  m.Single("zmesh_slow_consumers_total", Type::kCounter, "Clients closed as slow consumers", d(t.slow_consumers));
  m.Single("zmesh_auth_failures_total", Type::kCounter, "Failed client authentications", d(t.auth_failures));
  m.Single("zmesh_moves_out_total", Type::kCounter, "Clients that moved away from this node losslessly (MOVED sent)",
           d(t.moves_out));
  m.Single("zmesh_moves_in_total", Type::kCounter, "Connections that arrived as the new end of a planned move",
           d(t.moves_in));
  m.Single("zmesh_move_timeouts_total", Type::kCounter,
           "Planned moves that stopped waiting for every node's cut (--move_timeout_ms)", d(t.move_timeouts));
  m.Single("zmesh_rebalance_requests_total", Type::kCounter,
           "Clients this node asked to move to balance connections (INFO move_to)", d(t.rebalance_requests));
  m.Single("zmesh_auth_overloaded_total", Type::kCounter,
           "Client logins closed unjudged (-ERR 'Server Busy, Try Again') because the authenticator was busy",
           d(t.auth_overloaded));
  m.Single("zmesh_client_pending_bytes", Type::kGauge,
           "Bytes queued to all clients (bounded by --max_pending_bytes_total)", d(t.pending_bytes));
  m.Single("zmesh_pending_budget_cuts_total", Type::kCounter,
           "Slow consumers cut because the node's queued bytes were over --max_pending_bytes_total",
           d(t.pending_budget_cuts));
  m.Single("zmesh_subscriptions", Type::kGauge, "Subject index entries: client subscriptions and remote interest",
           d(t.subscriptions));

  m.Family("zmesh_peers", Type::kGauge, "Mesh peers by state: member (has a znode), linked, synced");
  size_t members = 0;
  for (const mesh::PeerStatus& p : t.mesh.peers) members += p.member ? 1 : 0;
  m.Sample("zmesh_peers", d(members), {{"state", "member"}});
  m.Sample("zmesh_peers", d(t.mesh.linked), {{"state", "linked"}});
  m.Sample("zmesh_peers", d(t.mesh.synced), {{"state", "synced"}});
  m.Single("zmesh_mesh_repairs_total", Type::kCounter, "Interest divergences repaired by anti-entropy",
           d(t.mesh.repairs));
  const mesh::InterestBarrier::Stats& b = t.mesh.barrier;
  m.Single("zmesh_interest_barrier_waits_total", Type::kCounter,
           "Client PINGs whose PONG waited for peers to apply an interest change", d(b.waits));
  m.Single("zmesh_interest_barrier_timeouts_total", Type::kCounter,
           "Peer links reset for not applying an interest change within --interest_barrier_timeout_ms", d(b.timeouts));
  m.Family("zmesh_interest_propagation_seconds", Type::kHistogram,
           "Time from a local interest change to its acknowledgement by the last peer");
  for (size_t i = 0; i < mesh::InterestBarrier::kBuckets; ++i) {
    m.Sample("zmesh_interest_propagation_seconds_bucket", d(b.propagation_buckets[i]),
             {{"le", PrometheusText::FormatValue(mesh::InterestBarrier::kBucketsMs[i] / 1000.0)}});
  }
  m.Sample("zmesh_interest_propagation_seconds_bucket", d(b.propagation_count), {{"le", "+Inf"}});
  m.Sample("zmesh_interest_propagation_seconds_sum", b.propagation_sum_ms / 1000.0);
  m.Sample("zmesh_interest_propagation_seconds_count", d(b.propagation_count));
  if (!t.mesh.peers.empty()) PeerSeries(m, t.mesh.peers);

  m.Family("zmesh_http_requests_total", Type::kCounter, "Monitoring requests served, by path");
  for (const auto& [path, n] : mc.http_req_stats) m.Sample("zmesh_http_requests_total", d(n), {{"path", path}});

  m.Single("process_resident_memory_bytes", Type::kGauge, "Resident memory size in bytes", d(ps.resident_bytes));
  m.Single("process_virtual_memory_bytes", Type::kGauge, "Virtual memory size in bytes", d(ps.virtual_bytes));
  m.Single("process_cpu_seconds_total", Type::kCounter, "Total user and system CPU time spent in seconds",
           ps.cpu_seconds);
  // The server records its start when Start() runs, a few milliseconds after exec.
  m.Single("process_start_time_seconds", Type::kGauge, "Start time of the process since the Unix epoch in seconds",
           d(ctx.started_unix_ms) / 1000.0);
  m.Single("process_open_fds", Type::kGauge, "Number of open file descriptors", d(ps.open_fds));
  if (ps.max_fds > 0) m.Single("process_max_fds", Type::kGauge, "Maximum number of open file descriptors", d(ps.max_fds));

  HttpResponse r;
  r.content_type = PrometheusText::kContentType;
  r.body = m.text();
  respond(std::move(r));
}

}  // namespace zmesh::server::monitor

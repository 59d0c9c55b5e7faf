#include "server/monitor/server_totals.h"

#include <atomic>

#include "server/io_worker.h"
#include "server/monitor/format.h"
#include "server/server_context.h"

namespace zmesh::server::monitor {
namespace {

MeshTotals CollectMesh(const mesh::Mesh& m, bool serving) {
  MeshTotals t;
  t.standalone = false;
  t.peers = m.Status();
  t.healthy = m.Healthy();
  t.repairs = m.repairs();
  t.barrier = m.barrier_stats();
  std::string peer_problem;
  for (const mesh::PeerStatus& p : t.peers) {
    if (p.linked) ++t.linked;
    if (p.synced) ++t.synced;
    if (!p.member) continue;
    ++t.members;
    if (peer_problem.empty() && !p.linked) peer_problem = "peer " + p.node_id + " is not linked";
    if (peer_problem.empty() && !p.synced) peer_problem = "peer " + p.node_id + " is not synced";
  }
  // The mesh does not expose its registry, so registration is inferred: the
  // client port opens only once the znode exists, and Healthy() is
  // "registered and every live peer linked and synced". Hence with the port
  // open and every peer fine, unhealthy means the znode is gone (ZooKeeper
  // session lost, or leaving).
  t.registered = serving && (t.healthy || !peer_problem.empty());
  if (t.registered) ++t.members;
  if (!t.healthy) {
    if (!serving) {
      t.unhealthy_reason = "joining the mesh: not registered in ZooKeeper yet";
    } else if (!t.registered) {
      t.unhealthy_reason = "not registered in ZooKeeper";
    } else {
      t.unhealthy_reason = peer_problem;
    }
  }
  return t;
}

}  // namespace

ServerTotals CollectTotals(const MonitorSources& s) {
  if (s.main_loop != nullptr) s.main_loop->AssertInLoopThread();
  ServerTotals t;
  t.now_unix_ms = UnixNowMs();
  t.serving = s.serving && s.serving();
  for (IoWorker* w : s.workers) {
    WorkerStats& ws = w->stats();
    t.in_msgs += ws.in_msgs.load(std::memory_order_relaxed);
    t.in_bytes += ws.in_bytes.load(std::memory_order_relaxed);
    t.out_msgs += ws.out_msgs.load(std::memory_order_relaxed);
    t.out_bytes += ws.out_bytes.load(std::memory_order_relaxed);
    t.slow_consumers += ws.slow_consumers.load(std::memory_order_relaxed);
  }
  const ServerContext& ctx = *s.ctx;
  t.connections = ctx.client_count.load(std::memory_order_relaxed);
  t.total_connections = ctx.total_connections.load(std::memory_order_relaxed);
  t.auth_failures = ctx.auth_failures.load(std::memory_order_relaxed);
  t.moves_out = ctx.moves.out.load(std::memory_order_relaxed);
  t.moves_in = ctx.moves.in.load(std::memory_order_relaxed);
  t.move_timeouts = ctx.moves.timed_out.load(std::memory_order_relaxed);
  t.rebalance_requests = ctx.moves.rebalance_requests.load(std::memory_order_relaxed);
  t.auth_overloaded = ctx.auth_overloaded.load(std::memory_order_relaxed);
  t.pending_bytes = ctx.client_pending.total();
  t.pending_budget = ctx.client_pending.limit();
  t.pending_budget_cuts = ctx.client_pending.cuts();
  t.subscriptions = ctx.index.size();
  if (const mesh::Mesh* m = s.mesh ? s.mesh() : nullptr) {
    t.mesh = CollectMesh(*m, t.serving);
  } else {
    t.mesh.healthy = t.serving;
    if (!t.serving) t.mesh.unhealthy_reason = "the client port is not open yet";
  }
  return t;
}

}  // namespace zmesh::server::monitor

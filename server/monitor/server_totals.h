#pragma once

// A point-in-time summary of the whole node, from counters that any thread
// may read: the workers' stats, the ServerContext counters, the subject index
// size and the mesh's status snapshot. Shared by /varz, /healthz, /peerz and
// /metrics so that they agree on every figure.
//
// Threading: CollectTotals reads only atomics and mutex-guarded snapshots,
// except `serving`, which is main-loop state: call it on the main loop.

#include <cstdint>
#include <string>
#include <vector>

#include "server/mesh/mesh.h"
#include "server/monitor/monitor_context.h"

namespace zmesh::server::monitor {

struct MeshTotals {
  bool standalone = true;
  bool registered = false;  // our znode exists (inferred; see CollectTotals)
  bool healthy = false;     // SPEC: registered and synced with every live peer
  uint64_t repairs = 0;     // anti-entropy repairs so far
  mesh::InterestBarrier::Stats barrier;  // interest barrier waits, timeouts, propagation times
  size_t members = 0;       // live nodes in ZooKeeper, this one included when registered
  size_t linked = 0;        // peers with an active link
  size_t synced = 0;        // peers whose full interest arrived
  std::string unhealthy_reason;  // empty when healthy
  std::vector<mesh::PeerStatus> peers;
};

struct ServerTotals {
  int64_t now_unix_ms = 0;
  bool serving = false;  // the client port accepts connections
  int64_t connections = 0;
  uint64_t total_connections = 0;
  uint64_t in_msgs = 0, in_bytes = 0, out_msgs = 0, out_bytes = 0;
  uint64_t slow_consumers = 0;
  uint64_t auth_failures = 0;
  // Planned moves (MoveCounters).
  uint64_t moves_out = 0;
  uint64_t moves_in = 0;
  uint64_t move_timeouts = 0;
  uint64_t rebalance_requests = 0;
  uint64_t auth_overloaded = 0;
  uint64_t pending_bytes = 0;        // queued to all clients now
  uint64_t pending_budget = 0;       // --max_pending_bytes_total (0 = none)
  uint64_t pending_budget_cuts = 0;  // slow consumers cut because the node was over it
  size_t subscriptions = 0;  // subject index entries: client subscriptions and remote interest
  MeshTotals mesh;
};

// Main loop thread.
ServerTotals CollectTotals(const MonitorSources& sources);

}  // namespace zmesh::server::monitor

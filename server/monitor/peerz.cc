// /peerz: the mesh as this node sees it, from Mesh::Status(). The field names
// are a contract with the mesh integration tests: do not rename them.

#include "server/monitor/endpoints.h"
#include "server/monitor/format.h"
#include "server/monitor/server_totals.h"

namespace zmesh::server::monitor {

void ServePeerz(MonitorContext& mc, const Query&, Respond respond) {
  const ServerTotals t = CollectTotals(mc.sources);
  nlohmann::json peers = nlohmann::json::array();
  for (const mesh::PeerStatus& p : t.mesh.peers) {
    peers.push_back({
        {"node_id", p.node_id},
        {"peer_url", p.peer_url},
        {"client_url", p.client_url},
        {"member", p.member},
        {"linked", p.linked},
        {"synced", p.synced},
        {"outbound", p.outbound},
        {"link_id", p.link_id},  // changes when the link is reset or replaced
        {"security", p.security},
        {"rtt_ms", p.rtt_ms},  // -1 until the first PONG
        {"pending_bytes", p.pending_bytes},
        {"interest", p.interest},
        {"interest_acked", p.interest_acked},  // our interest changes it applied, up to this seq
        {"interest_lag", p.interest_lag},
        {"in_msgs", p.in_msgs},
        {"out_msgs", p.out_msgs},
    });
  }
  respond(JsonResponse({
      {"server_id", mc.identity.server_id},
      {"node_id", mc.identity.node_id},
      {"now", Rfc3339(t.now_unix_ms)},
      {"registered", t.mesh.registered},
      {"healthy", t.mesh.healthy},
      {"repairs", t.mesh.repairs},
      {"peers", std::move(peers)},
  }));
}

}  // namespace zmesh::server::monitor

// /healthz: 200 only when the node can serve its part of the mesh — in a
// mesh, registered in ZooKeeper and linked and synced with every live peer
// (Mesh::Healthy); standalone, once the client port accepts. Load balancers
// and orchestrators poll it, so it reads only cheap snapshots.

#include "server/monitor/endpoints.h"
#include "server/monitor/server_totals.h"

namespace zmesh::server::monitor {

void ServeHealthz(MonitorContext& mc, const Query&, Respond respond) {
  const ServerTotals t = CollectTotals(mc.sources);
  if (t.mesh.healthy) {
    respond(JsonResponse({{"status", "ok"}}));
    return;
  }
  respond(JsonResponse({{"status", "unavailable"}, {"reason", t.mesh.unhealthy_reason}}, 503));
}

}  // namespace zmesh::server::monitor

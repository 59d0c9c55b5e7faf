#include "server/monitor/monitor_context.h"

#include "server/server_context.h"

namespace zmesh::server::monitor {

ServerIdentity IdentityOf(const ServerContext& ctx) {
  const InfoStatic info = ctx.info.fields();
  ServerIdentity id;
  id.node_id = ctx.node_id;
  id.server_id = info.server_id;
  id.server_name = info.server_name;
  id.version = info.version;
  id.zmesh_version = info.zmesh_version;
  id.host = info.host;
  id.port = info.port;
  id.auth_required = info.auth_required;
  id.tls_required = info.tls_required;
  id.max_payload = info.max_payload;
  return id;
}

}  // namespace zmesh::server::monitor

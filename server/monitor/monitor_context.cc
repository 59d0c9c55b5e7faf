#include "server/monitor/monitor_context.h"

#include <nlohmann/json.hpp>

#include "server/server_context.h"

namespace zmesh::server::monitor {

ServerIdentity IdentityOf(const ServerContext& ctx) {
  ServerIdentity id;
  id.node_id = ctx.node_id;
  std::string line = ctx.info.Broadcast();  // "INFO {...} \r\n"
  const size_t open = line.find('{');
  const size_t close = line.rfind('}');
  if (open == std::string::npos || close == std::string::npos || close < open) return id;
  const nlohmann::json j =
      nlohmann::json::parse(line.begin() + static_cast<std::ptrdiff_t>(open),
                            line.begin() + static_cast<std::ptrdiff_t>(close) + 1, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return id;
  id.server_id = j.value("server_id", "");
  id.server_name = j.value("server_name", "");
  id.version = j.value("version", "");
  id.zmesh_version = j.value("zmesh_version", "");
  id.host = j.value("host", "");
  id.port = j.value("port", 0);
  id.auth_required = j.value("auth_required", false);
  id.tls_required = j.value("tls_required", false);
  id.max_payload = j.value("max_payload", int64_t{0});
  return id;
}

}  // namespace zmesh::server::monitor

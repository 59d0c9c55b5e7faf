#include "server/monitor/http_response.h"

#include "server/monitor/format.h"

namespace zmesh::server::monitor {

HttpResponse JsonResponse(const nlohmann::json& j, int code) {
  HttpResponse r;
  r.code = code;
  r.body = DumpJson(j);
  return r;
}

HttpResponse ErrorResponse(int code, const std::string& message) {
  return JsonResponse(nlohmann::json{{"error", message}}, code);
}

}  // namespace zmesh::server::monitor

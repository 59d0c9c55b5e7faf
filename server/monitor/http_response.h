#pragma once

// One monitoring reply, and the callback an endpoint answers through.
//
// Threading: a Respond must be called exactly once, on the main loop; it may
// be called later than the endpoint returns (after collecting from the
// workers). Once the monitor stopped it does nothing.

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace zmesh::server::monitor {

struct HttpResponse {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
};

using Respond = std::function<void(HttpResponse)>;

HttpResponse JsonResponse(const nlohmann::json& j, int code = 200);
// {"error": message}, as nats-server reports bad requests.
HttpResponse ErrorResponse(int code, const std::string& message);

}  // namespace zmesh::server::monitor

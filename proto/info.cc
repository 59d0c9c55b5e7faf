#include "proto/info.h"

#include "proto/json_value.h"

namespace zmesh::proto {
namespace {

using nlohmann::json;
using json_value::Quote;

std::string GetString(const json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

bool GetBool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

int64_t GetInt(const json& j, const char* key, int64_t lo, int64_t hi, int64_t absent) {
  auto it = j.find(key);
  int64_t v = absent;
  if (it == j.end() || !json_value::GetInt(*it, lo, hi, &v)) return absent;
  return v;
}

}  // namespace

InfoLineParts EncodeInfoLineParts(const Info& info) {
  InfoLineParts p;
  p.head = "INFO {\"server_id\":" + Quote(info.server_id) + ",\"server_name\":" + Quote(info.server_name) +
           ",\"version\":" + Quote(info.version) + ",\"proto\":" + std::to_string(info.proto) +
           ",\"host\":" + Quote(info.host) + ",\"port\":" + std::to_string(info.port) +
           ",\"headers\":" + (info.headers ? "true" : "false");
  if (info.auth_required) p.head += ",\"auth_required\":true";
  if (info.tls_required) p.head += ",\"tls_required\":true";
  if (info.tls_verify) p.head += ",\"tls_verify\":true";
  if (info.tls_available) p.head += ",\"tls_available\":true";
  p.head += ",\"max_payload\":" + std::to_string(info.max_payload);
  if (info.connect_urls) {
    json urls = json::array();
    for (const std::string& u : *info.connect_urls) urls.push_back(u);
    p.tail += ",\"connect_urls\":" + json_value::Dump(urls);
  }
  if (info.lame_duck) p.tail += ",\"ldm\":true";
  if (!info.zmesh_version.empty()) p.tail += ",\"zmesh_version\":" + Quote(info.zmesh_version);
  if (info.move) p.tail += ",\"move\":true";
  if (!info.move_to.empty()) p.tail += ",\"move_to\":" + Quote(info.move_to);
  return p;
}

std::string JoinInfoLine(const InfoLineParts& parts, uint64_t client_id, std::string_view client_ip) {
  std::string line;
  line.reserve(parts.head.size() + parts.tail.size() + client_ip.size() + 64);
  line += parts.head;
  if (client_id != 0) {
    line += ",\"client_id\":";
    line += std::to_string(client_id);
  }
  if (!client_ip.empty()) {
    line += ",\"client_ip\":";
    line += Quote(client_ip);
  }
  line += parts.tail;
  line += "} \r\n";
  return line;
}

std::string EncodeInfoLine(const Info& info) {
  return JoinInfoLine(EncodeInfoLineParts(info), info.client_id, info.client_ip);
}

std::string EncodeInfoJson(const Info& info) {
  std::string line = EncodeInfoLine(info);
  // "INFO " ... "} \r\n": the object is between.
  return line.substr(5, line.size() - 5 - 3);
}

bool DecodeInfo(std::string_view text, Info* out, std::string* error) {
  const json j = json_value::Parse(text);
  if (j.is_discarded() || !j.is_object()) {
    *error = "INFO is not a JSON object";
    return false;
  }
  constexpr int64_t kIntMin = std::numeric_limits<int>::min();
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  Info info;
  info.server_id = GetString(j, "server_id");
  info.server_name = GetString(j, "server_name");
  info.version = GetString(j, "version");
  info.proto = static_cast<int>(GetInt(j, "proto", kIntMin, kIntMax, 0));
  info.host = GetString(j, "host");
  info.port = static_cast<int>(GetInt(j, "port", kIntMin, kIntMax, 0));
  info.headers = GetBool(j, "headers");
  info.auth_required = GetBool(j, "auth_required");
  info.tls_required = GetBool(j, "tls_required");
  info.tls_verify = GetBool(j, "tls_verify");
  info.tls_available = GetBool(j, "tls_available");
  info.max_payload = GetInt(j, "max_payload", std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max(), -1);
  if (auto it = j.find("client_id"); it != j.end()) json_value::GetUint64(*it, &info.client_id);
  info.client_ip = GetString(j, "client_ip");
  if (auto it = j.find("connect_urls"); it != j.end() && it->is_array()) {
    info.connect_urls.emplace();
    for (const json& u : *it) {
      if (u.is_string()) info.connect_urls->push_back(u.get<std::string>());
    }
  }
  info.lame_duck = GetBool(j, "ldm");
  info.zmesh_version = GetString(j, "zmesh_version");
  info.move = GetBool(j, "move");
  info.move_to = GetString(j, "move_to");
  *out = std::move(info);
  return true;
}

}  // namespace zmesh::proto

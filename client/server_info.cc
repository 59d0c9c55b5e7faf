#include "client/server_info.h"

#include <nlohmann/json.hpp>

namespace zmesh::client {
namespace {

using nlohmann::json;

bool GetBool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string GetString(const json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

int64_t GetInt(const json& j, const char* key, int64_t absent) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return absent;
  return it->get<int64_t>();
}

}  // namespace

bool ParseServerInfo(std::string_view text, ServerInfo* out, std::string* error) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "INFO is not a JSON object";
    return false;
  }
  ServerInfo info;
  info.server_id = GetString(j, "server_id");
  info.server_name = GetString(j, "server_name");
  info.version = GetString(j, "version");
  info.headers = GetBool(j, "headers");
  info.auth_required = GetBool(j, "auth_required");
  info.tls_required = GetBool(j, "tls_required");
  info.tls_available = GetBool(j, "tls_available");
  info.lame_duck = GetBool(j, "ldm");
  info.max_payload = GetInt(j, "max_payload", -1);
  info.proto = static_cast<int>(GetInt(j, "proto", 0));
  if (auto it = j.find("connect_urls"); it != j.end() && it->is_array()) {
    info.has_connect_urls = true;
    for (const json& u : *it) {
      if (u.is_string()) info.connect_urls.push_back(u.get<std::string>());
    }
  }
  *out = std::move(info);
  return true;
}

std::string EncodeConnect(const ConnectFields& f) {
  json j = json::object();
  j["verbose"] = false;
  j["pedantic"] = false;
  j["tls_required"] = f.tls_required;
  j["name"] = f.name;
  j["lang"] = "cpp";
  j["version"] = f.version;
  j["protocol"] = 1;
  j["echo"] = f.echo;
  j["headers"] = f.headers;
  j["no_responders"] = f.headers;
  if (!f.user.empty()) j["user"] = f.user;
  if (!f.password.empty()) j["pass"] = f.password;
  // Invalid UTF-8 in a name or password must not throw: replace it.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace zmesh::client

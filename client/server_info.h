#pragma once

// The JSON of a server's INFO line, reduced to what the client acts on.
// Unknown fields are ignored; fields of the wrong type count as absent, so a
// garbled INFO is either rejected as a whole (not an object) or harmless.
//
// Thread safety: values.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::client {

struct ServerInfo {
  std::string server_id;
  std::string server_name;
  std::string version;
  bool headers = false;        // HPUB/HMSG and no_responders supported
  bool auth_required = false;
  bool tls_required = false;
  bool tls_available = false;
  bool lame_duck = false;      // "ldm": the node is leaving; move elsewhere
  int64_t max_payload = -1;    // -1 = not announced
  int proto = 0;
  bool has_connect_urls = false;
  std::vector<std::string> connect_urls;  // other nodes' client addresses
};

// false (and *error set) unless `json` is a JSON object.
bool ParseServerInfo(std::string_view json, ServerInfo* out, std::string* error);

// The CONNECT JSON. Strings are escaped; credentials are included only when set.
struct ConnectFields {
  std::string name;
  std::string user;
  std::string password;
  bool tls_required = false;
  bool echo = true;
  bool headers = true;
  std::string version;
};
std::string EncodeConnect(const ConnectFields& fields);

}  // namespace zmesh::client

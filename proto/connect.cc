#include "proto/connect.h"

#include <cctype>

#include "proto/json_value.h"

namespace zmesh::proto {
namespace {

using nlohmann::json;

// Reads one known field into its member. false: the value has the wrong
// type for it (Go's decoder would fail the whole CONNECT).
using FieldReader = bool (*)(const json& v, ConnectOptions* o);

template <std::optional<bool> ConnectOptions::*M>
bool ReadBool(const json& v, ConnectOptions* o) {
  if (!v.is_boolean()) return false;
  o->*M = v.get<bool>();
  return true;
}

template <std::optional<std::string> ConnectOptions::*M>
bool ReadString(const json& v, ConnectOptions* o) {
  if (!v.is_string()) return false;
  o->*M = v.get<std::string>();
  return true;
}

template <std::optional<int64_t> ConnectOptions::*M>
bool ReadInt(const json& v, ConnectOptions* o) {
  int64_t i = 0;
  if (!json_value::GetInt(v, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), &i)) {
    return false;
  }
  o->*M = i;
  return true;
}

struct Field {
  const char* name;  // lower case
  FieldReader read;
};

// The fields nats-server's clientOpts decodes, with the JSON type each needs.
constexpr Field kFields[] = {
    {"verbose", ReadBool<&ConnectOptions::verbose>},
    {"pedantic", ReadBool<&ConnectOptions::pedantic>},
    {"tls_required", ReadBool<&ConnectOptions::tls_required>},
    {"auth_token", ReadString<&ConnectOptions::auth_token>},
    {"user", ReadString<&ConnectOptions::user>},
    {"pass", ReadString<&ConnectOptions::pass>},
    {"name", ReadString<&ConnectOptions::name>},
    {"lang", ReadString<&ConnectOptions::lang>},
    {"version", ReadString<&ConnectOptions::version>},
    {"protocol", ReadInt<&ConnectOptions::protocol>},
    {"echo", ReadBool<&ConnectOptions::echo>},
    {"headers", ReadBool<&ConnectOptions::headers>},
    {"no_responders", ReadBool<&ConnectOptions::no_responders>},
    {"sig", ReadString<&ConnectOptions::sig>},
    {"move_token", ReadString<&ConnectOptions::move_token>},
    {"moves", ReadBool<&ConnectOptions::moves>},
    {"jwt", ReadString<&ConnectOptions::jwt>},
    {"nkey", ReadString<&ConnectOptions::nkey>},
    {"account", ReadString<&ConnectOptions::account>},
    {"new_account", ReadBool<&ConnectOptions::new_account>},
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

template <typename T>
void Put(json* j, const char* key, const std::optional<T>& v) {
  if (v) (*j)[key] = *v;
}

}  // namespace

bool DecodeConnect(std::string_view text, ConnectOptions* out) {
  json j = json_value::Parse(text);
  if (j.is_null() && !j.is_discarded()) {  // Go: `null` is "no change"
    *out = ConnectOptions();
    return true;
  }
  if (!j.is_object()) return false;
  ConnectOptions o;
  // Keys in the object's (sorted) order; of two spellings of one field the
  // later one wins.
  for (auto& [key, value] : j.items()) {
    const std::string k = Lower(key);
    for (const Field& f : kFields) {
      if (k != f.name) continue;
      if (value.is_null()) break;  // Go leaves the field unchanged
      if (!f.read(value, &o)) return false;
    }
  }
  *out = std::move(o);
  return true;
}

std::string EncodeConnect(const ConnectOptions& o) {
  json j = json::object();
  Put(&j, "verbose", o.verbose);
  Put(&j, "pedantic", o.pedantic);
  Put(&j, "tls_required", o.tls_required);
  Put(&j, "auth_token", o.auth_token);
  Put(&j, "user", o.user);
  Put(&j, "pass", o.pass);
  Put(&j, "name", o.name);
  Put(&j, "lang", o.lang);
  Put(&j, "version", o.version);
  Put(&j, "protocol", o.protocol);
  Put(&j, "echo", o.echo);
  Put(&j, "headers", o.headers);
  Put(&j, "no_responders", o.no_responders);
  Put(&j, "sig", o.sig);
  Put(&j, "jwt", o.jwt);
  Put(&j, "nkey", o.nkey);
  Put(&j, "account", o.account);
  Put(&j, "new_account", o.new_account);
  Put(&j, "move_token", o.move_token);
  Put(&j, "moves", o.moves);
  return json_value::Dump(j);
}

}  // namespace zmesh::proto

// JSON codec for the data of <root>/nodes/<id> (SPEC §3). The server writes
// it, servers and clients read it, so both sides share this one codec.

#include <nlohmann/json.hpp>

#include "zk/registry.h"

namespace zmesh::zk {

std::string EncodeNodeInfo(const NodeInfo& node) {
  // ordered_json keeps the field order of the spec, which makes the znode
  // readable for operators (zkCli get); readers do not depend on it.
  nlohmann::ordered_json json = {
      {"id", node.id},
      {"client_url", node.client_url},
      {"peer_url", node.peer_url},
      {"version", node.version},
      {"started_ms", node.started_ms},
      {"incarnation", node.incarnation},
  };
  if (node.moves) json["moves"] = true;
  if (node.queue_switch) json["queue_switch"] = true;
  // `replace` instead of throwing: a field with invalid UTF-8 must not take
  // the node down; the id and URLs we write are ASCII anyway.
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::optional<NodeInfo> DecodeNodeInfo(std::string_view data) {
  // Data comes from ZooKeeper, i.e. from any client with write access: parse
  // without exceptions and check every type.
  nlohmann::json json = nlohmann::json::parse(data.begin(), data.end(), nullptr,
                                              /*allow_exceptions=*/false);
  if (!json.is_object()) return std::nullopt;
  auto required = [&json](const char* key, std::string* out) {
    auto it = json.find(key);
    if (it == json.end() || !it->is_string()) return false;
    *out = it->get<std::string>();
    return !out->empty();
  };
  NodeInfo node;
  if (!required("id", &node.id) || !required("client_url", &node.client_url) ||
      !required("peer_url", &node.peer_url)) {
    return std::nullopt;
  }
  // Optional fields are informational; a newer or older writer may omit them
  // or change their type, which must not hide a live node.
  if (auto it = json.find("version"); it != json.end() && it->is_string()) {
    node.version = it->get<std::string>();
  }
  if (auto it = json.find("started_ms"); it != json.end() && it->is_number_integer()) {
    node.started_ms = it->get<int64_t>();
  }
  if (auto it = json.find("incarnation"); it != json.end() && it->is_number_unsigned()) {
    node.incarnation = it->get<uint64_t>();
  }
  if (auto it = json.find("moves"); it != json.end() && it->is_boolean()) node.moves = it->get<bool>();
  if (auto it = json.find("queue_switch"); it != json.end() && it->is_boolean()) {
    node.queue_switch = it->get<bool>();
  }
  return node;
}

}  // namespace zmesh::zk

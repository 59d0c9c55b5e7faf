#pragma once

// The INFO operation: what a server tells a client about itself, first on
// connect and again when connect_urls or lame duck mode change.
//
// Encoding writes nats-server 2.9's fields in its order with its omitempty
// rules (server_id, server_name, version, proto, host, port, headers and
// max_payload always; the rest only when set), plus zmesh_version last, so
// clients that compare INFO lines see what they see from nats-server.
//
// Decoding ignores unknown fields and treats a field of the wrong type, or a
// number out of the field's range, as absent: a garbled INFO is either
// rejected as a whole (not a JSON object) or harmless. It never throws.
//
// Thread safety: values and stateless functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::proto {

struct Info {
  std::string server_id;
  std::string server_name;
  std::string version;  // the NATS server version whose protocol is spoken
  int proto = 0;        // 1: the server sends INFO updates to clients that asked
  std::string host;
  int port = 0;
  bool headers = false;  // HPUB/HMSG and no_responders supported
  bool auth_required = false;
  bool tls_required = false;
  bool tls_verify = false;     // client certificates required
  bool tls_available = false;  // TLS offered but not required
  int64_t max_payload = -1;    // -1: not announced
  // Per client; 0 / empty are omitted.
  uint64_t client_id = 0;
  std::string client_ip;
  // Client URLs of all live mesh nodes. Absent and empty differ for a
  // client: an empty list announced means "no other node".
  std::optional<std::vector<std::string>> connect_urls;
  bool lame_duck = false;  // "ldm": the node is leaving; clients move elsewhere
  std::string zmesh_version;  // empty: omitted (not a zmesh node)
  // "move": the node takes part in lossless client moves (CONNECT
  // move_token, MOVE / MOVED; docs/design-lossless-moves.md).
  bool move = false;
  // "move_to": sent to one client that can move (CONNECT "moves"): please
  // move to this node now (rebalancing). Empty: omitted.
  std::string move_to;

  bool operator==(const Info&) const = default;
};

// The JSON object, without "INFO " and line end.
std::string EncodeInfoJson(const Info& info);
// "INFO {...} \r\n", the trailing blank as nats-server writes it.
std::string EncodeInfoLine(const Info& info);

// An INFO line split around the per-client fields, so a server encodes the
// shared part once and splices each client's id and address in at accept
// time. client_id and client_ip of the Info are ignored.
struct InfoLineParts {
  std::string head;  // "INFO {" ... up to and including max_payload
  std::string tail;  // ,"connect_urls":[...],"ldm":true,"zmesh_version":"..."
};
InfoLineParts EncodeInfoLineParts(const Info& info);
// head + client fields (each omitted when 0 / empty) + tail + "} \r\n".
std::string JoinInfoLine(const InfoLineParts& parts, uint64_t client_id, std::string_view client_ip);

// Decodes the argument of an INFO operation (the JSON text). false and
// *error set when it is not a JSON object; *out is then unchanged.
bool DecodeInfo(std::string_view json, Info* out, std::string* error);

}  // namespace zmesh::proto

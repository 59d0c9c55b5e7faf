#pragma once

// The CONNECT operation's JSON options: what a client tells the server about
// itself and the protocol features it wants.
//
// Decoding follows nats-server (Go's encoding/json into its clientOpts):
// field names match case-insensitively, unknown fields are ignored, `null`
// leaves a field unset, and a known field of the wrong JSON type — or an
// integer that does not fit — fails the whole CONNECT. The text `null` is an
// empty set of options. A field that is unset keeps the server's default.
//
// Encoding writes the fields that are set, in the key order of an
// nlohmann::json object (sorted). Strings are escaped; invalid UTF-8 is
// replaced, never thrown on.
//
// Thread safety: values and stateless functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace zmesh::proto {

struct ConnectOptions {
  std::optional<bool> verbose;   // +OK after every operation
  std::optional<bool> pedantic;  // strict subject checks
  std::optional<bool> tls_required;
  std::optional<std::string> auth_token;
  std::optional<std::string> user;
  std::optional<std::string> pass;
  std::optional<std::string> name;
  std::optional<std::string> lang;
  std::optional<std::string> version;
  std::optional<int64_t> protocol;  // 1: the client takes asynchronous INFO updates
  std::optional<bool> echo;         // receive our own publishes
  std::optional<bool> headers;      // HPUB/HMSG
  std::optional<bool> no_responders;
  std::optional<std::string> sig;
  std::optional<std::string> jwt;
  std::optional<std::string> nkey;
  std::optional<std::string> account;
  std::optional<bool> new_account;
  // zmesh: this connection is the new end of a planned move (the token the
  // client will send to its old node in MOVE); docs/design-lossless-moves.md.
  std::optional<std::string> move_token;
  // zmesh: the client can make planned moves (the node may ask it to, with
  // INFO "move_to", to balance connections).
  std::optional<bool> moves;

  bool operator==(const ConnectOptions&) const = default;
};

// Decodes the argument of a CONNECT operation. false when it is not a JSON
// object (or `null`) or a known field has the wrong type; *out is then
// unchanged.
bool DecodeConnect(std::string_view json, ConnectOptions* out);

// The JSON object, without "CONNECT " (see proto/client_writer.h).
std::string EncodeConnect(const ConnectOptions& options);

}  // namespace zmesh::proto

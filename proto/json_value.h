#pragma once

// Helpers the protocol codecs share for reading and writing JSON values
// (nlohmann-json) without ever throwing: untrusted peers choose the input,
// and a name or password with invalid UTF-8 must not abort an encoder.
//
// Internal to proto/. Thread safety: stateless functions.

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace zmesh::proto::json_value {

// `s` as a JSON string; invalid UTF-8 is replaced by U+FFFD.
inline std::string Quote(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Parses `text`; a discarded value when it is not JSON.
inline nlohmann::json Parse(std::string_view text) {
  return nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

// An integer JSON number within [lo, hi]; false for floats, other types and
// integers outside the range (nlohmann keeps large positive ones unsigned).
inline bool GetInt(const nlohmann::json& v, int64_t lo, int64_t hi, int64_t* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) return false;
    *out = static_cast<int64_t>(u);
    return *out >= lo;
  }
  if (!v.is_number_integer()) return false;
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) return false;
  *out = i;
  return true;
}

inline bool GetUint64(const nlohmann::json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;  // negative integers are number_integer only
  *out = v.get<uint64_t>();
  return true;
}

}  // namespace zmesh::proto::json_value

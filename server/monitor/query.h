#pragma once

// The decoded query string of one monitoring request ("?offset=10&limit=5"),
// with the bounded integer parsing every paged endpoint needs.
//
// Threading: a value; any thread.

#include <cstdint>
#include <map>
#include <string>

namespace zmesh::server::monitor {

class Query {
 public:
  Query() = default;
  // Parses an undecoded query string (without '?'); null or empty is an
  // empty query. False on malformed percent-encoding.
  bool Parse(const char* raw);

  // The value of `name`, or nullptr. A repeated name keeps its first value.
  const std::string* Find(const std::string& name) const;
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // "1", "true", "yes" or an empty value ("?subs") mean true.
  bool Flag(const std::string& name) const;
  // An integer in [min, max]: `fallback` when absent, clamped into range when
  // out of it. False (with *error set) when present but not a number.
  bool Int(const std::string& name, int64_t fallback, int64_t min, int64_t max, int64_t* out,
           std::string* error) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace zmesh::server::monitor

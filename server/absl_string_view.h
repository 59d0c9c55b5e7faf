#pragma once

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so heterogeneous lookups into flat_hash_map<std::string,
// ...> take an absl::string_view.

#include <absl/strings/string_view.h>

#include <string_view>

namespace zmesh::server {

inline absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace zmesh::server

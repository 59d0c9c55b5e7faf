#include "server/monitor/query.h"

#include <algorithm>
#include <charconv>
#include <string_view>

namespace zmesh::server::monitor {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded: %XY escapes and '+' for a space.
bool Decode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out->push_back(' ');
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out->push_back(in[i]);
    }
  }
  return true;
}

}  // namespace

bool Query::Parse(const char* raw) {
  values_.clear();
  if (raw == nullptr) return true;
  // Hand-rolled rather than evhttp_parse_query_str: libevent 2.1 rejects a
  // key without '=' ("?subs"), which nats-server's clients do send.
  std::string_view rest(raw);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key, value;
    if (!Decode(pair.substr(0, eq), &key)) return false;
    if (eq != std::string_view::npos && !Decode(pair.substr(eq + 1), &value)) return false;
    values_.emplace(std::move(key), std::move(value));
  }
  return true;
}

const std::string* Query::Find(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

std::string Query::Get(const std::string& name, const std::string& fallback) const {
  const std::string* v = Find(name);
  return v != nullptr ? *v : fallback;
}

bool Query::Flag(const std::string& name) const {
  const std::string* v = Find(name);
  return v != nullptr && (v->empty() || *v == "1" || *v == "true" || *v == "yes");
}

bool Query::Int(const std::string& name, int64_t fallback, int64_t min, int64_t max, int64_t* out,
                std::string* error) const {
  const std::string* v = Find(name);
  if (v == nullptr || v->empty()) {
    *out = fallback;
    return true;
  }
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec == std::errc::result_out_of_range) {
    n = (!v->empty() && v->front() == '-') ? min : max;
  } else if (ec != std::errc() || ptr != v->data() + v->size()) {
    *error = "invalid " + name + ": '" + *v + "' is not an integer";
    return false;
  }
  *out = std::clamp(n, min, max);
  return true;
}

}  // namespace zmesh::server::monitor

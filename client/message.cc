#include <zmesh/message.h>

namespace zmesh {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

Message::Message(std::string_view subject, std::string_view reply, std::string_view headers, std::string_view data)
    : subject_len_(static_cast<uint32_t>(subject.size())),
      reply_len_(static_cast<uint32_t>(reply.size())),
      headers_len_(static_cast<uint32_t>(headers.size())) {
  buf_.reserve(subject.size() + reply.size() + headers.size() + data.size());
  buf_.append(subject).append(reply).append(headers).append(data);
}

int Message::status() const {
  // "NATS/1.0 503[ description]\r\n"
  std::string_view h = headers();
  constexpr std::string_view kPrefix = "NATS/1.0";
  if (h.substr(0, kPrefix.size()) != kPrefix) return 0;
  h.remove_prefix(kPrefix.size());
  const size_t eol = h.find('\n');
  h = Trim(h.substr(0, eol));
  int code = 0;
  size_t i = 0;
  for (; i < h.size() && i < 3 && h[i] >= '0' && h[i] <= '9'; ++i) code = code * 10 + (h[i] - '0');
  return i == 3 ? code : 0;
}

std::optional<std::string_view> Message::Header(std::string_view key) const {
  std::string_view h = headers();
  const size_t first = h.find('\n');
  if (first == std::string_view::npos) return std::nullopt;
  h.remove_prefix(first + 1);
  while (!h.empty()) {
    const size_t eol = h.find('\n');
    std::string_view line = h.substr(0, eol);
    h.remove_prefix(eol == std::string_view::npos ? h.size() : eol + 1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    if (EqualsIgnoreCase(Trim(line.substr(0, colon)), key)) return Trim(line.substr(colon + 1));
  }
  return std::nullopt;
}

}  // namespace zmesh

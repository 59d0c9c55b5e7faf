#include "client/frame_scanner.h"

#include <cstring>

#include "proto/parser.h"

namespace zmesh::client {

size_t FrameLength(std::string_view buf, FrameKind* kind) {
  const size_t eol = buf.find("\r\n");
  if (eol == std::string_view::npos) return 0;
  const std::string_view line = buf.substr(0, eol);
  const bool pub = line.starts_with("PUB ");
  const bool hpub = line.starts_with("HPUB ");
  if (!pub && !hpub) {
    *kind = line == "PING" ? kFramePing : kFrameOther;
    return eol + 2;
  }
  *kind = kFramePub;
  // The total size is the last field of the line.
  const size_t space = line.rfind(' ');
  const int64_t size = proto::ParseSize(line.substr(space + 1));
  if (size < 0) return 0;
  const size_t total = eol + 2 + static_cast<size_t>(size) + 2;
  return total <= buf.size() ? total : 0;
}

size_t KeepFrames(std::string_view buf, size_t from, uint32_t kinds, std::string* out) {
  size_t pos = 0;
  size_t kept = 0;
  while (pos < buf.size()) {
    FrameKind kind = kFrameOther;
    const size_t len = FrameLength(buf.substr(pos), &kind);
    if (len == 0) break;
    if (pos >= from && (kinds & kind) != 0) {
      out->append(buf.data() + pos, len);
      ++kept;
    }
    pos += len;
  }
  return kept;
}

}  // namespace zmesh::client

#pragma once

// A message on its way through the node: views into the publisher's input
// buffer, valid for the duration of one Router call.

#include <cstdint>
#include <string_view>

namespace zmesh::server {

struct Message {
  std::string_view subject;
  std::string_view reply;
  std::string_view payload;  // headers (if any) followed by the body
  int64_t header_size = -1;  // bytes of headers at the start of payload; -1 or 0 = none
  // The node it was published at ("" = this one); planned moves filter by it.
  std::string_view origin;

  // nats-server delivers an HPUB with a header size of 0 as a plain MSG.
  bool has_headers() const { return header_size > 0; }
  std::string_view body() const { return has_headers() ? payload.substr(static_cast<size_t>(header_size)) : payload; }
};

}  // namespace zmesh::server

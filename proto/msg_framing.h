#pragma once

// Framing of what a server delivers to a client:
//   MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n
//   HMSG <subject> <sid> [reply] <header size> <total size>\r\n<headers><body>\r\n
// Nothing is validated here: the server checked subjects and sizes on the way
// in, and proto::Parser (Role::kClient) is the decoder.
//
// Thread safety: MsgFrame is a value for one thread; the functions are
// stateless.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zmesh::proto {

// The status block a server sends (as HMSG headers) for a request that
// reached no subscriber, when the requester asked for no_responders.
inline constexpr std::string_view kNoRespondersHeaders = "NATS/1.0 503\r\n\r\n";

// One message delivered to many subscriptions: the control line is built
// once per message and kind (MSG or HMSG); only the sid differs between
// subscribers. The pieces are meant for a gathering write, so the payload is
// never copied to frame it. Subscribers that do not speak headers get MSG
// with the headers stripped (as nats-server does).
class MsgFrame {
 public:
  static constexpr size_t kMaxPieces = 7;

  // The views must outlive the frame. `payload` holds the headers (if any)
  // followed by the body; header_size <= 0 means no headers (an HPUB with
  // header size 0 is delivered as MSG).
  MsgFrame(std::string_view subject, std::string_view reply, std::string_view payload, int64_t header_size)
      : subject_(subject), reply_(reply), payload_(payload), header_size_(header_size) {}

  // Fills `out` (kMaxPieces entries) for one subscriber; returns the count.
  size_t Pieces(bool headers_capable, std::string_view sid, std::string_view* out);
  // Payload bytes (after the control line, without the CRLF) that subscriber gets.
  size_t payload_size(bool headers_capable) const {
    return WithHeaders(headers_capable) ? payload_.size() : body().size();
  }

 private:
  bool WithHeaders(bool headers_capable) const { return headers_capable && header_size_ > 0; }
  std::string_view body() const {
    return header_size_ > 0 ? payload_.substr(static_cast<size_t>(header_size_)) : payload_;
  }

  const std::string_view subject_;
  const std::string_view reply_;
  const std::string_view payload_;
  const int64_t header_size_;
  std::string msg_tail_;   // " [reply] <size>\r\n", built on first use
  std::string hmsg_tail_;  // " [reply] <header size> <total size>\r\n"
};

// One whole operation appended to *out, for single deliveries.
void AppendMsg(std::string* out, std::string_view subject, std::string_view sid, std::string_view reply,
               std::string_view payload);
// `headers` is a complete header block ("NATS/1.0...\r\n\r\n").
void AppendHMsg(std::string* out, std::string_view subject, std::string_view sid, std::string_view reply,
                std::string_view headers, std::string_view body);

}  // namespace zmesh::proto

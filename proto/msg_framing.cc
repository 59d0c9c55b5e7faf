#include "proto/msg_framing.h"

namespace zmesh::proto {
namespace {

constexpr std::string_view kMsg = "MSG ";
constexpr std::string_view kHMsg = "HMSG ";
constexpr std::string_view kCrlf = "\r\n";

// " [reply] <size>\r\n", or for HMSG " [reply] <header size> <total size>\r\n".
void AppendTail(std::string* out, std::string_view reply, int64_t header_size, size_t total_size) {
  if (!reply.empty()) {
    out->push_back(' ');
    out->append(reply);
  }
  out->push_back(' ');
  if (header_size >= 0) {
    out->append(std::to_string(header_size));
    out->push_back(' ');
  }
  out->append(std::to_string(total_size));
  out->append(kCrlf);
}

void AppendHead(std::string* out, std::string_view op, std::string_view subject, std::string_view sid) {
  out->append(op);
  out->append(subject);
  out->push_back(' ');
  out->append(sid);
}

}  // namespace

size_t MsgFrame::Pieces(bool headers_capable, std::string_view sid, std::string_view* out) {
  const bool hmsg = WithHeaders(headers_capable);
  std::string& tail = hmsg ? hmsg_tail_ : msg_tail_;
  if (tail.empty()) AppendTail(&tail, reply_, hmsg ? header_size_ : -1, hmsg ? payload_.size() : body().size());
  out[0] = hmsg ? kHMsg : kMsg;
  out[1] = subject_;
  out[2] = " ";
  out[3] = sid;
  out[4] = tail;
  out[5] = hmsg ? payload_ : body();
  out[6] = kCrlf;
  return kMaxPieces;
}

void AppendMsg(std::string* out, std::string_view subject, std::string_view sid, std::string_view reply,
               std::string_view payload) {
  AppendHead(out, kMsg, subject, sid);
  AppendTail(out, reply, -1, payload.size());
  out->append(payload);
  out->append(kCrlf);
}

void AppendHMsg(std::string* out, std::string_view subject, std::string_view sid, std::string_view reply,
                std::string_view headers, std::string_view body) {
  AppendHead(out, kHMsg, subject, sid);
  AppendTail(out, reply, static_cast<int64_t>(headers.size()), headers.size() + body.size());
  out->append(headers);
  out->append(body);
  out->append(kCrlf);
}

}  // namespace zmesh::proto

#include "proto/client_writer.h"

#include <charconv>

namespace zmesh::proto {
namespace {

size_t Digits(uint64_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

void AppendNumber(std::string* out, uint64_t v) {
  char buf[20];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;  // 20 digits always fit a uint64_t
  out->append(buf, static_cast<size_t>(end - buf));
}

void AppendSubjectAndReply(std::string* out, std::string_view subject, std::string_view reply) {
  out->append(subject);
  out->push_back(' ');
  if (!reply.empty()) {
    out->append(reply);
    out->push_back(' ');
  }
}

}  // namespace

void AppendConnect(std::string* out, std::string_view json) {
  out->append("CONNECT ");
  out->append(json);
  out->append("\r\n");
}

size_t PubSize(std::string_view subject, std::string_view reply, size_t payload_size) {
  return 4 + subject.size() + 1 + (reply.empty() ? 0 : reply.size() + 1) + Digits(payload_size) + 2 +
         payload_size + 2;
}

size_t HPubSize(std::string_view subject, std::string_view reply, size_t headers_size, size_t payload_size) {
  const size_t total = headers_size + payload_size;
  return 5 + subject.size() + 1 + (reply.empty() ? 0 : reply.size() + 1) + Digits(headers_size) + 1 +
         Digits(total) + 2 + total + 2;
}

void AppendPub(std::string* out, std::string_view subject, std::string_view reply, std::string_view payload) {
  out->append("PUB ", 4);
  AppendSubjectAndReply(out, subject, reply);
  AppendNumber(out, payload.size());
  out->append("\r\n", 2);
  out->append(payload);
  out->append("\r\n", 2);
}

void AppendHPub(std::string* out, std::string_view subject, std::string_view reply, std::string_view headers,
                std::string_view payload) {
  out->append("HPUB ", 5);
  AppendSubjectAndReply(out, subject, reply);
  AppendNumber(out, headers.size());
  out->push_back(' ');
  AppendNumber(out, headers.size() + payload.size());
  out->append("\r\n", 2);
  out->append(headers);
  out->append(payload);
  out->append("\r\n", 2);
}

void AppendSub(std::string* out, std::string_view subject, std::string_view queue, uint64_t sid) {
  out->append("SUB ", 4);
  out->append(subject);
  out->push_back(' ');
  if (!queue.empty()) {
    out->append(queue);
    out->push_back(' ');
  }
  AppendNumber(out, sid);
  out->append("\r\n", 2);
}

void AppendUnsub(std::string* out, uint64_t sid, int64_t max) {
  out->append("UNSUB ", 6);
  AppendNumber(out, sid);
  if (max >= 0) {
    out->push_back(' ');
    AppendNumber(out, static_cast<uint64_t>(max));
  }
  out->append("\r\n", 2);
}

void AppendPing(std::string* out) { out->append("PING\r\n", 6); }
void AppendPong(std::string* out) { out->append("PONG\r\n", 6); }

}  // namespace zmesh::proto

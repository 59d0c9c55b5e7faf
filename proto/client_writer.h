#pragma once

// Encoders for what a NATS client sends: CONNECT, PUB, HPUB, SUB, UNSUB,
// PING, PONG. Each appends one complete operation (CRLF-terminated, payload
// included) to *out, so a caller batching many operations into one buffer
// allocates only when the buffer grows. Nothing is validated here: callers
// check subjects (proto/subject.h) and sizes first.
//
// Thread safety: stateless functions.

#include <cstdint>
#include <string>
#include <string_view>

namespace zmesh::proto {

// CONNECT <json>\r\n
void AppendConnect(std::string* out, std::string_view json);
// PUB <subject> [reply] <size>\r\n<payload>\r\n
void AppendPub(std::string* out, std::string_view subject, std::string_view reply, std::string_view payload);
// HPUB <subject> [reply] <header size> <total size>\r\n<headers><payload>\r\n
// `headers` is a complete header block ("NATS/1.0\r\n...\r\n\r\n").
void AppendHPub(std::string* out, std::string_view subject, std::string_view reply, std::string_view headers,
                std::string_view payload);
// SUB <subject> [queue] <sid>\r\n
void AppendSub(std::string* out, std::string_view subject, std::string_view queue, uint64_t sid);
// UNSUB <sid> [max]\r\n; max < 0 means none.
void AppendUnsub(std::string* out, uint64_t sid, int64_t max = -1);
void AppendPing(std::string* out);
void AppendPong(std::string* out);

// Bytes AppendPub will add, for buffer bounds checked before encoding.
size_t PubSize(std::string_view subject, std::string_view reply, size_t payload_size);
size_t HPubSize(std::string_view subject, std::string_view reply, size_t headers_size, size_t payload_size);

}  // namespace zmesh::proto

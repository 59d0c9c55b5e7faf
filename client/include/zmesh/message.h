#pragma once

// A received message. Subject, reply, headers and data live in one buffer, so
// a message costs one allocation however it is copied out of the connection.
//
// Thread safety: a Message is a value; a const Message may be read from
// several threads; a Message being modified must not be shared.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zmesh {

// Header fields to publish, in order. Keys are sent as given.
using Headers = std::vector<std::pair<std::string, std::string>>;

class Message {
 public:
  Message() = default;
  // `headers` is the raw NATS header block ("NATS/1.0[ status]\r\nKey: v\r\n\r\n")
  // or empty.
  Message(std::string_view subject, std::string_view reply, std::string_view headers, std::string_view data);

  std::string_view subject() const { return std::string_view(buf_).substr(0, subject_len_); }
  std::string_view reply() const { return std::string_view(buf_).substr(subject_len_, reply_len_); }
  std::string_view headers() const {
    return std::string_view(buf_).substr(subject_len_ + reply_len_, headers_len_);
  }
  std::string_view data() const { return std::string_view(buf_).substr(subject_len_ + reply_len_ + headers_len_); }

  // The status code on the header block's first line ("NATS/1.0 503" -> 503),
  // or 0 when there is none.
  int status() const;
  // The first value of header `key` (case-insensitive), if present.
  std::optional<std::string_view> Header(std::string_view key) const;
  // Bytes held, for pending limits: subject + reply + headers + data.
  size_t size() const { return buf_.size(); }

 private:
  std::string buf_;
  uint32_t subject_len_ = 0;
  uint32_t reply_len_ = 0;
  uint32_t headers_len_ = 0;
};

}  // namespace zmesh

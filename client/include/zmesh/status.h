#pragma once

// The result type of every fallible zmesh::Client call. The library throws no
// exceptions; a failed call returns a Status whose code says what happened and
// whose message says why, for logs.
//
// Thread safety: a Status is a value; copies may be used from any thread.

#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace zmesh {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad subject, empty queue name, bad option
  kTimeout,          // a flush, request, drain or connect did not finish in time
  kNoResponders,     // a request reached no subscriber (NATS 503 status)
  kBufferFull,       // the publish buffer is at its bound; nothing was queued
  kMaxPayload,       // payload larger than the server's max_payload
  kClosed,           // the client (or subscription) was closed
  kDraining,         // the client or subscription is draining; no new work
  kDisconnected,     // the connection was lost while the call was in flight
  kNoServers,        // no node known, or none reachable within the limits
  kConnectFailed,    // the connection attempt failed (refused, reset, timed out)
  kAuthFailed,       // the server rejected our credentials
  kProtocolError,    // the server sent something that is not valid protocol
  kTlsError,         // TLS handshake or configuration failed
  kServerError,      // the server sent -ERR
  kIoError,          // a local I/O error (socket, cache file)
};

// A stable, human-readable name such as "TIMEOUT".
std::string_view StatusCodeName(StatusCode code);

class Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "OK" or "<CODE>: <message>".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

}  // namespace zmesh

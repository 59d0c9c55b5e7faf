#include <zmesh/options.h>
#include <zmesh/status.h>

namespace zmesh {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case StatusCode::kTimeout: return "TIMEOUT";
    case StatusCode::kNoResponders: return "NO_RESPONDERS";
    case StatusCode::kBufferFull: return "BUFFER_FULL";
    case StatusCode::kMaxPayload: return "MAX_PAYLOAD";
    case StatusCode::kClosed: return "CLOSED";
    case StatusCode::kDraining: return "DRAINING";
    case StatusCode::kDisconnected: return "DISCONNECTED";
    case StatusCode::kNoServers: return "NO_SERVERS";
    case StatusCode::kConnectFailed: return "CONNECT_FAILED";
    case StatusCode::kAuthFailed: return "AUTH_FAILED";
    case StatusCode::kProtocolError: return "PROTOCOL_ERROR";
    case StatusCode::kTlsError: return "TLS_ERROR";
    case StatusCode::kServerError: return "SERVER_ERROR";
    case StatusCode::kIoError: return "IO_ERROR";
  }
  return "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(StatusCodeName(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

std::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kConnected: return "connected";
    case EventType::kDisconnected: return "disconnected";
    case EventType::kReconnected: return "reconnected";
    case EventType::kLameDuck: return "lame_duck";
    case EventType::kMoved: return "moved";
    case EventType::kServersChanged: return "servers_changed";
    case EventType::kSlowConsumer: return "slow_consumer";
    case EventType::kError: return "error";
    case EventType::kClosed: return "closed";
  }
  return "unknown";
}

}  // namespace zmesh

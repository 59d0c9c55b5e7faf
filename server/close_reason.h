#pragma once

// Why a connection closed; logged once per close and kept for /connz. The
// texts are nats-server's ClosedState strings where the concept is the same.

#include <cstdint>
#include <string_view>

namespace zmesh::server {

enum class CloseReason : uint8_t {
  kClientClosed,
  kServerShutdown,
  kSlowConsumerPendingBytes,
  kSlowConsumerWriteDeadline,
  kStaleConnection,
  kProtocolViolation,
  kParseError,
  kAuthenticationTimeout,
  kAuthenticationViolation,
  kMaxPayloadExceeded,
  kMaxControlLineExceeded,
  kMaxConnectionsExceeded,
  kBadClientProtocolVersion,
  kNoRespondersRequiresHeaders,
  kReadError,
  kWriteError,
  kDuplicatePeer,
  kPeerLeft,
  kPeerResync,
  kLameDuck,
  kTlsHandshakeError,
  kPeerRefused,
  kServerBusy,
};

constexpr std::string_view CloseReasonText(CloseReason r) {
  switch (r) {
    case CloseReason::kClientClosed: return "Client Closed";
    case CloseReason::kServerShutdown: return "Server Shutdown";
    case CloseReason::kSlowConsumerPendingBytes: return "Slow Consumer (Pending Bytes)";
    case CloseReason::kSlowConsumerWriteDeadline: return "Slow Consumer (Write Deadline)";
    case CloseReason::kStaleConnection: return "Stale Connection";
    case CloseReason::kProtocolViolation: return "Protocol Violation";
    case CloseReason::kParseError: return "Parse Error";
    case CloseReason::kAuthenticationTimeout: return "Authentication Timeout";
    case CloseReason::kAuthenticationViolation: return "Authentication Failure";
    case CloseReason::kMaxPayloadExceeded: return "Maximum Message Payload Exceeded";
    case CloseReason::kMaxControlLineExceeded: return "Maximum Control Line Exceeded";
    case CloseReason::kMaxConnectionsExceeded: return "Maximum Connections Exceeded";
    case CloseReason::kBadClientProtocolVersion: return "Bad Client Protocol Version";
    case CloseReason::kNoRespondersRequiresHeaders: return "No Responders Requires Headers";
    case CloseReason::kReadError: return "Read Error";
    case CloseReason::kWriteError: return "Write Error";
    case CloseReason::kDuplicatePeer: return "Duplicate Peer Link";
    case CloseReason::kPeerLeft: return "Peer Left The Mesh";
    case CloseReason::kPeerResync: return "Peer Link Reset For Resync";
    case CloseReason::kLameDuck: return "Lame Duck Mode";
    case CloseReason::kTlsHandshakeError: return "TLS Handshake Failure";
    case CloseReason::kPeerRefused: return "Peer Link Refused";
    case CloseReason::kServerBusy: return "Server Busy";
  }
  return "Unknown";
}

constexpr bool IsSlowConsumer(CloseReason r) {
  return r == CloseReason::kSlowConsumerPendingBytes || r == CloseReason::kSlowConsumerWriteDeadline;
}

}  // namespace zmesh::server

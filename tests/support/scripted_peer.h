#pragma once

// A peer link played by a test (nats-server's tests play a route by hand the
// same way): a TCP connection to a node's peer port that speaks whatever the
// test scripts, in plain text or through TLS 1.3 with a cluster secret as the
// PSK (the node's own derivation, auth/peer_keys.h), so that a test can be an
// outsider without the secret, a relay, or an insider sending hostile frames.
//
// Frames are built with the production codec (proto/peer_protocol.h); what
// is read is kept, decrypted, in received() so a test can check that some
// plaintext never crossed.
//
// Not thread safe: one test thread drives a ScriptedPeer.

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace zmesh::testing {

class ScriptedPeer {
 public:
  ScriptedPeer() = default;
  ~ScriptedPeer();
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  // TCP to 127.0.0.1:port.
  bool Dial(uint16_t port);
  // The dialling side of a TLS 1.3 handshake with `secret` as the external
  // PSK; false with the reason on failure (within `timeout`).
  bool StartTls(const std::string& secret, std::string* error,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  uint16_t local_port() const;
  int fd() const { return fd_; }

  // Bytes as they are (through TLS once started).
  bool Send(std::string_view bytes);
  // A version-2 HELLO naming `node_id`.
  bool SendHello(const std::string& node_id, uint64_t incarnation);

  // Reads until something arrives (appended to received()); false on close
  // or when nothing came within `timeout`.
  bool ReadSome(std::chrono::milliseconds timeout);
  // The next whole frame's type (its body in *body); -1 on close or timeout.
  // PINGs are answered and skipped.
  int ReadFrame(std::string* body, std::chrono::milliseconds timeout);
  // Skips frames until one of `type` (true) or close/timeout (false).
  bool WaitFrame(uint8_t type, std::chrono::milliseconds timeout, std::string* body = nullptr);
  // True once the node closed the connection within `timeout` (EOF, reset,
  // or a TLS error), whatever it sent before.
  bool ClosedWithin(std::chrono::milliseconds timeout);

  // Everything read so far, in clear.
  const std::string& received() const { return received_; }

 private:
  // One read into received_ and in_: >0 bytes, 0 closed, -1 nothing yet.
  int ReadOnce();

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  const void* keys_ = nullptr;  // the auth::PeerKeyring the SSL points to (owned)
  std::string in_;              // unparsed frames
  std::string received_;
};

}  // namespace zmesh::testing

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
// It can also play the accepting side: a ScriptedListener takes a node's dial
// (to a member the test registered in ZooKeeper by hand), Adopt() hands the
// connection to a ScriptedPeer, and AcceptTls() runs the server side of the
// PSK handshake.
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
  // Takes over a connected socket (from ScriptedListener::Accept).
  bool Adopt(int fd);
  // The dialling side of a TLS 1.3 handshake with `secret` as the external
  // PSK; false with the reason on failure (within `timeout`).
  bool StartTls(const std::string& secret, std::string* error,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // The accepting side of the same handshake (any identity of `secret`).
  bool AcceptTls(const std::string& secret, std::string* error,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  uint16_t local_port() const;
  int fd() const { return fd_; }

  // Bytes as they are (through TLS once started).
  bool Send(std::string_view bytes);
  // A version-2 HELLO naming `node_id`.
  bool SendHello(const std::string& node_id, uint64_t incarnation);
  // The same with the URLs it announces.
  bool SendHello(const std::string& node_id, uint64_t incarnation, const std::string& peer_url,
                 const std::string& client_url);

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
  // True once a read saw the connection closed (EOF, reset, TLS error).
  bool closed() const { return closed_; }

 private:
  // One read into received_ and in_: >0 bytes, 0 closed, -1 nothing yet.
  int ReadOnce();
  bool Handshake(const std::string& secret, bool server_side, std::string* error,
                 std::chrono::milliseconds timeout);

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  const void* keys_ = nullptr;  // the auth::PeerKeyring the SSL points to (owned)
  std::string in_;              // unparsed frames
  std::string received_;
  bool closed_ = false;
};

// A listening TCP socket on 127.0.0.1 for ScriptedPeer's accepting side.
class ScriptedListener {
 public:
  ScriptedListener() = default;
  ~ScriptedListener();
  ScriptedListener(const ScriptedListener&) = delete;
  ScriptedListener& operator=(const ScriptedListener&) = delete;

  // Binds 127.0.0.1:port (0 = any free port) and listens.
  bool Listen(uint16_t port = 0);
  uint16_t port() const { return port_; }
  // The next connection's socket, or -1 when none came within `timeout`.
  int Accept(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace zmesh::testing

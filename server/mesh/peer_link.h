#pragma once

// One TCP link to another mesh node, speaking the peer protocol
// (docs/peer-protocol.md): HELLO and challenge-response AUTH, then interest
// frames and forwarded messages, PING/PONG on a fixed interval, RETIRE when
// a duplicate link is phased out.
//
// Life cycle: kHandshake -> kAuthenticated (reading paused; the mesh decides
// whether this link becomes the node's link) -> kActive, or closed as a
// duplicate; an active link that a better one replaces goes kRetiring: it
// sends RETIRE after its last frame and keeps reading until the peer's
// RETIRE, so nothing in flight is lost.
//
// Threading: a Connection, owned by its worker thread. The mesh (main
// thread) reaches it only by posting to that worker (Activate, Retire,
// Reject); SendFrame and Enqueue are safe from any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proto/peer_protocol.h"
#include "server/connection.h"

namespace zmesh::server::mesh {

class Mesh;
class PeerNode;

class PeerLink : public Connection {
 public:
  enum class Direction : uint8_t { kInbound, kOutbound };
  enum class State : uint8_t { kHandshake, kAuthenticated, kActive, kRetiring };

  // `expected_node_id`: for a link we dialled, the node we meant to reach.
  // `dial_id`: which dial of the mesh created it (0 for accepted links).
  PeerLink(Mesh* mesh, IoWorker* worker, int fd, uint64_t id, std::string remote_address, Direction direction,
           std::string expected_node_id, uint64_t dial_id = 0);

  Direction direction() const { return direction_; }
  uint64_t dial_id() const { return dial_id_; }
  // The node this link belongs to: the one in its HELLO, or before that the
  // one we dialled (empty for an accepted link before HELLO).
  const std::string& node_key() const { return peer_node_id_.empty() ? expected_node_id_ : peer_node_id_; }
  // "peer link 7 to node n2 (127.0.0.1:6222)", for logs.
  std::string Describe() const;
  // Set once the peer's HELLO arrived; stable afterwards (read by the mesh
  // after the authenticated notification).
  const std::string& peer_node_id() const { return peer_node_id_; }
  uint64_t peer_incarnation() const { return peer_incarnation_; }
  const std::string& peer_client_url() const { return peer_client_url_; }
  const std::string& peer_peer_url() const { return peer_peer_url_; }

  // Any thread: a control frame (interest, digest, ...). On overflow the
  // link is reset, and the node re-synced when it reconnects.
  void SendFrame(std::string_view frame);

  // --- owner thread, posted by the mesh ---
  // Becomes `node`'s link: takes over from its previous link (which retires),
  // sends our interest snapshot, resumes reading.
  void Activate(RefPtr<PeerNode> node);
  // Stops being used for new frames: RETIRE, then close once the peer's RETIRE
  // arrives (or after a bound).
  void Retire();

  State state() const { return state_; }
  bool synced() const { return synced_; }  // a full snapshot from the peer was applied
  int64_t rtt_ms() const { return rtt_ms_.load(std::memory_order_relaxed); }
  const PeerNode* node() const { return node_.get(); }

  void OnTick(int64_t now_ms) override;

 protected:
  void OnStart() override;
  void OnInput(std::string_view data) override;
  void OnClose(CloseReason reason) override;

 private:
  ~PeerLink() override;

  void Process(std::string_view input);
  void HandleFrame(const proto::peer::Frame& frame);
  void HandleHandshake(const proto::peer::Frame& frame);
  void HandleMsg(const proto::peer::Msg& msg);
  void ProtocolError(const std::string& what);
  void SendOwn(std::string_view frame);  // from the owner thread

  Mesh* const mesh_;
  const Direction direction_;
  const std::string expected_node_id_;
  const uint64_t dial_id_;
  const std::string nonce_;
  proto::peer::FrameReader reader_;
  State state_ = State::kHandshake;
  bool got_hello_ = false;
  bool peer_proven_ = false;
  std::string peer_node_id_;
  uint64_t peer_incarnation_ = 0;
  std::string peer_nonce_;
  std::string peer_client_url_;
  std::string peer_peer_url_;
  std::string stashed_input_;  // arrived while waiting for activation
  RefPtr<PeerNode> node_;
  bool synced_ = false;
  bool resync_requested_ = false;
  bool peer_retired_ = false;  // the peer sent RETIRE: it uses another link now
  int pings_out_ = 0;
  int64_t last_ping_ms_ = 0;
  int64_t ping_sent_ms_ = 0;
  std::atomic<int64_t> rtt_ms_{-1};  // read by monitoring
  int64_t retire_since_ms_ = 0;
};

}  // namespace zmesh::server::mesh

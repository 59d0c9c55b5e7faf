#pragma once

// One link to another mesh node, speaking the peer protocol
// (docs/peer-protocol.md): TLS 1.3 first (keyed by the cluster secret, or
// with peer certificates; only --insecure_peers goes without), then HELLO
// both ways, then interest frames and forwarded messages, PING/PONG on a
// fixed interval, RETIRE when a duplicate link is phased out. Every frame is
// validated like client input before it is acted on.
//
// Life cycle: kHandshake -> kAuthenticated (reading paused; the mesh decides
// whether this link becomes the node's link) -> kActive, or closed as a
// duplicate or refused; an active link that a better one replaces goes
// kRetiring: it sends RETIRE as its very last frame (the stream is sealed)
// and keeps reading until the peer's RETIRE, then closes once its own bytes
// are written, so nothing in flight is lost and no reset is ever sent. The link that replaces it
// reads nothing until that RETIRE has been processed (or the old link
// closed), so one publisher's messages are delivered in order across the
// switch although the two links are read by different threads.
//
// Seams: the link knows nothing of the mesh or the server. It reads its
// configuration (MeshOptions), sends and streams our interest through
// LocalInterest, reports its life cycle to a PeerLinkDelegate (the Mesh) and
// hands forwarded messages to a PeerMessageSink (the router); see
// PeerLink::Context.
//
// Threading: a Connection, owned by its worker thread. The mesh (main
// thread) reaches it only by posting to that worker (Activate, Retire,
// Refuse); SendFrame and Enqueue are safe from any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "proto/peer_protocol.h"
#include "server/connection.h"
#include "server/mesh/mesh_options.h"
#include "server/mesh/peer_link_delegate.h"

namespace zmesh::auth {
class PeerKeyring;
}

namespace zmesh::server::mesh {

class LocalInterest;
class MoveTable;
class PeerNode;

class PeerLink : public Connection {
 public:
  enum class Direction : uint8_t { kInbound, kOutbound };
  enum class State : uint8_t { kHandshake, kAuthenticated, kActive, kRetiring };
  using Delegate = PeerLinkDelegate;

  // What a link works with; every pointer outlives the link.
  struct Context {
    const MeshOptions* options = nullptr;
    LocalInterest* interest = nullptr;  // our interest: snapshots, changes, acknowledgements
    Delegate* delegate = nullptr;       // life-cycle notifications
    PeerMessageSink* sink = nullptr;    // messages the peer forwards
    MoveTable* moves = nullptr;         // planned client moves: the peer's cuts (null: none)
  };

  // `expected_node_id`, `expected_incarnation`: for a link we dialled, the
  // node (and the process, from its znode; 0 = unknown) we meant to reach.
  // `dial_id`: which dial of the mesh created it (0 for accepted links).
  PeerLink(const Context& context, IoWorker* worker, int fd, uint64_t id, std::string remote_address,
           Direction direction, std::string expected_node_id, uint64_t expected_incarnation = 0,
           uint64_t dial_id = 0);

  // Before Start(): speak TLS from the first byte. In PSK mode `keys` is the
  // keyring this link offers or accepts; the link holds it while it lives.
  void UseTls(SSL_CTX* ctx, bool server_side, std::shared_ptr<const auth::PeerKeyring> keys);

  Direction direction() const { return direction_; }
  uint64_t dial_id() const { return dial_id_; }
  // The node this link belongs to: the one in its HELLO, or before that the
  // one we dialled (empty for an accepted link before HELLO).
  const std::string& node_key() const { return peer_node_id_.empty() ? expected_node_id_ : peer_node_id_; }
  // "node n1: peer link 7 to node n2 (127.0.0.1:6222)", for logs.
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
  // Whether the peer takes planned-move frames (its znode says "moves"; a
  // joiner not registered yet is assumed to). Set by the mesh, read by
  // LocalInterest on any thread.
  // QUEUE_SWITCH came a release later than the other move frames: a peer
  // may take those and not it.
  bool takes_move_frames() const { return takes_move_frames_.load(std::memory_order_relaxed); }
  bool takes_queue_switch() const { return takes_queue_switch_.load(std::memory_order_relaxed); }
  void set_takes_move_frames(bool moves, bool queue_switch) {
    takes_move_frames_.store(moves, std::memory_order_relaxed);
    takes_queue_switch_.store(moves && queue_switch, std::memory_order_relaxed);
  }

  // --- owner thread, posted by the mesh ---
  // Becomes `node`'s link: takes over from its previous link (which retires),
  // sends our interest snapshot, resumes reading once the previous link has
  // delivered everything the peer sent on it.
  void Activate(RefPtr<PeerNode> node);
  // Stops being used for new frames: RETIRE, then close once the peer's RETIRE
  // arrives (or after a bound).
  void Retire();
  // Tells the peer why this link will not be used (REFUSE), then closes.
  void Refuse(const std::string& reason);

  State state() const { return state_; }
  bool synced() const { return synced_; }  // a full snapshot from the peer was applied
  int64_t rtt_ms() const { return rtt_ms_.load(std::memory_order_relaxed); }
  const PeerNode* node() const { return node_.get(); }

  void OnTick(int64_t now_ms) override;

 protected:
  void OnStart() override;
  void OnInput(std::string_view data) override;
  void OnClose(CloseReason reason) override;
  void OnHandshakeFailed(const Transport& transport) override;
  void OnOutputDrained() override;

 private:
  ~PeerLink() override;

  // Frames, then one INTEREST_ACK if they applied interest changes.
  void Process(std::string_view input);
  void ProcessFrames(std::string_view input);
  void HandleFrame(const proto::peer::Frame& frame);
  void HandleHello(const proto::peer::Hello& hello);
  void HandleMsg(const proto::peer::Msg& msg);
  // The peer's interest change `seq` was read (`applied`: from the active
  // link, so the node's interest reflects it).
  void NoteApplied(uint64_t seq, bool applied);
  void ProtocolError(const std::string& what);
  void SendOwn(std::string_view frame);  // from the owner thread
  // Owner thread: a retiring link whose peer has retired too closes once its
  // outbound buffer is empty.
  void FinishRetireIfDrained();
  // Owner thread: sends our interest snapshot batch by batch while the
  // socket keeps up, then waits for OnOutputDrained.
  void PumpSnapshot();

  // Ordering across a replacement. Any thread: `next` waits for this link's
  // RETIRE from the peer (true), or it already came (false).
  bool HoldSuccessor(PeerLink* next);
  // Owner thread: the peer's RETIRE was processed, or the link is closing:
  // the successor may read.
  void ReleaseSuccessor();
  // Owner thread (posted): the predecessor has drained; start reading.
  void EndHold();

  const MeshOptions& options_;
  LocalInterest* const interest_;
  Delegate* const delegate_;
  PeerMessageSink* const sink_;
  MoveTable* const moves_;
  const Direction direction_;
  const std::string expected_node_id_;
  const uint64_t expected_incarnation_;
  const uint64_t dial_id_;
  std::shared_ptr<const auth::PeerKeyring> tls_keys_;  // the SSL's app data
  proto::peer::FrameReader reader_;
  State state_ = State::kHandshake;
  bool got_hello_ = false;
  std::string peer_node_id_;
  uint64_t peer_incarnation_ = 0;
  std::string peer_client_url_;
  std::string peer_peer_url_;
  std::string stashed_input_;  // arrived while waiting for activation or for the predecessor
  RefPtr<PeerNode> node_;
  bool synced_ = false;
  bool resync_requested_ = false;
  std::atomic<bool> takes_move_frames_{true};
  std::atomic<bool> takes_queue_switch_{true};
  bool in_snapshot_ = false;  // between the peer's SYNC_BEGIN and SYNC_END
  bool sending_snapshot_ = false;  // ours is still streaming to the peer
  uint64_t applied_seq_ = 0;  // the peer's interest changes applied up to
  bool ack_due_ = false;      // applied_seq_ advanced: acknowledge after this read
  bool peer_retired_ = false;      // the peer sent RETIRE: it uses another link now
  bool held_ = false;              // waiting for the predecessor's RETIRE
  std::mutex successor_mu_;        // guards the two below
  bool predecessor_done_ = false;  // RETIRE processed, or closed
  RefPtr<PeerLink> successor_;
  int pings_out_ = 0;
  int64_t last_ping_ms_ = 0;
  int64_t ping_sent_ms_ = 0;
  std::atomic<int64_t> rtt_ms_{-1};  // read by monitoring
};

}  // namespace zmesh::server::mesh

#pragma once

// The mesh layer of a node (SPEC §3): membership from ZooKeeper, one
// authenticated link to every other live node, this node's interest announced
// to all of them, and their interest kept in the subject index.
//
// Joining: read the live nodes, link to all of them and receive their full
// interest (bounded by join_timeout_ms), then register our znode; only then
// does the server open its client port (Start's `ready` callback).
//
// Links: at most one carries traffic per node. When two links to the same
// node exist (both sides dialled), both ends keep the one dialled by the node
// with the smaller id (the newer one when both were dialled from the same
// side) and retire the other without losing what is in flight on it. A node
// dials a live peer it has no link to at once when its id is the smaller one,
// after dial_grace_ms otherwise, so that simultaneous dials are rare.
//
// Reconciliation: the links converge to the live znodes through the children
// watch plus a periodic check; an authenticated link from a node that is not
// (yet) registered is a joining node and is kept for join_grace_ms.
//
// Seams: links report to the mesh through PeerLinkDelegate and deliver what
// peers forward to the router through a PeerMessageSink adapter; dialling is
// a Connector (server/connector.h); membership is the zk::Registry it is
// given. Unit tests (tests/unit/mesh_harness.h) give it a FakeRegistry and
// play the other nodes over loopback TCP, with the timings in MeshOptions
// shortened; nothing else is replaced.
//
// Threading: owned by the main loop thread. Links notify it from their
// workers through the PeerLinkDelegate methods (any thread), which post to
// the main loop.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <absl/container/flat_hash_set.h>

#include "server/connection.h"
#include "server/connector.h"
#include "server/event_loop.h"
#include "server/listener.h"
#include "server/mesh/local_interest.h"
#include "server/mesh/mesh_options.h"
#include "server/mesh/move_table.h"
#include "server/mesh/peer_link.h"
#include "server/mesh/peer_link_delegate.h"
#include "zk/registry.h"

namespace zmesh::server {
struct ServerContext;
class IoWorker;
class Router;
}  // namespace zmesh::server

namespace zmesh::server::mesh {

class PeerNode;

// What /peerz and /healthz report about one peer (a copy).
struct PeerStatus {
  std::string node_id;
  std::string peer_url;
  std::string client_url;
  bool member = false;      // has a znode
  bool linked = false;      // has an active link
  bool synced = false;      // its full interest arrived
  bool outbound = false;    // we dialled the active link
  uint64_t link_id = 0;     // the active link's connection id (0 = none): a reset or replacement changes it
  const char* security = "";  // how links are protected: tls1.3-psk, tls1.3-certificates, plaintext
  int64_t rtt_ms = -1;
  size_t pending_bytes = 0;
  size_t interest = 0;      // entries learned from it
  uint64_t interest_acked = 0;  // our interest changes it has applied, up to this seq
  uint64_t interest_lag = 0;    // our latest seq minus interest_acked
  uint64_t in_msgs = 0;
  uint64_t out_msgs = 0;
};

class Mesh final : public PeerLinkDelegate {
 public:
  // CUTs read from links and waiting for the main loop: at most this many
  // (a peer flooding CUTs queues no more work; the rest are dropped).
  static constexpr size_t kMaxQueuedCuts = 4096;

  Mesh(ServerContext* ctx, MeshOptions options, EventLoop* main_loop, std::vector<IoWorker*> workers,
       std::unique_ptr<zk::Registry> registry);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  // Main thread. Listens on the peer port, connects to ZooKeeper, joins, and
  // calls `ready` once registered (the server then opens its client port).
  bool Start(std::function<void()> ready, std::string* error);
  // Main thread: graceful leave, step one: delete our znode and tell every
  // peer (LEAVING) to keep its link to us for up to `drain_ms` while our
  // clients move, instead of treating us as gone. `done` runs when ZooKeeper
  // confirmed the delete (or gave up).
  void Leave(int64_t drain_ms, std::function<void()> done);
  // Main thread: closes links and the session.
  void Stop();
  // Any thread: `done` runs (on any thread) once every peer linked now has
  // delivered everything this node forwarded before the call: a cut no
  // client moves with (CUT, each peer's MARK), bounded by move_timeout_ms.
  // Lame duck closes a client only after this, so that a client that
  // reconnects elsewhere and publishes there never overtakes its messages
  // through this node.
  void AwaitForwarded(std::function<void()> done);

  const MeshOptions& options() const { return options_; }
  LocalInterest* interest() { return &interest_; }
  MoveCoordinator* moves() { return &moves_; }
  ServerContext* ctx() const { return ctx_; }
  const HostPort& peer_address() const { return listener_.bound(); }

  // PeerLinkDelegate, any thread: notifications from links.
  void OnLinkAuthenticated(PeerLink* link) override;
  void OnLinkSynced(PeerLink* link) override;
  void OnLinkClosed(PeerLink* link) override;
  void OnPeerLeaving(PeerLink* link, uint64_t drain_ms) override;
  void OnInterestRepair(PeerLink*) override { repairs_.fetch_add(1, std::memory_order_relaxed); }
  void OnMoveCut(PeerLink* link, uint64_t token, const std::vector<proto::peer::Applied>& applied) override;
  void OnPeerLoad(PeerLink* link, uint64_t clients) override;

  // Any thread: a snapshot for monitoring.
  std::vector<PeerStatus> Status() const;
  // Registered, and every live peer linked and synced (SPEC: /healthz).
  bool Healthy() const;
  uint64_t repairs() const { return repairs_.load(std::memory_order_relaxed); }
  InterestBarrier::Stats barrier_stats() const { return const_cast<LocalInterest&>(interest_).barrier().stats(); }

 private:
  // What peers forward goes to the router (any worker thread).
  class RouterSink final : public PeerMessageSink {
   public:
    explicit RouterSink(const Router* router) : router_(router) {}
    void OnPeerMessage(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                       bool to_plain) override;

   private:
    const Router* const router_;
  };

  // Per remote node; main thread only.
  struct Peer {
    zk::NodeInfo info;                  // from ZooKeeper (may be empty for a joiner)
    bool member = false;
    int64_t first_seen_ms = 0;          // when we learnt we should link to it
    int64_t unregistered_since_ms = 0;  // linked but without a znode since
    int64_t leaving_until_ms = 0;       // it announced a graceful leave: keep the link until then
    int64_t foreign_since_ms = 0;       // linked to a process its znode does not name, since
    int64_t last_relink_ms = 0;         // testing_relink_ms
    RefPtr<PeerNode> node;
    RefPtr<PeerLink> active;
    std::vector<RefPtr<PeerLink>> retiring;
    bool dialing = false;          // from connect() until that link authenticated or closed
    uint64_t dial_id = 0;          // the dial in progress
    int64_t next_dial_ms = 0;
    DialBackoff backoff;
    bool synced = false;
    int64_t load = -1;  // its client connections as last heard (LOAD), -1 until heard
    int64_t load_asked = 0;           // clients we asked to move there since, counted as arrived
    int64_t load_asked_until_ms = 0;  // until its next LOAD, or this time
    int64_t load_sent = -1;    // our count as last sent on `active`; -1 = nothing sent on this link yet
    int64_t load_sent_ms = 0;  // when
  };

  void HandleAuthenticated(RefPtr<PeerLink> link);
  void HandleSynced(RefPtr<PeerLink> link);
  void HandleClosed(RefPtr<PeerLink> link);
  void HandleMembers(const std::vector<zk::NodeInfo>& members);
  void HandleSession(zk::SessionState state);
  void Accept(int fd, const PeerAddress& from);
  // `again`: dial although a link is active (the new link replaces it).
  void Dial(const std::string& node_id, Peer& peer, bool again = false);
  // Posts a REFUSE with `reason` to a link we will not use.
  void RefuseLink(const RefPtr<PeerLink>& link, const std::string& reason);
  // Creates the link for an accepted or dialled socket, on `worker`'s thread.
  void StartLink(IoWorker* worker, int fd, uint64_t id, std::string remote, bool outbound, std::string node_id,
                 uint64_t incarnation, uint64_t dial_id);
  void DialFinished(const std::string& node_id, int fd, const std::string& error);
  void Tick();
  void MaybeFinishJoin(bool timed_out);
  bool Preferred(const PeerLink* candidate, const PeerLink* current) const;
  IoWorker* NextWorker();
  // The next dial to `p` waits twice as long as the last (DialBackoff).
  void BackOff(Peer& p);
  void UpdateConnectUrls();
  // This node's cut for a planned move, once per token: under the forward
  // gate, marks our own publishes and writes CUT on the link to every peer
  // that takes part in moves (docs/design-lossless-moves.md). `initiate`:
  // our client moves (only logged).
  void Cut(uint64_t token, bool initiate);
  // A peer's CUT is answered with MARK once we have applied as much of
  // every node's interest as it had at its cut: a client of its that moves
  // here then publishes with no older view of the mesh than it had there
  // (a queue member's release it had applied is applied here too).
  struct PendingMark {
    std::string peer;
    uint64_t token = 0;
    std::vector<std::pair<std::string, uint64_t>> applied;  // node id, interest seq
    int64_t until_ms = 0;  // then it goes anyway (--move_timeout_ms)
  };
  // Whether we have applied less than `seq` of node `id`'s interest, and
  // more of it may come (its link is up); `sender` is the CUT's.
  bool Behind(const std::string& id, uint64_t seq, const std::string& sender) const;
  bool CaughtUp(const PendingMark& mark) const;
  void SendMark(const std::string& peer, uint64_t token);
  // Sends the marks that are due (caught up, or past their time).
  void FlushPendingMarks(int64_t now);
  // About once a second: tell the peers our client count when it changed
  // (or kLoadRefreshMs passed), and decide how many of our clients to ask
  // to move (server/mesh/rebalancer.h).
  void ShareLoadAndRebalance();
  // A count goes out when it changed, and again this often. Sent every
  // second, it cost an idle mesh of N nodes N*(N-1) frames a second:
  // 65,000 TLS records a second at 256 nodes, more than two cores carry.
  static constexpr int64_t kLoadRefreshMs = 30000;
  // How long clients we asked to move to a node count as arrived there when
  // no LOAD from it says otherwise: a move is claimed at the client's next
  // tick and made within a second, and the node's count goes out in its
  // next round. Its count may also not change at all (the clients did not
  // come, or as many left it), and then no LOAD comes to end the guess.
  static constexpr int64_t kAskedMovesMs = 2000;
  void SnapshotStatus();

  ServerContext* const ctx_;
  MeshOptions options_;  // peer_url completed by Start, before any link exists
  EventLoop* const main_loop_;
  const std::vector<IoWorker*> workers_;
  std::unique_ptr<zk::Registry> registry_;
  LocalInterest interest_;
  MoveTable moves_;
  RouterSink router_sink_;
  PeerLink::Context link_context_;  // every link's view of this mesh
  Listener listener_;
  Connector connector_;
  std::map<std::string, Peer> peers_;
  std::vector<zk::NodeInfo> members_;
  bool have_members_ = false;
  bool zk_suspended_ = false;
  std::unique_ptr<EventLoop::Timer> tick_;
  size_t next_worker_ = 0;
  uint64_t next_dial_id_ = 1;
  int64_t last_anti_entropy_ms_ = 0;
  int64_t last_load_ms_ = 0;
  // Moves this node has cut for, oldest first (a node cuts once per move).
  static constexpr size_t kMaxRememberedCuts = 65536;
  std::deque<std::pair<uint64_t, int64_t>> cuts_made_;
  absl::flat_hash_set<uint64_t> cut_tokens_;
  static constexpr size_t kMaxPendingMarks = 4096;  // beyond it a MARK goes at once
  static constexpr size_t kMaxCutNodes = 4096;      // of a CUT's list, the rest is not waited for
  std::atomic<size_t> queued_cuts_{0};  // CUTs from links waiting for the main loop
  std::vector<PendingMark> pending_marks_;

  // Joining.
  enum class Phase { kStarting, kJoining, kRegistering, kReady, kLeaving } phase_ = Phase::kStarting;
  int64_t join_started_ms_ = 0;
  std::function<void()> ready_;

  // Monitoring copies, refreshed on the main thread.
  mutable std::mutex status_mu_;
  std::vector<PeerStatus> status_;
  bool healthy_ = false;
  std::atomic<uint64_t> repairs_{0};
};

}  // namespace zmesh::server::mesh

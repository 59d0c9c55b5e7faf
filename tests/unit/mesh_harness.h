#pragma once

// One Mesh in-process for unit tests, with everything around it played by
// the test: a FakeZooKeeper holds the membership (the test puts and deletes
// other nodes' znodes by hand), the mesh runs on a real main loop and one
// IoWorker with plain peer links (as with --insecure_peers), and the other
// nodes are ScriptedPeers: a ScriptedListener on 127.0.0.1 takes the mesh's
// dial to a node the test registered, ScriptedPeer::Dial plays a node that
// dials the mesh.
//
// Threading: the test thread drives the harness; the mesh lives on the main
// loop thread, and Start/Leave run there through OnMain. Status() and
// Healthy() are read from the test thread (they are snapshots refreshed on
// every mesh tick).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proto/peer_protocol.h"
#include "server/event_loop.h"
#include "server/io_worker.h"
#include "server/mesh/mesh.h"
#include "server/server_context.h"
#include "tests/support/scripted_peer.h"
#include "zk/testing/fake_zookeeper.h"

namespace zmesh::server::mesh::testing {

inline constexpr char kRoot[] = "/zmesh/mesh-test";

// A remote node the test registers: a listener the mesh dials, and its znode.
struct ScriptedNode {
  std::string id;
  uint64_t incarnation = 0;
  bool moves = false;  // its znode says "moves": planned-move frames go to it
  bool queue_switch = false;  // ... and "queue_switch": QUEUE_SWITCH too
  zmesh::testing::ScriptedListener listener;

  zk::NodeInfo Info() const;
};

// The fields of one frame a ScriptedPeer read that the tests look at, copied.
struct DecodedFrame {
  std::string node_id;       // HELLO
  uint64_t incarnation = 0;  // HELLO
  uint64_t drain_ms = 0;     // LEAVING
  std::string reason;        // REFUSE
  uint64_t move_token = 0;   // CUT, MARK, QUEUE_SWITCH
  std::string subject;       // INTEREST, QUEUE_MOVE, QUEUE_SWITCH
  std::string queue;
};

class MeshHarness {
 public:
  // Options every test starts from: node n5, fast ticks (dial grace 40 ms),
  // joins that end by syncing rather than by timeout, a long join grace and
  // handshake timeout.
  static MeshOptions DefaultOptions();

  MeshHarness();
  ~MeshHarness();

  // Builds and starts the mesh (main loop thread) with `options`; false with
  // the reason when Start fails.
  bool Start(MeshOptions options, std::string* error);
  // Stops and destroys the mesh, then the worker and the loop; idempotent.
  void Shutdown();

  // Runs `task` on the main loop thread and waits for it (5 s at most).
  bool OnMain(std::function<void()> task);
  // Lets everything already queued on the main loop run, and whatever those
  // tasks queue in turn, `rounds` deep (the registry's callbacks are posted
  // there, a few hops apart).
  bool DrainMain(int rounds = 6);

  // Membership, as another node's registry would write it.
  void Register(const ScriptedNode& node);
  void Register(const zk::NodeInfo& info);
  void Unregister(const std::string& id);
  bool ZnodeExists(const std::string& id) const;

  Mesh* mesh() { return mesh_.get(); }
  ServerContext& ctx() { return *ctx_; }
  bool ready() const { return ready_.load(); }
  int64_t ready_after_ms() const { return ready_after_ms_.load(); }
  uint16_t peer_port() const { return peer_port_; }

  // The mesh's view of one peer, or nullopt when it has none.
  std::optional<PeerStatus> StatusOf(const std::string& id) const;
  // Waits until StatusOf(id) satisfies `pred` (false after 5 s).
  bool WaitStatus(const std::string& id, const std::function<bool(const PeerStatus&)>& pred);
  // Whether any local subscription matches `subject` in the node's index
  // (remote interest learnt from peers lives there).
  bool IndexMatches(const std::string& subject) const;

 private:
  std::shared_ptr<zk::FakeZooKeeper> zk_ = std::make_shared<zk::FakeZooKeeper>();
  std::unique_ptr<ServerContext> ctx_;
  EventLoop main_loop_;
  std::thread main_thread_;
  std::unique_ptr<IoWorker> worker_;
  std::unique_ptr<Mesh> mesh_;
  std::atomic<bool> ready_{false};
  std::atomic<int64_t> ready_after_ms_{-1};
  uint16_t peer_port_ = 0;
  bool shut_down_ = false;
};

// --- Scripted peers ---

// Accepts the mesh's dial to `node` and answers its HELLO as that node
// (with the incarnation of its znode); nullptr if either does not come.
std::unique_ptr<zmesh::testing::ScriptedPeer> AcceptDial(ScriptedNode& node);
// Dials the mesh's peer port and sends HELLO as `id`/`incarnation`.
std::unique_ptr<zmesh::testing::ScriptedPeer> DialMesh(uint16_t port, const std::string& id,
                                                        uint64_t incarnation);
// A full snapshot of `subjects` (plain interest), as a peer sends it when a
// link becomes active: SYNC_BEGIN, INTEREST each, SYNC_END with the digest.
bool SendSnapshot(zmesh::testing::ScriptedPeer& peer, const std::vector<std::string>& subjects = {});
bool SendEmpty(zmesh::testing::ScriptedPeer& peer, proto::peer::FrameType type);
// Skips frames until one of `type` arrives (within 5 s) and decodes it.
std::optional<DecodedFrame> WaitDecoded(zmesh::testing::ScriptedPeer& peer, proto::peer::FrameType type);
// PING, then waits for the PONG: proves the link is alive and not retired
// (RETIRE is the last frame a link sends), and that the node processed
// everything sent before the PING.
bool PingPong(zmesh::testing::ScriptedPeer& peer);

}  // namespace zmesh::server::mesh::testing

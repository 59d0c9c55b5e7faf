// The mesh layer (server/mesh/mesh.{h,cc}) on its own: membership from a
// fake ZooKeeper, the choice between two links to one node, joining, graceful
// leave, refused peers. The other nodes are scripted by the test over plain
// loopback TCP (see mesh_harness.h); the rules are docs/peer-protocol.md's.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/wait_for.h"
#include "tests/unit/mesh_harness.h"

namespace zmesh::server::mesh::testing {
namespace {

using namespace std::chrono_literals;
using proto::peer::FrameType;
using zmesh::testing::ScriptedPeer;
using zmesh::testing::WaitFor;

class MeshTest : public ::testing::Test {
 protected:
  void StartMesh() {
    std::string error;
    ASSERT_TRUE(h_.Start(options_, &error)) << error;
  }
  // Starts a mesh with no other node and waits until it serves.
  void StartAlone() {
    StartMesh();
    ASSERT_TRUE(WaitFor(5s, [&] { return h_.ready(); })) << "a node alone never became ready";
  }
  // Registers `node` and completes the link the mesh dials to it, with a
  // snapshot of `subjects`; returns the scripted end.
  std::unique_ptr<ScriptedPeer> Link(ScriptedNode& node, const std::vector<std::string>& subjects = {}) {
    h_.Register(node);
    std::unique_ptr<ScriptedPeer> p = AcceptDial(node);
    if (p == nullptr) {
      ADD_FAILURE() << "the mesh did not dial " << node.id;
      return nullptr;
    }
    EXPECT_TRUE(SendSnapshot(*p, subjects));
    EXPECT_TRUE(h_.WaitStatus(node.id, [](const PeerStatus& s) { return s.linked && s.synced; }))
        << node.id << " never linked and synced";
    return p;
  }
  // Links a node whose znode says "moves" (and "queue_switch" when asked):
  // it takes planned-move and LOAD frames.
  std::unique_ptr<ScriptedPeer> LinkMover(const std::string& id, uint64_t incarnation, bool queue_switch = false) {
    ScriptedNode& node = Node(id, incarnation);
    node.moves = true;
    node.queue_switch = queue_switch;
    return Link(node);
  }
  // Starts alone and links movers n7 and n8: the two ends the planned-move
  // tests script.
  std::pair<std::unique_ptr<ScriptedPeer>, std::unique_ptr<ScriptedPeer>> StartLinkedToMovers(
      bool queue_switch = false) {
    StartAlone();
    std::unique_ptr<ScriptedPeer> p7 = LinkMover("n7", 77, queue_switch);
    return {std::move(p7), LinkMover("n8", 88, queue_switch)};
  }
  ScriptedNode& Node(const std::string& id, uint64_t incarnation) {
    auto node = std::make_unique<ScriptedNode>();
    node->id = id;
    node->incarnation = incarnation;
    EXPECT_TRUE(node->listener.Listen());
    nodes_.push_back(std::move(node));
    return *nodes_.back();
  }
  bool ConnectUrlsHave(const std::string& client_url) {
    const std::string url = client_url.substr(client_url.find("://") + 3);
    const std::vector<std::string> urls = h_.ctx().info.connect_urls();
    return std::find(urls.begin(), urls.end(), url) != urls.end();
  }
  uint64_t LinkId(const std::string& id) {
    std::optional<PeerStatus> s = h_.StatusOf(id);
    return s ? s->link_id : 0;
  }

  std::vector<std::unique_ptr<ScriptedNode>> nodes_;  // outlive the harness: the mesh dials them
  MeshOptions options_ = MeshHarness::DefaultOptions();
  MeshHarness h_;
};

// --- Membership ---

TEST_F(MeshTest, NewMemberIsDialledAndItsInterestLearnt) {
  StartAlone();
  ScriptedNode& n7 = Node("n7", 77);
  h_.Register(n7);
  std::unique_ptr<ScriptedPeer> p = AcceptDial(n7);
  ASSERT_NE(p, nullptr) << "a node that appeared in ZooKeeper was not dialled";
  ASSERT_TRUE(SendSnapshot(*p, {"orders.*"}));
  ASSERT_TRUE(h_.WaitStatus("n7", [](const PeerStatus& s) { return s.member && s.linked && s.synced && s.outbound; }));
  EXPECT_TRUE(h_.IndexMatches("orders.new")) << "the peer's snapshot did not reach the subject index";
  EXPECT_TRUE(ConnectUrlsHave(n7.Info().client_url));
}

TEST_F(MeshTest, OwnZnodeIsNotAPeer) {
  ScriptedNode& n2 = Node("n2", 22);
  h_.Register(n2);
  StartMesh();
  std::unique_ptr<ScriptedPeer> p = AcceptDial(n2);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(SendSnapshot(*p));
  ASSERT_TRUE(WaitFor(5s, [&] { return h_.ready(); }));
  // The member list that names our own znode has been handled (the connect
  // URLs come from it, and the status snapshot is refreshed in the same step).
  ASSERT_TRUE(WaitFor(5s, [&] { return ConnectUrlsHave(options_.client_url); }));
  EXPECT_FALSE(h_.StatusOf("n5").has_value()) << "the mesh treats its own znode as a peer";
  EXPECT_TRUE(WaitFor(5s, [&] { return h_.mesh()->Healthy(); }));
  EXPECT_EQ(h_.mesh()->Status().size(), 1u);
}

TEST_F(MeshTest, GoneMemberHasItsLinkClosedAndItsInterestWithdrawn) {
  options_.join_grace_ms = 100;  // how long a linked node without a znode is kept
  StartAlone();
  ScriptedNode& n7 = Node("n7", 77);
  std::unique_ptr<ScriptedPeer> p = Link(n7, {"orders.*"});
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(h_.IndexMatches("orders.new"));
  h_.Unregister("n7");
  EXPECT_TRUE(p->ClosedWithin(5s)) << "the link to a node whose znode is gone stayed up";
  EXPECT_TRUE(WaitFor(5s, [&] { return !h_.IndexMatches("orders.new"); })) << "its interest was not withdrawn";
  EXPECT_TRUE(WaitFor(5s, [&] { return !h_.StatusOf("n7").has_value(); }));
  EXPECT_FALSE(ConnectUrlsHave(n7.Info().client_url));
}

// A settled node leaves the first dial to the node with the smaller id for
// the dial grace, so that both rarely dial at once.
TEST_F(MeshTest, SettledNodeLetsTheSmallerIdDialFirst) {
  options_.dial_grace_ms = 300;
  StartAlone();
  ScriptedNode& n2 = Node("n2", 22);
  const auto registered = std::chrono::steady_clock::now();
  h_.Register(n2);
  const int fd = n2.listener.Accept(5s);
  ASSERT_GE(fd, 0) << "n2 was never dialled";
  ScriptedPeer p;
  p.Adopt(fd);
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - registered);
  // 10 ms of slack for the millisecond clocks' rounding; without the grace
  // the dial comes within a tick.
  EXPECT_GE(waited.count(), 290) << "dialled node n2 (smaller id) within the dial grace";
}

// --- Joining ---

TEST_F(MeshTest, JoinWaitsForTheSnapshotOfEveryKnownPeer) {
  ScriptedNode& n2 = Node("n2", 22);
  ScriptedNode& n7 = Node("n7", 77);
  h_.Register(n2);
  h_.Register(n7);
  StartMesh();
  std::unique_ptr<ScriptedPeer> a = AcceptDial(n2);
  std::unique_ptr<ScriptedPeer> b = AcceptDial(n7);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(SendSnapshot(*a, {"a.>"}));
  ASSERT_TRUE(h_.WaitStatus("n2", [](const PeerStatus& s) { return s.synced; }));
  ASSERT_TRUE(h_.WaitStatus("n7", [](const PeerStatus& s) { return s.linked && !s.synced; }));
  // Registering and the ready callback are a few main-loop hops after the
  // decision: let them run, had it been taken.
  ASSERT_TRUE(h_.DrainMain());
  EXPECT_FALSE(h_.ready()) << "ready while n7's snapshot is still missing";
  EXPECT_FALSE(h_.ZnodeExists("n5")) << "registered while n7's snapshot is still missing";
  EXPECT_FALSE(h_.mesh()->Healthy());

  ASSERT_TRUE(SendSnapshot(*b, {"b.>"}));
  EXPECT_TRUE(WaitFor(5s, [&] { return h_.ready(); })) << "not ready once every peer synced";
  EXPECT_TRUE(h_.ZnodeExists("n5"));
  EXPECT_TRUE(WaitFor(5s, [&] { return h_.mesh()->Healthy(); }));
  EXPECT_TRUE(h_.IndexMatches("a.x"));
  EXPECT_TRUE(h_.IndexMatches("b.x"));
}

TEST_F(MeshTest, JoinGoesAheadWithoutAPeerThatNeverSyncsAfterTheJoinTimeout) {
  options_.join_timeout_ms = 300;
  ScriptedNode& n2 = Node("n2", 22);  // listens, never answers
  h_.Register(n2);
  StartMesh();
  ASSERT_TRUE(WaitFor(5s, [&] { return h_.ready(); })) << "the join never timed out";
  EXPECT_GE(h_.ready_after_ms(), 290) << "ready before the join timeout with n2 unsynced";  // ms rounding
  EXPECT_TRUE(h_.ZnodeExists("n5"));
  ASSERT_TRUE(h_.WaitStatus("n2", [](const PeerStatus& s) { return s.member && !s.synced; }));
  EXPECT_FALSE(h_.mesh()->Healthy());
}

// --- One link per pair of nodes: keep the one dialled by the smaller id ---

TEST_F(MeshTest, DuplicateDialledByTheLargerIdIsClosed) {
  StartAlone();  // n5
  ScriptedNode& n7 = Node("n7", 77);
  std::unique_ptr<ScriptedPeer> ours = Link(n7);  // dialled by n5, the smaller id
  ASSERT_NE(ours, nullptr);
  const uint64_t kept = LinkId("n7");
  std::unique_ptr<ScriptedPeer> theirs = DialMesh(h_.peer_port(), "n7", 77);
  ASSERT_NE(theirs, nullptr);
  EXPECT_TRUE(theirs->ClosedWithin(5s)) << "the link dialled by the larger id was kept";
  EXPECT_TRUE(PingPong(*ours)) << "the link dialled by the smaller id was retired or closed";
  std::optional<PeerStatus> s = h_.StatusOf("n7");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->link_id, kept);
  EXPECT_TRUE(s->outbound);
}

TEST_F(MeshTest, DuplicateDialledByTheSmallerIdReplacesTheActiveLink) {
  StartAlone();  // n5
  ScriptedNode& n2 = Node("n2", 22);
  std::unique_ptr<ScriptedPeer> old = Link(n2, {"kept.>"});  // dialled by n5, the larger id
  ASSERT_NE(old, nullptr);
  const uint64_t old_id = LinkId("n2");
  ASSERT_TRUE(h_.StatusOf("n2")->outbound);
  std::unique_ptr<ScriptedPeer> fresh = DialMesh(h_.peer_port(), "n2", 22);
  ASSERT_NE(fresh, nullptr);
  EXPECT_TRUE(WaitDecoded(*old, FrameType::kRetire).has_value()) << "the replaced link was not retired";
  ASSERT_TRUE(h_.WaitStatus("n2", [&](const PeerStatus& s) { return s.linked && !s.outbound && s.link_id != old_id; }));
  EXPECT_TRUE(h_.IndexMatches("kept.x")) << "the node's interest was lost in the replacement";
  // The peer retires its end too; the new link then reads (it waited, for
  // order) and takes the new snapshot.
  ASSERT_TRUE(SendEmpty(*old, FrameType::kRetire));
  EXPECT_TRUE(old->ClosedWithin(5s)) << "the retired link did not close after both RETIREs";
  ASSERT_TRUE(SendSnapshot(*fresh, {"kept.>"}));
  EXPECT_TRUE(h_.WaitStatus("n2", [](const PeerStatus& s) { return s.synced; }));
  EXPECT_TRUE(PingPong(*fresh));
}

TEST_F(MeshTest, DuplicateFromTheSameDiallerKeepsTheNewer) {
  StartAlone();  // n5; n2 dials it twice (a joining node: no znode, so the mesh never dials it)
  std::unique_ptr<ScriptedPeer> first = DialMesh(h_.peer_port(), "n2", 22);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(h_.WaitStatus("n2", [](const PeerStatus& s) { return s.linked && !s.member; }));
  ASSERT_TRUE(SendSnapshot(*first));
  ASSERT_TRUE(h_.WaitStatus("n2", [](const PeerStatus& s) { return s.synced; }));
  const uint64_t first_id = LinkId("n2");
  std::unique_ptr<ScriptedPeer> second = DialMesh(h_.peer_port(), "n2", 22);
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(WaitDecoded(*first, FrameType::kRetire).has_value()) << "the older link was not retired";
  ASSERT_TRUE(h_.WaitStatus("n2", [&](const PeerStatus& s) { return s.linked && s.link_id != first_id; }))
      << "the newer link of the same dialler did not replace the older";
  ASSERT_TRUE(SendEmpty(*first, FrameType::kRetire));
  EXPECT_TRUE(first->ClosedWithin(5s));
  ASSERT_TRUE(SendSnapshot(*second));
  EXPECT_TRUE(h_.WaitStatus("n2", [](const PeerStatus& s) { return s.synced; }));
  EXPECT_TRUE(PingPong(*second));
}

// --- Identity: the znode owns the node id ---

TEST_F(MeshTest, SecondProcessWithTheSameIdIsRefused) {
  StartAlone();
  ScriptedNode& n7 = Node("n7", 77);
  std::unique_ptr<ScriptedPeer> live = Link(n7);
  ASSERT_NE(live, nullptr);
  const uint64_t live_id = LinkId("n7");
  std::unique_ptr<ScriptedPeer> impostor = DialMesh(h_.peer_port(), "n7", 78);
  ASSERT_NE(impostor, nullptr);
  std::optional<DecodedFrame> refuse = WaitDecoded(*impostor, FrameType::kRefuse);
  ASSERT_TRUE(refuse.has_value()) << "a second process claiming n7 was not refused";
  EXPECT_NE(refuse->reason.find("belongs to a live process"), std::string::npos) << refuse->reason;
  EXPECT_TRUE(impostor->ClosedWithin(5s));
  EXPECT_TRUE(PingPong(*live)) << "the live process's link was disturbed";
  EXPECT_EQ(LinkId("n7"), live_id);
}

TEST_F(MeshTest, RestartedNodeReplacesTheLinkToItsPreviousProcess) {
  StartAlone();
  ScriptedNode& n7 = Node("n7", 77);
  std::unique_ptr<ScriptedPeer> before = Link(n7, {"old.>"});
  ASSERT_NE(before, nullptr);
  const uint64_t before_id = LinkId("n7");
  // The new process took the znode over (the client URL tells us when the
  // mesh has seen it) and dials in.
  zk::NodeInfo restarted = n7.Info();
  restarted.incarnation = 78;
  restarted.client_url = "nats://127.0.0.1:4999";
  h_.Register(restarted);
  ASSERT_TRUE(h_.WaitStatus("n7", [](const PeerStatus& s) { return s.client_url == "nats://127.0.0.1:4999"; }));
  std::unique_ptr<ScriptedPeer> after = DialMesh(h_.peer_port(), "n7", 78);
  ASSERT_NE(after, nullptr);
  EXPECT_TRUE(before->ClosedWithin(5s)) << "the link to the previous process stayed up";
  ASSERT_TRUE(h_.WaitStatus("n7", [&](const PeerStatus& s) { return s.linked && s.link_id != before_id; }));
  EXPECT_TRUE(WaitFor(5s, [&] { return !h_.IndexMatches("old.x"); })) << "the previous process's interest stayed";
  ASSERT_TRUE(SendSnapshot(*after, {"new.>"}));
  EXPECT_TRUE(h_.WaitStatus("n7", [](const PeerStatus& s) { return s.synced; }));
  EXPECT_TRUE(h_.IndexMatches("new.x"));
}

// --- Graceful leave ---

// A peer that announced LEAVING keeps its link past the join grace once its
// znode is gone (it still serves its remaining clients), up to the drain it
// announced (plus the handshake timeout), and is closed after that.
TEST_F(MeshTest, LeavingPeerKeepsItsLinkUntilItsAnnouncedDrain) {
  options_.join_grace_ms = 100;
  options_.handshake_timeout_ms = 500;
  StartAlone();
  ScriptedNode& n7 = Node("n7", 77);
  std::unique_ptr<ScriptedPeer> p = Link(n7, {"still.>"});
  ASSERT_NE(p, nullptr);
  std::string leaving;
  proto::peer::EncodeLeaving({300}, &leaving);
  const auto announced = std::chrono::steady_clock::now();
  ASSERT_TRUE(p->Send(leaving));
  // The PONG proves the link read LEAVING, so the mesh learns of it before
  // it learns that the znode is gone (both go through the main loop in order).
  ASSERT_TRUE(PingPong(*p));
  h_.Unregister("n7");
  // Without the announcement the link would close one join grace (100 ms)
  // after the znode went; with it, not before 300 + 500 ms.
  EXPECT_FALSE(p->ClosedWithin(400ms)) << "a leaving node's link was dropped like a vanished node's";
  EXPECT_TRUE(h_.IndexMatches("still.x"));
  EXPECT_TRUE(p->ClosedWithin(5s)) << "the link outlived the drain the node announced";
  const auto held = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - announced);
  EXPECT_GE(held.count(), 790) << "closed before the announced drain plus the handshake timeout";  // ms rounding
  EXPECT_TRUE(WaitFor(5s, [&] { return !h_.IndexMatches("still.x"); }));
}

TEST_F(MeshTest, LeaveAnnouncesLeavingDeletesTheZnodeAndTurnsNewLinksAway) {
  StartAlone();
  ASSERT_TRUE(WaitFor(5s, [&] { return h_.ZnodeExists("n5"); }));
  ScriptedNode& n7 = Node("n7", 77);
  std::unique_ptr<ScriptedPeer> p = Link(n7);
  ASSERT_NE(p, nullptr);
  std::atomic<bool> done{false};
  ASSERT_TRUE(h_.OnMain([&] { h_.mesh()->Leave(5000, [&] { done = true; }); }));
  std::optional<DecodedFrame> frame = WaitDecoded(*p, FrameType::kLeaving);
  ASSERT_TRUE(frame.has_value()) << "the peer was not told that this node leaves";
  EXPECT_EQ(frame->drain_ms, 5000u);
  EXPECT_TRUE(WaitFor(5s, [&] { return done.load(); })) << "Leave's callback never ran";
  EXPECT_FALSE(h_.ZnodeExists("n5"));
  EXPECT_TRUE(PingPong(*p)) << "existing links carry the remaining clients' traffic while leaving";
  ScriptedPeer late;
  ASSERT_TRUE(late.Dial(h_.peer_port()));
  EXPECT_TRUE(late.ClosedWithin(5s)) << "a leaving node accepted a new link";
  EXPECT_EQ(late.received(), "") << "a leaving node started a handshake on a new link";
}

// --- Load sharing ---

// The LOAD frames `p` receives within `window`, by the client count they carry.
std::vector<uint64_t> LoadsWithin(ScriptedPeer& p, std::chrono::milliseconds window) {
  std::vector<uint64_t> loads;
  std::string body;
  const auto until = std::chrono::steady_clock::now() + window;
  while (std::chrono::steady_clock::now() < until) {
    if (p.ReadFrame(&body, 50ms) != static_cast<int>(FrameType::kLoad)) continue;
    uint64_t clients = 0;
    for (size_t k = 0; k < 8 && k < body.size(); ++k) clients |= uint64_t{static_cast<uint8_t>(body[k])} << (8 * k);
    loads.push_back(clients);
  }
  return loads;
}

// An idle mesh of N nodes must not carry N*(N-1) frames a second: a node
// tells a peer its client count once the link is up and then only when the
// count changes (or after Mesh::kLoadRefreshMs), not on every one-second
// round. Sent every second, 256 nodes on one host never formed a mesh.
TEST_F(MeshTest, LoadGoesOutWhenALinkComesUpAndWhenTheCountChanges) {
  StartAlone();
  std::unique_ptr<ScriptedPeer> p7 = LinkMover("n7", 77);
  ASSERT_NE(p7, nullptr);
  EXPECT_EQ(LoadsWithin(*p7, 3500ms), std::vector<uint64_t>{0}) << "the count once, when the link came up";
  h_.ctx().client_count.store(3);
  EXPECT_EQ(LoadsWithin(*p7, 3500ms), std::vector<uint64_t>{3}) << "the new count once";
}

// A node that asked clients to move counts them as arrived at the target
// until the target's next LOAD, or for Mesh::kAskedMovesMs when none comes
// (its count need not change: the clients did not come, or as many left
// it). Kept until a LOAD, a wrong guess stopped a 2-node mesh from
// rebalancing for the 30 s between refreshes.
TEST_F(MeshTest, AskedMovesCountAsArrivedUntilTheTargetsNextLoadOrATimeout) {
  StartAlone();
  std::unique_ptr<ScriptedPeer> p7 = LinkMover("n7", 77);
  ASSERT_NE(p7, nullptr);
  const std::string n7_url = nodes_.back()->Info().client_url;
  std::string load;
  proto::peer::EncodeLoad(0, &load);
  ASSERT_TRUE(p7->Send(load));
  h_.ctx().client_count.store(10);
  // Claims this round's order the way movable clients do; each leaves.
  auto take_order = [&] {
    int taken = 0;
    std::string url;
    while (h_.ctx().rebalance.Take(&url)) {
      EXPECT_EQ(url, n7_url);
      h_.ctx().client_count.fetch_sub(1);
      ++taken;
    }
    return taken;
  };
  int asked = 0;
  ASSERT_TRUE(WaitFor(5s, [&] { return (asked = take_order()) > 0; })) << "10 clients here, none on n7, no move asked";
  EXPECT_EQ(asked, 5);
  // n7 never says it got them: 5 here and 5 counted there, until the guess ends.
  const auto since = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor(6s, [&] { return (asked = take_order()) > 0; })) << "the guess outlived kAskedMovesMs";
  EXPECT_GE(std::chrono::steady_clock::now() - since, 1s) << "asked again at once: the moves asked for were not counted";
  EXPECT_EQ(asked, 2);
}

// --- Planned moves (docs/design-lossless-moves.md) ---

// The next CUT or MARK within 5 s, with its token.
std::optional<std::pair<FrameType, uint64_t>> NextMoveFrame(ScriptedPeer& p) {
  std::string body;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    const int type = p.ReadFrame(&body, 100ms);  // LOAD and the like may come
    if (type < 0) continue;
    if (type != static_cast<int>(FrameType::kCut) && type != static_cast<int>(FrameType::kMark)) continue;
    uint64_t token = 0;
    for (size_t k = 0; k < 8 && k < body.size(); ++k) token |= uint64_t{static_cast<uint8_t>(body[k])} << (8 * k);
    return std::make_pair(static_cast<FrameType>(type), token);
  }
  return std::nullopt;
}

TEST_F(MeshTest, ACutIsAnsweredWithThisNodesOwnCutThenAMarkAndCutOnlyOnce) {
  auto [p7, p8] = StartLinkedToMovers();
  ASSERT_TRUE(p7 && p8);
  constexpr uint64_t kToken = 0x1122334455667788ull;
  std::string cut;
  proto::peer::EncodeMoveFrame(FrameType::kCut, kToken, &cut);

  // n7 cuts (its client moves): this node cuts on every link, and tells n7
  // it has read n7's CUT only after its own CUT, on the same link.
  ASSERT_TRUE(p7->Send(cut));
  auto first = NextMoveFrame(*p7);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->first, FrameType::kCut) << "the mark came before this node's own cut";
  EXPECT_EQ(first->second, kToken);
  auto second = NextMoveFrame(*p7);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->first, FrameType::kMark) << "n7's CUT was not acknowledged";
  EXPECT_EQ(second->second, kToken);
  auto to8 = NextMoveFrame(*p8);
  ASSERT_TRUE(to8.has_value());
  EXPECT_EQ(to8->first, FrameType::kCut) << "n8 did not hear of the move";

  // n8's own cut for the same move: acknowledged, and no second cut here.
  ASSERT_TRUE(p8->Send(cut));
  auto ack = NextMoveFrame(*p8);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->first, FrameType::kMark) << "a node cut twice for one move";
  ASSERT_TRUE(PingPong(*p7));
  std::string body;
  const auto until = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < until) {
    const int type = p7->ReadFrame(&body, 50ms);  // LOAD and the like may come
    EXPECT_NE(type, static_cast<int>(FrameType::kCut)) << "a second cut for one move";
  }
}

// Whether `p` receives a frame of `type` before the PONG of a PING sent
// now, i.e. whether the node sent one before it read the PING. nullopt if
// no PONG came.
std::optional<bool> SentBeforePong(ScriptedPeer& p, FrameType type) {
  if (!SendEmpty(p, FrameType::kPing)) return std::nullopt;
  bool seen = false;
  std::string body;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    const int t = p.ReadFrame(&body, 100ms);
    if (t == static_cast<int>(FrameType::kPong)) return seen;
    seen |= t == static_cast<int>(type);
  }
  return std::nullopt;
}

// A node picks a *node* for a queue message. When a moving client's old
// member (on n7) is released here, this node stops counting it and starts
// counting the new one (on n8) in its picks, and tells both nodes where in
// its stream that happened, so that each gives the client's member only the
// messages this node picked with it counted.
TEST_F(MeshTest, AQueueMembersReleaseIsToldToBothEndsAsAQueueSwitch) {
  auto [p7, p8] = StartLinkedToMovers(/*queue_switch=*/true);
  std::unique_ptr<ScriptedPeer> p9 = LinkMover("n9", 99);  // the release before QUEUE_SWITCH
  ASSERT_TRUE(p7 && p8 && p9);
  constexpr uint64_t kToken = 0x0102030405060708ull, kOtherToken = 0x0a0b0c0d0e0f0102ull;
  std::string frames;
  proto::peer::EncodeInterest({"jobs", "workers", 1, 1}, &frames);
  proto::peer::EncodeInterest({"jobs", "others", 1, 2}, &frames);
  ASSERT_TRUE(p7->Send(frames));
  frames.clear();
  proto::peer::EncodeQueueMove({"jobs", "workers", 1, 1}, kToken, proto::peer::QueueMoveKind::kLatent, &frames);
  ASSERT_TRUE(p8->Send(frames));
  frames.clear();
  proto::peer::EncodeQueueMove({"jobs", "others", 1, 1}, kOtherToken, proto::peer::QueueMoveKind::kLatent, &frames);
  ASSERT_TRUE(p9->Send(frames));
  EXPECT_EQ(SentBeforePong(*p8, FrameType::kQueueSwitch), false) << "switched before the old member's release";
  ASSERT_TRUE(PingPong(*p7));
  ASSERT_TRUE(PingPong(*p9));

  frames.clear();
  proto::peer::EncodeQueueMove({"jobs", "workers", 0, 3}, kToken, proto::peer::QueueMoveKind::kRelease, &frames);
  proto::peer::EncodeQueueMove({"jobs", "others", 0, 4}, kOtherToken, proto::peer::QueueMoveKind::kRelease, &frames);
  ASSERT_TRUE(p7->Send(frames));
  std::optional<DecodedFrame> sw = WaitDecoded(*p8, FrameType::kQueueSwitch);
  ASSERT_TRUE(sw.has_value()) << "the new end never heard where this node switched";
  EXPECT_EQ(sw->move_token, kToken);
  EXPECT_EQ(sw->subject, "jobs");
  EXPECT_EQ(sw->queue, "workers");
  std::optional<DecodedFrame> away = WaitDecoded(*p7, FrameType::kQueueSwitch);
  ASSERT_TRUE(away.has_value()) << "the old end never heard where this node stopped counting its member";
  EXPECT_EQ(away->move_token, kToken);
  EXPECT_EQ(away->queue, "workers");
  away = WaitDecoded(*p7, FrameType::kQueueSwitch);
  ASSERT_TRUE(away.has_value());
  EXPECT_EQ(away->move_token, kOtherToken);
  EXPECT_EQ(away->queue, "others");
  EXPECT_EQ(SentBeforePong(*p8, FrameType::kQueueSwitch), false) << "a second switch for one member";
  EXPECT_EQ(SentBeforePong(*p9, FrameType::kQueueSwitch), false)
      << "a node without \"queue_switch\" (it would reset the link) was sent one";
}

// A CUT lists the interest its sender had applied from each node; this node
// answers MARK only once it has applied as much (or the node's link is
// gone). A client of n7 that moves here then publishes with no older view
// of the mesh than it had on n7: e.g. a queue member's release n7 had
// applied, so this node does not pick the released member after n7 picked
// its successor.
TEST_F(MeshTest, AMarkWaitsUntilThisNodeHasAppliedTheInterestTheCutterHad) {
  auto [p7, p8] = StartLinkedToMovers(/*queue_switch=*/true);
  ASSERT_TRUE(p7 && p8);
  std::string frames;
  proto::peer::EncodeInterest({"a", "", 1, 3}, &frames);
  ASSERT_TRUE(p8->Send(frames));
  ASSERT_TRUE(PingPong(*p8));

  constexpr uint64_t kToken = 0x5566778899aabbccull, kLaterToken = 0x0123456789abcdefull;
  std::string cut;
  // n7 had applied n8's changes up to 5, and lists this node and itself too.
  proto::peer::EncodeCut(kToken, {{"n8", 5}, {"n5", 1000}, {"n7", 1000}}, &cut);
  ASSERT_TRUE(p7->Send(cut));
  auto own = NextMoveFrame(*p7);
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own->first, FrameType::kCut) << "this node did not cut";
  // Our MARK would have been written with our CUT, before this PONG.
  EXPECT_EQ(SentBeforePong(*p7, FrameType::kMark), false) << "marked before applying n8's change 5";
  frames.clear();
  proto::peer::EncodeInterest({"b", "", 1, 4}, &frames);
  ASSERT_TRUE(p8->Send(frames));
  ASSERT_TRUE(PingPong(*p8));
  EXPECT_EQ(SentBeforePong(*p7, FrameType::kMark), false) << "marked at n8's change 4";
  frames.clear();
  proto::peer::EncodeInterest({"c", "", 1, 5}, &frames);
  ASSERT_TRUE(p8->Send(frames));
  auto mark = NextMoveFrame(*p7);
  ASSERT_TRUE(mark.has_value()) << "no MARK once n8's change 5 was applied";
  EXPECT_EQ(mark->first, FrameType::kMark);
  EXPECT_EQ(mark->second, kToken);

  // A node whose link is gone has nothing more to wait for.
  cut.clear();
  proto::peer::EncodeCut(kLaterToken, {{"n8", 9}}, &cut);
  ASSERT_TRUE(p7->Send(cut));
  own = NextMoveFrame(*p7);
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own->first, FrameType::kCut);
  EXPECT_EQ(SentBeforePong(*p7, FrameType::kMark), false);
  p8.reset();  // n8's link drops
  mark = NextMoveFrame(*p7);
  ASSERT_TRUE(mark.has_value()) << "a MARK waited for a node whose link is gone";
  EXPECT_EQ(mark->first, FrameType::kMark);
  EXPECT_EQ(mark->second, kLaterToken);
}

// A peer flooding CUTs with new tokens while the main loop is busy: each
// would become work there (a cut, CUT frames to every peer, a MARK), so no
// more than Mesh::kMaxQueuedCuts wait for it; the rest are dropped, and the
// node keeps serving.
TEST_F(MeshTest, AFloodOfCutsQueuesBoundedWorkOnTheMainLoop) {
  auto [p7, p8] = StartLinkedToMovers();
  ASSERT_TRUE(p7 && p8);

  // Hold the main loop (bounded: it lets go after 20 s whatever happens),
  // and flood only once it is held.
  auto release = std::make_shared<std::promise<void>>();
  std::shared_future<void> released = release->get_future().share();
  auto holding = std::make_shared<std::promise<void>>();
  std::future<void> held = holding->get_future();
  std::thread holder([&] {
    h_.OnMain([released, holding] {
      holding->set_value();
      released.wait_for(20s);
    });
  });
  if (held.wait_for(10s) != std::future_status::ready) {
    release->set_value();
    holder.join();
    FAIL() << "the main loop was never held";
  }

  constexpr size_t kFlood = Mesh::kMaxQueuedCuts + 2000;
  std::string flood;
  for (size_t i = 0; i < kFlood; ++i) proto::peer::EncodeMoveFrame(FrameType::kCut, 0x1000 + i, &flood);
  ASSERT_TRUE(p7->Send(flood));
  EXPECT_TRUE(PingPong(*p7)) << "the link stopped reading";  // every CUT has been read
  release->set_value();
  holder.join();
  ASSERT_TRUE(h_.DrainMain(1));

  // Each CUT that was queued became one cut: one CUT frame to n8.
  size_t cuts = 0;
  bool pong = false;
  ASSERT_TRUE(SendEmpty(*p8, FrameType::kPing));
  std::string body;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!pong && std::chrono::steady_clock::now() < until) {
    const int type = p8->ReadFrame(&body, 100ms);
    cuts += type == static_cast<int>(FrameType::kCut) ? 1 : 0;
    pong = type == static_cast<int>(FrameType::kPong);
  }
  ASSERT_TRUE(pong);
  EXPECT_GE(cuts, 1u) << "no CUT was handled at all";
  EXPECT_LE(cuts, Mesh::kMaxQueuedCuts) << "the main loop took every CUT of the flood";
  std::cout << "[ flood    ] " << kFlood << " CUTs sent, " << cuts << " handled\n";
  EXPECT_TRUE(h_.WaitStatus("n7", [](const PeerStatus& s) { return s.linked; })) << "the flood cost the link";
}

}  // namespace
}  // namespace zmesh::server::mesh::testing

// ZooKeeperRegistry's state machine against an in-memory Keeper
// (zk/testing/fake_keeper.h) with faults injected: connection loss, session
// expiry (told by ZooKeeper, or assumed after the session timeout without a
// connection), failed and half-applied requests, the stale znode of our own
// previous process (wait, or steal by version), re-registration, the children
// watch and its re-arming, Unregister, digest ACLs, and Stop.
//
// Deterministic: the test thread is the owner thread (ManualLoop), tasks run
// only when the test runs them and time moves only when it advances it.

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "zk/testing/fake_keeper.h"
#include "zk/testing/manual_loop.h"
#include "zk/zookeeper_registry.h"

namespace zmesh::zk {
namespace {

using testing::FakeKeeperServer;
using testing::ManualLoop;
using Op = FakeKeeperServer::Op;
using Ids = std::vector<std::string>;
using std::chrono::milliseconds;

constexpr int kTimeoutMs = 4000;
constexpr char kNodesPath[] = "/zmesh/t/nodes";

std::string NodePath(const std::string& id) { return std::string(kNodesPath) + "/" + id; }

NodeInfo Info(const std::string& id, int port) {
  return NodeInfo{id, "nats://127.0.0.1:" + std::to_string(port),
                  "127.0.0.1:" + std::to_string(port + 1000), "test", 1000 + port};
}

// One registry and what its callbacks reported.
struct Node {
  std::unique_ptr<ZooKeeperRegistry> registry;
  std::vector<std::vector<NodeInfo>> updates;
  std::vector<SessionState> states;
  std::vector<std::pair<bool, std::string>> register_results;
  int unregistered = 0;

  // The ids of the last reported member list.
  Ids ids() const {
    Ids ids;
    if (!updates.empty()) {
      for (const NodeInfo& n : updates.back()) ids.push_back(n.id);
    }
    return ids;
  }
  int64_t session() const {
    auto s = registry->session();
    return s ? s->id : 0;
  }
  size_t MinMembersSince(size_t from) const {
    size_t min = SIZE_MAX;
    for (size_t i = from; i < updates.size(); ++i) min = std::min(min, updates[i].size());
    return min;
  }
  void Unregister() {
    registry->Unregister([this] { ++unregistered; });
  }
};

class RegistryStateTest : public ::testing::Test {
 protected:
  // The usual case: the mesh's directory exists.
  void SetUp() override { zk_.Put(kNodesPath, ""); }

  // An empty ZooKeeper instead.
  void RemoveTree() {
    for (const char* path : {kNodesPath, "/zmesh/t", "/zmesh"}) zk_.Remove(path);
  }

  RegistryOptions Options() const {
    RegistryOptions options;
    options.connect = "fake:2181";
    options.root = "/zmesh/t";
    options.session_timeout_ms = kTimeoutMs;
    return options;
  }

  std::unique_ptr<Node> NewNode(const RegistryOptions& options,
                                std::optional<KeeperFactory> factory = std::nullopt) {
    auto node = std::make_unique<Node>();
    node->registry = std::make_unique<ZooKeeperRegistry>(
        options, loop_.executor(), factory.value_or(zk_.Factory(loop_.executor(), kTimeoutMs)),
        loop_.NewScheduler());
    return node;
  }

  // Starts a registry and registers `id` unless it is empty; runs until idle.
  std::unique_ptr<Node> StartNode(const std::string& id, int port,
                                  std::optional<RegistryOptions> options = std::nullopt) {
    auto node = NewNode(options.value_or(Options()));
    Start(*node, id, port);
    return node;
  }

  void Start(Node& node, const std::string& id, int port) {
    Node* n = &node;
    n->registry->Start(Registry::Listener{
        [n](const std::vector<NodeInfo>& members) { n->updates.push_back(members); },
        [n](SessionState state) { n->states.push_back(state); }});
    if (!id.empty()) Register(node, Info(id, port));
    loop_.RunUntilIdle();
  }

  void Register(Node& node, const NodeInfo& info) {
    Node* n = &node;
    n->registry->Register(info, [n](bool ok, const std::string& error) {
      n->register_results.emplace_back(ok, error);
    });
  }

  int64_t Owner(const std::string& id) const {
    auto znode = zk_.Get(NodePath(id));
    return znode ? znode->ephemeral_owner : -1;
  }

  ManualLoop loop_;
  FakeKeeperServer zk_;
};

const std::vector<std::pair<bool, std::string>> kRegisteredOnce = {{true, ""}};

TEST_F(RegistryStateTest, RegistersCreatesParentsAndWatchesMembers) {
  RemoveTree();
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  for (Node* n : {a.get(), b.get()}) {
    EXPECT_EQ(n->ids(), (Ids{"a", "b"}));
    EXPECT_EQ(n->register_results, kRegisteredOnce);
    EXPECT_TRUE(n->registry->registered());
    EXPECT_EQ(n->registry->state(), SessionState::kConnected);
    EXPECT_EQ(n->states, std::vector<SessionState>{SessionState::kConnected});
  }
  // Parents are persistent; our znode is ephemeral, ours, the JSON of SPEC §3.
  for (const char* path : {"/zmesh", "/zmesh/t", kNodesPath}) {
    ASSERT_TRUE(zk_.Get(path).has_value()) << path;
    EXPECT_EQ(zk_.Get(path)->ephemeral_owner, 0) << path;
  }
  EXPECT_EQ(Owner("a"), a->session());
  EXPECT_NE(a->session(), b->session());
  EXPECT_EQ(DecodeNodeInfo(zk_.Get(NodePath("b"))->data), Info("b", 4002));
  EXPECT_EQ(a->registry->members()[1], Info("b", 4002));

  // The children watch and the data watches are re-armed each time they fire.
  zk_.Put(NodePath("c"), EncodeNodeInfo(Info("c", 4003)));
  loop_.RunUntilIdle();
  EXPECT_EQ(a->ids(), (Ids{"a", "b", "c"}));
  zk_.Put(NodePath("c"), EncodeNodeInfo(Info("c", 4999)));
  loop_.RunUntilIdle();
  ASSERT_EQ(a->registry->members().size(), 3u);
  EXPECT_EQ(a->registry->members()[2], Info("c", 4999));
  zk_.Put(NodePath("garbage"), "{not json");  // skipped
  zk_.Remove(NodePath("c"));
  loop_.RunUntilIdle();
  EXPECT_EQ(a->ids(), (Ids{"a", "b"}));
  zk_.Put(NodePath("d"), EncodeNodeInfo(Info("d", 4004)));
  loop_.RunUntilIdle();
  EXPECT_EQ(a->ids(), (Ids{"a", "b", "d"}));
  EXPECT_EQ(b->ids(), (Ids{"a", "b", "d"}));
}

TEST_F(RegistryStateTest, ConnectionLossSuspendsAndKeepsMembersAndSession) {
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  const int64_t session = a->session();
  const size_t from = a->updates.size();

  zk_.Disconnect(session);
  loop_.RunUntilIdle();
  EXPECT_EQ(a->registry->state(), SessionState::kSuspended);
  EXPECT_EQ(a->registry->members().size(), 2u) << "members kept while suspended";
  EXPECT_EQ(a->updates.size(), from) << "nothing to report while suspended";

  // b leaves meanwhile; a hears of it only after the reconnect.
  b->Unregister();
  loop_.RunUntilIdle();
  EXPECT_EQ(b->unregistered, 1);
  EXPECT_EQ(a->ids(), (Ids{"a", "b"}));
  loop_.Advance(milliseconds(kTimeoutMs / 2));
  zk_.Reconnect(session);
  loop_.RunUntilIdle();
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_EQ(a->session(), session);
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(a->ids(), (Ids{"a"}));
  EXPECT_EQ(a->states, (std::vector<SessionState>{SessionState::kConnected,
                                                  SessionState::kSuspended,
                                                  SessionState::kConnected}));
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("a")), 1);
  // The session timer of the outage was cancelled by the reconnect.
  loop_.Advance(milliseconds(2 * kTimeoutMs));
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_EQ(a->session(), session);
  EXPECT_EQ(zk_.open_keepers(), 2u);
}

TEST_F(RegistryStateTest, NoConnectionForTheSessionTimeoutStartsANewSessionAndWaitsForTheOldZnode) {
  // Curator TN12: the old session may still live in ZooKeeper (it cannot
  // tell us), and with it our old znode: wait for it, then register.
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  const int64_t old_session = a->session();
  const size_t from = a->updates.size();
  zk_.Disconnect(old_session);
  loop_.Advance(milliseconds(kTimeoutMs - 1));
  EXPECT_EQ(a->registry->state(), SessionState::kSuspended);
  EXPECT_EQ(a->session(), old_session);

  loop_.Advance(milliseconds(1));
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_NE(a->session(), old_session);
  EXPECT_TRUE(zk_.SessionAlive(old_session));
  EXPECT_EQ(Owner("a"), old_session);
  EXPECT_FALSE(a->registry->registered());
  EXPECT_EQ(a->states, (std::vector<SessionState>{
                           SessionState::kConnected, SessionState::kSuspended,
                           SessionState::kExpired, SessionState::kConnected}));
  EXPECT_EQ(a->registry->members().size(), 2u);
  EXPECT_GE(a->MinMembersSince(from), 2u) << "peers dropped because ZooKeeper was unreachable";

  // Waiting is not polling: a watch tells when the stale znode goes.
  const int creates = zk_.Requests(Op::kCreate, NodePath("a"));
  const int reads = zk_.Requests(Op::kGetData, NodePath("a"));
  EXPECT_EQ(creates, 2);
  loop_.Advance(milliseconds(10 * kTimeoutMs));
  EXPECT_FALSE(a->registry->registered());
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("a")), creates);
  EXPECT_EQ(zk_.Requests(Op::kGetData, NodePath("a")), reads);
  EXPECT_TRUE(zk_.deletes().empty()) << "not stolen without steal_stale_znode";

  zk_.ExpireSession(old_session);
  loop_.RunUntilIdle();
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(Owner("a"), a->session());
  EXPECT_EQ(a->register_results, kRegisteredOnce);
  EXPECT_EQ(a->ids(), (Ids{"a", "b"}));
  EXPECT_EQ(b->ids(), (Ids{"a", "b"}));
}

TEST_F(RegistryStateTest, SessionExpiryRecreatesSessionZnodeAndWatch) {
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  const int64_t old_session = a->session();
  const size_t from = a->updates.size();

  zk_.ExpireSession(old_session);
  loop_.RunUntilIdle();
  EXPECT_NE(a->session(), old_session);
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(Owner("a"), a->session());
  EXPECT_EQ(a->register_results, kRegisteredOnce) << "Register's done runs once";
  EXPECT_EQ(a->states.back(), SessionState::kConnected);
  EXPECT_NE(std::find(a->states.begin(), a->states.end(), SessionState::kExpired),
            a->states.end());
  EXPECT_GE(a->MinMembersSince(from), 2u);
  EXPECT_EQ(b->ids(), (Ids{"a", "b"}));
  // The children watch was armed again on the new session.
  zk_.Put(NodePath("c"), EncodeNodeInfo(Info("c", 4003)));
  loop_.RunUntilIdle();
  EXPECT_EQ(a->ids(), (Ids{"a", "b", "c"}));
}

TEST_F(RegistryStateTest, ExpiryDuringAnOutageIsLearntOnReconnect) {
  auto a = StartNode("a", 4001);
  const int64_t old_session = a->session();
  zk_.Disconnect(old_session);
  zk_.ExpireSession(old_session);
  loop_.Advance(milliseconds(kTimeoutMs / 2));
  EXPECT_EQ(a->registry->state(), SessionState::kSuspended);
  zk_.Reconnect(old_session);
  loop_.RunUntilIdle();
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_NE(a->session(), old_session);
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(Owner("a"), a->session());
}

TEST_F(RegistryStateTest, StaleZnodeOfOurPreviousProcessIsWaitedForByDefault) {
  const int64_t stale = zk_.AddStaleEphemeral(NodePath("s"), EncodeNodeInfo(Info("s", 4001)));
  auto r = StartNode("s", 4001);
  loop_.Advance(milliseconds(10 * kTimeoutMs));
  EXPECT_FALSE(r->registry->registered());
  EXPECT_TRUE(r->register_results.empty());
  EXPECT_EQ(Owner("s"), stale);
  EXPECT_EQ(r->ids(), (Ids{"s"})) << "the stale znode is a member until it goes";
  EXPECT_TRUE(zk_.deletes().empty());

  zk_.ExpireSession(stale);
  loop_.RunUntilIdle();
  EXPECT_TRUE(r->registry->registered());
  EXPECT_EQ(r->register_results, kRegisteredOnce);
  EXPECT_EQ(Owner("s"), r->session());
}

TEST_F(RegistryStateTest, StaleZnodeWithOurPeerUrlIsStolenByVersion) {
  const int64_t stale = zk_.AddStaleEphemeral(NodePath("s"), EncodeNodeInfo(Info("s", 4001)));
  RegistryOptions steal = Options();
  steal.steal_stale_znode = true;
  auto r = StartNode("s", 4001, steal);
  EXPECT_TRUE(r->registry->registered());
  EXPECT_EQ(r->register_results, kRegisteredOnce);
  EXPECT_EQ(Owner("s"), r->session());
  const std::vector<std::pair<std::string, int32_t>> by_version = {{NodePath("s"), 0}};
  EXPECT_EQ(zk_.deletes(), by_version) << "deleted by its version, never -1";
  // When the old session ends later, our znode stays.
  EXPECT_TRUE(zk_.SessionAlive(stale));
  zk_.ExpireSession(stale);
  loop_.RunUntilIdle();
  EXPECT_EQ(Owner("s"), r->session());
  EXPECT_TRUE(r->registry->registered());
}

TEST_F(RegistryStateTest, StaleZnodeOfAnotherAddressIsNotStolen) {
  // Same id, another peer_url: maybe a live duplicate. Wait, steal or not.
  const int64_t stale = zk_.AddStaleEphemeral(NodePath("s"), EncodeNodeInfo(Info("s", 4002)));
  RegistryOptions steal = Options();
  steal.steal_stale_znode = true;
  auto r = StartNode("s", 4001, steal);
  loop_.Advance(milliseconds(10 * kTimeoutMs));
  EXPECT_FALSE(r->registry->registered());
  EXPECT_TRUE(zk_.deletes().empty());
  EXPECT_EQ(Owner("s"), stale);
  zk_.ExpireSession(stale);
  loop_.RunUntilIdle();
  EXPECT_TRUE(r->registry->registered());
  EXPECT_EQ(Owner("s"), r->session());
}

TEST_F(RegistryStateTest, StealThatLosesToAVersionChangeLooksAgain) {
  zk_.AddStaleEphemeral(NodePath("s"), EncodeNodeInfo(Info("s", 4001)));
  zk_.FailNext(Op::kDelete, NodePath("s"), KeeperRc::kBadVersion);
  RegistryOptions steal = Options();
  steal.steal_stale_znode = true;
  auto r = StartNode("s", 4001, steal);
  EXPECT_TRUE(r->registry->registered());
  EXPECT_EQ(zk_.deletes().size(), 2u);
  EXPECT_EQ(Owner("s"), r->session());
}

TEST_F(RegistryStateTest, CreateAppliedDespiteAConnectionLossIsRecognisedAsOurs) {
  // ZOOKEEPER.md: a request that failed with ZCONNECTIONLOSS may have been
  // applied. The retry finds the znode, owned by our own session.
  zk_.FailNext(Op::kCreate, NodePath("a"), KeeperRc::kConnectionLoss, /*applied=*/true);
  auto a = StartNode("a", 4001);
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(a->register_results, kRegisteredOnce);
  EXPECT_EQ(Owner("a"), a->session());
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("a")), 2);
  EXPECT_TRUE(zk_.deletes().empty()) << "our own znode must not be deleted";
  EXPECT_EQ(a->ids(), (Ids{"a"}));
  // And it is ours for Unregister, which deletes it by its version.
  a->Unregister();
  loop_.RunUntilIdle();
  EXPECT_EQ(a->unregistered, 1);
  EXPECT_FALSE(zk_.Get(NodePath("a")).has_value());
}

TEST_F(RegistryStateTest, CreateThatFailsForGoodIsReported) {
  zk_.FailNext(Op::kCreate, NodePath("a"), KeeperRc::kNoAuth);
  auto a = StartNode("a", 4001);
  ASSERT_EQ(a->register_results.size(), 1u);
  EXPECT_FALSE(a->register_results[0].first);
  EXPECT_NE(a->register_results[0].second.find("not authenticated"), std::string::npos)
      << a->register_results[0].second;
  EXPECT_FALSE(a->registry->registered());
  loop_.Advance(milliseconds(10 * kTimeoutMs));
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("a")), 1) << "not retried";
  EXPECT_EQ(a->updates.size(), 1u) << "members are still read";
  EXPECT_TRUE(a->ids().empty());
}

TEST_F(RegistryStateTest, ReadsThatFailWithAConnectionLossAreRetried) {
  zk_.Put(NodePath("x"), EncodeNodeInfo(Info("x", 4009)));
  zk_.FailNext(Op::kGetChildren, kNodesPath, KeeperRc::kConnectionLoss);
  zk_.FailNext(Op::kGetData, NodePath("x"), KeeperRc::kConnectionLoss);
  auto a = StartNode("", 0);
  EXPECT_EQ(a->ids(), (Ids{"x"}));
  EXPECT_EQ(a->updates.size(), 1u) << "only complete lists are reported";
  EXPECT_EQ(zk_.Requests(Op::kGetChildren, kNodesPath), 2);
  EXPECT_EQ(zk_.Requests(Op::kGetData, NodePath("x")), 2);
}

TEST_F(RegistryStateTest, SyncThatFailsWithAConnectionLossIsRetriedBeforeAnyWrite) {
  zk_.FailNext(Op::kSync, "/", KeeperRc::kConnectionLoss);
  auto a = StartNode("a", 4001);
  EXPECT_EQ(zk_.Requests(Op::kSync, "/"), 2);
  EXPECT_TRUE(a->registry->registered());
}

TEST_F(RegistryStateTest, OurZnodeDeletedBySomeoneElseIsRecreated) {
  auto a = StartNode("a", 4001);
  ASSERT_TRUE(zk_.Remove(NodePath("a")));
  loop_.RunUntilIdle();
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(Owner("a"), a->session());
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("a")), 2);
  EXPECT_EQ(a->register_results, kRegisteredOnce);
}

TEST_F(RegistryStateTest, UnregisterDeletesByVersionKeepsWatchingAndStopsRecreating) {
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  const int64_t b_session = b->session();
  b->Unregister();
  loop_.RunUntilIdle();
  EXPECT_EQ(b->unregistered, 1);
  EXPECT_FALSE(b->registry->registered());
  const std::vector<std::pair<std::string, int32_t>> by_version = {{NodePath("b"), 0}};
  EXPECT_EQ(zk_.deletes(), by_version);
  EXPECT_EQ(a->ids(), (Ids{"a"}));
  EXPECT_EQ(b->ids(), (Ids{"a"}));
  zk_.Put(NodePath("c"), EncodeNodeInfo(Info("c", 4003)));
  loop_.RunUntilIdle();
  EXPECT_EQ(b->ids(), (Ids{"a", "c"}));
  // A new session does not bring it back.
  zk_.ExpireSession(b_session);
  loop_.RunUntilIdle();
  EXPECT_NE(b->session(), b_session);
  EXPECT_FALSE(zk_.Get(NodePath("b")).has_value());
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("b")), 1);
}

TEST_F(RegistryStateTest, RegisterAndUnregisterDuringAnOutageGoOutAfterTheReconnect) {
  auto d = StartNode("", 0);
  auto e = StartNode("e", 4005);
  zk_.SetReachable(false);
  loop_.RunUntilIdle();
  Register(*d, Info("d", 4004));
  e->Unregister();
  loop_.Advance(milliseconds(kTimeoutMs / 2));
  EXPECT_EQ(e->unregistered, 0) << "the delete has not been confirmed";
  EXPECT_TRUE(d->register_results.empty());
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("d")), 0) << "nothing is sent while disconnected";
  zk_.SetReachable(true);
  loop_.RunUntilIdle();
  EXPECT_EQ(d->register_results, kRegisteredOnce);
  EXPECT_EQ(e->unregistered, 1);
  EXPECT_EQ(Owner("d"), d->session());
  EXPECT_FALSE(zk_.Get(NodePath("e")).has_value());
  EXPECT_EQ(d->ids(), (Ids{"d"}));
}

TEST_F(RegistryStateTest, UnregisterWithoutZooKeeperFinishesWithinTheSessionTimeout) {
  auto a = StartNode("a", 4001);
  const int64_t session = a->session();
  zk_.Disconnect(session);
  loop_.RunUntilIdle();
  a->Unregister();
  loop_.Advance(milliseconds(kTimeoutMs - 1));
  EXPECT_EQ(a->unregistered, 0);
  loop_.Advance(milliseconds(1));
  EXPECT_EQ(a->unregistered, 1) << "a graceful leave must not hang on ZooKeeper";
  // The znode goes with the old session; the new one does not re-create it.
  EXPECT_EQ(Owner("a"), session);
  zk_.ExpireSession(session);
  loop_.RunUntilIdle();
  EXPECT_FALSE(zk_.Get(NodePath("a")).has_value());
  EXPECT_EQ(zk_.Requests(Op::kCreate, NodePath("a")), 1);
}

TEST_F(RegistryStateTest, DigestAclKeepsOthersOutAndCredentialsFollowNewSessions) {
  RemoveTree();
  RegistryOptions secure = Options();
  secure.credentials = "mesh:pw";
  auto a = StartNode("a", 4001, secure);
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(zk_.Get(kNodesPath)->acl_credentials, "mesh:pw");
  EXPECT_EQ(zk_.Get(NodePath("a"))->acl_credentials, "mesh:pw");
  // Without credentials: may read, may not register.
  auto c = StartNode("c", 4003);
  ASSERT_EQ(c->register_results.size(), 1u);
  EXPECT_FALSE(c->register_results[0].first);
  EXPECT_NE(c->register_results[0].second.find("not authenticated"), std::string::npos)
      << c->register_results[0].second;
  EXPECT_EQ(c->ids(), (Ids{"a"}));
  // A new session must add the credentials again to re-register.
  const int64_t old_session = a->session();
  zk_.ExpireSession(old_session);
  loop_.RunUntilIdle();
  EXPECT_NE(a->session(), old_session);
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(Owner("a"), a->session());
  EXPECT_EQ(zk_.Requests(Op::kAddAuth, "digest"), 2);
}

TEST_F(RegistryStateTest, NodesDirectoryThatMayNotBeCreatedIsWaitedFor) {
  RemoveTree();
  zk_.Put("/zmesh/t", "");
  zk_.Protect("/zmesh/t", "admin:pw");
  auto a = StartNode("a", 4001);
  ASSERT_EQ(a->register_results.size(), 1u);
  EXPECT_FALSE(a->register_results[0].first);
  EXPECT_TRUE(a->ids().empty());
  // Somebody who may creates it; the exists watch notices.
  zk_.Put(kNodesPath, "");
  zk_.Put(NodePath("x"), EncodeNodeInfo(Info("x", 4009)));
  loop_.RunUntilIdle();
  EXPECT_EQ(a->ids(), (Ids{"x"}));
}

TEST_F(RegistryStateTest, AFailedOpenIsRetriedAfterADelay) {
  int opened = 0;
  KeeperFactory real = zk_.Factory(loop_.executor(), kTimeoutMs);
  KeeperFactory flaky = [&](Keeper::Watcher watcher) -> std::unique_ptr<Keeper> {
    if (opened++ == 0) return nullptr;
    return real(std::move(watcher));
  };
  auto a = NewNode(Options(), flaky);
  Start(*a, "a", 4001);
  EXPECT_EQ(opened, 1);
  EXPECT_FALSE(a->registry->registered());
  loop_.Advance(milliseconds(999));
  EXPECT_EQ(opened, 1);
  loop_.Advance(milliseconds(1));
  EXPECT_EQ(opened, 2);
  EXPECT_TRUE(a->registry->registered());
}

TEST_F(RegistryStateTest, NothingIsDeliveredAfterStop) {
  auto a = StartNode("a", 4001);
  const int64_t stale = zk_.AddStaleEphemeral(NodePath("s"), EncodeNodeInfo(Info("s", 4002)));
  auto s = StartNode("s", 4002);  // waits for the stale znode
  loop_.RunUntilIdle();
  const size_t updates = s->updates.size();
  const size_t states = s->states.size();
  zk_.Put(NodePath("c"), EncodeNodeInfo(Info("c", 4003)));  // its event is queued, not run
  s->registry->Stop();
  zk_.ExpireSession(stale);
  loop_.Advance(milliseconds(10 * kTimeoutMs));
  EXPECT_EQ(s->updates.size(), updates);
  EXPECT_EQ(s->states.size(), states);
  EXPECT_TRUE(s->register_results.empty()) << "a pending Register's done is dropped by Stop";
  EXPECT_EQ(zk_.open_keepers(), 1u);
  // Stop closes the session: a's znode goes at once.
  a->registry->Stop();
  loop_.RunUntilIdle();
  EXPECT_FALSE(zk_.Get(NodePath("a")).has_value());
  EXPECT_EQ(zk_.open_keepers(), 0u);
}

TEST_F(RegistryStateTest, CallbacksRunAsTasksOfTheirOwn) {
  auto a = NewNode(Options());
  bool inside = false;
  bool ran_inside = false;
  a->registry->Start({});
  inside = true;
  a->registry->Register(Info("a", 4001), [&](bool, const std::string&) { ran_inside = inside; });
  a->registry->Register(Info("a", 4001), [&](bool, const std::string&) { ran_inside = inside; });
  inside = false;
  loop_.RunUntilIdle();
  EXPECT_FALSE(ran_inside);
  EXPECT_TRUE(a->registry->registered());
}

#if !defined(NDEBUG)
TEST_F(RegistryStateTest, UseOffTheOwnerThreadIsCaught) {
  auto a = StartNode("a", 4001);
  EXPECT_DEATH(std::thread([&] { a->registry->Unregister(nullptr); }).join(), "owner thread");
}
#endif

}  // namespace
}  // namespace zmesh::zk

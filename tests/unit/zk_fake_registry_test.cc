// FakeZooKeeper + FakeRegistry: the in-memory registry other modules' unit
// tests use. These tests pin down that it behaves like the real one where a
// Registry user can tell: callbacks only through the executor, membership,
// expiry and re-registration, suspension keeping the last members, stale
// znodes.

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "zk/testing/fake_registry.h"
#include "zk/testing/fake_zookeeper.h"

namespace zmesh::zk {
namespace {

// A deterministic owner "thread": tasks queue up until the test runs them.
class ManualExecutor {
 public:
  Executor executor() {
    return [this](std::function<void()> task) { tasks_.push_back(std::move(task)); };
  }
  // Runs tasks, including ones posted meanwhile, until none is left.
  int RunAll() {
    int ran = 0;
    while (!tasks_.empty() && ran < 100000) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      task();
      ++ran;
    }
    return ran;
  }
  size_t pending() const { return tasks_.size(); }

 private:
  std::deque<std::function<void()>> tasks_;
};

NodeInfo Info(const std::string& id, int port) {
  return NodeInfo{id, "nats://127.0.0.1:" + std::to_string(port),
                  "127.0.0.1:" + std::to_string(port + 1000), "test", 1000 + port};
}

// One simulated mesh node and everything its callbacks reported.
struct Node {
  std::unique_ptr<FakeRegistry> registry;
  std::vector<std::vector<NodeInfo>> member_updates;
  std::vector<SessionState> states;
  std::vector<std::pair<bool, std::string>> register_results;

  std::vector<std::string> ids() const {
    std::vector<std::string> ids;
    if (!member_updates.empty()) {
      for (const NodeInfo& n : member_updates.back()) ids.push_back(n.id);
    }
    return ids;
  }
};

class FakeRegistryTest : public ::testing::Test {
 protected:
  std::unique_ptr<Node> MakeNode(RegistryOptions options = {}) {
    auto node = std::make_unique<Node>();
    options.root = "/zmesh/test";
    node->registry = std::make_unique<FakeRegistry>(zk_, options, loop_.executor());
    Node* raw = node.get();
    node->registry->Start(Registry::Listener{
        [raw](const std::vector<NodeInfo>& members) { raw->member_updates.push_back(members); },
        [raw](SessionState state) { raw->states.push_back(state); }});
    return node;
  }

  void Register(Node& node, const NodeInfo& info) {
    Node* raw = &node;
    node.registry->Register(info, [raw](bool ok, const std::string& error) {
      raw->register_results.emplace_back(ok, error);
    });
  }

  std::unique_ptr<Node> StartRegistered(const std::string& id, int port,
                                        RegistryOptions options = {}) {
    auto node = MakeNode(options);
    Register(*node, Info(id, port));
    loop_.RunAll();
    return node;
  }

  std::shared_ptr<FakeZooKeeper> zk_ = std::make_shared<FakeZooKeeper>();
  ManualExecutor loop_;
};

using Ids = std::vector<std::string>;

TEST_F(FakeRegistryTest, EveryNodeSeesAllRegisteredMembers) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  auto c = StartRegistered("c", 4003);
  loop_.RunAll();
  for (Node* node : {a.get(), b.get(), c.get()}) {
    EXPECT_EQ(node->ids(), (Ids{"a", "b", "c"}));
    EXPECT_EQ(node->registry->members(), node->member_updates.back());
    EXPECT_TRUE(node->registry->registered());
    EXPECT_EQ(node->registry->state(), SessionState::kConnected);
    ASSERT_EQ(node->register_results.size(), 1u);
    EXPECT_TRUE(node->register_results[0].first);
  }
  EXPECT_EQ(a->registry->members()[0], Info("a", 4001));
  std::optional<FakeZooKeeper::Znode> znode = zk_->Get("/zmesh/test/nodes/b");
  ASSERT_TRUE(znode.has_value());
  EXPECT_EQ(znode->ephemeral_owner, b->registry->session_id());
  EXPECT_EQ(DecodeNodeInfo(znode->data), Info("b", 4002));
}

TEST_F(FakeRegistryTest, CallbacksRunOnlyThroughTheExecutor) {
  auto a = MakeNode();
  Register(*a, Info("a", 4001));
  // Nothing ran inside Start() or Register().
  EXPECT_TRUE(a->states.empty());
  EXPECT_TRUE(a->member_updates.empty());
  EXPECT_TRUE(a->register_results.empty());
  EXPECT_GT(loop_.RunAll(), 0);
  EXPECT_EQ(a->states, std::vector<SessionState>{SessionState::kConnected});
  EXPECT_EQ(a->register_results.size(), 1u);
  EXPECT_EQ(a->ids(), Ids{"a"});
}

TEST_F(FakeRegistryTest, FirstMemberListIsDeliveredEvenWhenEmpty) {
  auto a = MakeNode();
  loop_.RunAll();
  ASSERT_EQ(a->member_updates.size(), 1u);
  EXPECT_TRUE(a->member_updates[0].empty());
}

TEST_F(FakeRegistryTest, StopRemovesTheMemberAtOnce) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  loop_.RunAll();
  b->registry->Stop();
  loop_.RunAll();
  EXPECT_EQ(a->ids(), Ids{"a"});
  EXPECT_FALSE(zk_->Get("/zmesh/test/nodes/b").has_value());
  const size_t updates = b->member_updates.size();
  zk_->Delete("/zmesh/test/nodes/a");
  loop_.RunAll();
  EXPECT_EQ(b->member_updates.size(), updates) << "no callback after Stop()";
}

TEST_F(FakeRegistryTest, UnregisterDeletesTheZnodeAndRunsDone) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  loop_.RunAll();
  bool done = false;
  a->registry->Unregister([&] { done = true; });
  EXPECT_FALSE(done);
  loop_.RunAll();
  EXPECT_TRUE(done);
  EXPECT_FALSE(a->registry->registered());
  EXPECT_EQ(b->ids(), Ids{"b"});
  EXPECT_EQ(a->ids(), Ids{"b"}) << "still watching after leaving";
}

TEST_F(FakeRegistryTest, KilledSessionExpiresAndReRegisters) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  loop_.RunAll();
  const int64_t old_session = a->registry->session_id();
  b->member_updates.clear();

  zk_->KillSession(old_session);
  loop_.RunAll();

  EXPECT_EQ(a->states, (std::vector<SessionState>{SessionState::kConnected, SessionState::kExpired,
                                                  SessionState::kConnected}));
  EXPECT_NE(a->registry->session_id(), old_session);
  EXPECT_TRUE(a->registry->registered());
  ASSERT_TRUE(zk_->Get("/zmesh/test/nodes/a").has_value());
  EXPECT_EQ(zk_->Get("/zmesh/test/nodes/a")->ephemeral_owner, a->registry->session_id());
  EXPECT_EQ(a->register_results.size(), 1u) << "done runs once";
  // Whether b saw a leave depends on how its notifications coalesced (as
  // with real watches); in the end it sees a again.
  EXPECT_EQ(b->registry->members().size(), 2u);
}

TEST_F(FakeRegistryTest, SuspendedRegistryKeepsTheLastMembers) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  auto c = StartRegistered("c", 4003);
  loop_.RunAll();
  const int64_t session = a->registry->session_id();
  const size_t updates = a->member_updates.size();

  zk_->Disconnect(session);
  loop_.RunAll();
  EXPECT_EQ(a->registry->state(), SessionState::kSuspended);
  EXPECT_EQ(a->states.back(), SessionState::kSuspended);

  b->registry->Stop();
  loop_.RunAll();
  EXPECT_EQ(c->ids(), (Ids{"a", "c"}));
  EXPECT_EQ(a->member_updates.size(), updates) << "no member change while suspended";
  EXPECT_EQ(a->registry->members().size(), 3u);
  EXPECT_TRUE(a->registry->registered());

  zk_->Reconnect(session);
  loop_.RunAll();
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_EQ(a->registry->session_id(), session) << "same session after reconnect";
  EXPECT_EQ(a->ids(), (Ids{"a", "c"}));
  EXPECT_EQ(std::count(a->states.begin(), a->states.end(), SessionState::kExpired), 0);
}

TEST_F(FakeRegistryTest, SessionKilledWhileDisconnectedExpiresOnReconnect) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  loop_.RunAll();
  const int64_t session = a->registry->session_id();
  zk_->Disconnect(session);
  zk_->KillSession(session);
  loop_.RunAll();
  EXPECT_EQ(a->registry->state(), SessionState::kSuspended) << "cannot learn it while cut off";
  EXPECT_EQ(a->ids(), (Ids{"a", "b"}));
  EXPECT_EQ(b->ids(), Ids{"b"});

  zk_->Reconnect(session);
  loop_.RunAll();
  EXPECT_EQ(a->states, (std::vector<SessionState>{SessionState::kConnected,
                                                  SessionState::kSuspended, SessionState::kExpired,
                                                  SessionState::kConnected}));
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(b->ids(), (Ids{"a", "b"}));
}

TEST_F(FakeRegistryTest, ZooKeeperDownForEveryone) {
  auto a = StartRegistered("a", 4001);
  auto b = StartRegistered("b", 4002);
  loop_.RunAll();
  zk_->DisconnectAll();
  loop_.RunAll();
  EXPECT_EQ(a->registry->state(), SessionState::kSuspended);
  EXPECT_EQ(b->registry->state(), SessionState::kSuspended);
  EXPECT_EQ(a->ids(), (Ids{"a", "b"}));
  zk_->ReconnectAll();
  loop_.RunAll();
  EXPECT_EQ(a->registry->state(), SessionState::kConnected);
  EXPECT_EQ(b->registry->state(), SessionState::kConnected);
}

TEST_F(FakeRegistryTest, StaleZnodeIsWaitedForByDefault) {
  const int64_t stale =
      zk_->InjectStaleZnode("/zmesh/test/nodes/a", EncodeNodeInfo(Info("a", 4001)));
  auto a = StartRegistered("a", 4001);
  loop_.RunAll();
  EXPECT_FALSE(a->registry->registered());
  EXPECT_TRUE(a->register_results.empty());
  EXPECT_EQ(zk_->Get("/zmesh/test/nodes/a")->ephemeral_owner, stale);

  zk_->KillSession(stale);  // what ZooKeeper does a session timeout later
  loop_.RunAll();
  EXPECT_TRUE(a->registry->registered());
  ASSERT_EQ(a->register_results.size(), 1u);
  EXPECT_TRUE(a->register_results[0].first);
  EXPECT_EQ(zk_->Get("/zmesh/test/nodes/a")->ephemeral_owner, a->registry->session_id());
}

TEST_F(FakeRegistryTest, StaleZnodeWithOurPeerUrlIsStolen) {
  zk_->InjectStaleZnode("/zmesh/test/nodes/a", EncodeNodeInfo(Info("a", 4001)));
  RegistryOptions options;
  options.steal_stale_znode = true;
  auto a = StartRegistered("a", 4001, options);
  loop_.RunAll();
  EXPECT_TRUE(a->registry->registered());
  EXPECT_EQ(zk_->Get("/zmesh/test/nodes/a")->ephemeral_owner, a->registry->session_id());
}

TEST_F(FakeRegistryTest, StaleZnodeWithAnotherPeerUrlIsNotStolen) {
  const int64_t stale =
      zk_->InjectStaleZnode("/zmesh/test/nodes/a", EncodeNodeInfo(Info("a", 5001)));
  RegistryOptions options;
  options.steal_stale_znode = true;
  auto a = StartRegistered("a", 4001, options);
  loop_.RunAll();
  EXPECT_FALSE(a->registry->registered());
  EXPECT_EQ(zk_->Get("/zmesh/test/nodes/a")->ephemeral_owner, stale);
}

TEST_F(FakeRegistryTest, UndecodableMembersAreSkipped) {
  zk_->Put("/zmesh/test/nodes/garbage", "{not json");
  auto a = StartRegistered("a", 4001);
  loop_.RunAll();
  EXPECT_EQ(a->ids(), Ids{"a"});
}

TEST_F(FakeRegistryTest, ZnodeDeletedBySomeoneElseIsRecreated) {
  auto a = StartRegistered("a", 4001);
  loop_.RunAll();
  ASSERT_TRUE(zk_->Delete("/zmesh/test/nodes/a"));
  loop_.RunAll();
  EXPECT_TRUE(a->registry->registered());
  EXPECT_TRUE(zk_->Get("/zmesh/test/nodes/a").has_value());
}

TEST_F(FakeRegistryTest, RegisterTwiceFails) {
  auto a = StartRegistered("a", 4001);
  Register(*a, Info("a", 4001));
  loop_.RunAll();
  ASSERT_EQ(a->register_results.size(), 2u);
  EXPECT_FALSE(a->register_results[1].first);
}

TEST(FakeRegistryInlineTest, WorksWithAnInlineExecutor) {
  auto zk = std::make_shared<FakeZooKeeper>();
  Executor inline_executor = [](std::function<void()> task) { task(); };
  RegistryOptions options;
  options.root = "/inline";
  // Declared before the registries: b's destructor still notifies a.
  std::vector<NodeInfo> seen_by_a;
  FakeRegistry a(zk, options, inline_executor);
  FakeRegistry b(zk, options, inline_executor);
  a.Start({[&](const std::vector<NodeInfo>& m) { seen_by_a = m; }, nullptr});
  b.Start({});
  bool registered = false;
  a.Register(Info("a", 1), [&](bool ok, const std::string&) { registered = ok; });
  b.Register(Info("b", 2), [](bool, const std::string&) {});
  EXPECT_TRUE(registered);
  EXPECT_EQ(seen_by_a.size(), 2u);
  zk->KillSession(b.session_id());
  EXPECT_TRUE(b.registered());
  EXPECT_EQ(seen_by_a.size(), 2u);
}

}  // namespace
}  // namespace zmesh::zk

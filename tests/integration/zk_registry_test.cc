// ZooKeeperRegistry against a real, private ZooKeeper (tests/support/
// zookeeper_server.h): registration and the children watch, leaving by Stop,
// by Unregister and by dying, ZooKeeper restarts short and long (Curator TN12),
// forced session expiry, stale znodes of a previous process, digest ACLs, and a
// leader change in a 3-server ensemble.
//
// Each registry runs on its own TestLoop thread, as in the server; every
// callback asserts that it runs there. A test that cannot start ZooKeeper
// fails. Session timeout 2000 ms (tickTime 500), so expiries take seconds.

#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/zk_test_loop.h"
#include "tests/support/process.h"
#include "tests/support/wait_for.h"
#include "tests/support/zookeeper_server.h"
#include "zk/zookeeper_registry.h"

#if defined(__SANITIZE_THREAD__)
// Races in third-party code that TSan reports in every run; ours stay checked.
// - vsprintf on top: the (stripped) ZooKeeper C client sprintf()s endpoint
//   names into a static buffer when two handles log at once (garbled log text
//   at worst). Matched on the top frame only: a module-wide suppression would
//   also hide races in our callbacks, which run on ZooKeeper's threads, and
//   called_from_lib would hide the library's mutexes. We never use sprintf.
// - tzset_internal: glog computes the GMT offset with mktime(), which takes
//   glibc's internal tzset lock that TSan cannot see.
extern "C" const char* __tsan_default_suppressions() {
  return "race_top:vsprintf\n"
         "race:tzset_internal\n";
}
#endif

namespace zmesh::testing {
namespace {

using std::chrono::milliseconds;
using zk::NodeInfo;
using zk::RegistryOptions;
using zk::SessionState;
using zk::ZooKeeperRegistry;
using Ids = std::vector<std::string>;
using Clock = std::chrono::steady_clock;

constexpr int kSessionTimeoutMs = 2000;
// ZooKeeper's ceiling: 20 ticks of the test server's 500 ms.
constexpr int kMaxSessionTimeoutMs = 10000;

long ElapsedMs(Clock::time_point since) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - since).count();
}

NodeInfo Info(const std::string& id, int port) {
  return NodeInfo{id, "nats://127.0.0.1:" + std::to_string(port),
                  "127.0.0.1:" + std::to_string(port + 1000), "test", 1000 + port};
}

// A plain C-client session for looking at and poking ZooKeeper from the test.
class RawZk {
 public:
  explicit RawZk(const std::string& connect, const clientid_t* session = nullptr) {
    zh_ = zookeeper_init(connect.c_str(), &RawZk::Watcher, kSessionTimeoutMs, session, this, 0);
  }
  ~RawZk() { Close(); }

  bool WaitConnected(milliseconds timeout = milliseconds(10000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return state_ == ZOO_CONNECTED_STATE; });
  }
  void Close() {
    if (zh_ != nullptr) zookeeper_close(zh_);
    zh_ = nullptr;
  }
  int AddAuth(const std::string& credentials) {
    std::promise<int> done;
    const int rc =
        zoo_add_auth(zh_, "digest", credentials.data(), static_cast<int>(credentials.size()),
                     [](int rc, const void* data) {
                       static_cast<std::promise<int>*>(const_cast<void*>(data))->set_value(rc);
                     },
                     &done);
    if (rc != ZOK) return rc;
    return done.get_future().get();
  }
  // Data and stat of `path`, or nullopt (with *rc) if it cannot be read.
  std::optional<std::pair<std::string, Stat>> Get(const std::string& path, int* rc = nullptr) {
    char buffer[4096];
    int len = sizeof(buffer);
    Stat stat{};
    const int r = zoo_get(zh_, path.c_str(), 0, buffer, &len, &stat);
    if (rc != nullptr) *rc = r;
    if (r != ZOK) return std::nullopt;
    return std::make_pair(std::string(buffer, len > 0 ? len : 0), stat);
  }
  int64_t Owner(const std::string& path) {
    auto node = Get(path);
    return node ? node->second.ephemeralOwner : -1;
  }
  int Create(const std::string& path, const std::string& data, int flags = 0) {
    return zoo_create(zh_, path.c_str(), data.data(), static_cast<int>(data.size()),
                      &ZOO_OPEN_ACL_UNSAFE, flags, nullptr, 0);
  }
  int Set(const std::string& path, const std::string& data) {
    return zoo_set(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), -1);
  }
  int Delete(const std::string& path, int version) {
    return zoo_delete(zh_, path.c_str(), version);
  }

 private:
  static void Watcher(zhandle_t*, int type, int state, const char*, void* ctx) {
    if (type != ZOO_SESSION_EVENT) return;
    auto* self = static_cast<RawZk*>(ctx);
    std::lock_guard<std::mutex> lock(self->mu_);
    self->state_ = state;
    self->cv_.notify_all();
  }

  zhandle_t* zh_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  int state_ = 0;
};

// One mesh node's registry on its own owner thread, with what its callbacks
// reported. Everything but `loop` is touched on the loop thread only.
struct Node {
  TestLoop loop;
  std::unique_ptr<ZooKeeperRegistry> registry;
  std::vector<std::vector<NodeInfo>> updates;
  std::vector<SessionState> states;
  std::optional<std::pair<bool, std::string>> register_result;

  ~Node() {
    loop.RunSync([&] { registry.reset(); });
  }
  Ids MemberIds() {
    return loop.RunSync([&] {
      Ids ids;
      for (const NodeInfo& n : registry->members()) ids.push_back(n.id);
      return ids;
    });
  }
  SessionState State() {
    return loop.RunSync([&] { return registry->state(); });
  }
  bool Registered() {
    return loop.RunSync([&] { return registry->registered(); });
  }
  int64_t SessionId() {
    return loop.RunSync([&] {
      auto session = registry->session();
      return session ? session->id : int64_t{0};
    });
  }
  std::vector<SessionState> States() {
    return loop.RunSync([&] { return states; });
  }
  // The fewest members any on_members callback reported since `from`.
  size_t MinMembersSince(size_t from) {
    return loop.RunSync([&] {
      size_t min = SIZE_MAX;
      for (size_t i = from; i < updates.size(); ++i) min = std::min(min, updates[i].size());
      return min;
    });
  }
  size_t UpdateCount() {
    return loop.RunSync([&] { return updates.size(); });
  }
  std::optional<std::pair<bool, std::string>> RegisterResult() {
    return loop.RunSync([&] { return register_result; });
  }
  void Stop() {
    loop.RunSync([&] { registry->Stop(); });
  }
};

class ZkRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    // No ZooKeeper is a failure, never a skip.
    ASSERT_TRUE(zk_.Start(&error)) << error;
    connect_ = zk_.connect_string();
    root_ = std::string("/zmesh/") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  RegistryOptions Options() const {
    RegistryOptions options;
    options.connect = connect_;
    options.root = root_;
    options.session_timeout_ms = kSessionTimeoutMs;
    return options;
  }

  std::string NodePath(const std::string& id) const { return root_ + "/nodes/" + id; }

  // Starts a registry; registers `id` unless it is empty.
  std::unique_ptr<Node> StartNode(const std::string& id, int port,
                                  std::optional<RegistryOptions> options = std::nullopt) {
    auto node = std::make_unique<Node>();
    Node* n = node.get();
    RegistryOptions opts = options.value_or(Options());
    n->loop.RunSync([&] {
      n->registry = std::make_unique<ZooKeeperRegistry>(opts, n->loop.executor());
      n->registry->Start(ZooKeeperRegistry::Listener{
          [n](const std::vector<NodeInfo>& members) {
            EXPECT_TRUE(n->loop.InLoop()) << "on_members off the owner thread";
            n->updates.push_back(members);
          },
          [n](SessionState state) {
            EXPECT_TRUE(n->loop.InLoop()) << "on_session off the owner thread";
            n->states.push_back(state);
          }});
      if (!id.empty()) {
        n->registry->Register(Info(id, port), [n](bool ok, const std::string& error) {
          EXPECT_TRUE(n->loop.InLoop()) << "Register done off the owner thread";
          n->register_result = std::make_pair(ok, error);
        });
      }
    });
    return node;
  }

  // A registry in a separate process (zk_registry_helper) that registers `id`;
  // returns once its znode exists.
  std::unique_ptr<Process> StartHelper(const std::string& id, int port,
                                       int session_timeout_ms = kSessionTimeoutMs) {
    const std::string bin =
        std::filesystem::read_symlink("/proc/self/exe").parent_path().string() +
        "/zk_registry_helper";
    const NodeInfo info = Info(id, port);
    auto helper = std::make_unique<Process>();
    std::string error;
    const std::string log = zk_.dir() + "/helper-" + id + ".log";
    EXPECT_TRUE(helper->Start({bin, connect_, root_, id, info.client_url, info.peer_url,
                               std::to_string(session_timeout_ms)},
                              log, &error))
        << error;
    RawZk raw(connect_);
    EXPECT_TRUE(raw.WaitConnected());
    EXPECT_TRUE(WaitFor(milliseconds(10000), [&] { return raw.Get(NodePath(id)).has_value(); }))
        << "helper did not register; its log:\n"
        << helper->ReadLog();
    return helper;
  }

  static bool WaitIds(Node& node, const Ids& ids, milliseconds timeout = milliseconds(10000)) {
    return WaitFor(timeout, [&] { return node.MemberIds() == ids; }, milliseconds(10));
  }

  ZooKeeperServer zk_;
  std::string connect_;
  std::string root_;
};

TEST_F(ZkRegistryTest, ThreeRegistriesRegisterAndWatch) {
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  auto c = StartNode("c", 4003);
  for (Node* node : {a.get(), b.get(), c.get()}) {
    EXPECT_TRUE(WaitIds(*node, {"a", "b", "c"})) << "saw " << ::testing::PrintToString(node->MemberIds());
    ASSERT_TRUE(node->RegisterResult().has_value());
    EXPECT_TRUE(node->RegisterResult()->first) << node->RegisterResult()->second;
    EXPECT_TRUE(node->Registered());
    EXPECT_EQ(node->State(), SessionState::kConnected);
    EXPECT_EQ(node->States().front(), SessionState::kConnected);
  }
  // The znode: ephemeral, owned by b's session, the JSON of SPEC §3.
  RawZk raw(connect_);
  ASSERT_TRUE(raw.WaitConnected());
  auto znode = raw.Get(NodePath("b"));
  ASSERT_TRUE(znode.has_value());
  EXPECT_EQ(znode->second.ephemeralOwner, b->SessionId());
  EXPECT_EQ(zk::DecodeNodeInfo(znode->first), Info("b", 4002));
  EXPECT_NE(znode->first.find("\"peer_url\":\"127.0.0.1:5002\""), std::string::npos) << znode->first;
  EXPECT_EQ(a->loop.RunSync([&] { return a->registry->members(); })[1], Info("b", 4002));

  // A child that is not a node description is skipped; the watch stays armed.
  ASSERT_EQ(raw.Create(root_ + "/nodes/garbage", "{not json"), ZOK);
  auto d = StartNode("d", 4004);
  for (Node* node : {a.get(), b.get(), c.get(), d.get()}) {
    EXPECT_TRUE(WaitIds(*node, {"a", "b", "c", "d"}));
  }
}

TEST_F(ZkRegistryTest, StoppedRegistryIsGoneLongBeforeItsSessionTimeout) {
  // A long session timeout, so that "gone" can only be zookeeper_close ending
  // the session, not its expiry, however slow the machine.
  RegistryOptions long_session = Options();
  long_session.session_timeout_ms = kMaxSessionTimeoutMs;
  auto a = StartNode("a", 4001, long_session);
  auto b = StartNode("b", 4002, long_session);
  ASSERT_TRUE(WaitIds(*a, {"a", "b"}));
  const auto start = Clock::now();
  b->Stop();  // zookeeper_close
  EXPECT_TRUE(WaitIds(*a, {"a"}, milliseconds(kMaxSessionTimeoutMs / 2)));
  LOG(INFO) << "b gone for a " << ElapsedMs(start) << " ms after Stop() was called";
}

TEST_F(ZkRegistryTest, UnregisterDeletesTheZnodeAndKeepsWatching) {
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  ASSERT_TRUE(WaitIds(*a, {"a", "b"}));
  std::atomic<bool> done{false};
  b->loop.RunSync([&] { b->registry->Unregister([&] { done = true; }); });
  EXPECT_TRUE(WaitFor(milliseconds(5000), [&] { return done.load(); }));
  EXPECT_FALSE(b->Registered());
  EXPECT_TRUE(WaitIds(*a, {"a"}));
  EXPECT_TRUE(WaitIds(*b, {"a"}));
  auto c = StartNode("c", 4003);
  EXPECT_TRUE(WaitIds(*b, {"a", "c"}));
}

TEST_F(ZkRegistryTest, DeadOwnerIsGoneAfterAboutTheSessionTimeout) {
  auto a = StartNode("a", 4001);
  auto helper = StartHelper("h", 4009);
  ASSERT_TRUE(WaitIds(*a, {"a", "h"}));
  ASSERT_TRUE(helper->Signal(SIGKILL));
  ASSERT_TRUE(helper->WaitExit(milliseconds(5000)).has_value());
  const auto start = Clock::now();
  // A closed TCP connection does not end a session: only its timeout does.
  EXPECT_TRUE(WaitIds(*a, {"a"}, milliseconds(2 * kSessionTimeoutMs + 3000)));
  const long ms = ElapsedMs(start);
  LOG(INFO) << "killed owner's znode gone after " << ms << " ms (session timeout "
            << kSessionTimeoutMs << " ms)";
  EXPECT_GE(ms, kSessionTimeoutMs / 2) << "gone too early for a session timeout";
}

TEST_F(ZkRegistryTest, ForcedSessionExpiryRecreatesSessionAndZnode) {
  auto observer = StartNode("o", 4001);
  auto victim = StartNode("v", 4002);
  ASSERT_TRUE(WaitIds(*observer, {"o", "v"}));
  ASSERT_TRUE(WaitIds(*victim, {"o", "v"}));
  const auto session =
      victim->loop.RunSync([&] { return victim->registry->session(); });
  ASSERT_TRUE(session.has_value());
  ASSERT_EQ(session->password.size(), sizeof(clientid_t::passwd));

  // ZOOKEEPER.md Part 2 (b): attach a second handle to the victim's session
  // and close it. The session ends, its ephemerals go at once.
  clientid_t id{};
  id.client_id = session->id;
  std::memcpy(id.passwd, session->password.data(), sizeof(id.passwd));
  auto expired = [&] {
    auto states = victim->States();
    return std::find(states.begin(), states.end(), SessionState::kExpired) != states.end();
  };
  // The server drops the victim's connection when the thief attaches; if the
  // victim reconnects first, the thief is no longer connected when it closes
  // and the session survives. Then try again.
  const auto start = Clock::now();
  for (int attempt = 1; attempt <= 3 && !expired(); ++attempt) {
    {
      RawZk thief(connect_, &id);
      ASSERT_TRUE(thief.WaitConnected());
    }
    if (WaitFor(milliseconds(2 * kSessionTimeoutMs), expired)) {
      LOG(INFO) << "victim saw kExpired " << ElapsedMs(start) << " ms after attempt " << attempt;
    }
  }
  ASSERT_TRUE(expired()) << "victim never saw its session expire";
  EXPECT_TRUE(WaitFor(milliseconds(10000), [&] {
    return victim->Registered() && victim->State() == SessionState::kConnected;
  }));
  const int64_t new_session = victim->SessionId();
  EXPECT_NE(new_session, session->id);
  RawZk raw(connect_);
  ASSERT_TRUE(raw.WaitConnected());
  EXPECT_EQ(raw.Owner(NodePath("v")), new_session);
  EXPECT_TRUE(WaitIds(*observer, {"o", "v"}));
  // The victim's children watch was re-armed on the new session.
  auto w = StartNode("w", 4003);
  EXPECT_TRUE(WaitIds(*victim, {"o", "v", "w"}));
  auto states = victim->States();
  EXPECT_EQ(states.back(), SessionState::kConnected);
}

TEST_F(ZkRegistryTest, ShortZooKeeperOutageSuspendsAndKeepsMembers) {
  auto a = StartNode("a", 4001);
  auto b = StartNode("b", 4002);
  auto d = StartNode("", 0);  // registers during the outage
  auto e = StartNode("e", 4005);  // unregisters during the outage
  ASSERT_TRUE(WaitIds(*a, {"a", "b", "e"}));
  ASSERT_TRUE(WaitIds(*b, {"a", "b", "e"}));
  const int64_t session = a->SessionId();
  const size_t from = a->UpdateCount();

  ASSERT_TRUE(zk_.Stop(SIGKILL));
  EXPECT_TRUE(WaitFor(milliseconds(5000), [&] { return a->State() == SessionState::kSuspended; }));
  EXPECT_EQ(a->MemberIds(), (Ids{"a", "b", "e"})) << "members kept while suspended";
  // Operations asked for while disconnected go out after the reconnect.
  ASSERT_TRUE(WaitFor(milliseconds(5000), [&] { return d->State() == SessionState::kSuspended; }));
  d->loop.RunSync([&] {
    d->registry->Register(Info("d", 4004), [d = d.get()](bool ok, const std::string& error) {
      d->register_result = std::make_pair(ok, error);
    });
  });
  std::atomic<bool> unregistered{false};
  e->loop.RunSync([&] { e->registry->Unregister([&] { unregistered = true; }); });
  std::string error;
  const auto start = Clock::now();
  ASSERT_TRUE(zk_.Start(&error)) << error;
  LOG(INFO) << "ZooKeeper restarted in " << ElapsedMs(start) << " ms";

  EXPECT_TRUE(WaitFor(milliseconds(15000), [&] {
    return a->State() == SessionState::kConnected && a->Registered() &&
           b->State() == SessionState::kConnected && b->Registered();
  }));
  EXPECT_TRUE(WaitFor(milliseconds(10000), [&] { return d->Registered(); }));
  EXPECT_TRUE(WaitFor(milliseconds(10000), [&] { return unregistered.load(); }));
  EXPECT_TRUE(WaitIds(*a, {"a", "b", "d"}));
  RawZk raw(connect_);
  ASSERT_TRUE(raw.WaitConnected());
  EXPECT_TRUE(WaitFor(milliseconds(10000), [&] {
    return raw.Owner(NodePath("a")) == a->SessionId() && raw.Owner(NodePath("b")) == b->SessionId();
  }));
  if (a->SessionId() == session) {
    LOG(INFO) << "same session after the restart (outage shorter than the session timeout)";
  }
  // The watch still fires.
  auto c = StartNode("c", 4003);
  EXPECT_TRUE(WaitIds(*a, {"a", "b", "c", "d"}));
  EXPECT_TRUE(WaitIds(*b, {"a", "b", "c", "d"}));
  EXPECT_GE(a->MinMembersSince(from), 2u) << "a reported fewer members during the outage";
}

TEST_F(ZkRegistryTest, LongOutageLosesTheSessionLocallyButKeepsMembers) {
  // Curator TN12: after the session timeout without a connection the session
  // counts as lost (kExpired) and a new one is made when ZooKeeper is back,
  // but peers are never dropped for it. a steals its old znode (same
  // peer_url), b waits for the old session to expire.
  RegistryOptions steal = Options();
  steal.steal_stale_znode = true;
  auto a = StartNode("a", 4001, steal);
  auto b = StartNode("b", 4002);
  ASSERT_TRUE(WaitIds(*a, {"a", "b"}));
  ASSERT_TRUE(WaitIds(*b, {"a", "b"}));
  const int64_t old_a = a->SessionId();
  const int64_t old_b = b->SessionId();
  const size_t from_a = a->UpdateCount();

  ASSERT_TRUE(zk_.Stop(SIGKILL));
  EXPECT_TRUE(WaitFor(milliseconds(kSessionTimeoutMs + 5000), [&] {
    return a->State() == SessionState::kExpired && b->State() == SessionState::kExpired;
  })) << "the local session timer did not fire";
  EXPECT_EQ(a->MemberIds(), (Ids{"a", "b"}));
  EXPECT_FALSE(a->Registered());
  std::string error;
  ASSERT_TRUE(zk_.Start(&error)) << error;

  // ZooKeeper restored the old sessions; their znodes live until they expire.
  const auto start = Clock::now();
  EXPECT_TRUE(WaitFor(milliseconds(15000), [&] { return a->Registered(); }));
  LOG(INFO) << "a (steal) registered " << ElapsedMs(start) << " ms after the restart";
  EXPECT_TRUE(WaitFor(milliseconds(3 * kSessionTimeoutMs + 10000), [&] { return b->Registered(); }));
  LOG(INFO) << "b (wait) registered " << ElapsedMs(start) << " ms after the restart";
  EXPECT_NE(a->SessionId(), old_a);
  EXPECT_NE(b->SessionId(), old_b);
  RawZk raw(connect_);
  ASSERT_TRUE(raw.WaitConnected());
  EXPECT_TRUE(WaitFor(milliseconds(5000), [&] {
    return raw.Owner(NodePath("a")) == a->SessionId() && raw.Owner(NodePath("b")) == b->SessionId();
  }));
  EXPECT_TRUE(WaitIds(*a, {"a", "b"}));
  EXPECT_TRUE(WaitIds(*b, {"a", "b"}));
  auto c = StartNode("c", 4003);
  EXPECT_TRUE(WaitIds(*a, {"a", "b", "c"}));
  EXPECT_TRUE(WaitIds(*b, {"a", "b", "c"}));
  const std::vector<SessionState> states = a->States();
  EXPECT_NE(std::find(states.begin(), states.end(), SessionState::kSuspended), states.end());
  EXPECT_NE(std::find(states.begin(), states.end(), SessionState::kExpired), states.end());
  EXPECT_EQ(states.back(), SessionState::kConnected);
  (void)from_a;
}

TEST_F(ZkRegistryTest, StaleZnodeOfAPreviousProcessIsWaitedFor) {
  // s1: our previous incarnation (same peer_url), default: wait.
  // s2: same id but another peer_url, steal enabled: not ours, wait anyway.
  // The dead owners' sessions outlive them by their timeout: long enough
  // here that "still waiting" cannot be a fluke of a slow machine.
  constexpr int kStaleTimeoutMs = 4000;
  auto helper1 = StartHelper("s1", 4001, kStaleTimeoutMs);
  auto helper2 = StartHelper("s2", 4002, kStaleTimeoutMs);
  RawZk raw(connect_);
  ASSERT_TRUE(raw.WaitConnected());
  const int64_t stale1 = raw.Owner(NodePath("s1"));
  const int64_t stale2 = raw.Owner(NodePath("s2"));
  ASSERT_TRUE(helper1->Signal(SIGKILL));
  ASSERT_TRUE(helper2->Signal(SIGKILL));
  helper1->WaitExit(milliseconds(5000));
  helper2->WaitExit(milliseconds(5000));
  const auto start = Clock::now();

  auto r1 = StartNode("s1", 4001);
  RegistryOptions steal = Options();
  steal.steal_stale_znode = true;
  auto r2 = StartNode("s2", 7777, steal);
  EXPECT_TRUE(WaitIds(*r1, {"s1", "s2"}));
  // Still waiting, the old znodes untouched.
  std::this_thread::sleep_for(milliseconds(300));  // negative check: nothing may happen
  EXPECT_FALSE(r1->Registered());
  EXPECT_FALSE(r2->Registered());
  EXPECT_FALSE(r1->RegisterResult().has_value());
  EXPECT_EQ(raw.Owner(NodePath("s1")), stale1);
  EXPECT_EQ(raw.Owner(NodePath("s2")), stale2);

  // ZooKeeper expires the dead sessions after about T; then we create ours.
  EXPECT_TRUE(WaitFor(milliseconds(2 * kStaleTimeoutMs + 5000),
                      [&] { return r1->Registered() && r2->Registered(); }));
  LOG(INFO) << "registered " << ElapsedMs(start) << " ms after the old owners died";
  EXPECT_EQ(raw.Owner(NodePath("s1")), r1->SessionId());
  EXPECT_EQ(raw.Owner(NodePath("s2")), r2->SessionId());
  ASSERT_TRUE(r1->RegisterResult().has_value());
  EXPECT_TRUE(r1->RegisterResult()->first);
  EXPECT_EQ(zk::DecodeNodeInfo(raw.Get(NodePath("s2"))->first)->peer_url, "127.0.0.1:8777");
}

TEST_F(ZkRegistryTest, StaleZnodeWithOurPeerUrlIsStolen) {
  constexpr int kStaleTimeoutMs = 6000;
  auto helper = StartHelper("s", 4001, kStaleTimeoutMs);
  RawZk raw(connect_);
  ASSERT_TRUE(raw.WaitConnected());
  const int64_t stale = raw.Owner(NodePath("s"));
  ASSERT_TRUE(helper->Signal(SIGKILL));
  helper->WaitExit(milliseconds(5000));
  const auto killed = Clock::now();
  RegistryOptions steal = Options();
  steal.steal_stale_znode = true;
  auto r = StartNode("s", 4001, steal);
  EXPECT_TRUE(WaitFor(milliseconds(kStaleTimeoutMs), [&] { return r->Registered(); }));
  const long ms = ElapsedMs(killed);
  LOG(INFO) << "stale znode stolen; registered " << ms << " ms after the owner died";
  EXPECT_LT(ms, kStaleTimeoutMs) << "that was waiting for the old session, not stealing";
  EXPECT_NE(raw.Owner(NodePath("s")), stale);
  EXPECT_EQ(raw.Owner(NodePath("s")), r->SessionId());
  // When the old session expires later, it does not take our znode with it.
  // Negative check: nothing may happen, so this sleeps past the expiry.
  std::this_thread::sleep_until(killed + milliseconds(kStaleTimeoutMs + 1500));
  EXPECT_EQ(raw.Owner(NodePath("s")), r->SessionId());
  EXPECT_TRUE(r->Registered());
}

TEST_F(ZkRegistryTest, DigestAclKeepsOtherSessionsOut) {
  RegistryOptions secure = Options();
  secure.credentials = "mesh:secret";
  auto a = StartNode("a", 4001, secure);
  auto b = StartNode("b", 4002, secure);
  ASSERT_TRUE(WaitIds(*a, {"a", "b"}));
  const std::string path = NodePath("a");

  RawZk anonymous(connect_);
  ASSERT_TRUE(anonymous.WaitConnected());
  auto znode = anonymous.Get(path);
  ASSERT_TRUE(znode.has_value()) << "world may read";
  EXPECT_EQ(anonymous.Delete(path, znode->second.version), ZNOAUTH);
  EXPECT_EQ(anonymous.Set(path, "x"), ZNOAUTH);
  EXPECT_EQ(anonymous.Create(root_ + "/nodes/intruder", "x"), ZNOAUTH);

  RawZk wrong(connect_);
  ASSERT_TRUE(wrong.WaitConnected());
  EXPECT_EQ(wrong.AddAuth("mesh:wrong"), ZOK) << "a wrong digest is accepted; writes fail";
  EXPECT_EQ(wrong.Delete(path, znode->second.version), ZNOAUTH);

  // A registry without credentials can read the members but not register.
  auto c = StartNode("c", 4003);
  EXPECT_TRUE(WaitIds(*c, {"a", "b"}));
  EXPECT_TRUE(WaitFor(milliseconds(5000), [&] { return c->RegisterResult().has_value(); }));
  ASSERT_TRUE(c->RegisterResult().has_value());
  EXPECT_FALSE(c->RegisterResult()->first);
  EXPECT_NE(c->RegisterResult()->second.find("not authenticated"), std::string::npos)
      << c->RegisterResult()->second;

  // Same credentials may delete (what the steal path needs); a re-creates it.
  RawZk mesh(connect_);
  ASSERT_TRUE(mesh.WaitConnected());
  ASSERT_EQ(mesh.AddAuth("mesh:secret"), ZOK);
  ASSERT_EQ(mesh.Delete(path, znode->second.version), ZOK);
  // The znode shows in ZooKeeper before the create's completion reaches a's
  // loop: wait for both.
  EXPECT_TRUE(WaitFor(milliseconds(5000), [&] {
    return anonymous.Owner(path) == a->SessionId() && a->Registered();
  }));
}

TEST_F(ZkRegistryTest, EnsembleLeaderKillKeepsTheSession) {
  ZooKeeperEnsemble ensemble(3);
  std::string error;
  ASSERT_TRUE(ensemble.Start(&error)) << error;
  RegistryOptions options = Options();
  options.connect = ensemble.connect_string();
  // Three JVMs electing a leader on a loaded 2-core machine can take longer
  // than 2 s; what is tested is that the session survives the election, as
  // it does with production timeouts.
  options.session_timeout_ms = kMaxSessionTimeoutMs;
  auto a = StartNode("a", 4001, options);
  auto b = StartNode("b", 4002, options);
  ASSERT_TRUE(WaitIds(*a, {"a", "b"}, milliseconds(15000)));
  const int64_t session = a->SessionId();
  const size_t from = a->UpdateCount();
  const int leader = ensemble.LeaderIndex();
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(ensemble.server(leader).Stop(SIGKILL));
  const auto start = Clock::now();
  EXPECT_TRUE(WaitFor(milliseconds(10000), [&] {
    for (int i = 0; i < ensemble.size(); ++i) {
      if (i != leader && ensemble.server(i).Mode() == "leader") return true;
    }
    return false;
  }));
  LOG(INFO) << "new leader after " << ElapsedMs(start) << " ms";
  auto c = StartNode("c", 4003, options);
  EXPECT_TRUE(WaitIds(*a, {"a", "b", "c"}, milliseconds(15000)));
  EXPECT_EQ(a->State(), SessionState::kConnected);
  EXPECT_EQ(a->SessionId(), session) << "a leader change must not cost the session";
  EXPECT_GE(a->MinMembersSince(from), 2u);
}

}  // namespace
}  // namespace zmesh::testing

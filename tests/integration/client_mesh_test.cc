// zmesh::Client and the zmesh CLI against a mesh found through a real
// (private) ZooKeeper: discovery and the node cache file, kill -9 of the
// client's node mid-stream, ZooKeeper down plus the client's node killed,
// a rolling restart under load, request/reply across nodes, and the CLI's
// pub/sub/nodes/passwd forms scripts rely on.
//
// Built twice from this file:
// - client_mesh_test: nodes are nats-server processes (routes, connect_urls
//   off) registered in ZooKeeper by zk_registry_helper — the stand-in mesh;
// - client_zmesh_mesh_test (ZMESH_MESH_BACKEND_ZMESH): real zmesh-server
//   nodes with --zk, once the server implements the mesh.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <csignal>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <zmesh/client.h>

#include "client/node_cache.h"
#include "tests/integration/client_cluster.h"
#include "tests/support/process.h"
#include "tests/support/wait_for.h"
#include "tests/support/zookeeper_server.h"

namespace zmesh {
namespace {

using std::chrono::milliseconds;
using testing::NodeCluster;
using testing::WaitFor;

constexpr milliseconds kWait(15000);

#ifdef ZMESH_MESH_BACKEND_ZMESH
constexpr NodeCluster::Kind kKind = NodeCluster::Kind::kZmesh;
#else
constexpr NodeCluster::Kind kKind = NodeCluster::Kind::kNatsInZooKeeper;
#endif

class Collector {
 public:
  MessageHandler Handler() {
    return [this](Message m) {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.insert(std::stoll(std::string(m.data())));
    };
  }
  bool Has(int64_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.count(n) > 0;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.size();
  }

 private:
  mutable std::mutex mu_;
  std::set<int64_t> seen_;
};

// Publishes "1", "2", ... every `period` until stopped; remembers which
// messages went out while the client was between nodes (buffered).
class Streamer {
 public:
  Streamer(Client* c, std::string subject, std::chrono::microseconds period)
      : thread_([=, this] {
          for (int64_t n = 1; !stop_; ++n) {
            const bool between = c->state() == ConnectionState::kReconnecting;
            if (!c->Publish(subject, std::to_string(n)).ok()) {
              --n;  // buffer full: try the same number again
              std::this_thread::sleep_for(milliseconds(5));
              continue;
            }
            if (between) {
              std::lock_guard<std::mutex> lock(mu_);
              buffered_.push_back(n);
            }
            last_ = n;
            std::this_thread::sleep_for(period);
          }
        }) {}
  ~Streamer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t last() const { return last_.load(); }
  std::vector<int64_t> buffered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return buffered_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> last_{0};
  mutable std::mutex mu_;
  std::vector<int64_t> buffered_;
  std::thread thread_;
};

class ClientMeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(zk_.Start(&error)) << error;
    root_ = "/zmesh/client-test-" + std::to_string(::getpid());
    cluster_ = std::make_unique<NodeCluster>(kKind, 3, zk_.connect_string(), root_);
    ASSERT_TRUE(cluster_->Start(&error)) << error;
    cache_ = cluster_->dir() + "/node-cache.json";
  }

  Options MeshOptions() {
    Options o;
    o.zk_connect = zk_.connect_string();
    o.zk_root = root_;
    o.zk_session_timeout = milliseconds(4000);
    o.node_cache_file = cache_;
    o.connect_timeout = milliseconds(1000);
    o.initial_connect_timeout = milliseconds(10000);
    o.reconnect_wait_initial = milliseconds(50);
    o.reconnect_wait_max = milliseconds(500);
    o.ping_interval = milliseconds(500);
    o.max_pings_out = 2;
    return o;
  }

  std::unique_ptr<Client> Connect(Options o) {
    std::unique_ptr<Client> c;
    Status st = Client::Connect(std::move(o), &c);
    EXPECT_TRUE(st.ok()) << st;
    if (c) {
      EXPECT_TRUE(WaitFor(kWait, [&] { return c->known_servers().size() == 3; }))
          << c->known_servers().size() << " nodes known";
    }
    return c;
  }

  std::unique_ptr<Client> ConnectStatic(int node) {
    Options o = MeshOptions();
    o.zk_connect.clear();
    o.servers = {cluster_->url(node)};
    std::unique_ptr<Client> c;
    Status st = Client::Connect(std::move(o), &c);
    EXPECT_TRUE(st.ok()) << st;
    return c;
  }

  int NodeOf(const Client& c) const { return cluster_->IndexOf(c.connected_url()); }

  // Subscribes and waits until a message published through `probe` arrives,
  // i.e. the interest is visible mesh-wide.
  std::shared_ptr<Subscription> SubscribeVisible(Client* c, Client* probe, const std::string& subject,
                                                 Collector* got) {
    std::shared_ptr<Subscription> sub;
    EXPECT_TRUE(c->Subscribe(subject, got->Handler(), &sub).ok());
    EXPECT_TRUE(c->Flush(kWait).ok());
    EXPECT_TRUE(WaitFor(kWait, [&] {
      probe->Publish(subject, "0");
      return got->Has(0);
    }, milliseconds(50)));
    return sub;
  }

  std::string Cli() const {
    const char* dir = ::getenv("ZMESH_BIN_DIR");
    return std::string(dir != nullptr ? dir : ".") + "/zmesh";
  }

  testing::ZooKeeperServer zk_;
  std::string root_;
  std::string cache_;
  std::unique_ptr<NodeCluster> cluster_;
};

TEST_F(ClientMeshTest, DiscoversNodesFromZooKeeperAndCachesThem) {
  auto c = Connect(MeshOptions());
  ASSERT_TRUE(c);
  EXPECT_GE(NodeOf(*c), 0);
  std::string error;
  ASSERT_TRUE(WaitFor(kWait, [&] {
    auto nodes = client::ReadNodeCache(cache_, &error);
    return nodes && nodes->size() == 3;
  })) << error;
  // Random choice: many clients spread over the nodes.
  std::set<int> used;
  std::vector<std::unique_ptr<Client>> many;
  for (int i = 0; i < 12; ++i) {
    many.push_back(Connect(MeshOptions()));
    if (many.back()) used.insert(NodeOf(*many.back()));
  }
  EXPECT_GE(used.size(), 2u);
}

TEST_F(ClientMeshTest, KillNineOfTheClientsNodeMidStream) {
  Collector got, watched;  // before the clients: callbacks use it until they close
  auto sub_client = Connect(MeshOptions());
  ASSERT_TRUE(sub_client);
  const int doomed = NodeOf(*sub_client);
  ASSERT_GE(doomed, 0);
  const int safe = (doomed + 1) % 3;
  // A publisher on the node that dies, knowing the mesh through ZooKeeper
  // like any application: connect until the random choice lands there.
  std::unique_ptr<Client> pub_client;
  for (int tries = 0; tries < 60 && (pub_client == nullptr || NodeOf(*pub_client) != doomed); ++tries) {
    pub_client.reset();
    ASSERT_TRUE(Client::Connect(MeshOptions(), &pub_client).ok());
  }
  ASSERT_EQ(NodeOf(*pub_client), doomed);
  ASSERT_TRUE(WaitFor(kWait, [&] { return pub_client->known_servers().size() == 3; }));
  auto watcher = ConnectStatic(safe);
  ASSERT_TRUE(pub_client && watcher);
  auto s1 = SubscribeVisible(sub_client.get(), pub_client.get(), "stream", &got);
  auto s2 = SubscribeVisible(watcher.get(), pub_client.get(), "stream", &watched);

  Streamer stream(pub_client.get(), "stream", std::chrono::microseconds(300));
  ASSERT_TRUE(WaitFor(kWait, [&] { return got.size() > 200; }));
  const int64_t before_kill = stream.last();
  const auto killed_at = std::chrono::steady_clock::now();
  cluster_->Kill(doomed);
  ASSERT_TRUE(WaitFor(kWait, [&] {
    return sub_client->connected() && NodeOf(*sub_client) != doomed && NodeOf(*sub_client) >= 0;
  }));
  const auto moved_in = std::chrono::steady_clock::now() - killed_at;
  // Detection: the dead node's socket closes at once; the move costs one
  // connect, maybe two if the stale znode of the dead node is tried first.
  EXPECT_LT(moved_in, milliseconds(3000));
  // Its subscription is active again.
  const int64_t mark = stream.last();
  ASSERT_TRUE(WaitFor(kWait, [&] { return got.Has(mark + 100); })) << "subscription not restored";
  ASSERT_TRUE(WaitFor(kWait, [&] { return pub_client->connected(); }));
  stream.Stop();
  ASSERT_TRUE(pub_client->Flush(kWait).ok());
  // Publishes buffered during the gap arrive.
  const std::vector<int64_t> buffered = stream.buffered();
  ASSERT_TRUE(WaitFor(kWait, [&] {
    for (int64_t n : buffered) {
      if (!watched.Has(n)) return false;
    }
    return watched.Has(stream.last());
  })) << buffered.size() << " buffered";
  for (int64_t n = 1; n <= before_kill - 50; ++n) ASSERT_TRUE(watched.Has(n)) << n;
}

TEST_F(ClientMeshTest, ZooKeeperDownAndTheClientsNodeKilledUsesTheCache) {
  Collector got;  // before the clients: callbacks use it until they close
  auto c = Connect(MeshOptions());
  ASSERT_TRUE(c);
  std::string error;
  ASSERT_TRUE(WaitFor(kWait, [&] {
    auto nodes = client::ReadNodeCache(cache_, &error);
    return nodes && nodes->size() == 3;
  }));
  auto probe = ConnectStatic((NodeOf(*c) + 1) % 3);
  auto sub = SubscribeVisible(c.get(), probe.get(), "zkdown", &got);

  ASSERT_TRUE(zk_.Stop(SIGKILL));
  const int doomed = NodeOf(*c);
  cluster_->Kill(doomed);
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && NodeOf(*c) != doomed && NodeOf(*c) >= 0; }));
  int64_t n = 0;
  ASSERT_TRUE(WaitFor(kWait, [&] {
    probe->Publish("zkdown", std::to_string(++n));
    return got.size() > 1;
  }, milliseconds(20)));

  // A new client, started while ZooKeeper is down, finds the mesh through the cache file.
  Options o = MeshOptions();
  std::unique_ptr<Client> fresh;
  Status st = Client::Connect(o, &fresh);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_NE(NodeOf(*fresh), doomed);
  EXPECT_GE(NodeOf(*fresh), 0);
}

TEST_F(ClientMeshTest, RollingRestartUnderLoadNeverLosesTheSubscriptions) {
  Collector got, grouped;  // before the clients: callbacks use it until they close
  auto sub_client = Connect(MeshOptions());
  auto pub_client = Connect(MeshOptions());
  ASSERT_TRUE(sub_client && pub_client);
  auto plain = SubscribeVisible(sub_client.get(), pub_client.get(), "roll", &got);
  std::shared_ptr<Subscription> queue;
  ASSERT_TRUE(sub_client->QueueSubscribe("roll", "workers", grouped.Handler(), &queue).ok());
  Streamer stream(pub_client.get(), "roll", std::chrono::microseconds(500));
  for (int i = 0; i < cluster_->size(); ++i) {
    cluster_->Stop(i);
    std::string error;
    ASSERT_TRUE(cluster_->StartNode(i, &error)) << error;
    const int64_t mark = stream.last();
    ASSERT_TRUE(WaitFor(kWait, [&] { return got.Has(mark + 20) && grouped.Has(mark + 20); }))
        << "subscriptions lost after restarting node " << i + 1;
  }
  stream.Stop();
  EXPECT_TRUE(plain->valid());
  EXPECT_TRUE(queue->valid());
}

TEST_F(ClientMeshTest, RequestReplyAcrossNodes) {
  auto responder = ConnectStatic(0);
  auto requester = ConnectStatic(2);
  ASSERT_TRUE(responder && requester);
  Client* r = responder.get();
  std::shared_ptr<Subscription> s;
  ASSERT_TRUE(responder->Subscribe("svc.upper", [r](Message m) {
    std::string up(m.data());
    for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    r->Publish(m.reply(), up);
  }, &s).ok());
  ASSERT_TRUE(responder->Flush(kWait).ok());
  Message reply;
  ASSERT_TRUE(WaitFor(kWait, [&] { return requester->Request("svc.upper", "x", milliseconds(250), &reply).ok(); }));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(requester->Request("svc.upper", "abc" + std::to_string(i), kWait, &reply).ok());
    EXPECT_EQ(reply.data(), "ABC" + std::to_string(i));
  }
  EXPECT_EQ(requester->Request("svc.none", "x", kWait, &reply).code(), StatusCode::kNoResponders);
}

// ---- the CLI, as scripts use it ----

TEST_F(ClientMeshTest, CliNodesPubSubAndFailover) {
  const std::string zk = "--zk=" + zk_.connect_string();
  const std::string root = "--zk_root=" + root_;
  const std::string cache = "--node_cache=" + cache_;
  const std::string dir = cluster_->dir();

  testing::Process nodes;
  std::string error;
  ASSERT_TRUE(nodes.Start({Cli(), "nodes", zk, root, cache}, dir + "/nodes.out", &error)) << error;
  auto status = nodes.WaitExit(kWait);
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << nodes.ReadLog();
  std::istringstream lines(nodes.ReadLog());
  std::vector<std::string> got_nodes;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("n", 0) == 0 && line.find(" nats://") != std::string::npos) got_nodes.push_back(line);
  }
  ASSERT_EQ(got_nodes.size(), 3u) << nodes.ReadLog();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got_nodes[static_cast<size_t>(i)], "n" + std::to_string(i + 1) + " " + cluster_->url(i));

  // sub --raw --count N, pub --count N with {n}.
  testing::Process sub;
  ASSERT_TRUE(sub.Start({Cli(), "sub", zk, root, cache, "--raw", "--count", "5", "cli.test"}, dir + "/sub.out", &error));
  ASSERT_TRUE(WaitFor(kWait, [&] { return sub.ReadLog().find("listening") != std::string::npos; })) << sub.ReadLog();
  // The sub may sit on another node: publish until the interest is visible.
  testing::Process pub;
  ASSERT_TRUE(pub.Start({Cli(), "pub", zk, root, cache, "--count", "5", "cli.test", "hello {n}"}, dir + "/pub.out", &error));
  auto pub_status = pub.WaitExit(kWait);
  ASSERT_TRUE(pub_status && WIFEXITED(*pub_status) && WEXITSTATUS(*pub_status) == 0) << pub.ReadLog();
  auto sub_status = sub.WaitExit(kWait);
  ASSERT_TRUE(sub_status && WIFEXITED(*sub_status) && WEXITSTATUS(*sub_status) == 0) << sub.ReadLog();
  const std::string out = sub.ReadLog();
  for (int i = 1; i <= 5; ++i) EXPECT_NE(out.find("hello " + std::to_string(i) + "\n"), std::string::npos) << out;

  // sub keeps receiving while nodes die, as long as one lives.
  testing::Process forever;
  ASSERT_TRUE(forever.Start({Cli(), "sub", zk, root, cache, "--raw", "cli.live"}, dir + "/forever.out", &error));
  ASSERT_TRUE(WaitFor(kWait, [&] { return forever.ReadLog().find("listening") != std::string::npos; }));
  Options po;
  po.zk_connect = zk_.connect_string();
  po.zk_root = root_;
  po.node_cache_file = cache_;
  po.reconnect_wait_initial = milliseconds(50);
  std::unique_ptr<Client> p;
  ASSERT_TRUE(Client::Connect(po, &p).ok());
  Streamer stream(p.get(), "cli.live", std::chrono::microseconds(2000));
  auto received = [&](int64_t n) { return forever.ReadLog().find("\n" + std::to_string(n) + "\n") != std::string::npos; };
  for (int victim : {0, 1}) {
    const int64_t mark = stream.last();
    ASSERT_TRUE(WaitFor(kWait, [&] { return received(mark + 10); })) << "before killing node " << victim + 1;
    cluster_->Kill(victim);
  }
  const int64_t mark = stream.last();
  ASSERT_TRUE(WaitFor(kWait, [&] { return received(mark + 10); })) << forever.ReadLog().substr(0, 2000);
  stream.Stop();
  EXPECT_TRUE(forever.Running());
}

TEST_F(ClientMeshTest, CliQueueGroupAndRequestReply) {
  const std::string zk = "--zk=" + zk_.connect_string();
  const std::string root = "--zk_root=" + root_;
  const std::string cache = "--node_cache=" + cache_;
  const std::string dir = cluster_->dir();
  std::string error;
  testing::Process a, b, responder;
  ASSERT_TRUE(a.Start({Cli(), "sub", zk, root, cache, "--queue", "g", "--raw", "cli.q"}, dir + "/qa.out", &error));
  ASSERT_TRUE(b.Start({Cli(), "sub", zk, root, cache, "--queue", "g", "--raw", "cli.q"}, dir + "/qb.out", &error));
  ASSERT_TRUE(responder.Start({Cli(), "reply", zk, root, cache, "cli.svc", "got {req} #{n}"}, dir + "/rep.out", &error));
  for (testing::Process* p : {&a, &b, &responder}) {
    ASSERT_TRUE(WaitFor(kWait, [&] { return p->ReadLog().find("listening") != std::string::npos; })) << p->ReadLog();
  }
  // Interest may take a moment to reach every node: probe with requests first.
  auto probe = Connect(MeshOptions());
  ASSERT_TRUE(probe);
  Message reply;
  ASSERT_TRUE(WaitFor(kWait, [&] { return probe->Request("cli.svc", "probe", milliseconds(250), &reply).ok(); }));
  testing::Process req;
  ASSERT_TRUE(req.Start({Cli(), "req", zk, root, cache, "cli.svc", "hello"}, dir + "/req.out", &error));
  auto st = req.WaitExit(kWait);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << req.ReadLog();
  EXPECT_NE(req.ReadLog().find("got hello #"), std::string::npos) << req.ReadLog();

  testing::Process pub;
  ASSERT_TRUE(pub.Start({Cli(), "pub", zk, root, cache, "--count", "40", "cli.q", "m{n}"}, dir + "/qpub.out", &error));
  st = pub.WaitExit(kWait);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << pub.ReadLog();
  auto lines = [](const std::string& log) {
    std::set<std::string> out;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
      if (line.size() > 1 && line[0] == 'm' && std::isdigit(static_cast<unsigned char>(line[1]))) out.insert(line);
    }
    return out;
  };
  // Each message goes to exactly one member of the group.
  ASSERT_TRUE(WaitFor(kWait, [&] { return lines(a.ReadLog()).size() + lines(b.ReadLog()).size() >= 40; }));
  std::set<std::string> all = lines(a.ReadLog());
  for (const std::string& l : lines(b.ReadLog())) EXPECT_TRUE(all.insert(l).second) << "duplicate " << l;
  EXPECT_EQ(all.size(), 40u);
  (void)probe->Request("cli.svc", "bye", milliseconds(100), &reply);
}

TEST_F(ClientMeshTest, CliPasswordFromFileNeverOnTheCommandLine) {
  const std::string pw_file = cluster_->dir() + "/pw";
  std::ofstream(pw_file) << "not-needed\n";
  testing::Process pub;
  std::string error;
  ASSERT_TRUE(pub.Start({Cli(), "pub", "--zk=" + zk_.connect_string(), "--zk_root=" + root_,
                         "--node_cache=" + cache_, "--user=u", "--password_file=" + pw_file, "x", "y"},
                        cluster_->dir() + "/pwpub.out", &error));
  auto st = pub.WaitExit(kWait);
  // The stand-in mesh has no users: any credentials are accepted.
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << pub.ReadLog();

  // `zmesh passwd` is the auth module's command.
  testing::Process passwd;
  const std::string in = cluster_->dir() + "/pw-in";
  std::ofstream(in) << "s3cret\n";
  ASSERT_TRUE(passwd.Start({"/bin/sh", "-c", "exec \"$0\" passwd alice < \"$1\"", Cli(), in},
                           cluster_->dir() + "/passwd.out", &error));
  st = passwd.WaitExit(kWait);
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << passwd.ReadLog();
  EXPECT_NE(passwd.ReadLog().find("alice:$2"), std::string::npos) << passwd.ReadLog();
}

}  // namespace
}  // namespace zmesh

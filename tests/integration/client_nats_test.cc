// zmesh::Client against real nats-server 2.9 processes: the protocol surface
// (pub/sub, queue groups, headers, auto-unsubscribe, request/reply,
// no-responders, drain, user/password, TLS) on one server, and failover on a
// 3-node route cluster: kill -9 of the client's node mid-stream, lame duck
// mode, a rolling restart under load, request/reply across nodes. The same
// failover scenarios against zmesh-server + ZooKeeper are in
// client_mesh_test.cc.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <zmesh/client.h>

#include "tests/integration/client_cluster.h"
#include "tests/support/server_under_test.h"
#include "tests/support/test_users.h"
#include "tests/support/wait_for.h"

namespace zmesh {
namespace {

using std::chrono::milliseconds;
using testing::NodeCluster;
using testing::WaitFor;

constexpr milliseconds kWait(10000);

Options TestOptions(std::vector<std::string> servers) {
  Options o;
  o.servers = std::move(servers);
  o.connect_timeout = milliseconds(1000);
  o.initial_connect_timeout = milliseconds(5000);
  o.reconnect_wait_initial = milliseconds(50);
  o.reconnect_wait_max = milliseconds(500);
  o.ping_interval = milliseconds(500);
  o.max_pings_out = 2;
  o.use_node_cache = false;
  return o;
}

std::unique_ptr<Client> MustConnect(Options o) {
  std::unique_ptr<Client> c;
  Status st = Client::Connect(std::move(o), &c);
  EXPECT_TRUE(st.ok()) << st;
  return c;
}

// Collects sequence numbers ("<n>") received on a subscription.
class Collector {
 public:
  MessageHandler Handler() {
    return [this](Message m) {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.insert(std::stoll(std::string(m.data())));
      ++count_;
    };
  }
  bool Has(int64_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.count(n) > 0;
  }
  int64_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::set<int64_t> seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  mutable std::mutex mu_;
  std::set<int64_t> seen_;
  int64_t count_ = 0;
};

// ---------------------------------------------------------------- one server

class ClientNatsServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  testing::ServerUnderTest server_{testing::Target::kNats};
};

TEST_F(ClientNatsServerTest, PublishSubscribeQueueGroupsAndHeaders) {
  std::atomic<int> n_q1{0}, n_q2{0};  // before the clients: callbacks use them
  auto sub_client = MustConnect(TestOptions({server_.url()}));
  auto pub_client = MustConnect(TestOptions({server_.url()}));
  ASSERT_TRUE(sub_client && pub_client);
  std::shared_ptr<Subscription> plain, wild, q1, q2;
  ASSERT_TRUE(sub_client->SubscribeSync("orders.new", &plain).ok());
  ASSERT_TRUE(sub_client->SubscribeSync("orders.*", &wild).ok());
  ASSERT_TRUE(sub_client->QueueSubscribe("jobs", "workers", [&](Message) { ++n_q1; }, &q1).ok());
  ASSERT_TRUE(pub_client->QueueSubscribe("jobs", "workers", [&](Message) { ++n_q2; }, &q2).ok());
  ASSERT_TRUE(sub_client->Flush(kWait).ok());
  ASSERT_TRUE(pub_client->Flush(kWait).ok());

  ASSERT_TRUE(pub_client->Publish("orders.new", "r", Headers{{"Trace-Id", "abc"}}, "payload").ok());
  Message m;
  ASSERT_TRUE(plain->NextMsg(&m, kWait).ok());
  EXPECT_EQ(m.subject(), "orders.new");
  EXPECT_EQ(m.reply(), "r");
  EXPECT_EQ(m.data(), "payload");
  EXPECT_EQ(m.Header("trace-id").value_or(""), "abc");
  ASSERT_TRUE(wild->NextMsg(&m, kWait).ok());
  EXPECT_EQ(m.data(), "payload");

  for (int i = 0; i < 200; ++i) ASSERT_TRUE(pub_client->Publish("jobs", std::to_string(i)).ok());
  ASSERT_TRUE(pub_client->Flush(kWait).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return n_q1 + n_q2 == 200; }));
  EXPECT_GT(n_q1.load(), 0);
  EXPECT_GT(n_q2.load(), 0);
  EXPECT_EQ(sub_client->stats().in_msgs, 2u + static_cast<uint64_t>(n_q1.load()));
}

TEST_F(ClientNatsServerTest, AutoUnsubscribeRequestReplyNoRespondersAndDrain) {
  auto c = MustConnect(TestOptions({server_.url()}));
  ASSERT_TRUE(c);
  std::shared_ptr<Subscription> limited;
  ASSERT_TRUE(c->SubscribeSync("lim", &limited).ok());
  ASSERT_TRUE(limited->AutoUnsubscribe(3).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c->Publish("lim", std::to_string(i)).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  Message m;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limited->NextMsg(&m, kWait).ok());
  EXPECT_EQ(limited->NextMsg(&m, milliseconds(100)).code(), StatusCode::kClosed);
  EXPECT_FALSE(limited->valid());

  Client* raw = c.get();
  std::shared_ptr<Subscription> svc;
  ASSERT_TRUE(c->Subscribe("svc.echo", [raw](Message req) { raw->Publish(req.reply(), req.data()); }, &svc).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  Message reply;
  ASSERT_TRUE(c->Request("svc.echo", "ping", kWait, &reply).ok());
  EXPECT_EQ(reply.data(), "ping");
  EXPECT_EQ(c->Request("svc.none", "x", kWait, &reply).code(), StatusCode::kNoResponders);

  std::atomic<int> got{0};
  std::shared_ptr<Subscription> slow;
  ASSERT_TRUE(c->Subscribe("slow", [&](Message) {
    std::this_thread::sleep_for(milliseconds(1));
    ++got;
  }, &slow).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(c->Publish("slow", "x").ok());
  ASSERT_TRUE(c->Drain(kWait).ok());
  EXPECT_EQ(got.load(), 100);
  EXPECT_EQ(c->state(), ConnectionState::kClosed);
}

TEST(ClientNatsAuthTest, UserAndPassword) {
  testing::ServerUnderTest server(testing::Target::kNats);
  testing::ServerOptions so;
  so.users.push_back({testing::kAliceUser, testing::kAliceHash, {}, {}, {}, {}});
  ASSERT_TRUE(server.Start(so));
  Options o = TestOptions({server.url()});
  std::unique_ptr<Client> c;
  EXPECT_EQ(Client::Connect(o, &c).code(), StatusCode::kAuthFailed);
  o.user = testing::kAliceUser;
  o.password = "wrong";
  EXPECT_EQ(Client::Connect(o, &c).code(), StatusCode::kAuthFailed);
  o.password = testing::kAlicePassword;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  ASSERT_TRUE(c->Publish("x", "y").ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
}

class ClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zmesh-client-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string script =
        "cd " + dir_ +
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem"
        " -days 2 -subj /CN=zmesh-test-ca"
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr"
        " -subj /CN=localhost"
        " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2"
        " -extfile ext.cnf) > openssl.log 2>&1";
    ASSERT_EQ(std::system(("(" + script).c_str()), 0) << "openssl failed, see " << dir_ << "/openssl.log";
  }
  void TearDown() override {
    if (!HasFailure()) std::system(("rm -rf " + dir_).c_str());
  }
  std::string dir_;
};

TEST_F(ClientTlsTest, UsesTlsWhenTheServerRequiresIt) {
  testing::ServerUnderTest server(testing::Target::kNats);
  testing::ServerOptions so;
  so.extra_args = {"--tls", "--tlscert", dir_ + "/server.pem", "--tlskey", dir_ + "/server.key"};
  ASSERT_TRUE(server.Start(so));

  Options o = TestOptions({server.url()});
  o.tls.ca_file = dir_ + "/ca.pem";
  auto c = MustConnect(o);
  ASSERT_TRUE(c);
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->SubscribeSync("tls.x", &sub).ok());
  const std::string big(200000, 'z');  // several TLS records
  ASSERT_TRUE(c->Publish("tls.x", big).ok());
  Message m;
  ASSERT_TRUE(sub->NextMsg(&m, kWait).ok());
  EXPECT_EQ(m.data(), big);

  // An unknown CA is refused; skipping verification (tests only) works.
  Options untrusted = TestOptions({server.url()});
  std::unique_ptr<Client> bad;
  EXPECT_EQ(Client::Connect(untrusted, &bad).code(), StatusCode::kTlsError);
  untrusted.tls.insecure_skip_verify = true;
  EXPECT_TRUE(Client::Connect(untrusted, &bad).ok());
  // A name the certificate does not carry is refused.
  Options wrong_name = o;
  wrong_name.tls.server_name = "other.example";
  EXPECT_EQ(Client::Connect(wrong_name, &bad).code(), StatusCode::kTlsError);
}

TEST_F(ClientTlsTest, RequiringTlsFromAPlainServerFails) {
  testing::ServerUnderTest server(testing::Target::kNats);
  ASSERT_TRUE(server.Start());
  Options o = TestOptions({server.url()});
  o.tls.required = true;
  o.tls.ca_file = dir_ + "/ca.pem";
  std::unique_ptr<Client> c;
  EXPECT_EQ(Client::Connect(o, &c).code(), StatusCode::kTlsError);
}

// ---------------------------------------------------------------- 3-node cluster

class ClientNatsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(cluster_.Start(&error)) << error;
  }
  // A client that knows only node `i`: the others come from INFO connect_urls.
  std::unique_ptr<Client> ConnectTo(int i) {
    Options o = TestOptions({cluster_.url(i)});
    auto c = MustConnect(o);
    if (c) {
      EXPECT_TRUE(WaitFor(kWait, [&] { return c->known_servers().size() == 3; }));
    }
    return c;
  }
  NodeCluster cluster_{NodeCluster::Kind::kNats, 3};
};

TEST_F(ClientNatsClusterTest, KillNineOfTheClientsNodeMidStream) {
  Collector got, watched;  // before the clients: callbacks use it until they close
  auto sub_client = ConnectTo(0);
  auto pub_client = ConnectTo(0);  // publishes through the node that dies
  auto watcher = ConnectTo(2);     // a subscriber on a node that stays
  ASSERT_TRUE(sub_client && pub_client && watcher);
  std::shared_ptr<Subscription> s1, s2;
  ASSERT_TRUE(sub_client->Subscribe("stream", got.Handler(), &s1).ok());
  ASSERT_TRUE(watcher->Subscribe("stream", watched.Handler(), &s2).ok());
  ASSERT_TRUE(sub_client->Flush(kWait).ok());
  ASSERT_TRUE(watcher->Flush(kWait).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] {  // route interest visible
    pub_client->Publish("stream", "0");
    return got.Has(0) && watched.Has(0);
  }, milliseconds(50)));

  // Publish a numbered stream across the kill; remember which messages were
  // published while the publisher knew it was between nodes (buffered).
  std::atomic<bool> stop{false};
  std::vector<int64_t> buffered;
  std::atomic<int64_t> last{0};
  std::thread publisher([&] {
    for (int64_t n = 1; !stop; ++n) {
      const bool between = pub_client->state() == ConnectionState::kReconnecting;
      if (!pub_client->Publish("stream", std::to_string(n)).ok()) break;
      if (between) buffered.push_back(n);
      last = n;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  ASSERT_TRUE(WaitFor(kWait, [&] { return got.count() > 200; }));
  const int64_t before_kill = last.load();
  const auto killed_at = std::chrono::steady_clock::now();
  cluster_.Kill(0);
  // Both clients are on another node quickly (the socket closes with the
  // process; detection is immediate, the move costs one connect).
  ASSERT_TRUE(WaitFor(kWait, [&] {
    return sub_client->connected() && cluster_.IndexOf(sub_client->connected_url()) > 0 &&
           pub_client->connected() && cluster_.IndexOf(pub_client->connected_url()) > 0;
  }));
  const auto moved_in = std::chrono::steady_clock::now() - killed_at;
  EXPECT_LT(moved_in, milliseconds(3000));
  // The subscription is active again: new messages arrive.
  const int64_t after_move = last.load();
  ASSERT_TRUE(WaitFor(kWait, [&] { return got.Has(after_move + 100); }));
  stop = true;
  publisher.join();
  ASSERT_TRUE(pub_client->Flush(kWait).ok());
  // Everything published while the publisher was between nodes arrived.
  ASSERT_TRUE(WaitFor(kWait, [&] {
    for (int64_t n : buffered) {
      if (!watched.Has(n)) return false;
    }
    return true;
  })) << buffered.size() << " buffered messages";
  // Loss is confined to the moment of the kill (at most once, in flight).
  int64_t lost_late = 0;
  ASSERT_TRUE(WaitFor(kWait, [&] { return watched.Has(last.load()); }));
  for (int64_t n = after_move + 1; n <= last.load(); ++n) lost_late += watched.Has(n) ? 0 : 1;
  EXPECT_EQ(lost_late, 0);
  for (int64_t n = 1; n <= before_kill - 50; ++n) EXPECT_TRUE(watched.Has(n)) << n;
  EXPECT_EQ(sub_client->stats().reconnects, 1u);
}

TEST_F(ClientNatsClusterTest, LameDuckMovesClientsWithTheirSubscriptions) {
  Collector got;  // before the clients: callbacks use it until they close
  auto c = ConnectTo(1);
  auto pub = ConnectTo(0);
  ASSERT_TRUE(c && pub);
  std::atomic<int> lame{0};
  std::shared_ptr<Subscription> s;
  ASSERT_TRUE(c->Subscribe("ldm.test", got.Handler(), &s).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  ASSERT_TRUE(cluster_.LameDuck(1));
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && cluster_.IndexOf(c->connected_url()) != 1; }))
      << "still on " << c->connected_url();
  (void)lame;
  int64_t n = 0;
  ASSERT_TRUE(WaitFor(kWait, [&] {
    pub->Publish("ldm.test", std::to_string(++n));
    return got.count() > 0;
  }, milliseconds(20)));
}

TEST_F(ClientNatsClusterTest, RollingRestartUnderLoadNeverLosesTheSubscription) {
  Collector got;  // before the clients: callbacks use it until they close
  auto sub_client = ConnectTo(0);
  auto pub_client = ConnectTo(2);
  ASSERT_TRUE(sub_client && pub_client);
  std::shared_ptr<Subscription> s;
  ASSERT_TRUE(sub_client->Subscribe("roll", got.Handler(), &s).ok());
  ASSERT_TRUE(sub_client->Flush(kWait).ok());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> last{0};
  std::thread publisher([&] {
    for (int64_t n = 1; !stop; ++n) {
      if (pub_client->Publish("roll", std::to_string(n)).ok()) last = n;
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });
  for (int i = 0; i < cluster_.size(); ++i) {
    cluster_.Stop(i);
    std::string error;
    ASSERT_TRUE(cluster_.StartNode(i, &error)) << error;
    // After each restart the subscriber still receives what is published now.
    const int64_t mark = last.load();
    ASSERT_TRUE(WaitFor(kWait, [&] { return got.Has(mark + 20); })) << "after restarting node " << i + 1;
  }
  stop = true;
  publisher.join();
  EXPECT_TRUE(s->valid());
  EXPECT_GE(sub_client->stats().reconnects + pub_client->stats().reconnects, 2u);
}

TEST_F(ClientNatsClusterTest, RequestReplyAcrossNodes) {
  auto responder = ConnectTo(0);
  auto requester = ConnectTo(2);
  ASSERT_TRUE(responder && requester);
  Client* r = responder.get();
  std::shared_ptr<Subscription> s;
  ASSERT_TRUE(responder->QueueSubscribe("math.double", "calc", [r](Message m) {
    r->Publish(m.reply(), std::to_string(2 * std::stoll(std::string(m.data()))));
  }, &s).ok());
  ASSERT_TRUE(responder->Flush(kWait).ok());
  Message reply;
  ASSERT_TRUE(WaitFor(kWait, [&] { return requester->Request("math.double", "1", milliseconds(200), &reply).ok(); }));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(requester->Request("math.double", std::to_string(i), kWait, &reply).ok());
    EXPECT_EQ(reply.data(), std::to_string(2 * i));
  }
  EXPECT_EQ(requester->Request("math.nobody", "1", kWait, &reply).code(), StatusCode::kNoResponders);
}

}  // namespace
}  // namespace zmesh

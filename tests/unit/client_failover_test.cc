// The client's failover behaviour end to end, against in-process fake
// servers (client_fake_server.h) and a fake ZooKeeper (zk/testing/fake_registry.h):
// random choice, moving on failure and never straight back, re-subscription
// (groups and remaining auto-unsubscribe counts included), publishes
// buffered across the gap, lame duck, INFO connect_urls, stale connections,
// discovery and the cache file, and clean errors on garbage input.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <zmesh/client.h>

#include "client/client_access.h"
#include "client/node_cache.h"
#include "tests/support/wait_for.h"
#include "tests/unit/client_fake_server.h"
#include "zk/testing/fake_registry.h"
#include "zk/testing/fake_zookeeper.h"

namespace zmesh::client {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;
using zmesh::testing::WaitFor;

constexpr milliseconds kWait(5000);

// Records status events for assertions.
class EventLog {
 public:
  EventHandler Handler() {
    return [this](const Event& e) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
    };
  }
  int Count(EventType type) const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count_if(events_.begin(), events_.end(), [&](const Event& e) { return e.type == type; }));
  }
  std::vector<Event> All() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

Options FastOptions(std::vector<std::string> servers, uint64_t seed = 1) {
  Options o;
  o.servers = std::move(servers);
  o.connect_timeout = milliseconds(1000);
  o.initial_connect_timeout = milliseconds(3000);
  o.reconnect_wait_initial = milliseconds(20);
  o.reconnect_wait_max = milliseconds(200);
  o.stable_connection = milliseconds(100);
  o.ping_interval = milliseconds(5000);
  o.random_seed = seed;
  o.use_node_cache = false;
  return o;
}

// Index of the fake server the client is connected to, -1 if none.
int ConnectedTo(const Client& c, const std::vector<std::unique_ptr<FakeServer>>& servers) {
  const std::string url = c.connected_url();
  for (size_t i = 0; i < servers.size(); ++i) {
    if (url == servers[i]->url()) return static_cast<int>(i);
  }
  return -1;
}

std::vector<std::unique_ptr<FakeServer>> MakeServers(int n) {
  std::vector<std::unique_ptr<FakeServer>> out;
  for (int i = 0; i < n; ++i) {
    FakeServer::Config cfg;
    cfg.name = "s" + std::to_string(i);
    out.push_back(std::make_unique<FakeServer>(cfg));
  }
  return out;
}

std::vector<std::string> UrlsOf(const std::vector<std::unique_ptr<FakeServer>>& servers) {
  std::vector<std::string> out;
  for (const auto& s : servers) out.push_back(s->url());
  return out;
}

TEST(ClientFailoverTest, PicksANodeAtRandom) {
  auto servers = MakeServers(3);
  std::vector<std::unique_ptr<Client>> clients;
  std::set<int> used;
  for (uint64_t seed = 1; seed <= 15; ++seed) {
    std::unique_ptr<Client> c;
    ASSERT_TRUE(Client::Connect(FastOptions(UrlsOf(servers), seed), &c).ok());
    used.insert(ConnectedTo(*c, servers));
    clients.push_back(std::move(c));
  }
  EXPECT_EQ(used, (std::set<int>{0, 1, 2}));
}

TEST(ClientFailoverTest, KillMovesToAnotherNodeAndRestoresSubscriptions) {
  auto servers = MakeServers(3);
  EventLog events;
  Options o = FastOptions(UrlsOf(servers), 3);
  o.on_event = events.Handler();
  std::atomic<int> plain{0};  // before the client: its callback uses it
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  std::shared_ptr<Subscription> s1, s2, s3;
  ASSERT_TRUE(c->Subscribe("a.>", [&](Message) { ++plain; }, &s1).ok());
  ASSERT_TRUE(c->QueueSubscribe("work", "g1", [](Message) {}, &s2).ok());
  ASSERT_TRUE(c->SubscribeSync("limited", &s3).ok());
  ASSERT_TRUE(s3->AutoUnsubscribe(5).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  const int first = ConnectedTo(*c, servers);
  ASSERT_GE(first, 0);
  servers[first]->Inject("limited", "m1");
  servers[first]->Inject("limited", "m2");
  servers[first]->Inject("a.b", "x");
  Message m;
  ASSERT_TRUE(s3->NextMsg(&m, kWait).ok());
  ASSERT_TRUE(s3->NextMsg(&m, kWait).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return plain.load() == 1; }));

  const auto killed_at = std::chrono::steady_clock::now();
  servers[first]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers) != first; }));
  const auto moved_in = std::chrono::steady_clock::now() - killed_at;
  EXPECT_LT(moved_in, milliseconds(1000)) << "a healthy node is tried at once";
  const int second = ConnectedTo(*c, servers);
  ASSERT_TRUE(c->Flush(kWait).ok());
  const auto subs = servers[second]->LogWith("SUB");
  ASSERT_EQ(subs.size(), 3u);
  EXPECT_EQ(subs[0], "SUB a.> " + std::to_string(s1->sid()));
  EXPECT_EQ(subs[1], "SUB work g1 " + std::to_string(s2->sid()));
  EXPECT_EQ(subs[2], "SUB limited " + std::to_string(s3->sid()));
  EXPECT_EQ(servers[second]->LogWith("UNSUB"), std::vector<std::string>{"UNSUB " + std::to_string(s3->sid()) + " 3"});
  // The subscriptions work on the new node.
  servers[second]->Inject("a.c", "y");
  ASSERT_TRUE(WaitFor(kWait, [&] { return plain.load() == 2; }));
  ASSERT_TRUE(WaitFor(kWait, [&] { return events.Count(EventType::kReconnected) == 1; }));
  EXPECT_EQ(events.Count(EventType::kDisconnected), 1);
  EXPECT_EQ(c->stats().reconnects, 1u);
}

TEST(ClientFailoverTest, NeverStraightBackToTheNodeThatFailed) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    auto servers = MakeServers(2);
    std::unique_ptr<Client> c;
    ASSERT_TRUE(Client::Connect(FastOptions(UrlsOf(servers), seed), &c).ok());
    const int first = ConnectedTo(*c, servers);
    ASSERT_GE(first, 0);
    const int accepted_before = servers[first]->accepted();
    // The node dies and is back at once; the client still goes elsewhere.
    servers[first]->Kill();
    servers[first]->Restart();
    ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers) == 1 - first; }))
        << "seed " << seed;
    EXPECT_EQ(servers[first]->accepted(), accepted_before) << "seed " << seed;
  }
}

TEST(ClientFailoverTest, PublishesBufferedDuringTheGapArriveInOrderAfterSubscriptions) {
  auto servers = MakeServers(2);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(FastOptions(UrlsOf(servers), 5), &c).ok());
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->SubscribeSync("echo", &sub).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  const int first = ConnectedTo(*c, servers);
  const int other = 1 - first;
  servers[other]->Kill();
  servers[first]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return !c->connected(); }));
  for (int i = 1; i <= 100; ++i) ASSERT_TRUE(c->Publish("data", std::to_string(i)).ok());
  ASSERT_TRUE(c->Publish("echo", "self").ok());
  EXPECT_GT(c->buffered_bytes(), 0u);
  servers[other]->Restart();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected(); }));
  ASSERT_TRUE(c->Flush(kWait).ok());
  std::vector<std::string> log;
  for (const std::string& e : servers[other]->log()) {
    if (e.rfind("SUB", 0) == 0 || e.rfind("PUB", 0) == 0) log.push_back(e);
  }
  ASSERT_EQ(log.size(), 102u);
  EXPECT_EQ(log[0], "SUB echo " + std::to_string(sub->sid()));
  for (int i = 1; i <= 100; ++i) EXPECT_EQ(log[static_cast<size_t>(i)], "PUB data " + std::to_string(i));
  // Our own buffered message reached our re-created subscription.
  Message m;
  ASSERT_TRUE(sub->NextMsg(&m, kWait).ok());
  EXPECT_EQ(m.data(), "self");
  EXPECT_EQ(c->buffered_bytes(), 0u);
}

TEST(ClientFailoverTest, FullReconnectBufferIsAnErrorNeverASilentDrop) {
  auto servers = MakeServers(1);
  Options o = FastOptions(UrlsOf(servers), 6);
  o.reconnect_buffer_bytes = 1000;
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  servers[0]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return !c->connected(); }));
  int accepted = 0;
  Status st;
  for (int i = 0; i < 1000; ++i) {
    st = c->Publish("s", std::to_string(1000 + i));
    if (!st.ok()) break;
    ++accepted;
  }
  EXPECT_EQ(st.code(), StatusCode::kBufferFull);
  EXPECT_GT(accepted, 50);
  servers[0]->Restart();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected(); }));
  ASSERT_TRUE(c->Flush(kWait).ok());
  const auto pubs = servers[0]->LogWith("PUB");
  ASSERT_EQ(pubs.size(), static_cast<size_t>(accepted));
  EXPECT_EQ(pubs.back(), "PUB s " + std::to_string(1000 + accepted - 1));
}

TEST(ClientFailoverTest, LameDuckAnnouncementMovesTheClient) {
  auto servers = MakeServers(2);
  EventLog events;
  Options o = FastOptions(UrlsOf(servers), 7);
  o.on_event = events.Handler();
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->SubscribeSync("x", &sub).ok());
  const int first = ConnectedTo(*c, servers);
  proto::Info leaving = servers[first]->info();
  leaving.lame_duck = true;
  servers[first]->SendInfo(leaving);
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers) == 1 - first; }));
  ASSERT_TRUE(c->Flush(kWait).ok());
  EXPECT_EQ(servers[1 - first]->LogWith("SUB"), std::vector<std::string>{"SUB x " + std::to_string(sub->sid())});
  ASSERT_TRUE(WaitFor(kWait, [&] { return events.Count(EventType::kLameDuck) == 1; }));
  // The leaving node is held out: killing the new one does not send us back at once.
  const int before = servers[first]->accepted();
  servers[1 - first]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return !c->connected(); }));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(servers[first]->accepted(), before);
}

TEST(ClientFailoverTest, LearnsNodesFromInfoConnectUrls) {
  FakeServer b;
  FakeServer::Config ca;
  ca.connect_urls = {b.key()};
  FakeServer a(ca);
  EventLog events;
  Options o = FastOptions({a.url()}, 8);
  o.on_event = events.Handler();
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->known_servers().size() == 2; }));
  a.Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && c->connected_url() == b.url(); }));
  // Events reach on_event on the dispatcher thread, after the list is published.
  EXPECT_TRUE(WaitFor(kWait, [&] { return events.Count(EventType::kServersChanged) >= 1; }))
      << "no kServersChanged event";
}

TEST(ClientFailoverTest, StaleConnectionIsDetectedByPings) {
  auto servers = MakeServers(2);
  Options o = FastOptions(UrlsOf(servers), 9);
  o.ping_interval = milliseconds(50);
  o.max_pings_out = 2;
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  const int first = ConnectedTo(*c, servers);
  servers[first]->SetAnswerPings(false);  // alive but silent: a hung node
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers) == 1 - first; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1500));
  EXPECT_EQ(c->last_error().code(), StatusCode::kDisconnected);
  EXPECT_NE(c->last_error().message().find("stale"), std::string::npos) << c->last_error();
}

TEST(ClientFailoverTest, GarbageFromTheServerEndsInACleanErrorAndFailover) {
  const std::vector<std::string> garbage = {
      "XYZZY\r\n",                                 // unknown operation
      "MSG a 1 999999999\r\n",                     // oversized payload
      "MSG a\r\n",                                 // malformed arguments
      "MSG a 1 3\r\nabcXX",                        // payload without CRLF
      "INFO {broken\r\n",                          // INFO that is not JSON
      "-ERR 'Unknown Protocol Operation'\r\n",     // the server gives up on us
      std::string(70000, 'I'),                     // endless control line
      std::string("\0\1\2\3\xff\r\n", 7),          // binary junk
  };
  for (const std::string& junk : garbage) {
    auto servers = MakeServers(2);
    EventLog events;
    Options o = FastOptions(UrlsOf(servers), 10);
    o.max_incoming_payload = 1 << 20;
    o.on_event = events.Handler();
    std::unique_ptr<Client> c;
    ASSERT_TRUE(Client::Connect(o, &c).ok());
    std::shared_ptr<Subscription> sub;
    ASSERT_TRUE(c->SubscribeSync("a", &sub).ok());
    ASSERT_TRUE(c->Flush(kWait).ok());
    const int first = ConnectedTo(*c, servers);
    servers[first]->SendToAll(junk);
    ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers) == 1 - first; }))
        << junk.substr(0, 40);
    const StatusCode code = c->last_error().code();
    EXPECT_TRUE(code == StatusCode::kProtocolError || code == StatusCode::kServerError) << c->last_error();
    // The client still works (after the flush the new node has our SUB).
    ASSERT_TRUE(c->Flush(kWait).ok());
    servers[1 - first]->Inject("a", "fine");
    Message m;
    ASSERT_TRUE(sub->NextMsg(&m, kWait).ok());
    EXPECT_EQ(m.data(), "fine");
  }
}

TEST(ClientFailoverTest, GarbageInfoAtConnectFailsCleanly) {
  for (const char* info : {"HELLO\r\n", "INFO [1,2]\r\n", "MSG a 1 1\r\nx\r\n", "INFO {\"max_payload\":\"x\"}\r\nPONG\r\n"}) {
    FakeServer::Config cfg;
    cfg.raw_info = info;
    FakeServer s(cfg);
    Options o = FastOptions({s.url()}, 11);
    o.initial_connect_timeout = milliseconds(2000);
    std::unique_ptr<Client> c;
    const Status st = Client::Connect(o, &c);
    if (std::string(info).find("max_payload") != std::string::npos) {
      // A wrong type is ignored, not fatal: the server then answers our PING.
      EXPECT_TRUE(st.ok()) << st;
      continue;
    }
    EXPECT_EQ(st.code(), StatusCode::kProtocolError) << info << " -> " << st;
  }
}

TEST(ClientFailoverTest, AuthenticationFailureAndSuccess) {
  FakeServer::Config cfg;
  cfg.user = "alice";
  cfg.password = "s3cret";
  FakeServer s(cfg);
  Options o = FastOptions({s.url()}, 12);
  o.user = "alice";
  o.password = "wrong";
  std::unique_ptr<Client> c;
  Status st = Client::Connect(o, &c);
  EXPECT_EQ(st.code(), StatusCode::kAuthFailed) << st;
  o.password = "s3cret";
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  EXPECT_NE(s.LogWith("CONNECT").back().find("\"pass\":\"s3cret\""), std::string::npos);
  // Credentials in the URL win.
  o.password = "wrong";
  o.servers = {"nats://alice:s3cret@" + s.key()};
  ASSERT_TRUE(Client::Connect(o, &c).ok());
}

TEST(ClientFailoverTest, RequestReplyAndNoResponders) {
  FakeServer s;
  std::unique_ptr<Client> responder, requester;
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 13), &responder).ok());
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 14), &requester).ok());
  Client* r = responder.get();
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(responder->Subscribe("svc", [r](Message m) { r->Publish(m.reply(), "re:" + std::string(m.data())); }, &sub).ok());
  ASSERT_TRUE(responder->Flush(kWait).ok());
  Message reply;
  ASSERT_TRUE(requester->Request("svc", "q", kWait, &reply).ok());
  EXPECT_EQ(reply.data(), "re:q");
  EXPECT_EQ(requester->Request("nobody", "q", kWait, &reply).code(), StatusCode::kNoResponders);
  sub->Unsubscribe();
  ASSERT_TRUE(responder->Flush(kWait).ok());
  EXPECT_EQ(requester->Request("svc", "q", kWait, &reply).code(), StatusCode::kNoResponders);
}

TEST(ClientFailoverTest, InitialConnectFailsWhenNoNodeAnswers) {
  auto servers = MakeServers(2);
  const auto urls = UrlsOf(servers);
  servers.clear();  // both gone: connection refused
  std::unique_ptr<Client> c;
  const auto start = std::chrono::steady_clock::now();
  const Status st = Client::Connect(FastOptions(urls, 15), &c);
  EXPECT_EQ(st.code(), StatusCode::kConnectFailed) << st;
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000)) << "fails once every node was tried";
  EXPECT_EQ(Client::Connect(Options(), &c).code(), StatusCode::kInvalidArgument);
}

TEST(ClientFailoverTest, RetryOnFailedConnectBuffersUntilANodeAppears) {
  FakeServer s;
  const std::string url = s.url();
  s.Kill();
  Options o = FastOptions({url}, 16);
  o.retry_on_failed_connect = true;
  o.initial_connect_timeout = milliseconds(100);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  EXPECT_FALSE(c->connected());
  ASSERT_TRUE(c->Publish("early", "1").ok());
  s.Restart();
  ASSERT_TRUE(c->Flush(kWait).ok());
  EXPECT_EQ(s.LogWith("PUB"), std::vector<std::string>{"PUB early 1"});
}

TEST(ClientFailoverTest, CloseFromACallbackAndDestroyWhileBusy) {
  FakeServer s;
  std::atomic<bool> closed{false};  // before the client: its callback uses it
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 17), &c).ok());
  Client* raw = c.get();
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->Subscribe("x", [&, raw](Message) {
    raw->Close();
    closed = true;
  }, &sub).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  s.Inject("x", "bye");
  ASSERT_TRUE(WaitFor(kWait, [&] { return closed.load(); }));
  EXPECT_EQ(c->state(), ConnectionState::kClosed);
  EXPECT_EQ(c->Publish("x", "y").code(), StatusCode::kClosed);
  EXPECT_EQ(sub->Unsubscribe().code(), StatusCode::kClosed);
  c.reset();
  // A subscription handle outliving its client is harmless.
  EXPECT_FALSE(sub->valid());
  EXPECT_EQ(sub->AutoUnsubscribe(1).code(), StatusCode::kClosed);
}

TEST(ClientFailoverTest, SlowConsumerDropsAndReports) {
  FakeServer s;
  EventLog events;
  Options o = FastOptions({s.url()}, 18);
  o.on_event = events.Handler();
  o.pending_msgs_limit = 10;
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->SubscribeSync("x", &sub).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  for (int i = 0; i < 30; ++i) s.Inject("x", std::to_string(i));
  ASSERT_TRUE(WaitFor(kWait, [&] { return sub->dropped() == 20; }));
  EXPECT_EQ(sub->pending_msgs(), 10);
  ASSERT_TRUE(WaitFor(kWait, [&] { return events.Count(EventType::kSlowConsumer) == 1; }));
  Message m;
  ASSERT_TRUE(sub->NextMsg(&m, kWait).ok());
  EXPECT_EQ(m.data(), "0");
}

TEST(ClientFailoverTest, DrainDeliversWhatArrivedThenCloses) {
  FakeServer s;
  std::atomic<int> got{0};  // before the client: its callback uses it
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 19), &c).ok());
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->Subscribe("x", [&](Message) {
    std::this_thread::sleep_for(milliseconds(2));
    ++got;
  }, &sub).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  for (int i = 0; i < 50; ++i) s.Inject("x", "m");
  ASSERT_TRUE(c->Drain(kWait).ok());
  EXPECT_EQ(got.load(), 50);
  EXPECT_EQ(c->state(), ConnectionState::kClosed);
  EXPECT_EQ(s.LogWith("UNSUB"), std::vector<std::string>{"UNSUB " + std::to_string(sub->sid())});
}

TEST(ClientFailoverTest, DrainFromTheSubscriptionsOwnCallbackDoesNotWaitForItself) {
  FakeServer s;
  std::atomic<int> got{0};
  std::atomic<bool> drained{false};
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 26), &c).ok());
  std::shared_ptr<Subscription> sub;
  std::shared_ptr<Subscription>* handle = &sub;
  ASSERT_TRUE(c->Subscribe("x", [&, handle](Message) {
    if (++got == 1) {
      EXPECT_TRUE((*handle)->Drain(kWait).ok());
      drained = true;
    }
  }, &sub).ok());
  ASSERT_TRUE(c->Flush(kWait).ok());
  for (int i = 0; i < 5; ++i) s.Inject("x", "m");
  ASSERT_TRUE(WaitFor(kWait, [&] { return drained.load(); }));
  EXPECT_FALSE(sub->valid());
  // The messages that had arrived before the drain still ran.
  ASSERT_TRUE(WaitFor(kWait, [&] { return got.load() == 5; }));
}

// The interest barrier (docs/operations.md §9a): a zmesh node answers the
// PING after a SUB only once every peer applied it, so Subscribe returns
// only after that PONG.
TEST(ClientFailoverTest, SubscribeReturnsOnceTheMeshConfirmed) {
  FakeServer s;
  std::atomic<int> got{0};  // before the client: its callback uses it
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 21), &c).ok());
  s.HoldPongs(true);
  std::atomic<bool> returned{false};
  Status result;
  std::shared_ptr<Subscription> sub;
  std::thread subscriber([&] {
    result = c->Subscribe("orders.>", [&](Message) { ++got; }, &sub);
    returned = true;
  });
  ASSERT_TRUE(WaitFor(kWait, [&] {
    const auto log = s.log();
    return log.size() >= 2 && log[log.size() - 2].rfind("SUB orders.> ", 0) == 0 && log.back() == "PING";
  })) << "the client did not send SUB then PING";
  EXPECT_FALSE(returned.load()) << "Subscribe returned before the PONG";
  s.HoldPongs(false);
  subscriber.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
  ASSERT_NE(sub, nullptr);
  s.Inject("orders.1", "x");
  EXPECT_TRUE(WaitFor(kWait, [&] { return got.load() == 1; }));
}

TEST(ClientFailoverTest, SubscribeNotConfirmedInTimeIsUndone) {
  FakeServer s;
  Options o = FastOptions({s.url()}, 22);
  o.subscribe_confirm_timeout = milliseconds(300);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  s.HoldPongs(true);
  std::shared_ptr<Subscription> sub;
  const auto start = std::chrono::steady_clock::now();
  const Status st = c->SubscribeSync("late", &sub);
  EXPECT_EQ(st.code(), StatusCode::kTimeout) << st.ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(300));
  EXPECT_EQ(sub, nullptr);
  // The server was told to forget it.
  ASSERT_TRUE(WaitFor(kWait, [&] { return s.LogWith("UNSUB").size() == 1; })) << ::testing::PrintToString(s.log());
  const std::string sid = s.LogWith("SUB late ").at(0).substr(9);
  EXPECT_EQ(s.LogWith("UNSUB").at(0), "UNSUB " + sid);
}

TEST(ClientFailoverTest, NoConfirmationWhenSwitchedOff) {
  FakeServer s;
  Options o = FastOptions({s.url()}, 23);
  o.subscribe_confirm_timeout = milliseconds(0);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  s.HoldPongs(true);
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->SubscribeSync("fast", &sub).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return s.LogWith("SUB fast ").size() == 1; }));
  EXPECT_EQ(s.LogWith("PING").size(), 1u) << "only the handshake PING: " << ::testing::PrintToString(s.log());
}

// After a failover the client re-subscribes and reports kReconnected only
// when the new node confirmed the subscriptions mesh-wide.
TEST(ClientFailoverTest, ReconnectedIsReportedOnceResubscriptionIsConfirmed) {
  auto servers = MakeServers(2);
  EventLog events;
  Options o = FastOptions(UrlsOf(servers), 24);
  o.on_event = events.Handler();
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  std::shared_ptr<Subscription> sub;
  ASSERT_TRUE(c->SubscribeSync("moves", &sub).ok());
  const int first = ConnectedTo(*c, servers);
  ASSERT_GE(first, 0);
  const int second = 1 - first;
  servers[second]->HoldPongs(true);
  servers[first]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] {
    const auto log = servers[second]->log();
    return log.size() >= 2 && log[log.size() - 2].rfind("SUB moves ", 0) == 0 && log.back() == "PING";
  })) << ::testing::PrintToString(servers[second]->log());
  EXPECT_TRUE(c->connected());
  EXPECT_EQ(events.Count(EventType::kReconnected), 0) << "reported before the re-subscription was confirmed";
  servers[second]->HoldPongs(false);
  ASSERT_TRUE(WaitFor(kWait, [&] { return events.Count(EventType::kReconnected) == 1; }));
  EXPECT_EQ(events.Count(EventType::kConnected), 1);
}

TEST(ClientFailoverTest, InvalidArgumentsAreRejected) {
  FakeServer s;
  std::unique_ptr<Client> c;
  ASSERT_TRUE(Client::Connect(FastOptions({s.url()}, 20), &c).ok());
  std::shared_ptr<Subscription> sub;
  EXPECT_EQ(c->Publish("a.*", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Publish("", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Publish("a b", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->SubscribeSync("a..b", &sub).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->QueueSubscribeSync("a", "", &sub).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->QueueSubscribeSync("a", "g g", &sub).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Publish("a", std::string((1 << 20) + 1, 'x')).code(), StatusCode::kMaxPayload);
  ASSERT_TRUE(c->SubscribeSync("a", &sub).ok());
  Message m;
  EXPECT_EQ(sub->NextMsg(&m, milliseconds(10)).code(), StatusCode::kTimeout);
}

// ---- discovery through a (fake) ZooKeeper and the cache file ----

class ClientDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zmesh-discovery-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    zk_ = std::make_shared<zk::FakeZooKeeper>();
    servers_ = MakeServers(3);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  void RegisterNode(int i) {
    zk::NodeInfo n;
    n.id = "n" + std::to_string(i);
    n.client_url = servers_[static_cast<size_t>(i)]->url();
    n.peer_url = "127.0.0.1:1";
    zk_->Put("/zmesh/t/nodes/" + n.id, zk::EncodeNodeInfo(n));
  }

  Engine::Hooks Hooks() {
    Engine::Hooks h;
    h.registry_factory = [zk = zk_](zk::RegistryOptions o, zk::Executor e) -> std::unique_ptr<zk::Registry> {
      return std::make_unique<zk::FakeRegistry>(zk, std::move(o), std::move(e));
    };
    return h;
  }

  Options ZkOptions(uint64_t seed) {
    Options o = FastOptions({}, seed);
    o.zk_connect = "fake:2181";
    o.zk_root = "/zmesh/t";
    o.use_node_cache = true;
    o.node_cache_file = dir_ + "/nodes.json";
    return o;
  }

  std::string dir_;
  std::shared_ptr<zk::FakeZooKeeper> zk_;
  std::vector<std::unique_ptr<FakeServer>> servers_;
};

TEST_F(ClientDiscoveryTest, FindsNodesInZooKeeperAndWritesTheCache) {
  RegisterNode(0);
  RegisterNode(1);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(ClientAccess::Connect(ZkOptions(21), Hooks(), &c).ok());
  const int on = ConnectedTo(*c, servers_);
  EXPECT_TRUE(on == 0 || on == 1);
  std::string error;
  ASSERT_TRUE(WaitFor(kWait, [&] {
    auto cached = ReadNodeCache(dir_ + "/nodes.json", &error);
    return cached && cached->size() == 2;
  }));
  // A node joining is learned, and used when ours dies.
  RegisterNode(2);
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->known_servers().size() == 3; }));
  servers_[static_cast<size_t>(on)]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers_) != on; }));
}

TEST_F(ClientDiscoveryTest, UsesTheCacheFileWhenZooKeeperIsDown) {
  ASSERT_TRUE(WriteNodeCache(dir_ + "/nodes.json", "fake:2181", "/zmesh/t",
                             {{"n1", servers_[1]->url()}, {"n2", servers_[2]->url()}})
                  .ok());
  zk_->DisconnectAll();  // ZooKeeper unreachable from the start
  std::unique_ptr<Client> c;
  ASSERT_TRUE(ClientAccess::Connect(ZkOptions(22), Hooks(), &c).ok());
  const int on = ConnectedTo(*c, servers_);
  EXPECT_TRUE(on == 1 || on == 2) << on;
  // And its node dies while ZooKeeper is still down: the cached list carries it.
  servers_[static_cast<size_t>(on)]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers_) == 3 - on; }));
}

TEST_F(ClientDiscoveryTest, ZooKeeperGoingDownKeepsTheLastList) {
  RegisterNode(0);
  RegisterNode(1);
  RegisterNode(2);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(ClientAccess::Connect(ZkOptions(23), Hooks(), &c).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->known_servers().size() == 3; }));
  zk_->DisconnectAll();
  const int on = ConnectedTo(*c, servers_);
  servers_[static_cast<size_t>(on)]->Kill();
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->connected() && ConnectedTo(*c, servers_) != on; }));
}

TEST_F(ClientDiscoveryTest, NoNodesAnywhereFailsWithNoServers) {
  zk_->DisconnectAll();
  Options o = ZkOptions(24);
  o.initial_connect_timeout = milliseconds(300);
  std::unique_ptr<Client> c;
  EXPECT_EQ(ClientAccess::Connect(o, Hooks(), &c).code(), StatusCode::kNoServers);
}

TEST_F(ClientDiscoveryTest, StaleCacheDoesNotFailTheFirstConnectWhileZooKeeperAnswers) {
  // The cache names a node that is gone; ZooKeeper knows the live one.
  FakeServer gone;
  const std::string gone_url = gone.url();
  gone.Kill();
  ASSERT_TRUE(WriteNodeCache(dir_ + "/nodes.json", "fake:2181", "/zmesh/t", {{"old", gone_url}}).ok());
  RegisterNode(0);
  std::unique_ptr<Client> c;
  ASSERT_TRUE(ClientAccess::Connect(ZkOptions(25), Hooks(), &c).ok());
  EXPECT_EQ(ConnectedTo(*c, servers_), 0);
}

}  // namespace
}  // namespace zmesh::client

// Planned, lossless moves (client/move.h, docs/design-lossless-moves.md)
// end to end, against scripted fake old and new nodes
// (client_fake_server.h): make before break on lame duck, the exact order the
// application sees, publishes held back until MOVED, and every way a move
// ends otherwise (the new node failing before the cut, the old one dying or
// staying silent after it, a node without moves, Close during a move).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmesh/client.h>

#include "client/client_access.h"
#include "proto/connect.h"
#include "tests/support/wait_for.h"
#include "tests/unit/client_fake_server.h"

namespace zmesh::client {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;
using zmesh::testing::WaitFor;

constexpr milliseconds kWait(5000);

// What the application sees, in the order it sees it: messages ("m:<data>")
// and events ("e:<name>") both run on the dispatcher thread, in order.
class Timeline {
 public:
  EventHandler Events() {
    return [this](const Event& e) {
      if (e.type == EventType::kServersChanged) return;
      Add("e:" + std::string(EventTypeName(e.type)));
      if (e.type == EventType::kMoved) {
        std::lock_guard<std::mutex> lock(mu_);
        moved_url_ = e.url;
      }
    };
  }
  MessageHandler Messages() {
    return [this](Message m) { Add("m:" + std::string(m.data())); };
  }
  bool Has(const std::string& entry) const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::find(entries_.begin(), entries_.end(), entry) != entries_.end();
  }
  std::vector<std::string> Entries() const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_;
  }
  std::string moved_url() const {
    std::lock_guard<std::mutex> lock(mu_);
    return moved_url_;
  }

 private:
  void Add(std::string entry) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.push_back(std::move(entry));
  }
  mutable std::mutex mu_;
  std::vector<std::string> entries_;
  std::string moved_url_;
};

Options FastOptions(std::vector<std::string> servers, uint64_t seed) {
  Options o;
  o.servers = std::move(servers);
  o.connect_timeout = milliseconds(1000);
  o.initial_connect_timeout = milliseconds(3000);
  o.reconnect_wait_initial = milliseconds(20);
  o.reconnect_wait_max = milliseconds(200);
  o.stable_connection = milliseconds(100);
  o.ping_interval = milliseconds(60000);  // no keepalive PING in the logs unless a test asks
  o.random_seed = seed;
  o.use_node_cache = false;
  return o;
}

std::vector<std::unique_ptr<FakeServer>> MakeServers(int n, bool move) {
  std::vector<std::unique_ptr<FakeServer>> out;
  for (int i = 0; i < n; ++i) {
    FakeServer::Config cfg;
    cfg.name = "s" + std::to_string(i);
    cfg.move = move;
    out.push_back(std::make_unique<FakeServer>(cfg));
  }
  return out;
}

std::vector<std::string> UrlsOf(const std::vector<std::unique_ptr<FakeServer>>& servers) {
  std::vector<std::string> out;
  for (const auto& s : servers) out.push_back(s->url());
  return out;
}

int ConnectedTo(const Client& c, const std::vector<std::unique_ptr<FakeServer>>& servers) {
  const std::string url = c.connected_url();
  for (size_t i = 0; i < servers.size(); ++i) {
    if (url == servers[i]->url()) return static_cast<int>(i);
  }
  return -1;
}

// The move_token of a logged "CONNECT {...}", empty when there is none.
std::string MoveToken(const std::string& connect_entry) {
  proto::ConnectOptions opts;
  if (connect_entry.rfind("CONNECT ", 0) != 0 || !proto::DecodeConnect(connect_entry.substr(8), &opts)) return "";
  return opts.move_token.value_or("");
}

bool IsToken(const std::string& t) {
  return t.size() == 16 &&
         std::all_of(t.begin(), t.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void AnnounceLameDuck(FakeServer* node) {
  proto::Info leaving = node->info();
  leaving.lame_duck = true;
  node->SendInfo(leaving);
}

// Once the client answered a PING sent after them, it has read (and
// handled) everything `node` sent it before.
void ReadBarrier(FakeServer* node) {
  const size_t before = node->LogWith("PONG").size();
  node->SendToAll("PING\r\n");
  ASSERT_TRUE(WaitFor(kWait, [&] { return node->LogWith("PONG").size() == before + 1; }));
}

// The entries of `log` after the first one equal to `entry`.
std::vector<std::string> After(const std::vector<std::string>& log, const std::string& entry) {
  auto it = std::find(log.begin(), log.end(), entry);
  if (it == log.end()) return {"<" + entry + " missing>"};
  return std::vector<std::string>(it + 1, log.end());
}

// Two nodes (both taking part in moves unless told otherwise) and a client
// on one of them, old_node, with an async subscription to "data" recorded
// in `seen`; new_node is the other.
class ClientMoveTest : public ::testing::Test {
 protected:
  void Start(uint64_t seed, const std::function<void(Options*)>& tweak = {}, bool move = true) {
    servers_ = MakeServers(2, move);
    Options o = FastOptions(UrlsOf(servers_), seed);
    o.on_event = seen.Events();
    if (tweak) tweak(&o);
    ASSERT_TRUE(Client::Connect(o, &c).ok());
    ASSERT_TRUE(c->Subscribe("data", seen.Messages(), &data).ok());
    first_ = ConnectedTo(*c, servers_);
    ASSERT_GE(first_, 0);
    old_node = servers_[static_cast<size_t>(first_)].get();
    new_node = servers_[static_cast<size_t>(1 - first_)].get();
  }

  // Lame duck without a move: drop, then connect, no token anywhere.
  void ExpectTodaysLameDuckPath() {
    AnnounceLameDuck(old_node);
    ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:reconnected"); }));
    EXPECT_EQ(ConnectedTo(*c, servers_), 1 - first_);
    const auto connects = new_node->LogWith("CONNECT");
    ASSERT_EQ(connects.size(), 1u);
    EXPECT_EQ(connects[0].find("move_token"), std::string::npos) << connects[0];
    EXPECT_TRUE(old_node->LogWith("MOVE").empty());
    EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "e:lame_duck", "e:disconnected", "e:reconnected"}));
    EXPECT_EQ(c->stats().moves + c->stats().moves_abandoned, 0u);
  }

  Timeline seen;  // before the client: its callbacks use it
  std::vector<std::unique_ptr<FakeServer>> servers_;
  std::unique_ptr<Client> c;
  std::shared_ptr<Subscription> data;
  int first_ = -1;
  FakeServer* old_node = nullptr;
  FakeServer* new_node = nullptr;
};

TEST_F(ClientMoveTest, LameDuckMovesMakeBeforeBreakAndKeepsTheOrder) {
  Start(31);
  std::shared_ptr<Subscription> work;
  ASSERT_TRUE(c->QueueSubscribe("work", "g1", [](Message) {}, &work).ok());
  old_node->Inject("data", "o1");
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("m:o1"); }));
  old_node->ClearLog();

  // Make: a second connection, CONNECT with the token, the same sids, PING.
  new_node->HoldPongs(true);
  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("PING").size() == 2; }))
      << ::testing::PrintToString(new_node->log());
  const auto made = new_node->log();
  ASSERT_EQ(made.size(), 5u) << ::testing::PrintToString(made);
  const std::string token = MoveToken(made[0]);
  EXPECT_TRUE(IsToken(token)) << made[0];
  EXPECT_EQ(made[1], "PING");  // the handshake's
  EXPECT_EQ(made[2], "SUB data " + std::to_string(data->sid()));
  EXPECT_EQ(made[3], "SUB work g1 " + std::to_string(work->sid()));
  EXPECT_EQ(made[4], "PING");
  EXPECT_TRUE(c->connected());
  EXPECT_EQ(ConnectedTo(*c, servers_), first_);

  // The application publishes during the move; the new node delivers early;
  // the old node keeps delivering.
  ASSERT_TRUE(c->Publish("out", "p1").ok());
  ASSERT_TRUE(c->Publish("out", "p2").ok());
  new_node->Inject("data", "n1");
  new_node->Inject("data", "n2");
  ReadBarrier(new_node);
  old_node->Inject("data", "o2");
  ReadBarrier(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("m:o2"); }));
  // No MOVE and no publish on the old node before the new node confirmed.
  EXPECT_EQ(old_node->log(), std::vector<std::string>{"PONG"});

  // Cut: the PONG for the re-subscription lets MOVE go out, and nothing after it.
  new_node->HoldPongs(false);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("MOVE").empty(); }));
  EXPECT_EQ(old_node->log(), (std::vector<std::string>{"PONG", "MOVE " + token}));
  ASSERT_TRUE(c->Publish("out", "p3").ok());
  old_node->Inject("data", "o3");  // still owed by the old node
  ReadBarrier(new_node);
  EXPECT_TRUE(new_node->LogWith("PUB").empty()) << "publishes went out before MOVED";

  // Switch.
  old_node->FinishMove(token);
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:moved"); }));
  EXPECT_EQ(seen.moved_url(), new_node->url());
  EXPECT_EQ(c->connected_url(), new_node->url());
  ASSERT_TRUE(c->Flush(kWait).ok());
  new_node->Inject("data", "n3");
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("m:n3"); }));

  // The old node's messages up to MOVED, then what the new node sent
  // meanwhile, then the live stream; a move, not a disconnect.
  EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "m:o1", "e:lame_duck", "m:o2", "m:o3", "m:n1",
                                                      "m:n2", "e:moved", "m:n3"}));
  EXPECT_EQ(After(old_node->log(), "MOVE " + token), std::vector<std::string>{});
  EXPECT_TRUE(old_node->LogWith("PUB").empty());
  EXPECT_EQ(new_node->LogWith("PUB"), (std::vector<std::string>{"PUB out p1", "PUB out p2", "PUB out p3"}));
  EXPECT_EQ(new_node->LogWith("SUB").size(), 2u) << "re-subscribed once";
  EXPECT_EQ(new_node->LogWith("CONNECT").size(), 1u);
  EXPECT_TRUE(WaitFor(kWait, [&] { return old_node->connections() == 0; }));
  const ClientStats stats = c->stats();
  EXPECT_EQ(stats.moves, 1u);
  EXPECT_EQ(stats.moves_abandoned, 0u);
  EXPECT_EQ(stats.reconnects, 0u);
}

// In a rolling restart the node a client moves to next has just left and
// come back, and the client still holds it out (Options::lame_duck_hold):
// a lame duck still moves there, make before break, instead of dropping and
// waiting out the hold disconnected (a requester lost two requests so).
TEST_F(ClientMoveTest, ALameDuckMoveTriesANodeStillHeldOutSinceItsOwnLameDuck) {
  Start(37);
  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("MOVE").empty(); }));
  old_node->FinishMove(old_node->LogWith("MOVE")[0].substr(5));
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:moved"); }));
  ASSERT_EQ(c->connected_url(), new_node->url());

  old_node->ClearLog();  // restarted: it serves again
  AnnounceLameDuck(new_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("CONNECT").empty(); }))
      << "the client never tried the node it holds out";
  EXPECT_TRUE(IsToken(MoveToken(old_node->LogWith("CONNECT")[0]))) << "dropped before connecting again";
  EXPECT_FALSE(seen.Has("e:disconnected"));
}

TEST_F(ClientMoveTest, NewNodeFailingBeforeTheCutFallsBackToTheLameDuckFailover) {
  Start(32);

  new_node->HoldPongs(true);
  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("PING").size() == 2; }));
  ASSERT_FALSE(MoveToken(new_node->LogWith("CONNECT").at(0)).empty());
  ASSERT_TRUE(c->Publish("out", "p1").ok());
  new_node->Inject("data", "n1");  // kept, then dropped with the move
  ReadBarrier(new_node);
  new_node->Kill();
  new_node->HoldPongs(false);
  new_node->ClearLog();

  // Abandoned: the old node is left the old way, never asked to MOVE.
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:disconnected"); }));
  EXPECT_TRUE(old_node->LogWith("MOVE").empty());
  new_node->Restart();
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:reconnected"); }));
  EXPECT_EQ(ConnectedTo(*c, servers_), 1 - first_);
  ASSERT_TRUE(c->Flush(kWait).ok());
  const auto connects = new_node->LogWith("CONNECT");
  ASSERT_FALSE(connects.empty());
  EXPECT_EQ(MoveToken(connects.back()), "") << "a plain reconnect carries no move_token";
  EXPECT_EQ(new_node->LogWith("PUB"), std::vector<std::string>{"PUB out p1"});
  EXPECT_TRUE(old_node->LogWith("PUB").empty());
  EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "e:lame_duck", "e:disconnected", "e:reconnected"}));
  EXPECT_EQ(c->stats().moves, 0u);
  EXPECT_EQ(c->stats().moves_abandoned, 1u);
}

TEST_F(ClientMoveTest, OldNodeDyingBeforeTheCutAbandonsTheMoveForTodaysFailover) {
  Start(39);

  new_node->HoldPongs(true);
  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("PING").size() == 2; }));
  ASSERT_TRUE(c->Publish("out", "p1").ok());
  new_node->Inject("data", "n1");  // e.g. a queue message the mesh chose for the new node
  ReadBarrier(new_node);
  old_node->Kill();

  // The move's connection is closed; failover connects afresh, without a token.
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("CONNECT").size() == 2; }));
  EXPECT_EQ(MoveToken(new_node->LogWith("CONNECT").at(1)), "");
  new_node->HoldPongs(false);
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:reconnected"); }));
  EXPECT_EQ(c->connected_url(), new_node->url());
  ASSERT_TRUE(c->Flush(kWait).ok());
  EXPECT_EQ(new_node->connections(), 1);
  EXPECT_EQ(new_node->LogWith("PUB"), std::vector<std::string>{"PUB out p1"});
  EXPECT_EQ(seen.Entries(),
            (std::vector<std::string>{"e:connected", "e:lame_duck", "m:n1", "e:disconnected", "e:reconnected"}));
  EXPECT_EQ(c->stats().moves_abandoned, 1u);
}

TEST_F(ClientMoveTest, OldNodeDyingAfterTheCutSwitchesWithWhatTheNewNodeSent) {
  Start(33);

  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("MOVE").empty(); }));
  new_node->Inject("data", "n1");
  new_node->Inject("data", "n2");
  ASSERT_TRUE(c->Publish("out", "p1").ok());
  ReadBarrier(new_node);
  old_node->Kill();

  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:reconnected"); }));
  EXPECT_EQ(c->connected_url(), new_node->url());
  ASSERT_TRUE(c->Flush(kWait).ok());
  new_node->Inject("data", "n3");
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("m:n3"); }));
  // The kept messages come first, reported as an unplanned failover.
  EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "e:lame_duck", "m:n1", "m:n2", "e:disconnected",
                                                      "e:reconnected", "m:n3"}));
  EXPECT_EQ(new_node->LogWith("PUB"), std::vector<std::string>{"PUB out p1"});
  EXPECT_EQ(new_node->LogWith("CONNECT").size(), 1u) << "no second connection: the move's is kept";
  EXPECT_EQ(c->stats().moves, 0u);
  EXPECT_EQ(c->stats().moves_abandoned, 1u);
  EXPECT_EQ(c->stats().reconnects, 1u);
}

TEST_F(ClientMoveTest, MovedNotComingInTimeSwitchesAnyway) {
  Start(34, [](Options* o) {
    o->move_timeout = milliseconds(300);
    o->ping_interval = milliseconds(50);  // keepalive goes on until the cut, never after it
  });

  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("MOVE").empty(); }));
  new_node->Inject("data", "n1");
  // The old node never says MOVED.
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:reconnected"); }));
  EXPECT_EQ(c->connected_url(), new_node->url());
  EXPECT_EQ(c->last_error().code(), StatusCode::kTimeout) << c->last_error();
  EXPECT_EQ(seen.Entries(),
            (std::vector<std::string>{"e:connected", "e:lame_duck", "m:n1", "e:disconnected", "e:reconnected"}));
  EXPECT_TRUE(WaitFor(kWait, [&] { return old_node->connections() == 0; })) << "the client closed the old connection";
  EXPECT_EQ(After(old_node->log(), old_node->LogWith("MOVE").at(0)), std::vector<std::string>{});
}

TEST_F(ClientMoveTest, NodeWithoutMoveSupportGetsTheOldBreakBeforeMake) {
  Start(35, {}, /*move=*/false);
  ExpectTodaysLameDuckPath();
}

TEST_F(ClientMoveTest, LosslessMovesSwitchedOffGetTheOldBreakBeforeMake) {
  Start(35, [](Options* o) { o->lossless_moves = false; });
  ExpectTodaysLameDuckPath();
}

// Mixed versions (an upgrade): a target that does not advertise "move" would
// ignore the token and duplicate what the old node delivers, so the move is
// abandoned there for the old way.
TEST_F(ClientMoveTest, TargetWithoutMoveSupportIsNotMovedTo) {
  FakeServer::Config without, with;
  without.name = "new";
  FakeServer target(without);
  with.name = "old";
  with.move = true;
  with.connect_urls = {target.key()};  // the client starts on `leaving` and learns `target`
  FakeServer leaving(with);
  Options o = FastOptions({leaving.url()}, 40);
  o.on_event = seen.Events();
  ASSERT_TRUE(Client::Connect(o, &c).ok());
  ASSERT_EQ(c->connected_url(), leaving.url());
  ASSERT_TRUE(WaitFor(kWait, [&] { return c->known_servers().size() == 2; }));
  ASSERT_TRUE(c->Subscribe("data", seen.Messages(), &data).ok());
  AnnounceLameDuck(&leaving);
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:reconnected"); }))
      << ::testing::PrintToString(seen.Entries()) << " " << ::testing::PrintToString(target.log()) << " "
      << c->last_error() << " " << ::testing::PrintToString(c->known_servers());
  EXPECT_EQ(c->connected_url(), target.url());
  const auto connects = target.LogWith("CONNECT");
  ASSERT_EQ(connects.size(), 2u) << ::testing::PrintToString(target.log());
  EXPECT_TRUE(IsToken(MoveToken(connects[0])));
  EXPECT_EQ(MoveToken(connects[1]), "");
  EXPECT_TRUE(leaving.LogWith("MOVE").empty());
  EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "e:lame_duck", "e:disconnected", "e:reconnected"}));
  EXPECT_EQ(c->stats().moves_abandoned, 1u);
  c.reset();  // before the nodes it is on
}

// The internal entry point (rebalancing): a move the node did not ask for,
// abandoned when the new node fails, leaves the client where it was, with
// what it queued meanwhile sent there in order.
TEST_F(ClientMoveTest, RequestedMoveAbandonedStaysOnTheOldNode) {
  Start(36);

  new_node->HoldPongs(true);
  ASSERT_TRUE(ClientAccess::RequestMove(c.get(), new_node->url()).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("PING").size() == 2; }));
  ASSERT_TRUE(c->Publish("out", "p1").ok());
  ASSERT_TRUE(c->Publish("out", "p2").ok());
  std::shared_ptr<Subscription> late;
  std::jthread subscriber([&] { EXPECT_TRUE(c->SubscribeSync("late", &late).ok()); });
  ReadBarrier(old_node);
  EXPECT_TRUE(old_node->LogWith("PUB").empty()) << "held back during the move";
  new_node->Kill();

  ASSERT_TRUE(WaitFor(kWait, [&] { return old_node->LogWith("PUB").size() == 2; }));
  subscriber.join();
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(old_node->LogWith("PUB"), (std::vector<std::string>{"PUB out p1", "PUB out p2"}));
  EXPECT_EQ(old_node->LogWith("SUB late "), std::vector<std::string>{"SUB late " + std::to_string(late->sid())});
  EXPECT_TRUE(old_node->LogWith("MOVE").empty());
  EXPECT_EQ(ConnectedTo(*c, servers_), first_);
  old_node->Inject("data", "o1");
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("m:o1"); }));
  EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "m:o1"}));
  EXPECT_EQ(c->stats().moves_abandoned, 1u);
}

// A requested move that completes: subscription changes made while it runs
// reach the new node after the switch, each once.
TEST_F(ClientMoveTest, RequestedMoveCarriesSubscriptionChangesMadeMeanwhile) {
  Start(37);
  std::shared_ptr<Subscription> gone;
  ASSERT_TRUE(c->SubscribeSync("gone", &gone).ok());

  new_node->HoldPongs(true);
  ASSERT_TRUE(ClientAccess::RequestMove(c.get(), new_node->url()).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("PING").size() == 2; }));
  std::shared_ptr<Subscription> late;
  std::jthread subscriber([&] { EXPECT_TRUE(c->SubscribeSync("late", &late).ok()); });
  ASSERT_TRUE(gone->Unsubscribe().ok());
  new_node->HoldPongs(false);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("MOVE").empty(); }));
  old_node->FinishMove(old_node->LogWith("MOVE").at(0).substr(5));
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:moved"); }));
  subscriber.join();
  ASSERT_NE(late, nullptr);
  ASSERT_TRUE(c->Flush(kWait).ok());
  EXPECT_EQ(new_node->LogWith("SUB late "), std::vector<std::string>{"SUB late " + std::to_string(late->sid())});
  EXPECT_EQ(new_node->LogWith("UNSUB"), std::vector<std::string>{"UNSUB " + std::to_string(gone->sid())});
  EXPECT_TRUE(old_node->LogWith("SUB late").empty());
  EXPECT_TRUE(old_node->LogWith("UNSUB").empty());
  new_node->Inject("late", "x");
  Message m;
  ASSERT_TRUE(late->NextMsg(&m, kWait).ok());
  EXPECT_EQ(m.data(), "x");
  EXPECT_EQ(seen.Entries(), (std::vector<std::string>{"e:connected", "e:moved"}));
}

// Rebalancing: the node names another in INFO "move_to"; the client, which
// said in CONNECT that it can move, makes a planned move there.
TEST_F(ClientMoveTest, InfoMoveToStartsAPlannedMoveThere) {
  Start(39);
  const auto connects = old_node->LogWith("CONNECT");
  ASSERT_EQ(connects.size(), 1u);
  proto::ConnectOptions opts;
  ASSERT_TRUE(proto::DecodeConnect(connects[0].substr(8), &opts));
  EXPECT_EQ(opts.moves, std::optional<bool>(true)) << connects[0];
  proto::Info info = old_node->info();
  info.move_to = new_node->url();
  old_node->SendInfo(info);
  ASSERT_TRUE(WaitFor(kWait, [&] { return !old_node->LogWith("MOVE").empty(); }));
  EXPECT_TRUE(IsToken(MoveToken(new_node->LogWith("CONNECT").at(0))));
  old_node->FinishMove(old_node->LogWith("MOVE").at(0).substr(5));
  ASSERT_TRUE(WaitFor(kWait, [&] { return seen.Has("e:moved"); }));
  EXPECT_EQ(ConnectedTo(*c, servers_), 1 - first_);
  EXPECT_EQ(c->stats().moves, 1u);
}

TEST_F(ClientMoveTest, CloseDuringAMoveClosesBothConnections) {
  Start(38);
  new_node->HoldPongs(true);
  AnnounceLameDuck(old_node);
  ASSERT_TRUE(WaitFor(kWait, [&] { return new_node->LogWith("PING").size() == 2; }));
  c->Close();
  EXPECT_EQ(c->state(), ConnectionState::kClosed);
  EXPECT_TRUE(WaitFor(kWait, [&] { return old_node->connections() == 0 && new_node->connections() == 0; }));
}

}  // namespace
}  // namespace zmesh::client

// Seamless upgrades and scaling (issue 12 items 1, 3 and 4): zmesh::Client
// connections move between nodes losing, duplicating and reordering
// nothing, and the mesh keeps them balanced.
//
// The load, on every node it starts on: subscriber clients, each with a
// plain, a wildcard and a queue-group subscription, and a publisher client
// ("<name>#<seq>" every 2 ms); a responder and a requester keep a request in
// flight all the time. Clients start pinned to one node (their only seed)
// and learn the others from INFO connect_urls.
//
// Each scenario changes the mesh under that load the documented way (SIGTERM
// = lame duck, then restart on the same ports; or start new nodes), then
// stops the publishers and checks, per subscriber, every publisher's every
// message exactly once and in order on the plain and the wildcard
// subscription; over the queue group's members, every message exactly once,
// and each member's messages in each publisher's order; every request
// answered; and the nodes' client counts within ±20 % of even.
//
// Every wait is bounded; nodes are signalled by PID only; loopback only.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <zmesh/client.h>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/wait_for.h"
#include "tests/support/zookeeper_server.h"

namespace zmesh::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSubject[] = "roll.data";
constexpr char kWildcard[] = "roll.*";
constexpr char kQueue[] = "workers";
constexpr char kRequestSubject[] = "roll.service";
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr milliseconds kWait(60000);
#else
constexpr milliseconds kWait(30000);
#endif

// One zmesh::Client and what it saw. Handlers run on its dispatcher thread.
class LoadClient {
 public:
  explicit LoadClient(std::string name) : name_(std::move(name)) {}
  ~LoadClient() {
    StopPublishing();
    if (client_) client_->Close();
  }

  Status Connect(const std::string& seed) {
    Options o;
    o.servers = {seed};
    o.name = name_;
    o.connect_timeout = milliseconds(2000);
    o.reconnect_wait_initial = milliseconds(50);
    o.reconnect_wait_max = milliseconds(500);
    o.ping_interval = milliseconds(1000);
    o.on_event = [this](const Event& e) {
      std::lock_guard<std::mutex> lock(mu_);
      ++events_[std::string(EventTypeName(e.type))];
      // When (UTC, as the node logs print it) and where it went, for a
      // failure's report (bounded).
      if (timeline_.size() < 200) {
        const auto now = std::chrono::system_clock::now();
        const std::time_t secs = std::chrono::system_clock::to_time_t(now);
        const auto ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
        std::tm tm{};
        gmtime_r(&secs, &tm);
        char when[32];
        std::snprintf(when, sizeof(when), "%02d:%02d:%02d.%03d ", tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
        timeline_.push_back(when + std::string(EventTypeName(e.type)) + " " + e.url +
                            (e.status.ok() ? "" : " (" + e.status.message() + ")"));
      }
    };
    return Client::Connect(std::move(o), &client_);
  }

  Status SubscribeAll() {
    std::shared_ptr<Subscription> s;
    Status st = client_->Subscribe(kSubject, [this](Message m) { Record(&plain_, m); }, &s);
    if (!st.ok()) return st;
    subs_.push_back(s);
    st = client_->Subscribe(kWildcard, [this](Message m) { Record(&wildcard_, m); }, &s);
    if (!st.ok()) return st;
    subs_.push_back(s);
    st = client_->QueueSubscribe(kSubject, kQueue, [this](Message m) { Record(&queue_, m); }, &s);
    if (!st.ok()) return st;
    subs_.push_back(s);
    return client_->Flush(seconds(10));
  }

  Status Respond() {
    std::shared_ptr<Subscription> s;
    Status st = client_->Subscribe(kRequestSubject, [this](Message m) {
      client_->Publish(m.reply(), m.data());
    }, &s);
    subs_.push_back(s);
    return st.ok() ? client_->Flush(seconds(10)) : st;
  }

  void StartPublishing() {
    thread_ = std::thread([this] {
      uint64_t n = 1;
      while (!stop_) {
        const Status st = client_->Publish(kSubject, SeqPayload(name_, n));
        if (st.ok()) {
          published_.store(n++);
        } else {
          std::lock_guard<std::mutex> lock(mu_);
          if (errors_++ == 0) first_error_ = st.ToString();
        }
        std::this_thread::sleep_for(milliseconds(2));  // the publishing rate
      }
    });
  }

  void StartRequesting() {
    thread_ = std::thread([this] {
      uint64_t n = 0;
      while (!stop_) {
        Message reply;
        const std::string body = "req-" + std::to_string(++n);
        const auto sent = std::chrono::system_clock::now();
        const Status st = client_->Request(kRequestSubject, body, seconds(5), &reply);
        std::lock_guard<std::mutex> lock(mu_);
        if (st.ok() && reply.data() == body) {
          ++answered_;
        } else if (errors_++ == 0) {
          first_error_ = (st.ok() ? "wrong reply " + std::string(reply.data()) : st.ToString()) + " (" + body +
                         " sent at " + std::to_string(std::chrono::duration_cast<milliseconds>(
                                                          sent.time_since_epoch()).count() % 100000) + " ms)";
        }
      }
    });
  }

  void StopPublishing() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  const std::string& name() const { return name_; }
  Client& client() { return *client_; }
  uint64_t published() const { return published_.load(); }
  Receipts plain() const { return Get(plain_); }
  Receipts wildcard() const { return Get(wildcard_); }
  Receipts queue() const { return Get(queue_); }
  uint64_t From(const std::string& publisher) const {
    std::lock_guard<std::mutex> lock(mu_);
    return plain_.From(publisher);
  }
  uint64_t errors() const {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  std::string first_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }
  uint64_t answered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return answered_;
  }
  // The events it saw, with their time of day.
  std::string Timeline() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const std::string& line : timeline_) out += "    " + line + "\n";
    return out;
  }
  int events(const std::string& type) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = events_.find(type);
    return it == events_.end() ? 0 : it->second;
  }

 private:
  void Record(Receipts* r, const Message& m) {
    std::lock_guard<std::mutex> lock(mu_);
    r->Add(std::string(m.subject()), std::string(m.data()));
  }
  Receipts Get(const Receipts& r) const {
    std::lock_guard<std::mutex> lock(mu_);
    return r;
  }

  const std::string name_;
  std::unique_ptr<Client> client_;
  std::vector<std::shared_ptr<Subscription>> subs_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> published_{0};
  mutable std::mutex mu_;
  Receipts plain_, wildcard_, queue_;
  uint64_t errors_ = 0;
  uint64_t answered_ = 0;
  std::string first_error_;
  std::map<std::string, int> events_;
  std::vector<std::string> timeline_;
};

class LosslessRollTest : public MeshFixture {
 protected:
  static constexpr int kSubscribersPerNode = 3;

  // Nodes on fixed ports (a restarted node comes back where it was), lame
  // duck fast enough for a test.
  void AddNodes(int count) {
    const std::vector<int> ports = FreeLoopbackPorts(3 * count);
    ASSERT_EQ(ports.size(), static_cast<size_t>(3 * count));
    for (int k = 0; k < count; ++k) {
      MeshNodeSpec spec;
      spec.client_port = static_cast<uint16_t>(ports[3 * k]);
      spec.peer_port = static_cast<uint16_t>(ports[3 * k + 1]);
      spec.http_port = static_cast<uint16_t>(ports[3 * k + 2]);
      spec.extra_args = {"--lame_duck_grace_ms=500", "--lame_duck_duration_ms=3000"};
      mesh_->Add(spec);
    }
  }

  // The load, started on `nodes`: subscribers and a publisher on each, the
  // responder on the last, the requester on the first.
  void StartLoad(const std::vector<int>& nodes) {
    for (int i : nodes) {
      for (int k = 0; k < kSubscribersPerNode; ++k) {
        auto c = std::make_unique<LoadClient>("sub" + std::to_string(i + 1) + "-" + std::to_string(k + 1));
        ASSERT_TRUE(c->Connect(mesh_->client_url(i)).ok()) << c->name();
        ASSERT_TRUE(c->SubscribeAll().ok()) << c->name();
        subscribers_.push_back(std::move(c));
      }
    }
    responder_ = std::make_unique<LoadClient>("responder");
    ASSERT_TRUE(responder_->Connect(mesh_->client_url(nodes.back())).ok());
    ASSERT_TRUE(responder_->Respond().ok());
    requester_ = std::make_unique<LoadClient>("requester");
    ASSERT_TRUE(requester_->Connect(mesh_->client_url(nodes.front())).ok());
    for (int i : nodes) {
      auto p = std::make_unique<LoadClient>("pub" + std::to_string(i + 1));
      ASSERT_TRUE(p->Connect(mesh_->client_url(i)).ok()) << p->name();
      publishers_.push_back(std::move(p));
    }
    for (auto& p : publishers_) p->StartPublishing();
    requester_->StartRequesting();
    ASSERT_TRUE(Flowing(100)) << "traffic does not flow";
  }

  // Every subscriber got `more` new messages from every publisher.
  bool Flowing(uint64_t more) {
    std::map<std::pair<size_t, std::string>, uint64_t> before;
    for (size_t s = 0; s < subscribers_.size(); ++s) {
      for (auto& p : publishers_) before[{s, p->name()}] = subscribers_[s]->From(p->name());
    }
    return WaitFor(kWait, [&] {
      for (size_t s = 0; s < subscribers_.size(); ++s) {
        for (auto& p : publishers_) {
          if (subscribers_[s]->From(p->name()) < before[{s, p->name()}] + more) return false;
        }
      }
      return true;
    });
  }

  // Lame duck (SIGTERM) and wait for the node to exit.
  void Leave(int v) {
    ASSERT_TRUE(mesh_->Signal(v, SIGTERM));
    const std::optional<int> status = mesh_->node(v).process->WaitExit(kWait);
    ASSERT_TRUE(status.has_value()) << mesh_->id(v) << " did not exit\n" << mesh_->Log(v);
  }

  // Client connections per node, from /varz.
  std::map<int, int64_t> Connections(const std::vector<int>& nodes) {
    std::map<int, int64_t> out;
    for (int i : nodes) {
      auto v = mesh_->Varz(i);
      out[i] = v ? v->value("connections", int64_t{-1}) : -1;
    }
    return out;
  }

  // Every node within ±20 % of an even share.
  ::testing::AssertionResult Balanced(const std::vector<int>& nodes) {
    const std::map<int, int64_t> c = Connections(nodes);
    int64_t total = 0;
    for (auto& [i, n] : c) total += n;
    const double even = static_cast<double>(total) / static_cast<double>(nodes.size());
    std::string text;
    bool ok = true;
    for (auto& [i, n] : c) {
      text += mesh_->id(i) + "=" + std::to_string(n) + " ";
      if (std::abs(static_cast<double>(n) - even) > 0.2 * even) ok = false;
    }
    if (ok) return ::testing::AssertionSuccess() << text;
    return ::testing::AssertionFailure() << "not within 20 % of " << even << ": " << text;
  }

  // Stops the load and checks every promise.
  void StopAndCheck(const std::vector<int>& nodes) {
    requester_->StopPublishing();
    std::map<std::string, uint64_t> published;
    for (auto& p : publishers_) {
      p->StopPublishing();
      ASSERT_TRUE(p->client().Flush(kWait).ok()) << p->name();
      published[p->name()] = p->published();
      EXPECT_EQ(p->errors(), 0u) << p->name() << ": " << p->first_error();
    }
    // Everything published has arrived once every subscriber holds every
    // publisher's last message (per-publisher order).
    const bool all_in = WaitFor(kWait, [&] {
      for (auto& s : subscribers_) {
        for (auto& [pub, last] : published) {
          if (s->plain().Copies(pub, last) == 0 || s->wildcard().Copies(pub, last) == 0) return false;
        }
      }
      return true;
    });
    EXPECT_TRUE(all_in) << "some subscriber never got a publisher's last message";
    if (!all_in) {
      // Where the stuck subscriber is and what its connection holds (a
      // move's filter shows under "move").
      for (int i : nodes) {
        auto connz = mesh_->Connz(i, "subs=1");
        std::cerr << "---- " << mesh_->id(i) << " /connz ----\n" << (connz ? connz->dump(1) : "(no answer)") << "\n";
      }
    }
    std::vector<Receipts> queue;
    uint64_t moved = 0, queue_reorders = 0;
    for (auto& s : subscribers_) {
      EXPECT_TRUE(ExactlyOnceInOrder(s->plain(), published)) << s->name() << " plain; its events:\n" << s->Timeline();
      EXPECT_TRUE(ExactlyOnceInOrder(s->wildcard(), published)) << s->name() << " wildcard";
      // Each member in each publisher's order across its moves
      // (docs/design-lossless-moves.md, "Queue groups"); exactly once over
      // the group below.
      EXPECT_EQ(s->queue().order_violations, 0u)
          << s->name() << " queue member, first: " << s->queue().first_order_violation << "; its events:\n"
          << s->Timeline();
      queue_reorders += s->queue().order_violations;
      queue.push_back(s->queue());
      moved += static_cast<uint64_t>(s->events("moved"));
    }
    EXPECT_TRUE(ExactlyOnce(Merge(queue), published)) << "queue group";
    EXPECT_EQ(requester_->errors(), 0u) << "requests not answered: " << requester_->first_error()
                                        << "; the requester's events:\n" << requester_->Timeline();
    EXPECT_GT(requester_->answered(), 0u);
    uint64_t total_published = 0;
    for (auto& [pub, n] : published) total_published += n;
    std::cout << "[ roll     ] " << total_published << " messages published; " << moved
              << " subscriber moves; " << queue_reorders << " queue-member reorders; " << requester_->answered() << " requests answered; connections "
              << Balanced(nodes).message() << "\n";
    subscribers_.clear();
    publishers_.clear();
    requester_.reset();
    responder_.reset();
  }

  std::vector<std::unique_ptr<LoadClient>> subscribers_, publishers_;
  std::unique_ptr<LoadClient> requester_, responder_;
};

TEST_F(LosslessRollTest, RollingRestartMovesEveryClientLosslesslyAndRebalances) {
  std::string error;
  AddNodes(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, kWait, &error)) << error;
  StartLoad({0, 1, 2});
  for (int v = 0; v < 3; ++v) {
    Leave(v);
    ASSERT_TRUE(mesh_->Start(v, &error)) << error;
    ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, kWait, &error)) << error;
    ASSERT_TRUE(Flowing(100)) << "traffic stopped after restarting " << mesh_->id(v);
  }
  EXPECT_TRUE(WaitFor(kWait, [&] { return static_cast<bool>(Balanced({0, 1, 2})); })) << Balanced({0, 1, 2}).message();
  StopAndCheck({0, 1, 2});
}

TEST_F(LosslessRollTest, ScaleInAndScaleOutMoveClientsLosslessly) {
  std::string error;
  AddNodes(4);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, kWait, &error)) << error;
  StartLoad({0, 1, 2});
  // Scale in: 3 -> 2.
  Leave(2);
  ASSERT_TRUE(Flowing(100));
  EXPECT_TRUE(WaitFor(kWait, [&] { return static_cast<bool>(Balanced({0, 1})); })) << Balanced({0, 1}).message();
  // Scale out: 2 -> 4.
  ASSERT_TRUE(mesh_->Start(2, &error)) << error;
  ASSERT_TRUE(mesh_->Start(3, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2, 3}, kWait, &error)) << error;
  EXPECT_TRUE(WaitFor(kWait, [&] { return static_cast<bool>(Balanced({0, 1, 2, 3})); })) << Balanced({0, 1, 2, 3}).message();
  ASSERT_TRUE(Flowing(100));
  StopAndCheck({0, 1, 2, 3});
}

}  // namespace
}  // namespace zmesh::testing

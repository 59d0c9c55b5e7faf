// Graceful leave (lame duck) under a rolling restart of all three nodes
// while traffic keeps flowing (issue 5, item 2; SPEC §2, §3 "Graceful
// leave", §6; docs/peer-protocol.md "Graceful leave").
//
// Load, all running through the whole restart sequence:
// - zmesh::Client (ZooKeeper discovery, failover on lame duck): two
//   publishers "zpub1/2" ("<name>#<seq>" on roll.z, one every 2 ms) and two
//   subscribers "zsub1/2" (roll.z, plus the Go publisher's subject);
// - the standard Go NATS client (natscheck failover, extended for this test
//   with --until-signal, --probe-subject and a timeline): one publisher and
//   one subscriber, both given all three URLs, 500 msgs/s;
// - per restart step, raw NATS connections pinned to the two nodes that are
//   NOT being restarted: a subscriber and a continuous publisher on each.
// Each step: SIGTERM node v (--lame_duck_grace_ms=300,
// --lame_duck_duration_ms=1500), wait for it to exit, start it again on the
// same ports, wait until the mesh has converged, then check.
//
// Interpretation (NATS delivery is at most once): a client that is itself
// being moved between nodes may miss messages published while it is between
// them. What must hold:
// (1) Zero lost subscriptions: after every step every subscriber receives
//     again — each zmesh subscriber gets fresh messages from both zmesh
//     publishers (so both ends work), the Go subscriber gets a fresh probe
//     ("PROBE <payload>" from natscheck), and the Go publisher's messages
//     reach the zmesh subscribers again.
// (2) No publish errors: zmesh::Client::Publish never returns an error, and
//     natscheck reports pub_errors == 0 for the Go publisher.
// (3) Exactly once between clients not being moved: in each step the raw
//     pinned pairs (both directions and same-node pairs on the two nodes that
//     stay up) get every message exactly once, in order, for the whole step
//     (leave, exit, rejoin). The pinned subscribers also subscribe roll.z and
//     must get every zmesh publisher message from the moment its interest was
//     proven to the end of the step exactly once — also while that publisher
//     was failing over (SPEC §3: "for clients that fail over, no buffered
//     publishes" are lost). Over the whole run, a message a zmesh or Go
//     subscriber missed must have been published while that subscriber (for
//     Go: that subscriber or the Go publisher, whose in-flight writes the
//     server may cut off) was between nodes: from 500 ms before its lame duck
//     notice or disconnect to 1 s after its reconnect. No duplicates
//     anywhere, ever.
// (4) The leaving node: every client (raw check) receives INFO with
//     "ldm":true; its znode disappears from ZooKeeper and the other nodes'
//     /peerz show it member:false while its existing client connection still
//     answers PING and its /healthz still answers; the delete is ordered
//     before the listener closes ("delete the znode first; close the
//     listener"): a ZooKeeper read issued right after the first refused
//     connection never finds the znode (a standalone ZooKeeper orders that
//     read after a delete already sent, so this proves the order of the
//     requests, not that the server waited for the delete to complete);
//     no client is closed before the grace period nor after grace +
//     duration (+1 s); it exits 0 within grace + duration + 5 s, without
//     hitting its drain bound; it rejoins as a full member (/healthz 200,
//     mesh converged) before the next node is restarted.
//     Each zmesh client and each Go client was told about lame duck at least
//     once (every node is restarted, so every client sat on a leaving node).
//
// Every wait is bounded; processes are signalled by PID only; loopback only.
// The only paced loops are the publishers' rates.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmesh/client.h>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/wait_for.h"
#include "tests/support/zookeeper_server.h"

namespace zmesh::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// What the test observes between SIGTERM and the end of the grace period
// (znode gone, /peerz, PING/PONG) must fit inside it; the sanitizers make
// every step several times slower, so they get a longer grace.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int64_t kGraceMs = 1000;
#else
constexpr int64_t kGraceMs = 300;
#endif
constexpr int64_t kDurationMs = 1500;
constexpr int64_t kExitBoundMs = kGraceMs + kDurationMs + 5000;
constexpr milliseconds kWait(15000);
// A loss is explained by a move if it was published within
// [notice - kBeforeMoveMs, reconnect + kAfterMoveMs] of the client's move.
constexpr int64_t kBeforeMoveMs = 500;
constexpr int64_t kAfterMoveMs = 1000;
constexpr int kCloseWatchers = 8;  // extra raw clients on the leaving node

const std::string kZSubject = "roll.z";
const std::string kGoPrefix = "rollgo";
const std::string kGoSubject = kGoPrefix + ".failover";  // natscheck's r.subject("failover")
const std::string kGoProbe = "rollprobe.go";

int64_t UnixMs() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

bool ParseSeq(std::string_view payload, std::string* publisher, uint64_t* seq) {
  const size_t hash = payload.rfind('#');
  if (hash == std::string_view::npos || hash == 0 || hash + 1 >= payload.size() || payload.size() - hash > 12) {
    return false;
  }
  uint64_t v = 0;
  for (size_t k = hash + 1; k < payload.size(); ++k) {
    if (payload[k] < '0' || payload[k] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(payload[k] - '0');
  }
  *publisher = std::string(payload.substr(0, hash));
  *seq = v;
  return v > 0;
}

// --- Move windows ------------------------------------------------------------------

struct MoveEvent {
  int64_t unix_ms = 0;
  std::string what;  // "lame_duck", "disconnect", "reconnect"
  std::string url;
};

struct Window {
  int64_t from = 0, to = 0;
};

// The intervals during which a client was between nodes: from its first lame
// duck notice or disconnect to its next reconnect, widened by the margins.
std::vector<Window> MoveWindows(const std::vector<MoveEvent>& events) {
  std::vector<Window> out;
  bool moving = false;
  int64_t start = 0;
  for (const MoveEvent& e : events) {
    if ((e.what == "lame_duck" || e.what == "disconnect") && !moving) {
      moving = true;
      start = e.unix_ms;
    }
    if (e.what == "reconnect" && moving) {
      out.push_back({start - kBeforeMoveMs, e.unix_ms + kAfterMoveMs});
      moving = false;
    }
  }
  if (moving) out.push_back({start - kBeforeMoveMs, std::numeric_limits<int64_t>::max()});
  return out;
}

std::vector<Window> Merge(std::vector<Window> w) {
  std::sort(w.begin(), w.end(), [](const Window& a, const Window& b) { return a.from < b.from; });
  std::vector<Window> out;
  for (const Window& x : w) {
    if (!out.empty() && x.from <= out.back().to) {
      out.back().to = std::max(out.back().to, x.to);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

bool Within(const std::vector<Window>& windows, int64_t from, int64_t to) {
  for (const Window& w : windows) {
    if (w.from <= from && to <= w.to) return true;
  }
  return false;
}

std::string Describe(const std::vector<MoveEvent>& events, int64_t origin) {
  std::string out;
  for (const MoveEvent& e : events) {
    out += " " + e.what + "@" + std::to_string(e.unix_ms - origin) + "ms" + (e.url.empty() ? "" : "(" + e.url + ")");
  }
  return out;
}

// --- zmesh::Client with counting and a timeline ----------------------------------

class ZClient {
 public:
  explicit ZClient(std::string name) : name_(std::move(name)) {}
  ~ZClient() {
    StopPublishing();
    if (client_) client_->Close();
  }
  ZClient(const ZClient&) = delete;
  ZClient& operator=(const ZClient&) = delete;

  const std::string& name() const { return name_; }
  Client& client() { return *client_; }
  std::string ProbeSubject() const { return "_zprobe." + name_; }

  Status Connect(Options o) {
    o.name = name_;
    o.on_event = [this](const Event& e) { OnEvent(e); };
    return Client::Connect(std::move(o), &client_);
  }

  // Counts "<publisher>#<seq>" payloads on `subject`, copies per seq.
  Status SubscribeSeq(const std::string& subject) {
    std::shared_ptr<Subscription> s;
    Status st = client_->Subscribe(subject, [this](Message m) {
      std::string publisher;
      uint64_t seq = 0;
      std::lock_guard<std::mutex> lock(mu_);
      if (!ParseSeq(m.data(), &publisher, &seq)) {
        ++unparsed_;
        return;
      }
      auto& c = copies_[publisher];
      if (c.size() <= seq) c.resize(std::max<size_t>(seq + 1, c.size() * 2), 0);
      ++c[seq];
      max_seq_[publisher] = std::max(max_seq_[publisher], seq);
    }, &s);
    subs_.push_back(s);
    return st;
  }
  // Counts every message on `subject`.
  Status SubscribeCount(const std::string& subject) {
    std::shared_ptr<Subscription> s;
    Status st = client_->Subscribe(subject, [this](Message) { counted_.fetch_add(1); }, &s);
    subs_.push_back(s);
    return st;
  }
  Status SubscribeProbe() {
    std::shared_ptr<Subscription> s;
    Status st = client_->Subscribe(ProbeSubject(), [this](Message m) {
      std::lock_guard<std::mutex> lock(mu_);
      probes_.insert(std::string(m.data()));
    }, &s);
    subs_.push_back(s);
    return st;
  }
  bool ProbeArrived(const std::string& payload) const {
    std::lock_guard<std::mutex> lock(mu_);
    return probes_.count(payload) > 0;
  }
  uint64_t MaxSeq(const std::string& publisher) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = max_seq_.find(publisher);
    return it == max_seq_.end() ? 0 : it->second;
  }
  uint32_t Copies(const std::string& publisher, uint64_t seq) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = copies_.find(publisher);
    return it == copies_.end() || seq >= it->second.size() ? 0 : it->second[seq];
  }
  uint64_t counted() const { return counted_.load(); }
  uint64_t unparsed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unparsed_;
  }

  // Publishes "<name>#<seq>" on `subject` every `period` on a thread of its
  // own; an error is counted and the same seq is tried again.
  void StartPublishing(const std::string& subject, milliseconds period) {
    thread_ = std::thread([this, subject, period] {
      uint64_t n = 1;
      while (!stop_) {
        const int64_t t = UnixMs();
        const Status st = client_->Publish(subject, name_ + "#" + std::to_string(n));
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          if (errors_++ == 0) first_error_ = st.ToString() + " at seq " + std::to_string(n);
        } else {
          {
            std::lock_guard<std::mutex> lock(mu_);
            pub_ms_.push_back(t);  // index n - 1
          }
          last_.store(n);
          ++n;
        }
        std::this_thread::sleep_for(period);  // the publishing rate
      }
    });
  }
  void StopPublishing() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t last() const { return last_.load(); }
  int64_t PublishedAtMs(uint64_t seq) const {
    std::lock_guard<std::mutex> lock(mu_);
    return seq >= 1 && seq <= pub_ms_.size() ? pub_ms_[seq - 1] : 0;
  }
  uint64_t errors() const {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  std::string first_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

  std::vector<MoveEvent> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  int lame_duck_notices() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count_if(events_.begin(), events_.end(),
                                          [](const MoveEvent& e) { return e.what == "lame_duck"; }));
  }

 private:
  void OnEvent(const Event& e) {
    std::string what;
    switch (e.type) {
      case EventType::kLameDuck: what = "lame_duck"; break;
      case EventType::kDisconnected: what = "disconnect"; break;
      case EventType::kReconnected: what = "reconnect"; break;
      default: return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back({UnixMs(), what, e.url});
  }

  const std::string name_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<uint32_t>> copies_;
  std::map<std::string, uint64_t> max_seq_;
  uint64_t unparsed_ = 0;
  std::multiset<std::string> probes_;
  std::atomic<uint64_t> counted_{0};
  std::vector<MoveEvent> events_;
  std::vector<int64_t> pub_ms_;
  uint64_t errors_ = 0;
  std::string first_error_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> last_{0};
  std::thread thread_;
  std::vector<std::shared_ptr<Subscription>> subs_;
  std::unique_ptr<Client> client_;  // last: closed first
};

// --- Observing the leaving node -------------------------------------------------------

// Dials the client port of the leaving node over and over until it refuses;
// at the first refusal asks ZooKeeper (a session of its own) whether the
// node's znode still exists. Found there, the listener closed before the
// delete was even sent: a client that just read the membership would be
// turned away.
class ListenerProbe {
 public:
  ListenerProbe(std::string zk_connect, std::string nodes_path, std::string node_id, uint16_t port)
      : zk_(std::move(zk_connect)), nodes_path_(std::move(nodes_path)), node_id_(std::move(node_id)), port_(port) {
    zk_.Children(nodes_path_);  // connect the session before the clock matters
  }
  ~ListenerProbe() { Join(); }
  void Start() {
    thread_ = std::thread([this] {
      const auto start = Clock::now();
      while (MsSince(start) < kExitBoundMs) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port_);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        const int err = errno;
        close(fd);
        if (rc == 0) {
          ++accepted_;
        } else if (err == ECONNREFUSED) {
          refused_at_ = Clock::now();
          refused_ms_ = MsSince(start);
          const auto asked = Clock::now();
          auto members = zk_.Children(nodes_path_, milliseconds(1000));
          zk_ms_ = MsSince(asked);
          zk_answered_ = members.has_value();
          znode_at_refusal_ =
              members && std::find(members->begin(), members->end(), node_id_) != members->end();
          refused_ = true;
          return;
        }
        // No pause: the refusal must be seen as soon as it happens (this
        // runs from just before SIGTERM; a handful of connections).
      }
    });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // Valid after Join().
  Clock::time_point refused_at() const { return refused_at_; }
  bool refused() const { return refused_; }
  bool znode_at_refusal() const { return znode_at_refusal_; }
  bool zk_answered() const { return zk_answered_; }
  int64_t zk_ms() const { return zk_ms_; }
  int64_t refused_ms() const { return refused_ms_; }
  int accepted() const { return accepted_; }

 private:
  ZkReader zk_;
  const std::string nodes_path_, node_id_;
  const uint16_t port_;
  std::thread thread_;
  Clock::time_point refused_at_{};
  std::atomic<bool> refused_{false}, znode_at_refusal_{false}, zk_answered_{false};
  std::atomic<int64_t> refused_ms_{-1}, zk_ms_{-1};
  std::atomic<int> accepted_{0};
};

// Reads the membership from ZooKeeper (a session of its own) back to back
// until the node's znode is gone, remembering when each read was issued and
// whether it still listed the node.
class ZnodeWatch {
 public:
  ZnodeWatch(std::string zk_connect, std::string nodes_path, std::string node_id)
      : zk_(std::move(zk_connect)), nodes_path_(std::move(nodes_path)), node_id_(std::move(node_id)) {
    zk_.Children(nodes_path_);  // connect the session before the clock matters
  }
  ~ZnodeWatch() { Join(); }
  void Start() {
    thread_ = std::thread([this] {
      const auto start = Clock::now();
      while (MsSince(start) < 5000) {
        const auto issued = Clock::now();
        auto members = zk_.Children(nodes_path_, milliseconds(500));
        if (!members) continue;
        const bool present = std::find(members->begin(), members->end(), node_id_) != members->end();
        if (present) last_present_issued_ = issued;
        if (!present) {
          gone_at_ = Clock::now();
          gone_ = true;
          return;
        }
      }
    });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool gone() const { return gone_; }
  // Valid after Join().
  Clock::time_point gone_at() const { return gone_at_; }
  Clock::time_point last_present_issued() const { return last_present_issued_; }

 private:
  ZkReader zk_;
  const std::string nodes_path_, node_id_;
  std::thread thread_;
  std::atomic<bool> gone_{false};
  Clock::time_point gone_at_{}, last_present_issued_{};
};

// Raw connections on the leaving node whose close times are recorded (the
// server spreads client closes over the lame duck duration).
class CloseWatch {
 public:
  bool Connect(uint16_t port, int n, std::string* error) {
    for (int k = 0; k < n; ++k) {
      clients_.push_back(std::make_unique<MeshClient>("ldw" + std::to_string(k)));
      if (!clients_.back()->Connect(port, error)) return false;
    }
    closed_ms_.assign(clients_.size(), -1);
    return true;
  }
  void Start(Clock::time_point origin) {
    thread_ = std::thread([this, origin] {
      while (MsSince(origin) < kExitBoundMs + 1000) {
        bool all = true;
        for (size_t k = 0; k < clients_.size(); ++k) {
          if (closed_ms_[k] < 0 && clients_[k]->closed()) closed_ms_[k] = MsSince(origin);
          all = all && closed_ms_[k] >= 0;
        }
        if (all) return;
        std::this_thread::sleep_for(milliseconds(2));  // the polling rate
      }
    });
  }
  std::vector<int64_t> Join() {
    if (thread_.joinable()) thread_.join();
    return closed_ms_;
  }
  ~CloseWatch() { Join(); }

 private:
  std::vector<std::unique_ptr<MeshClient>> clients_;
  std::vector<int64_t> closed_ms_;
  std::thread thread_;
};

// PING on a raw connection and read until PONG (an INFO may come first);
// notes an INFO with "ldm":true.
bool PingPong(RawClient& rc, milliseconds timeout, bool* saw_ldm) {
  if (!rc.TrySend("PING\r\n")) return false;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto line = rc.ReadLine(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!line) return false;
    if (*line == "PONG") return true;
    if (line->rfind("INFO ", 0) == 0) {
      json j = json::parse(line->substr(5), nullptr, false);
      if (j.is_object() && j.value("ldm", false)) *saw_ldm = true;
    }
  }
  return false;
}

// --- natscheck ---------------------------------------------------------------------

std::string NatscheckPath() {
  const char* dir = std::getenv("ZMESH_BIN_DIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : ".") + "/natscheck";
}

json LastJsonLine(const std::string& log) {
  size_t end = log.size();
  while (end > 0) {
    const size_t nl = log.rfind('\n', end - 1);
    const size_t start = nl == std::string::npos ? 0 : nl + 1;
    if (start < end && log[start] == '{') return json::parse(log.substr(start, end - start), nullptr, false);
    if (nl == std::string::npos) break;
    end = nl;
  }
  return json(json::value_t::discarded);
}

std::vector<MoveEvent> GoEvents(const json& result, const std::string& prefix) {
  std::vector<MoveEvent> out;
  if (!result.is_object() || !result.contains(prefix + "events") || !result[prefix + "events"].is_array()) return out;
  for (const json& e : result[prefix + "events"]) {
    out.push_back({e.value("t", int64_t{0}), e.value("what", std::string()), e.value("url", std::string())});
  }
  return out;
}

std::string Tail(const std::string& s, size_t n = 4000) { return s.size() > n ? "..." + s.substr(s.size() - n) : s; }

// --- The test ------------------------------------------------------------------------

class RollingRestartTest : public MeshFixture {
 protected:
  // What one restart step measured, for the summary.
  struct StepReport {
    int victim = -1;
    int64_t ldm_info_ms = -1, znode_gone_ms = -1, peerz_gone_ms = -1, raw_closed_ms = -1, exit_ms = -1;
    int64_t rejoined_ms = -1, converged_ms = -1, refused_ms = -1, last_present_ms = -1;
    std::vector<int64_t> watcher_closes;
    std::string exit_status;
  };

  Options ZOptions() const {
    Options o;
    o.zk_connect = zk().connect_string();
    o.zk_root = mesh_->options().zk_root;
    o.zk_session_timeout = milliseconds(4000);
    o.node_cache_file = mesh_->dir() + "/zclient-node-cache.json";
    o.connect_timeout = milliseconds(1000);
    o.initial_connect_timeout = milliseconds(10000);
    o.reconnect_wait_initial = milliseconds(50);
    o.reconnect_wait_max = milliseconds(500);
    o.ping_interval = milliseconds(500);
    o.max_pings_out = 2;
    return o;
  }
};

TEST_F(RollingRestartTest, RollingRestartUnderLoadLosesNoSubscriptionAndNothingBetweenUnmovedClients) {
  const auto test_start = Clock::now();
  const int64_t origin_unix = UnixMs();
  ASSERT_TRUE(std::filesystem::exists(NatscheckPath())) << NatscheckPath() << " is missing (build natscheck)";

  // Three nodes on fixed ports, so that each restarts where it was.
  const std::vector<int> ports = FreeLoopbackPorts(9);
  ASSERT_EQ(ports.size(), 9u);
  std::string error;
  for (int i = 0; i < 3; ++i) {
    MeshNodeSpec spec;
    spec.client_port = static_cast<uint16_t>(ports[3 * i]);
    spec.peer_port = static_cast<uint16_t>(ports[3 * i + 1]);
    spec.http_port = static_cast<uint16_t>(ports[3 * i + 2]);
    spec.extra_args = {"--lame_duck_grace_ms=" + std::to_string(kGraceMs),
                       "--lame_duck_duration_ms=" + std::to_string(kDurationMs)};
    ASSERT_EQ(mesh_->Add(spec), i);
    ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  }
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, kWait, &error)) << error;
  const std::string all_urls = mesh_->client_url(0) + "," + mesh_->client_url(1) + "," + mesh_->client_url(2);
  std::vector<std::unique_ptr<ZClient>> zsubs, zpubs;  // closed at the end of the test, before the mesh stops

  // zmesh::Client subscribers and publishers, nodes found in ZooKeeper.
  for (int k = 1; k <= 2; ++k) {
    zsubs.push_back(std::make_unique<ZClient>("zsub" + std::to_string(k)));
    ASSERT_TRUE(zsubs.back()->Connect(ZOptions()).ok());
    ASSERT_TRUE(zsubs.back()->SubscribeSeq(kZSubject).ok());
    ASSERT_TRUE(zsubs.back()->SubscribeCount(kGoSubject).ok());
    ASSERT_TRUE(zsubs.back()->SubscribeProbe().ok());  // last: proves the others arrived
    ASSERT_TRUE(zsubs.back()->client().Flush(kWait).ok());
  }
  for (int k = 1; k <= 2; ++k) {
    zpubs.push_back(std::make_unique<ZClient>("zpub" + std::to_string(k)));
    ASSERT_TRUE(zpubs.back()->Connect(ZOptions()).ok());
  }
  for (auto& p : zpubs) {
    for (auto& s : zsubs) {
      const std::string payload = "interest:" + p->name();
      ASSERT_TRUE(WaitFor(kWait, [&] {
        EXPECT_TRUE(p->client().Publish(s->ProbeSubject(), payload).ok());
        return WaitFor(milliseconds(50), [&] { return s->ProbeArrived(payload); });
      })) << p->name() << " -> " << s->name() << ": interest never visible";
    }
  }
  std::cout << "[ clients  ] zmesh:";
  for (auto& c : zsubs) std::cout << " " << c->name() << "@" << c->client().connected_url();
  for (auto& c : zpubs) std::cout << " " << c->name() << "@" << c->client().connected_url();
  std::cout << "\n";
  for (auto& p : zpubs) p->StartPublishing(kZSubject, milliseconds(2));

  // The Go NATS clients, running until SIGUSR1 (at most 100 s).
  Process go;
  const std::string go_log = mesh_->dir() + "/natscheck-failover.log";
  ASSERT_TRUE(go.Start({NatscheckPath(), "failover", "--pub-url=" + all_urls, "--sub-url=" + all_urls,
                        "--subject=" + kGoPrefix, "--rate=500", "--duration=100", "--timeout=10",
                        "--until-signal", "--probe-subject=" + kGoProbe},
                       go_log, &error))
      << error;
  ASSERT_TRUE(WaitFor(kWait, [&] { return go.ReadLog().find("READY sub=") != std::string::npos || !go.Running(); },
                      milliseconds(20)));
  ASSERT_NE(go.ReadLog().find("READY sub="), std::string::npos) << Tail(go.ReadLog());
  std::cout << "[ clients  ] go: " << go.ReadLog().substr(go.ReadLog().find("READY sub="), 80) << "\n";

  // Everything flows before the first restart.
  for (auto& s : zsubs) {
    ASSERT_TRUE(WaitFor(kWait, [&] {
      return s->MaxSeq("zpub1") > 50 && s->MaxSeq("zpub2") > 50 && s->counted() > 50;
    })) << s->name() << " is not receiving";
  }

  int go_probe_counter = 0;
  for (int v = 0; v < 3; ++v) {
    SCOPED_TRACE("restart step " + std::to_string(v + 1) + ": node " + mesh_->id(v));
    StepReport report;
    report.victim = v;
    const int a = (v + 1) % 3, b = (v + 2) % 3;
    const std::string step = std::to_string(v + 1);

    // Pinned raw clients on the two nodes that stay up.
    const std::string pin_subject = "roll.pin" + step;
    std::vector<std::unique_ptr<MeshClient>> psubs;
    std::vector<std::unique_ptr<ContinuousPublisher>> ppubs;
    std::vector<int> pin_sid, z_sid;
    for (int node : {a, b}) {
      const std::string n = "s" + step + "n" + std::to_string(node + 1);
      psubs.push_back(std::make_unique<MeshClient>("psub" + n));
      ASSERT_TRUE(psubs.back()->Connect(mesh_->client_port(node), &error)) << error;
      pin_sid.push_back(psubs.back()->Sub(pin_subject));
      z_sid.push_back(psubs.back()->Sub(kZSubject));
      psubs.back()->SubProbe();
      ppubs.push_back(std::make_unique<ContinuousPublisher>("ppub" + n, pin_subject, 2, milliseconds(2)));
      ASSERT_TRUE(ppubs.back()->Connect({"127.0.0.1", mesh_->client_port(node)}, &error)) << error;
    }
    std::vector<MeshClient*> psub_ptrs, ppub_ptrs;
    for (auto& s : psubs) psub_ptrs.push_back(s.get());
    for (auto& p : ppubs) ppub_ptrs.push_back(&p->client());
    ASSERT_TRUE(WaitInterest(ppub_ptrs, psub_ptrs, kWait, &error)) << error;
    // From when on each zmesh publisher's messages must reach the pinned
    // subscribers: its marker got through to both, so its node has their
    // roll.z interest (subscribed before the probe subject).
    std::map<std::string, uint64_t> z_from;
    for (auto& p : zpubs) {
      for (auto& s : psubs) {
        const std::string payload = "?zmark" + step + ":" + p->name();
        ASSERT_TRUE(WaitFor(kWait, [&] {
          EXPECT_TRUE(p->client().Publish(s->ProbeSubject(), payload).ok());
          return WaitFor(milliseconds(50), [&] { return s->ProbeArrived(payload); });
        })) << p->name() << " -> " << s->name();
      }
      // Every seq after z_from must arrive: last() + 1 may have been in
      // Publish (ahead of the marker) while the marker went out.
      z_from[p->name()] = p->last() + 1;
    }
    for (auto& p : ppubs) p->Start();

    // Watchers on the leaving node.
    RawClient rc;
    rc.set_name("ldm-watch");
    ASSERT_TRUE(rc.Dial(mesh_->client_port(v)));
    ASSERT_TRUE(rc.Connect("", "", R"({"protocol":1})"));  // protocol 1: takes INFO updates (like nats-server)
    CloseWatch watch;
    ASSERT_TRUE(watch.Connect(mesh_->client_port(v), kCloseWatchers, &error)) << error;
    ListenerProbe listener(zk().connect_string(), mesh_->nodes_path(), mesh_->id(v), mesh_->client_port(v));
    ZnodeWatch znode(zk().connect_string(), mesh_->nodes_path(), mesh_->id(v));
    ASSERT_TRUE(mesh_->ZkMembers() && mesh_->Healthz(v) == 200);

    // --- SIGTERM ---
    const auto t0 = Clock::now();
    znode.Start();
    listener.Start();
    watch.Start(t0);
    ASSERT_TRUE(mesh_->Signal(v, SIGTERM));

    // (4) INFO "ldm":true to the raw client.
    bool saw_ldm = false;
    while (!saw_ldm && MsSince(t0) < 2000) {
      auto line = rc.ReadLine(milliseconds(2000));
      if (!line) break;
      if (line->rfind("INFO ", 0) == 0) {
        json j = json::parse(line->substr(5), nullptr, false);
        if (j.is_object() && j.value("ldm", false)) saw_ldm = true;
      }
    }
    report.ldm_info_ms = MsSince(t0);
    EXPECT_TRUE(saw_ldm) << "no INFO with \"ldm\":true within 2 s of SIGTERM" << rc.Describe();

    // (4) The znode goes first; the node still serves its clients meanwhile.
    EXPECT_TRUE(WaitFor(seconds(3), [&] { return znode.gone(); }, milliseconds(1))) << "znode still in ZooKeeper";
    report.znode_gone_ms = MsSince(t0);
    bool ldm_again = false;
    EXPECT_TRUE(PingPong(rc, milliseconds(1000), &ldm_again))
        << "the leaving node's existing client got no PONG right after its znode disappeared ("
        << report.znode_gone_ms << " ms after SIGTERM)";
    EXPECT_TRUE(WaitFor(seconds(3), [&] {
      auto p = mesh_->Peerz(a);
      if (!p) return false;
      for (const json& e : (*p)["peers"]) {
        if (e.value("node_id", std::string()) == mesh_->id(v)) {
          return !e.value("member", true);
        }
      }
      return true;  // not listed at all: not a member either
    }, milliseconds(2))) << mesh_->id(a) << " /peerz still shows " << mesh_->id(v) << " as a member";
    report.peerz_gone_ms = MsSince(t0);
    EXPECT_NE(mesh_->Healthz(v), 0) << "the leaving node's /healthz stopped answering before the grace ended";
    EXPECT_TRUE(PingPong(rc, milliseconds(1000), &ldm_again))
        << "the leaving node's existing client got no PONG once the peers saw it leave ("
        << report.peerz_gone_ms << " ms after SIGTERM)";
    EXPECT_LT(report.peerz_gone_ms, kGraceMs) << "observations ran past the grace period; the ordering proof is void";

    // The raw client is closed by the server: not before the grace period.
    EXPECT_TRUE(WaitFor(milliseconds(kGraceMs + kDurationMs + 3000), [&] {
      rc.ReadLine(milliseconds(20));
      return rc.closed();
    }, milliseconds(0))) << "the leaving node never closed its raw client";
    report.raw_closed_ms = MsSince(t0);
    EXPECT_GE(report.raw_closed_ms, kGraceMs) << "a client was closed before --lame_duck_grace_ms";

    // (4) Exit 0 within grace + duration + 5 s.
    const std::optional<int> status =
        mesh_->node(v).process->WaitExit(milliseconds(std::max<int64_t>(kExitBoundMs - MsSince(t0), 0) + 200));
    report.exit_ms = MsSince(t0);
    report.exit_status = status ? DescribeWaitStatus(*status) : "still running";
    ASSERT_TRUE(status.has_value()) << mesh_->id(v) << " still running " << report.exit_ms << " ms after SIGTERM\n"
                                    << Tail(mesh_->Log(v));
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << mesh_->id(v) << " ended with " << report.exit_status << "\n" << Tail(mesh_->Log(v));
    EXPECT_LE(report.exit_ms, kExitBoundMs);
    EXPECT_EQ(mesh_->Log(v).find("still open after the drain bound"), std::string::npos)
        << "clients were still open at the drain bound";

    listener.Join();
    znode.Join();
    report.refused_ms = listener.refused_ms();
    if (znode.last_present_issued() != Clock::time_point{}) {
      report.last_present_ms = std::chrono::duration_cast<milliseconds>(znode.last_present_issued() - t0).count();
    }
    EXPECT_TRUE(listener.refused()) << "the client port never refused a connection during the leave";
    EXPECT_TRUE(listener.zk_answered()) << "ZooKeeper did not answer the listener probe";
    EXPECT_FALSE(listener.znode_at_refusal())
        << "the client port refused a connection " << listener.refused_ms()
        << " ms after SIGTERM while the node's znode was still in ZooKeeper: the listener closed before the "
           "znode was deleted (issue 5: \"delete the znode first; close the listener\")";
    EXPECT_FALSE(listener.refused() && znode.last_present_issued() > listener.refused_at())
        << "a ZooKeeper read issued after the client port had refused a connection ("
        << listener.refused_ms() << " ms after SIGTERM) still listed the node: the listener closed before the znode "
           "was deleted (issue 5: \"delete the znode first; close the listener\")";
    report.watcher_closes = watch.Join();
    for (int64_t c : report.watcher_closes) {
      EXPECT_GE(c, kGraceMs) << "a client was closed before --lame_duck_grace_ms";
      EXPECT_LE(c, kGraceMs + kDurationMs + 1000) << "a client was closed long after grace + duration";
    }

    // Restart on the same ports; a full member again before the next step.
    const auto restart = Clock::now();
    ASSERT_TRUE(mesh_->Start(v, &error)) << error;
    report.rejoined_ms = MsSince(restart);
    ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, kWait, &error)) << error;
    report.converged_ms = MsSince(restart);
    EXPECT_EQ(mesh_->Healthz(v), 200);

    // (1) Zero lost subscriptions: fresh traffic reaches every subscriber.
    std::map<std::string, uint64_t> mark;
    for (auto& p : zpubs) mark[p->name()] = p->last();
    for (auto& s : zsubs) {
      const uint64_t go_mark = s->counted();
      EXPECT_TRUE(WaitFor(kWait, [&] {
        return s->MaxSeq("zpub1") > mark["zpub1"] && s->MaxSeq("zpub2") > mark["zpub2"] && s->counted() > go_mark + 20;
      })) << s->name() << " (on " << s->client().connected_url() << ") gets no fresh messages after the step: zpub1 "
          << s->MaxSeq("zpub1") << "/" << mark["zpub1"] << ", zpub2 " << s->MaxSeq("zpub2") << "/" << mark["zpub2"]
          << ", Go publisher " << s->counted() - go_mark << " new";
    }
    const std::string go_probe = "step" + step + "-" + std::to_string(++go_probe_counter);
    EXPECT_TRUE(WaitFor(kWait, [&] {
      psubs[0]->Pub(kGoProbe, go_probe);  // through a pinned connection
      return WaitFor(milliseconds(100), [&] { return go.ReadLog().find("PROBE " + go_probe + "\n") != std::string::npos; },
                     milliseconds(10));
    })) << "the Go subscriber gets no fresh probe after the step\n" << Tail(go.ReadLog());

    // (3) The pinned pairs: exactly once, in order, over the whole step.
    std::map<std::string, uint64_t> z_to;
    for (auto& p : zpubs) {
      z_to[p->name()] = p->last();
      ASSERT_TRUE(p->client().Flush(kWait).ok()) << p->name();
    }
    std::map<std::string, uint64_t> published;
    for (auto& p : ppubs) {
      published[p->name()] = p->Stop();
      EXPECT_FALSE(p->failed()) << p->name() << " lost its connection to a node that was not restarted";
    }
    ASSERT_TRUE(Fence(ppub_ptrs, psub_ptrs, kWait, &error)) << error;
    for (auto& p : zpubs) {
      for (auto& s : psubs) {
        const std::string payload = "?zfence" + step + ":" + p->name();
        EXPECT_TRUE(p->client().Publish(s->ProbeSubject(), payload).ok());
        EXPECT_TRUE(WaitFor(kWait, [&] { return s->ProbeArrived(payload); }))
            << p->name() << " -> " << s->name() << ": fence lost";
      }
    }
    for (size_t k = 0; k < psubs.size(); ++k) {
      SCOPED_TRACE(psubs[k]->name());
      EXPECT_TRUE(ExactlyOnceInOrder(psubs[k]->Get(pin_sid[k]), published)) << "pinned pairs";
      const Receipts rz = psubs[k]->Get(z_sid[k]);
      for (auto& p : zpubs) {
        std::vector<uint64_t> missing, duplicated;
        auto it = rz.copies.find(p->name());
        const uint64_t top = it == rz.copies.end() ? 0 : it->second.size();
        for (uint64_t seq = 1; seq < std::max<uint64_t>(top, z_to[p->name()] + 1); ++seq) {
          const uint32_t c = rz.Copies(p->name(), seq);
          if (c > 1) duplicated.push_back(seq);
          if (c == 0 && seq > z_from[p->name()] && seq <= z_to[p->name()]) missing.push_back(seq);
        }
        auto list = [](const std::vector<uint64_t>& v) {
          std::string out;
          for (size_t i = 0; i < v.size() && i < 15; ++i) out += " " + std::to_string(v[i]);
          return out + (v.size() > 15 ? " ... (" + std::to_string(v.size()) + ")" : "");
        };
        EXPECT_TRUE(missing.empty()) << missing.size() << " of " << p->name() << "'s messages "
                                     << z_from[p->name()] + 1 << ".." << z_to[p->name()]
                                     << " never reached a pinned subscriber:" << list(missing)
                                     << "; its timeline:" << Describe(p->events(), origin_unix);
        EXPECT_TRUE(duplicated.empty()) << p->name() << " duplicates:" << list(duplicated);
      }
    }
    std::cout << "[ step " << step << "   ] " << mesh_->id(v) << ": ldm INFO " << report.ldm_info_ms
              << " ms, znode gone " << report.znode_gone_ms << " ms, /peerz member:false " << report.peerz_gone_ms
              << " ms (last read listing it issued at " << report.last_present_ms << " ms), port refused "
              << report.refused_ms << " ms (znode present then: "
              << (listener.znode_at_refusal() ? "YES" : "no") << ", asked in " << listener.zk_ms() << " ms, accepted "
              << listener.accepted()
              << " probes), raw client closed " << report.raw_closed_ms << " ms, watcher closes";
    for (int64_t c : report.watcher_closes) std::cout << " " << c;
    std::cout << ", exit (" << report.exit_status << ") " << report.exit_ms << " ms; restarted in "
              << report.rejoined_ms << " ms, converged " << report.converged_ms << " ms\n";
    if (HasFatalFailure()) return;
  }

  // --- The end: stop the load, account for every message. ---
  for (auto& p : zpubs) p->StopPublishing();
  for (auto& p : zpubs) {
    EXPECT_TRUE(p->client().Flush(kWait).ok()) << p->name();
    for (auto& s : zsubs) {
      const std::string payload = "final:" + p->name();
      EXPECT_TRUE(p->client().Publish(s->ProbeSubject(), payload).ok());
      EXPECT_TRUE(WaitFor(kWait, [&] { return s->ProbeArrived(payload); })) << p->name() << " -> " << s->name();
    }
  }
  ASSERT_TRUE(go.Signal(SIGUSR1));
  const std::optional<int> go_status = go.WaitExit(seconds(60));
  if (!go_status) go.Stop(seconds(2));
  const std::string go_text = go.ReadLog();
  const json gr = LastJsonLine(go_text);

  // (2) No publish errors.
  for (auto& p : zpubs) {
    EXPECT_EQ(p->errors(), 0u) << p->name() << ": Publish returned an error: " << p->first_error();
  }
  // (4) Every client moved: told about lame duck, or moved away beforehand
  // because the mesh rebalanced it onto a node already restarted.
  for (auto* group : {&zsubs, &zpubs}) {
    for (auto& c : *group) {
      EXPECT_GE(c->lame_duck_notices() + static_cast<int>(c->client().stats().moves), 1)
          << c->name() << ":" << Describe(c->events(), origin_unix);
      EXPECT_TRUE(c->client().connected()) << c->name();
    }
  }

  // (3) zmesh subscribers: a loss only while it moved; a duplicate only of a
  // message published while it moved. That one race is inherent to moving a
  // subscriber without message ids (as with NATS clients reconnecting): the
  // message reached it on the node it left, and another copy, forwarded to
  // its new node for subscribers there, was processed after it re-subscribed.
  // Any other duplicate fails.
  for (auto& s : zsubs) {
    SCOPED_TRACE(s->name());
    const std::vector<Window> windows = Merge(MoveWindows(s->events()));
    EXPECT_EQ(s->unparsed(), 0u);
    for (auto& p : zpubs) {
      uint64_t lost = 0, explained = 0;
      std::vector<uint64_t> dup, unexplained;
      uint64_t move_duplicates = 0;
      for (uint64_t seq = 1; seq <= p->last(); ++seq) {
        const uint32_t c = s->Copies(p->name(), seq);
        if (c > 1) {
          const int64_t t = p->PublishedAtMs(seq);
          if (c == 2 && Within(windows, t, t)) {
            ++move_duplicates;
          } else {
            dup.push_back(seq);
          }
        }
        if (c != 0) continue;
        ++lost;
        const int64_t t = p->PublishedAtMs(seq);
        if (Within(windows, t, t)) {
          ++explained;
        } else {
          unexplained.push_back(seq);
        }
      }
      std::cout << "[ zmesh    ] " << p->name() << " -> " << s->name() << ": published " << p->last() << ", lost "
                << lost << " (all while " << s->name() << " moved: " << (lost == explained ? "yes" : "NO")
                << "), duplicated while it moved " << move_duplicates << "\n";
      EXPECT_TRUE(dup.empty()) << dup.size() << " duplicates from " << p->name() << ", first seq "
                               << (dup.empty() ? 0 : dup.front()) << " published at "
                               << (dup.empty() ? 0 : p->PublishedAtMs(dup.front()) - origin_unix) << "ms\n  "
                               << s->name() << " timeline:" << Describe(s->events(), origin_unix) << "\n  "
                               << p->name() << " timeline:" << Describe(p->events(), origin_unix);
      if (!unexplained.empty()) {
        std::string seqs;
        for (size_t i = 0; i < unexplained.size() && i < 10; ++i) {
          seqs += " " + std::to_string(unexplained[i]) + "@" +
                  std::to_string(p->PublishedAtMs(unexplained[i]) - origin_unix) + "ms";
        }
        ADD_FAILURE() << unexplained.size() << " messages from " << p->name()
                      << " lost while neither end was between nodes:" << seqs << "\n  " << s->name()
                      << " timeline:" << Describe(s->events(), origin_unix) << "\n  " << p->name()
                      << " timeline:" << Describe(p->events(), origin_unix);
      }
    }
  }

  // The Go clients.
  ASSERT_TRUE(go_status.has_value()) << "natscheck did not finish\n" << Tail(go_text);
  ASSERT_TRUE(gr.is_object()) << "no natscheck result\n" << Tail(go_text);
  std::cout << "[ go       ] sent " << gr.value("sent", 0) << ", received " << gr.value("received", 0) << ", lost "
            << gr.value("lost", 0) << ", duplicates " << gr.value("duplicates", 0) << ", pub_errors "
            << gr.value("pub_errors", 0) << ", sub lame_duck " << gr.value("lame_duck", 0) << "/reconnects "
            << gr.value("reconnects", 0) << ", pub lame_duck " << gr.value("pub_lame_duck", 0) << "/reconnects "
            << gr.value("pub_reconnects", 0) << "\n";
  EXPECT_TRUE(WIFEXITED(*go_status) && WEXITSTATUS(*go_status) == 0 && gr.value("ok", false))
      << "natscheck " << DescribeWaitStatus(*go_status) << ": " << gr.value("failures", json::array()).dump()
      << "\n" << Tail(go_text);
  EXPECT_EQ(gr.value("pub_errors", -1), 0) << gr.value("pub_first_error", std::string());
  EXPECT_EQ(gr.value("duplicates", -1), 0);
  EXPECT_EQ(gr.value("reordered", -1), 0);
  EXPECT_EQ(gr.value("corrupt", -1), 0);
  EXPECT_EQ(gr.value("resumed", false), true);
  EXPECT_GE(gr.value("lame_duck", 0), 1) << "the Go subscriber was never told about lame duck";
  EXPECT_GE(gr.value("pub_lame_duck", 0), 1) << "the Go publisher was never told about lame duck";
  EXPECT_GE(gr.value("reconnects", 0), 1);
  EXPECT_GE(gr.value("pub_reconnects", 0), 1);
  {
    const std::vector<MoveEvent> sub_ev = GoEvents(gr, ""), pub_ev = GoEvents(gr, "pub_");
    std::vector<Window> both = MoveWindows(sub_ev);
    for (const Window& w : MoveWindows(pub_ev)) both.push_back(w);
    both = Merge(both);
    const json gaps = gr.value("gap_times", json::array());
    EXPECT_EQ(gr.value("lost", 0) > 0, !gaps.empty()) << "natscheck's gap_times do not match its losses";
    for (const json& g : gaps) {
      const int64_t from = g[0].get<int64_t>(), to = g[1].get<int64_t>();
      EXPECT_TRUE(Within(both, from, to))
          << "Go messages published " << from - origin_unix << ".." << to - origin_unix
          << " ms were lost while neither Go client was between nodes\n  sub:" << Describe(sub_ev, origin_unix)
          << "\n  pub:" << Describe(pub_ev, origin_unix);
    }
  }

  // (1) Subscriptions still intact at the end, on every node.
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, kWait, &error)) << error;
  const int64_t total_ms = MsSince(test_start);
  std::cout << "[ total    ] " << total_ms << " ms\n";
  RecordProperty("total_ms", static_cast<int>(total_ms));
}

}  // namespace
}  // namespace zmesh::testing

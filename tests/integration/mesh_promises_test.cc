// Promises of the mesh (SPEC §2-§4, docs/peer-protocol.md) that had no test
// able to fail (issue 9, item 5). Real zmesh-server nodes in a private
// ZooKeeper; where a promise is about what a node does with a misbehaving or
// slow peer, the peer is played by the test (ScriptedPeer, TLS 1.3 with the
// cluster secret), so the divergence or the stall is certain, not hoped for.
//
//  - AntiEntropyRepairsALostInterestUpdate: a peer whose DIGEST names an
//    entry the node never heard of is answered RESYNC, counted as exactly one
//    repair, and its re-sent snapshot makes the deaf subscription hear again;
//    a RESYNC from the peer gets a fresh snapshot whose digest is right.
//  - SettledMeshUnderChurnNeedsNoRepair: 3 nodes, concurrent SUB/UNSUB churn
//    on every node, then several anti-entropy rounds: no repair anywhere and
//    every node holds exactly every other node's interest.
//  - PeerThatStopsReadingIsResetWithoutSlowingOthers: a peer subscribed to
//    '>' stops reading; its link is reset at --peer_max_pending_bytes, logged,
//    while a local and a remote subscriber of a concurrent flow keep
//    receiving (no gap over a stated bound, exactly once, in order).
//  - JoiningNodeServesOnlyAfterEveryPeerSynced: a registered member played by
//    the test withholds SYNC_END; the joining node has no znode and refuses
//    clients until SYNC_END arrives, then registers and already forwards to
//    that member's interest.
//  - DuplicateLinkFromADialRaceIsResolvedByTheRule: a member played by the
//    test and the node dial each other and both links authenticate; the
//    node keeps the one dialled by the smaller id, whichever came first,
//    drops the other, and one link remains and carries traffic.
//  - SlowConsumerAndStaleClientInterestLeavesTheMesh: a slow consumer closed
//    and a client closed as stale on n1 no longer count as interest on n2.
//  - ConnectUrlsFollowKillAndJoin: a client on n1 gets a new INFO whose
//    connect_urls drop a node killed with SIGKILL and add a node that joins.

#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zookeeper/zookeeper.h>

#include "proto/peer_protocol.h"
#include "server/mesh/interest_digest.h"
#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/raw_client.h"
#include "tests/support/scripted_peer.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
namespace peer = proto::peer;
using server::mesh::InterestDigest;
using peer::FrameType;

#define CONNECT_OR_FAIL(client, mesh, i)                                                  \
  do {                                                                                    \
    std::string connect_error_;                                                           \
    ASSERT_TRUE((client).Connect((mesh).client_port(i), &connect_error_)) << connect_error_; \
  } while (0)

int CountMatches(const std::string& text, const std::string& regex) {
  const std::regex re(regex);
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), re), std::sregex_iterator()));
}

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

// --- Interest as a peer announces it ------------------------------------------

struct Entry {
  std::string subject;
  std::string queue;
  uint32_t count = 1;
};

InterestDigest DigestOf(const std::vector<Entry>& entries) {
  InterestDigest d;
  for (const Entry& e : entries) d.Add(e.subject, e.queue, e.count);
  return d;
}

// SYNC_BEGIN, one INTEREST per entry, SYNC_END with the set's digest.
std::string SnapshotFrames(const std::vector<Entry>& entries, uint64_t seq) {
  std::string out;
  peer::EncodeEmpty(FrameType::kSyncBegin, &out);
  for (const Entry& e : entries) peer::EncodeInterest({e.subject, e.queue, e.count, seq}, &out);
  const InterestDigest d = DigestOf(entries);
  peer::EncodeDigest(FrameType::kSyncEnd, {d.hash, d.entries, seq}, &out);
  return out;
}

std::string DigestFrame(const InterestDigest& d) {
  std::string out;
  peer::EncodeDigest(FrameType::kDigest, {d.hash, d.entries, 0}, &out);
  return out;
}

std::string EmptyFrame(FrameType type) {
  std::string out;
  peer::EncodeEmpty(type, &out);
  return out;
}

// --- A peer played by the test, pumped by a thread of its own ----------------------

// Completes the handshake in the calling thread, then (Start) reads on a
// thread: answers PINGs, acknowledges every interest change (INTEREST_ACK,
// which the node's interest barrier waits for), and records what arrived.
// SetReading(false) stops reading the socket altogether while it keeps
// sending PINGs, so the node sees a live peer that takes nothing.
class LivePeer {
 public:
  struct Received {
    uint8_t type = 0;
    std::string subject;  // MSG, INTEREST
    uint64_t digest = 0, entries = 0;  // SYNC_END, DIGEST
  };

  LivePeer(std::string id, uint64_t incarnation) : id_(std::move(id)), incarnation_(incarnation) {}
  ~LivePeer() { Stop(); }

  const std::string& id() const { return id_; }
  ScriptedPeer& raw() { return peer_; }

  // The dialling side: TCP, TLS, both HELLOs.
  bool Connect(uint16_t port, const std::string& secret, std::string* error) {
    if (!peer_.Dial(port)) {
      *error = "cannot connect to the peer port";
      return false;
    }
    if (!peer_.StartTls(secret, error)) return false;
    return Hello(error);
  }
  // The accepting side, on a socket from ScriptedListener; without
  // `send_hello` only the node's HELLO is read (SendOwnHello later).
  bool Accept(int fd, const std::string& secret, std::string* error, bool send_hello = true) {
    if (!peer_.Adopt(fd)) {
      *error = "no connection to adopt";
      return false;
    }
    if (!peer_.AcceptTls(secret, error)) return false;
    if (!WaitNodeHello(error)) return false;
    return !send_hello || SendOwnHello(error);
  }
  bool SendOwnHello(std::string* error) {
    if (!peer_.SendHello(id_, incarnation_)) {
      *error = "cannot send HELLO";
      return false;
    }
    return true;
  }
  // What the node said its id is in HELLO.
  const std::string& node_hello() const { return node_hello_; }

  void Start() {
    thread_ = std::thread([this] { Pump(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool Send(const std::string& frames) {
    std::lock_guard<std::mutex> lock(io_mu_);
    return peer_.Send(frames);
  }
  void SetReading(bool on) { reading_ = on; }

  int Count(FrameType t) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const Received& r : received_) n += r.type == static_cast<uint8_t>(t);
    return n;
  }
  std::vector<Received> received() const {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  bool GotMsg(const std::string& subject) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Received& r : received_) {
      if (r.type == static_cast<uint8_t>(FrameType::kMsg) && r.subject == subject) return true;
    }
    return false;
  }
  // The last SYNC_END or DIGEST.
  std::optional<Received> Last(FrameType t) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = received_.rbegin(); it != received_.rend(); ++it) {
      if (it->type == static_cast<uint8_t>(t)) return *it;
    }
    return std::nullopt;
  }
  bool closed() const { return closed_; }

 private:
  bool Hello(std::string* error) { return SendOwnHello(error) && WaitNodeHello(error); }
  bool WaitNodeHello(std::string* error) {
    std::string body;
    if (!peer_.WaitFrame(static_cast<uint8_t>(FrameType::kHello), milliseconds(5000), &body)) {
      *error = "no HELLO from the node";
      return false;
    }
    peer::Frame f;
    std::string raw;
    if (Decode(static_cast<uint8_t>(FrameType::kHello), body, &raw, &f)) node_hello_ = std::string(f.hello.node_id);
    return true;
  }

  static bool Decode(uint8_t type, const std::string& body, std::string* raw, peer::Frame* f) {
    const uint32_t len = static_cast<uint32_t>(body.size() + 1);
    raw->clear();
    for (int k = 0; k < 4; ++k) raw->push_back(static_cast<char>(len >> (8 * k)));
    raw->push_back(static_cast<char>(type));
    raw->append(body);
    peer::FrameReader reader(64u << 20);
    std::string_view in(*raw);
    return reader.Next(&in, f) == peer::FrameReader::Status::kFrame;
  }

  void Pump() {
    auto last_ping = Clock::now();
    while (!stop_ && !closed_) {
      if (!reading_) {
        if (Clock::now() - last_ping >= milliseconds(100)) {
          last_ping = Clock::now();
          Send(EmptyFrame(FrameType::kPing));
        }
        std::this_thread::sleep_for(milliseconds(10));  // a heartbeat period, not a wait for a condition
        continue;
      }
      std::string body;
      int t;
      {
        std::lock_guard<std::mutex> lock(io_mu_);
        t = peer_.ReadFrame(&body, milliseconds(20));
        if (t < 0 && peer_.closed()) closed_ = true;
      }
      if (t < 0) continue;
      Received r;
      r.type = static_cast<uint8_t>(t);
      peer::Frame f;
      std::string raw;
      if (Decode(r.type, body, &raw, &f)) {
        std::string ack;
        switch (f.type) {
          case FrameType::kMsg:
            r.subject = std::string(f.msg.subject);
            break;
          case FrameType::kRetire:  // as a node does: the last frame on this link, both ways
            peer::EncodeEmpty(FrameType::kRetire, &ack);
            break;
          case FrameType::kInterest:
            r.subject = std::string(f.interest.subject);
            peer::EncodeInterestAck(f.interest.seq, &ack);
            break;
          case FrameType::kSyncEnd:
            peer::EncodeInterestAck(f.digest.seq, &ack);
            [[fallthrough]];
          case FrameType::kDigest:
            r.digest = f.digest.digest;
            r.entries = f.digest.entries;
            break;
          default:
            break;
        }
        if (!ack.empty()) Send(ack);
      }
      std::lock_guard<std::mutex> lock(mu_);
      received_.push_back(std::move(r));
    }
  }

  const std::string id_;
  const uint64_t incarnation_;
  std::string node_hello_;
  ScriptedPeer peer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reading_{true};
  std::atomic<bool> closed_{false};
  std::mutex io_mu_;  // the SSL session: one user at a time
  mutable std::mutex mu_;
  std::vector<Received> received_;
};

// --- A member registered by hand -----------------------------------------------------

// An ephemeral znode under <root>/nodes for a member the test plays, in the
// JSON the nodes write (zk/registry.h), through a ZooKeeper session of its
// own; deleted with the session.
class FakeMember {
 public:
  ~FakeMember() {
    if (zh_ != nullptr) zookeeper_close(zh_);
  }
  bool Register(const std::string& connect, const std::string& root, const std::string& id, uint64_t incarnation,
                uint16_t peer_port, std::string* error) {
    zoo_set_debug_level(static_cast<ZooLogLevel>(0));
    zh_ = zookeeper_init(connect.c_str(), nullptr, 10000, nullptr, nullptr, 0);
    if (zh_ == nullptr || !WaitFor(seconds(10), [&] { return zoo_state(zh_) == ZOO_CONNECTED_STATE; })) {
      *error = "no ZooKeeper session";
      return false;
    }
    // The parents, persistent, as a node creates them.
    std::string path;
    for (size_t pos = 1; pos <= root.size(); ++pos) {
      if (pos == root.size() || root[pos] == '/') {
        path = root.substr(0, pos);
        const int rc = zoo_create(zh_, path.c_str(), "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, nullptr, 0);
        if (rc != ZOK && rc != ZNODEEXISTS) {
          *error = "create " + path + ": " + zerror(rc);
          return false;
        }
      }
    }
    const std::string nodes = root + "/nodes";
    int rc = zoo_create(zh_, nodes.c_str(), "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, nullptr, 0);
    if (rc != ZOK && rc != ZNODEEXISTS) {
      *error = "create " + nodes + ": " + zerror(rc);
      return false;
    }
    const json data = {{"id", id},
                       {"client_url", "nats://127.0.0.1:1"},
                       {"peer_url", "127.0.0.1:" + std::to_string(peer_port)},
                       {"version", "scripted"},
                       {"started_ms", 1},
                       {"incarnation", incarnation}};
    const std::string text = data.dump();
    const std::string znode = nodes + "/" + id;
    rc = zoo_create(zh_, znode.c_str(), text.data(), static_cast<int>(text.size()), &ZOO_OPEN_ACL_UNSAFE,
                    ZOO_EPHEMERAL, nullptr, 0);
    if (rc != ZOK) {
      *error = "create " + znode + ": " + zerror(rc);
      return false;
    }
    return true;
  }

 private:
  zhandle_t* zh_ = nullptr;
};

// --- Observation ------------------------------------------------------------------

std::optional<int64_t> Repairs(MeshCluster& mesh, int i) {
  auto v = mesh.Varz(i);
  if (!v || !v->contains("mesh") || !(*v)["mesh"].contains("repairs")) return std::nullopt;
  return (*v)["mesh"]["repairs"].get<int64_t>();
}

std::optional<int64_t> PeerNumber(MeshCluster& mesh, int observer, const std::string& peer_id, const char* field) {
  auto entry = mesh.PeerEntry(observer, peer_id);
  if (!entry || !entry->contains(field)) return std::nullopt;
  const json& v = (*entry)[field];
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  return v.is_number() ? std::optional<int64_t>(v.get<int64_t>()) : std::nullopt;
}

// Would a TCP connect to 127.0.0.1:port be refused right now?
bool Refused(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool refused = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

class MeshPromisesTest : public MeshFixture {
 protected:
  static void SetUpTestSuite() {
    // A scripted peer writes through OpenSSL, which uses write(): a node that
    // closed the link must be an error return, not SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
    MeshFixture::SetUpTestSuite();
  }
};

// 1. Anti-entropy. The scripted peer announces {ae.a} but later states in a
// DIGEST that it holds {ae.a, ae.b}: an update the node never received. The
// node must answer RESYNC and count exactly one repair; until then a
// publisher's ae.b does not reach the peer, after the re-sent snapshot it
// does. A correct DIGEST is no divergence. A RESYNC from the peer gets a
// fresh SYNC_BEGIN..SYNC_END whose digest is that of the node's clients.
TEST_F(MeshPromisesTest, AntiEntropyRepairsALostInterestUpdate) {
  std::string error;
  const int n1 = mesh_->Add();
  ASSERT_TRUE(mesh_->Start(n1, &error)) << error;
  MeshClient local("local"), pub("pub");
  CONNECT_OR_FAIL(local, *mesh_, n1);
  CONNECT_OR_FAIL(pub, *mesh_, n1);
  local.Sub("ae.local");
  ASSERT_TRUE(local.Flush());
  const InterestDigest node_set = DigestOf({{"ae.local", "", 1}});

  LivePeer sp("zz-scripted", 7);
  ASSERT_TRUE(sp.Connect(mesh_->peer_port(n1), mesh_->options().secret, &error)) << error;
  sp.Start();
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sp.Count(FrameType::kSyncEnd) >= 1; })) << "no snapshot from the node";
  auto end = sp.Last(FrameType::kSyncEnd);
  EXPECT_EQ(end->digest, node_set.hash) << "the node's snapshot digest is not that of its one subscription";
  EXPECT_EQ(end->entries, 1u);

  ASSERT_TRUE(sp.Send(SnapshotFrames({{"ae.a", "", 1}}, 1)));
  ASSERT_TRUE(WaitFor(seconds(5), [&] {
    return PeerNumber(*mesh_, n1, sp.id(), "synced") == 1 && PeerNumber(*mesh_, n1, sp.id(), "interest") == 1;
  })) << mesh_->Peerz(n1).value_or(json()).dump();
  EXPECT_EQ(Repairs(*mesh_, n1), 0);
  // The node's own periodic DIGEST describes its clients' interest.
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sp.Count(FrameType::kDigest) >= 1; }))
      << "no DIGEST within 5 anti-entropy intervals";
  EXPECT_EQ(sp.Last(FrameType::kDigest)->digest, node_set.hash);
  EXPECT_EQ(sp.Count(FrameType::kResync), 0) << "the node asked for a resync of a consistent snapshot";

  // Deaf: ae.b published before ae.a never arrives, although ae.a does
  // (one publisher, one link: in order).
  ASSERT_TRUE(pub.Pub("ae.b", "before-repair"));
  ASSERT_TRUE(pub.Pub("ae.a", "fence"));
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sp.GotMsg("ae.a"); }));
  ASSERT_FALSE(sp.GotMsg("ae.b")) << "the node forwarded ae.b before it knew of the interest";

  const std::vector<Entry> both = {{"ae.a", "", 1}, {"ae.b", "", 1}};
  ASSERT_TRUE(sp.Send(DigestFrame(DigestOf(both))));
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sp.Count(FrameType::kResync) == 1; }))
      << "the node did not answer a diverging DIGEST with RESYNC:\n" << mesh_->Log(n1);
  EXPECT_TRUE(WaitFor(seconds(3), [&] { return Repairs(*mesh_, n1) == 1; }))
      << "/varz mesh.repairs is " << Repairs(*mesh_, n1).value_or(-1) << ", want 1";
  EXPECT_EQ(CountMatches(mesh_->Log(n1), "peer zz-scripted: interest digest differs from what it announced"), 1);

  // The repair: a full snapshot, after which ae.b is heard.
  ASSERT_TRUE(sp.Send(SnapshotFrames(both, 2)));
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return PeerNumber(*mesh_, n1, sp.id(), "interest") == 2; }));
  ASSERT_TRUE(pub.Pub("ae.b", "after-repair"));
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return sp.GotMsg("ae.b"); })) << "the repaired subscription is still deaf";

  // A matching DIGEST is no divergence. Fence: the node answers our PING
  // after it handled the DIGEST, so a RESYNC would come before the PONG.
  const int pongs = sp.Count(FrameType::kPong);
  ASSERT_TRUE(sp.Send(DigestFrame(DigestOf(both)) + EmptyFrame(FrameType::kPing)));
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sp.Count(FrameType::kPong) > pongs; }));
  EXPECT_EQ(sp.Count(FrameType::kResync), 1) << "a matching DIGEST was answered with RESYNC";
  EXPECT_EQ(Repairs(*mesh_, n1), 1);

  // The other direction: our RESYNC gets a fresh snapshot, in frame order
  // SYNC_BEGIN, INTEREST ae.local, SYNC_END with the right digest.
  const size_t before = sp.received().size();
  ASSERT_TRUE(sp.Send(EmptyFrame(FrameType::kResync)));
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sp.Count(FrameType::kSyncEnd) >= 2; }))
      << "no snapshot after RESYNC";
  std::vector<LivePeer::Received> after = sp.received();
  after.erase(after.begin(), after.begin() + static_cast<std::ptrdiff_t>(before));
  std::vector<std::string> snapshot;
  bool in = false;
  for (const auto& r : after) {
    if (r.type == static_cast<uint8_t>(FrameType::kSyncBegin)) in = true, snapshot.push_back("BEGIN");
    if (in && r.type == static_cast<uint8_t>(FrameType::kInterest)) snapshot.push_back(r.subject);
    if (in && r.type == static_cast<uint8_t>(FrameType::kSyncEnd)) {
      snapshot.push_back("END");
      EXPECT_EQ(r.digest, node_set.hash);
      EXPECT_EQ(r.entries, 1u);
      break;
    }
  }
  EXPECT_EQ(snapshot, (std::vector<std::string>{"BEGIN", "ae.local", "END"}));
  EXPECT_EQ(Repairs(*mesh_, n1), 1) << "a RESYNC we asked for is not a repair of ours";
  EXPECT_FALSE(sp.closed());
}

// 1b. No false repairs: a settled 3-node mesh whose clients subscribe and
// unsubscribe concurrently on every node (plain and queue, overlapping
// subjects, no flush in between) converges without a single RESYNC, and every
// node ends up holding exactly each other node's interest.
TEST_F(MeshPromisesTest, SettledMeshUnderChurnNeedsNoRepair) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(3, &error)) << error;
  constexpr int kClientsPerNode = 3, kRounds = 60;
  std::vector<std::unique_ptr<MeshClient>> clients;
  for (int i = 0; i < 3; ++i) {
    for (int c = 0; c < kClientsPerNode; ++c) {
      clients.push_back(std::make_unique<MeshClient>("churn" + std::to_string(i) + "_" + std::to_string(c)));
      CONNECT_OR_FAIL(*clients.back(), *mesh_, i);
    }
  }
  // Each client: a window of at most 5 live subscriptions over 8 subjects
  // and 2 queue groups; what each ends with is recorded to compute the
  // interest every node should announce.
  std::vector<std::map<std::pair<std::string, std::string>, int>> final_subs(clients.size());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < clients.size(); ++k) {
    threads.emplace_back([&, k] {
      std::mt19937 rng(static_cast<unsigned>(k) * 7919u + 1);
      std::vector<std::pair<int, std::pair<std::string, std::string>>> live;
      for (int r = 0; r < kRounds; ++r) {
        const std::string subject = "churn.s" + std::to_string(rng() % 8);
        const std::string queue = rng() % 3 == 0 ? "g" + std::to_string(rng() % 2) : "";
        live.push_back({clients[k]->Sub(subject, queue), {subject, queue}});
        if (live.size() > 5 || rng() % 2 == 0) {
          const size_t victim = rng() % live.size();
          clients[k]->Unsub(live[victim].first);
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
        }
      }
      for (auto& [sid, key] : live) final_subs[k][key]++;
      EXPECT_TRUE(clients[k]->Flush(seconds(10))) << clients[k]->name();
    });
  }
  for (auto& t : threads) t.join();
  // What node i announces: plain subjects once, queue groups with members.
  auto expected_entries = [&](int node) {
    std::map<std::pair<std::string, std::string>, int> merged;
    for (int c = 0; c < kClientsPerNode; ++c) {
      for (auto& [key, n] : final_subs[static_cast<size_t>(node * kClientsPerNode + c)]) merged[key] += n;
    }
    return static_cast<int64_t>(merged.size());
  };
  for (int o = 0; o < 3; ++o) {
    for (int p = 0; p < 3; ++p) {
      if (o == p) continue;
      EXPECT_TRUE(WaitFor(seconds(5), [&] {
        return PeerNumber(*mesh_, o, mesh_->id(p), "interest") == expected_entries(p);
      }, milliseconds(20)))
          << mesh_->id(o) << " holds " << PeerNumber(*mesh_, o, mesh_->id(p), "interest").value_or(-1)
          << " entries of " << mesh_->id(p) << ", want " << expected_entries(p);
    }
  }
  // Three anti-entropy rounds (1 s each here) compare every pair's digests:
  // an observation window, there is no event to wait for.
  std::this_thread::sleep_for(milliseconds(3 * mesh_->options().anti_entropy_interval_ms + 500));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Repairs(*mesh_, i), 0) << mesh_->id(i) << " repaired interest that never diverged:\n" << mesh_->Log(i);
    EXPECT_EQ(CountMatches(mesh_->Log(i), "digest (differs|mismatch)"), 0) << mesh_->Log(i);
  }
}

// 2. Peer backpressure. A scripted peer interested in '>' stops reading its
// socket (it keeps sending PINGs, so it is not stale) while a publisher on
// n1 sends 256 KiB messages. n1 must reset that link at
// --peer_max_pending_bytes (2 MiB) and log it, and meanwhile a concurrent
// flow from n1 keeps reaching a subscriber on n1 and one on n2: no gap longer
// than kMaxGap at either, everything exactly once and in order.
TEST_F(MeshPromisesTest, PeerThatStopsReadingIsResetWithoutSlowingOthers) {
  constexpr milliseconds kMaxGap{1500};
  std::string error;
  MeshNodeSpec spec;
  spec.extra_args = {"--peer_max_pending_bytes=2097152"};
  const int n1 = mesh_->Add(spec);
  const int n2 = mesh_->Add();
  for (int i : {n1, n2}) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({n1, n2}, seconds(20), &error)) << error;

  MeshClient sub1("sub1"), sub2("sub2"), big("big");
  CONNECT_OR_FAIL(sub1, *mesh_, n1);
  CONNECT_OR_FAIL(sub2, *mesh_, n2);
  CONNECT_OR_FAIL(big, *mesh_, n1);
  const int sid1 = sub1.Sub("bp.flow"), sid2 = sub2.Sub("bp.flow");
  sub1.SubProbe();
  sub2.SubProbe();
  ASSERT_TRUE(sub1.Flush() && sub2.Flush());
  ContinuousPublisher flow("flow", "bp.flow", 5, milliseconds(5));
  ASSERT_TRUE(flow.Connect({"127.0.0.1", mesh_->client_port(n1)}, &error)) << error;
  ASSERT_TRUE(WaitInterest({&flow.client()}, {&sub1, &sub2}, seconds(10), &error)) << error;

  LivePeer stall("zz-stall", 11);
  ASSERT_TRUE(stall.Connect(mesh_->peer_port(n1), mesh_->options().secret, &error)) << error;
  stall.Start();
  ASSERT_TRUE(stall.Send(SnapshotFrames({{">", "", 1}}, 1)));
  ASSERT_TRUE(WaitFor(seconds(5), [&] {
    return PeerNumber(*mesh_, n1, stall.id(), "synced") == 1 && PeerNumber(*mesh_, n1, stall.id(), "interest") == 1;
  })) << mesh_->Peerz(n1).value_or(json()).dump();

  flow.Start();
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return stall.GotMsg("bp.flow"); })) << "the scripted peer gets no traffic";
  // Gaps in the flow at the healthy subscribers, sampled every 10 ms.
  std::atomic<bool> watching{true};
  std::atomic<int64_t> worst_gap_ms{0};
  std::thread watcher([&] {
    uint64_t last1 = 0, last2 = 0;
    auto t1 = Clock::now(), t2 = Clock::now();
    while (watching) {
      const uint64_t c1 = sub1.CountFrom(sid1, "flow"), c2 = sub2.CountFrom(sid2, "flow");
      if (c1 != last1) last1 = c1, t1 = Clock::now();
      if (c2 != last2) last2 = c2, t2 = Clock::now();
      worst_gap_ms = std::max<int64_t>(worst_gap_ms, std::max(MsSince(t1), MsSince(t2)));
      std::this_thread::sleep_for(milliseconds(10));
    }
  });

  const std::string reset_re = "peer link [0-9]+ from node zz-stall [^\\n]* down: ";
  const int resets_before = CountMatches(mesh_->Log(n1), reset_re);
  stall.SetReading(false);
  const auto stalled_at = Clock::now();
  std::atomic<bool> flooding{true};
  std::atomic<uint64_t> flooded_bytes{0};
  std::thread flooder([&] {
    const std::string payload(256 * 1024, 'x');
    // 64 MiB: far beyond the 2 MiB bound plus every socket buffer on the
    // way, far below the default bound (256 MiB), so only the configured
    // bound can reset the link before the write deadline (10 s).
    for (int k = 0; k < 256 && flooding; ++k) {
      if (!big.Pub("bp.big", payload)) break;
      flooded_bytes += payload.size();
    }
  });
  const bool reset = WaitFor(seconds(12), [&] { return CountMatches(mesh_->Log(n1), reset_re) > resets_before; },
                             milliseconds(20));
  const int64_t reset_after_ms = MsSince(stalled_at);
  const uint64_t offered_at_reset = flooded_bytes;
  flooding = false;
  flooder.join();
  // The flow goes on for a while after the reset too.
  std::this_thread::sleep_for(milliseconds(500));  // traffic duration, not a condition
  const auto published = std::map<std::string, uint64_t>{{"flow", flow.Stop()}};
  watching = false;
  watcher.join();
  std::cout << "[ stall    ] link reset " << reset_after_ms << " ms after the peer stopped reading, "
            << offered_at_reset / (1 << 20) << " MiB offered by then; worst flow gap " << worst_gap_ms << " ms\n";

  ASSERT_TRUE(reset) << "n1 never reset the link to a peer that reads nothing:\n" << mesh_->Log(n1);
  const std::string log = mesh_->Log(n1);
  EXPECT_EQ(CountMatches(log, reset_re + "Peer Link Reset For Resync"), 1)
      << "the link was not reset for its pending bytes:\n" << log;
  EXPECT_EQ(CountMatches(log, "zz-stall[^\\n]*has not applied this node's interest change"), 0)
      << "reset by the interest barrier instead of the pending bound";
  // The write deadline (10 s) would reset it too, later: the bound must.
  EXPECT_LT(reset_after_ms, 5000) << "not reset by --peer_max_pending_bytes";
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return PeerNumber(*mesh_, n1, stall.id(), "linked") != 1; }));
  stall.SetReading(true);
  EXPECT_TRUE(WaitFor(seconds(10), [&] { return stall.closed(); })) << "the scripted peer's socket stayed open";

  EXPECT_LE(worst_gap_ms.load(), kMaxGap.count()) << "a healthy subscriber went without the flow for too long";
  ASSERT_TRUE(Fence({&flow.client()}, {&sub1, &sub2}, seconds(10), &error)) << error;
  EXPECT_TRUE(ExactlyOnceInOrder(sub1.Get(sid1), published)) << "local subscriber";
  EXPECT_TRUE(ExactlyOnceInOrder(sub2.Get(sid2), published)) << "subscriber on n2";
  EXPECT_GT(published.at("flow"), 100u);
  EXPECT_TRUE(mesh_->Running(n1));
}

// 3. Join before serve. "a-member" is registered in ZooKeeper by the test,
// which accepts the joining node's dial, completes the handshake and sends
// a snapshot without its SYNC_END. For as long as it is withheld the node
// has no znode and its client port refuses connections (its join timeout is
// 60 s); once SYNC_END arrives it registers, serves, and its first client's
// message already reaches the member's interest.
TEST_F(MeshPromisesTest, JoiningNodeServesOnlyAfterEveryPeerSynced) {
  constexpr uint64_t kIncarnation = 4242;
  std::string error;
  ScriptedListener listener;
  ASSERT_TRUE(listener.Listen());
  FakeMember member;
  ASSERT_TRUE(member.Register(zk().connect_string(), mesh_->options().zk_root, "a-member", kIncarnation,
                              listener.port(), &error))
      << error;

  MeshNodeSpec spec;
  spec.client_port = PickFreePort();
  spec.extra_args = {"--join_timeout_ms=60000"};
  const int n = mesh_->Add(spec);
  ASSERT_TRUE(mesh_->Launch(n, &error)) << error;
  const std::string znode = mesh_->nodes_path() + "/" + mesh_->id(n);

  LivePeer sp("a-member", kIncarnation);
  const int fd = listener.Accept(seconds(10));
  ASSERT_GE(fd, 0) << "the joining node never dialled the member:\n" << mesh_->Log(n);
  ASSERT_TRUE(sp.Accept(fd, mesh_->options().secret, &error)) << error;
  EXPECT_EQ(sp.node_hello(), mesh_->id(n));
  sp.Start();
  std::string begin_and_interest, sync_end;
  peer::EncodeEmpty(FrameType::kSyncBegin, &begin_and_interest);
  peer::EncodeInterest({"join.x", "", 1, 1}, &begin_and_interest);
  const InterestDigest d = DigestOf({{"join.x", "", 1}});
  peer::EncodeDigest(FrameType::kSyncEnd, {d.hash, d.entries, 1}, &sync_end);
  ASSERT_TRUE(sp.Send(begin_and_interest));

  // 3 s withheld (sampled every 100 ms): no znode, no client port.
  const auto until = Clock::now() + milliseconds(3000);
  int samples = 0;
  while (Clock::now() < until) {
    ASSERT_TRUE(mesh_->Running(n)) << mesh_->Log(n);
    ASSERT_FALSE(mesh_->zk().Get(znode, milliseconds(500)).has_value()) << "registered before the member synced";
    ASSERT_TRUE(Refused(spec.client_port)) << "the client port is open before the member synced";
    ++samples;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_GE(samples, 10);
  ASSERT_FALSE(sp.closed()) << "the node gave up the link:\n" << mesh_->Log(n);

  const auto released = Clock::now();
  ASSERT_TRUE(sp.Send(sync_end));
  MeshClient pub("joinpub");
  ASSERT_TRUE(pub.Connect(spec.client_port, &error, seconds(10), /*retry_refused=*/true)) << error;
  std::cout << "[ join     ] serving " << MsSince(released) << " ms after SYNC_END\n";
  EXPECT_TRUE(mesh_->zk().Get(znode).has_value()) << "serving without a znode";
  ASSERT_TRUE(pub.Pub("join.x", "first"));
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return sp.GotMsg("join.x"); }))
      << "the first message on the new node missed the member's interest";
  EXPECT_EQ(CountMatches(mesh_->Log(n), "joining without node"), 0) << mesh_->Log(n);
}

// 4. Dial races. Both ends of a pair dial each other and both links complete
// the handshake: the node must keep exactly the link the rule names (the one
// dialled by the smaller node id), whichever authenticated first, close or
// retire the other, and carry traffic on the survivor.
//
// The other end is played by the test, registered as a member, because two
// real nodes started together practically never both dial: a settled node
// with the larger id waits the dial grace (1 s) and a joining node registers
// only after its link is up (0 duplicates in 8 rounds of simultaneous starts
// here, and in mesh_test's SimultaneousStarts/DialRaceAfterPause). Three
// orders: the member's id below the node's (it must win) with its own dial
// authenticated first and then second, and an id above the node's (the
// node's dial must win) with the node's dial authenticated second.
TEST_F(MeshPromisesTest, DuplicateLinkFromADialRaceIsResolvedByTheRule) {
  struct Case {
    std::string member;
    bool node_dial_first;  // which link completes HELLO first
    bool node_dial_wins;
    std::string resolution;  // the node's log line
  };
  const std::vector<Case> cases = {
      {"a-race", false, false, "duplicate link [0-9]+ to node a-race closed; keeping link [0-9]+"},
      {"a-race", true, false, "link [0-9]+ to node a-race replaces link [0-9]+"},
      {"z-race", false, true, "link [0-9]+ to node z-race replaces link [0-9]+"},
  };
  int k = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.member + (c.node_dial_first ? ", node's dial first" : ", member's dial first"));
    auto mesh = NewMesh("-" + std::to_string(k++));
    std::string error;
    const int n1 = mesh->Add();
    ASSERT_TRUE(mesh->Start(n1, &error)) << error;
    ScriptedListener listener;
    ASSERT_TRUE(listener.Listen());
    FakeMember member;
    ASSERT_TRUE(member.Register(zk().connect_string(), mesh->options().zk_root, c.member, 99, listener.port(), &error))
        << error;
    // The node dials the new member (at once, or after the dial grace when
    // its id is the larger); TLS completes, our HELLO waits.
    LivePeer accepted(c.member, 99), dialled(c.member, 99);
    const int fd = listener.Accept(seconds(10));
    ASSERT_GE(fd, 0) << "the node never dialled the member:\n" << mesh->Log(n1);
    ASSERT_TRUE(accepted.Accept(fd, mesh->options().secret, &error, /*send_hello=*/false)) << error;
    // The node's silence bound (1 s) runs on the held link: keep it short.
    auto complete = [&](LivePeer& p, bool dial) {
      if (dial) {
        ASSERT_TRUE(p.Connect(mesh->peer_port(n1), mesh->options().secret, &error)) << error;
      } else {
        ASSERT_TRUE(p.SendOwnHello(&error)) << error;
      }
      p.Start();
    };
    LivePeer& first = c.node_dial_first ? accepted : dialled;
    LivePeer& second = c.node_dial_first ? dialled : accepted;
    complete(first, &first == &dialled);
    ASSERT_FALSE(HasFatalFailure());
    // Active once the node sent it its snapshot.
    ASSERT_TRUE(WaitFor(seconds(3), [&] { return first.Count(FrameType::kSyncEnd) >= 1; }))
        << "the first link never became active:\n" << mesh->Log(n1);
    complete(second, &second == &dialled);
    ASSERT_FALSE(HasFatalFailure());

    LivePeer& winner = c.node_dial_wins ? accepted : dialled;
    LivePeer& loser = c.node_dial_wins ? dialled : accepted;
    EXPECT_TRUE(WaitFor(seconds(8), [&] { return loser.closed(); }))
        << "the link the rule drops is still open:\n" << mesh->Log(n1);
    EXPECT_TRUE(WaitFor(seconds(3), [&] { return CountMatches(mesh->Log(n1), c.resolution) == 1; }))
        << "no resolution logged:\n" << mesh->Log(n1);
    // Exactly one link, steadily: on the wire, in /peerz, and it is the winner.
    auto wire = [&] {
      return CountEstablishedOnLocalPort(mesh->peer_port(n1)) + CountEstablishedOnLocalPort(listener.port());
    };
    auto settled = [&] {
      return wire() == 1 && !winner.closed() && PeerNumber(*mesh, n1, c.member, "linked") == 1 &&
             PeerNumber(*mesh, n1, c.member, "outbound") == (c.node_dial_wins ? 1 : 0);
    };
    // /peerz is a snapshot refreshed on the node's tick: wait for it first.
    ASSERT_TRUE(WaitFor(seconds(5), settled))
        << wire() << " connections; winner " << (winner.closed() ? "closed" : "open") << "; /peerz "
        << mesh->Peerz(n1).value_or(json()).dump() << "\n" << mesh->Log(n1);
    const auto until = Clock::now() + milliseconds(1200);
    while (Clock::now() < until) {
      ASSERT_TRUE(settled()) << "the link set changed after settling: " << wire() << " connections; /peerz "
                             << mesh->Peerz(n1).value_or(json()).dump();
      std::this_thread::sleep_for(milliseconds(100));
    }
    // The survivor carries interest and messages.
    ASSERT_TRUE(winner.Send(SnapshotFrames({{"race.x", "", 1}}, 1)));
    ASSERT_TRUE(WaitFor(seconds(5), [&] { return PeerNumber(*mesh, n1, c.member, "interest") == 1; }));
    MeshClient pub("racepub");
    ASSERT_TRUE(pub.Connect(mesh->client_port(n1), &error)) << error;
    ASSERT_TRUE(pub.Pub("race.x", "one"));
    EXPECT_TRUE(WaitFor(seconds(5), [&] { return winner.GotMsg("race.x"); }));
    EXPECT_FALSE(loser.GotMsg("race.x"));
  }
}

// 5. Mesh-wide cleanup. On n1 (--max_pending_bytes 256 KiB) a subscriber
// stops reading while a publisher on n2 floods it, and another client stops
// answering PINGs; n1 closes them (slow consumer, stale connection) and n2
// no longer holds their interest.
TEST_F(MeshPromisesTest, SlowConsumerAndStaleClientInterestLeavesTheMesh) {
  std::string error;
  MeshNodeSpec spec;
  spec.extra_args = {"--max_pending_bytes=262144"};
  const int n1 = mesh_->Add(spec);
  const int n2 = mesh_->Add();
  for (int i : {n1, n2}) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({n1, n2}, seconds(20), &error)) << error;
  auto interest = [&] { return PeerNumber(*mesh_, n2, mesh_->id(n1), "interest"); };
  const auto base = interest();
  ASSERT_TRUE(base.has_value());

  {  // The slow consumer.
    RawClient slow;
    slow.set_receive_buffer(4096);
    ASSERT_TRUE(slow.Dial(mesh_->client_port(n1)));
    ASSERT_TRUE(slow.Connect());  // reads INFO first
    ASSERT_TRUE(slow.Sub("sc.>", "1"));
    ASSERT_TRUE(slow.Flush());
    ASSERT_TRUE(WaitFor(seconds(5), [&] { return interest() == *base + 1; })) << "the interest never reached n2";
    MeshClient flood("flood");
    CONNECT_OR_FAIL(flood, *mesh_, n2);
    const std::string payload(64 * 1024, 'y');
    bool gone = false;
    for (int k = 0; k < 2000 && !gone; ++k) {  // bounded: 125 MiB at most
      ASSERT_TRUE(flood.Pub("sc.data", payload));
      if (k % 50 == 49) gone = interest() == *base;
    }
    EXPECT_TRUE(WaitFor(seconds(10), [&] { return interest() == *base; }))
        << "n2 still holds the slow consumer's interest: " << interest().value_or(-1);
    EXPECT_GE(CountMatches(mesh_->Log(n1), "Slow Consumer"), 1) << mesh_->Log(n1);
    auto varz = mesh_->Varz(n1);
    ASSERT_TRUE(varz.has_value());
    EXPECT_GE(varz->value("slow_consumers", 0), 1);
  }
  {  // The stale client: it never answers the server's PINGs.
    RawClient stale;
    stale.set_auto_pong(false);
    ASSERT_TRUE(stale.Dial(mesh_->client_port(n1)));
    ASSERT_TRUE(stale.Connect());  // reads INFO first
    ASSERT_TRUE(stale.Sub("stale.>", "1"));
    ASSERT_TRUE(stale.Flush());
    ASSERT_TRUE(WaitFor(seconds(5), [&] { return interest() == *base + 1; })) << "the interest never reached n2";
    const auto quiet_from = Clock::now();
    // ping_interval 500 ms, max_pings_out 2: closed within ~1.5 s.
    EXPECT_TRUE(WaitFor(seconds(6), [&] { return interest() == *base; }, milliseconds(20)))
        << "n2 still holds the stale client's interest";
    std::cout << "[ stale    ] interest gone from n2 " << MsSince(quiet_from) << " ms after the client went quiet\n";
    EXPECT_GE(CountMatches(mesh_->Log(n1), "Stale Connection"), 1) << mesh_->Log(n1);
  }
}

// 6. INFO connect_urls follow membership: a raw client on n1 gets a new INFO
// without n3's address after n3 is killed with SIGKILL (its znode expires),
// and one with n4's once n4 joins.
TEST_F(MeshPromisesTest, ConnectUrlsFollowKillAndJoin) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(3, &error)) << error;
  auto urls_of = [&](const std::vector<int>& nodes) {
    std::set<std::string> out;
    for (int i : nodes) out.insert("127.0.0.1:" + std::to_string(mesh_->client_port(i)));
    return out;
  };
  RawClient c;
  ASSERT_TRUE(c.Dial(mesh_->client_port(0)));
  // protocol 1: like nats-server, only clients that say they handle async
  // INFO (every standard client does) are sent membership updates.
  ASSERT_TRUE(c.Connect({}, {}, R"({"protocol":1})"));  // reads INFO first
  const json* info = &c.info();
  auto urls = [](const json& j) {
    std::set<std::string> out;
    if (j.contains("connect_urls")) {
      for (const json& u : j["connect_urls"]) out.insert(u.get<std::string>());
    }
    return out;
  };
  EXPECT_EQ(urls(*info), urls_of({0, 1, 2}));
  // Reads lines until an INFO whose connect_urls are `want` (bounded).
  auto wait_info = [&](const std::set<std::string>& want, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::set<std::string> last;
    while (Clock::now() < deadline) {
      auto line = c.ReadLine(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
      if (!line) break;
      if (line->rfind("INFO ", 0) != 0) continue;
      const json j = json::parse(line->substr(5), nullptr, false);
      last = urls(j);
      if (last == want) return true;
    }
    ADD_FAILURE() << "last connect_urls seen: " << json(last).dump();
    return false;
  };

  const auto killed_at = Clock::now();
  mesh_->Kill(2);
  EXPECT_TRUE(wait_info(urls_of({0, 1}), seconds(15))) << "no INFO without the killed node";
  std::cout << "[ info     ] INFO without n3 " << MsSince(killed_at) << " ms after kill -9\n";

  // The client keeps reading (and answering PINGs) while n4 joins: its port
  // is fixed so that the expected URL is known before it serves.
  MeshNodeSpec spec;
  spec.client_port = PickFreePort();
  const int n4 = mesh_->Add(spec);
  ASSERT_TRUE(mesh_->Launch(n4, &error)) << error;
  EXPECT_TRUE(wait_info(urls_of({0, 1, n4}), seconds(20))) << "no INFO with the new node";
  ASSERT_TRUE(mesh_->WaitReady(n4, seconds(5), &error)) << error;
  EXPECT_FALSE(c.closed());
}

}  // namespace
}  // namespace zmesh::testing

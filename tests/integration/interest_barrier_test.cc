// The mesh-wide interest barrier (SPEC §2, docs/peer-protocol.md): after a
// SUB or UNSUB, the client's next PING is answered only once every live peer
// has applied the change. Raw NATS clients on a 3-node mesh, each test able
// to fail on a mesh without the barrier (there, a publish right after the
// PONG on another node is often dropped: interest had not arrived yet).
//
//  - SubscribeFlushThenPublishElsewhere: SUB + PING on n1, and at the PONG a
//    publish on n2 and on n3, 1,000 times: every message arrives.
//  - UnsubscribeFlushStopsForwarding: after UNSUB + PONG, nothing published
//    on another node is forwarded to n1 any more (/peerz out_msgs).
//  - QueueGroups: the same for a queue subscription.
//  - StoppedPeerIsResetWithinTheBound: with n3 SIGSTOPped the PONG comes
//    within --interest_barrier_timeout_ms (+ a tick), n3's link is reset,
//    and n3, once back, has the interest.
//  - DuringAJoinAndWithZooKeeperDown: the guarantee holds while a node joins
//    (it is covered by the snapshot it receives) and while ZooKeeper is down.
//  - StandardGoClientSubscribeFlush: nats.go Subscribe + Flush on n1, then a
//    publish on n2 and n3, 1,000 times (natscheck subflush): nothing lost.
//  - ZmeshClientSubscribeIsLiveWhenItReturns: zmesh::Client SubscribeSync on
//    n1 (no Flush: the library confirms), then a publish on n2 and n3, 300
//    times: nothing lost.

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmesh/client.h>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/process.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The state letter of /proc/<pid>/stat ('T' once stopped), or 0.
char ProcessState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : 0;
}

class InterestBarrierTest : public MeshFixture {
 protected:
  void StartMesh(int nodes, std::vector<std::string> extra = {}) {
    for (int i = 0; i < nodes; ++i) {
      MeshNodeSpec spec;
      spec.extra_args = extra;
      mesh_->Add(spec);
    }
    std::string error;
    for (int i = 0; i < nodes; ++i) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
    std::vector<int> all;
    for (int i = 0; i < nodes; ++i) all.push_back(i);
    ASSERT_TRUE(mesh_->WaitConverged(all, seconds(20), &error)) << error;
  }
  void Connect(MeshClient& c, int node) {
    std::string error;
    ASSERT_TRUE(c.Connect(mesh_->client_port(node), &error)) << c.name() << ": " << error;
  }
  // `rounds` times: a fresh subscription on `sub`, PING/PONG, then at once a
  // publish to it from each of `pubs` (each flushed). Returns the rounds'
  // sids; every message must arrive.
  void SubscribeFlushPublish(MeshClient& sub, std::vector<MeshClient*> pubs, int rounds, const std::string& tag,
                             const std::string& queue = "") {
    std::vector<int> sids;
    for (int i = 0; i < rounds; ++i) {
      const std::string subject = tag + "." + std::to_string(i);
      sids.push_back(sub.Sub(subject, queue));
      ASSERT_TRUE(sub.Flush(seconds(10))) << "no PONG for round " << i;
      for (MeshClient* p : pubs) {
        ASSERT_TRUE(p->Pub(subject, p->name()));
        ASSERT_TRUE(p->Flush());
      }
    }
    const size_t expected = pubs.size();
    auto missing = [&] {
      size_t n = 0;
      for (int sid : sids) {
        const size_t got = sub.Get(sid).others.size();
        if (got < expected) n += expected - got;
      }
      return n;
    };
    // Whatever was going to arrive has arrived once a later flush went round.
    WaitFor(seconds(5), [&] { return missing() == 0; }, milliseconds(20));
    EXPECT_EQ(missing(), 0u) << "messages published right after the PONG were lost (" << rounds << " rounds × "
                             << expected << " publishers)";
    for (int sid : sids) EXPECT_LE(sub.Get(sid).others.size(), expected) << "duplicates on sid " << sid;
  }
  int64_t OutMsgs(int from, int to) {
    auto e = mesh_->PeerEntry(from, mesh_->id(to));
    return e ? e->value("out_msgs", int64_t{-1}) : -1;
  }
};

TEST_F(InterestBarrierTest, SubscribeFlushThenPublishElsewhere) {
  StartMesh(3);
  MeshClient sub("sub"), pub2("pub2"), pub3("pub3");
  Connect(sub, 0);
  Connect(pub2, 1);
  Connect(pub3, 2);
  SubscribeFlushPublish(sub, {&pub2, &pub3}, 1000, "barrier.sub");
  auto varz = mesh_->Varz(0);
  ASSERT_TRUE(varz.has_value());
  EXPECT_GE((*varz)["mesh"]["interest_barrier"].value("waits", 0), 1) << varz->dump();
  EXPECT_EQ((*varz)["mesh"]["interest_barrier"].value("timeouts", -1), 0) << varz->dump();
  // /peerz is refreshed on the node's monitoring tick.
  std::optional<json> peerz;
  EXPECT_TRUE(WaitFor(seconds(3), [&] {
    peerz = mesh_->Peerz(0);
    if (!peerz) return false;
    for (const json& p : (*peerz)["peers"]) {
      if (p.value("interest_acked", 0) < 1000 || p.value("interest_lag", -1) != 0) return false;
    }
    return true;
  })) << (peerz ? peerz->dump() : "no /peerz");
}

// A PING with no interest change since the last PONG is answered at once:
// the barrier must not cost keepalives and publish flushes anything.
TEST_F(InterestBarrierTest, PingWithoutChangeIsAnsweredAtOnce) {
  StartMesh(3);
  MeshClient c("c");
  Connect(c, 0);
  c.Sub("barrier.once");
  ASSERT_TRUE(c.Flush());
  const uint64_t waits = (*mesh_->Varz(0))["mesh"]["interest_barrier"].value("waits", uint64_t{0});
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(c.Flush());
  EXPECT_EQ((*mesh_->Varz(0))["mesh"]["interest_barrier"].value("waits", uint64_t{0}), waits)
      << "PINGs without an interest change waited for peers";
}

TEST_F(InterestBarrierTest, UnsubscribeFlushStopsForwarding) {
  StartMesh(3);
  MeshClient sub("sub"), pub2("pub2");
  Connect(sub, 0);
  Connect(pub2, 1);
  for (int round = 0; round < 50; ++round) {
    const std::string subject = "barrier.unsub." + std::to_string(round);
    const int sid = sub.Sub(subject);
    ASSERT_TRUE(sub.Flush());
    sub.Unsub(sid);
    ASSERT_TRUE(sub.Flush());
    // From here n2 must not forward anything for the subject to n1.
    const int64_t before = OutMsgs(1, 0);
    ASSERT_GE(before, 0);
    for (int k = 0; k < 20; ++k) ASSERT_TRUE(pub2.Pub(subject, "late"));
    ASSERT_TRUE(pub2.Flush());
    // /peerz is refreshed by n2's monitoring tick; give it two.
    std::this_thread::sleep_for(milliseconds(round == 0 ? 600 : 0));
    EXPECT_EQ(OutMsgs(1, 0), before) << "n2 forwarded messages for an unsubscribed subject after the PONG";
  }
  EXPECT_EQ(sub.Get(0).others.size() + sub.Get(1).others.size(), 0u);
}

TEST_F(InterestBarrierTest, QueueGroups) {
  StartMesh(3);
  MeshClient sub("sub"), pub2("pub2"), pub3("pub3");
  Connect(sub, 0);
  Connect(pub2, 1);
  Connect(pub3, 2);
  SubscribeFlushPublish(sub, {&pub2, &pub3}, 200, "barrier.queue", "workers");
}

TEST_F(InterestBarrierTest, StoppedPeerIsResetWithinTheBound) {
  constexpr int kTimeoutMs = 1500;
  // Liveness pings slower than the barrier, so that the barrier is what acts.
  mesh_ = NewMesh("", [](MeshOptions& o) {
    o.ping_interval_ms = 3000;
    o.max_pings_out = 3;
    o.session_timeout_ms = 20000;
  });
  StartMesh(3, {"--interest_barrier_timeout_ms=" + std::to_string(kTimeoutMs)});
  MeshClient sub("sub"), pub2("pub2");
  Connect(sub, 0);
  Connect(pub2, 1);
  ASSERT_TRUE(mesh_->Signal(2, SIGSTOP));
  // kill() returns before the process has stopped; wait until it has, or it
  // might still apply the change below.
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return ProcessState(mesh_->node(2).process->pid()) == 'T'; }))
      << "n3 did not stop";
  const auto start = Clock::now();
  sub.Sub("barrier.stopped");
  ASSERT_TRUE(sub.Flush(seconds(10))) << "no PONG while a peer is stopped";
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  ASSERT_TRUE(mesh_->Signal(2, SIGCONT));
  EXPECT_GE(waited, kTimeoutMs - 100) << "the PONG did not wait for the stopped peer";
  EXPECT_LE(waited, kTimeoutMs + 1500) << "the PONG came long after the barrier timeout";
  auto varz = mesh_->Varz(0);
  ASSERT_TRUE(varz.has_value());
  EXPECT_GE((*varz)["mesh"]["interest_barrier"].value("timeouts", 0), 1) << varz->dump();
  EXPECT_NE(mesh_->Log(0).find("--interest_barrier_timeout_ms"), std::string::npos);
  // n3 comes back, re-links and re-syncs: it has the interest.
  std::string error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, seconds(20), &error)) << error;
  MeshClient pub3("pub3");
  Connect(pub3, 2);
  ASSERT_TRUE(pub3.Pub("barrier.stopped", "from n3"));
  ASSERT_TRUE(pub3.Flush());
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return sub.Get(1).others.count("from n3") == 1; }))
      << "n3 lacks the interest after it came back";
  // And the barrier works with n3 again.
  SubscribeFlushPublish(sub, {&pub2, &pub3}, 50, "barrier.after");
}

TEST_F(InterestBarrierTest, DuringAJoinAndWithZooKeeperDown) {
  StartMesh(2);
  MeshClient sub("sub"), pub2("pub2");
  Connect(sub, 0);
  Connect(pub2, 1);
  // n3 joins while rounds go on between n1 and n2.
  mesh_->Add();
  std::string error;
  ASSERT_TRUE(mesh_->Launch(2, &error)) << error;
  SubscribeFlushPublish(sub, {&pub2}, 200, "barrier.join");
  ASSERT_TRUE(mesh_->WaitReady(2, seconds(15), &error)) << error;
  MeshClient pub3("pub3");
  Connect(pub3, 2);
  // A node that just joined is covered too.
  SubscribeFlushPublish(sub, {&pub2, &pub3}, 100, "barrier.joined");

  // ZooKeeper down: links carry on, and so does the barrier.
  zk().Stop();
  SubscribeFlushPublish(sub, {&pub2, &pub3}, 200, "barrier.nozk");
  ASSERT_TRUE(zk().Restart(&error)) << error;
}

// The standard Go client needs no new API for the guarantee: Flush after
// Subscribe is the barrier.
TEST_F(InterestBarrierTest, StandardGoClientSubscribeFlush) {
  StartMesh(3);
  const char* bin_dir = std::getenv("ZMESH_BIN_DIR");
  const std::vector<std::string> argv = {
      std::string(bin_dir != nullptr ? bin_dir : ".") + "/natscheck", "subflush", "--timeout=10", "--deadline=150",
      "--msgs=1000", "--sub-url=" + mesh_->client_url(0),
      "--pub-url=" + mesh_->client_url(1) + "," + mesh_->client_url(2)};
  Process p;
  std::string error;
  ASSERT_TRUE(p.Start(argv, mesh_->dir() + "/natscheck-subflush.log", &error)) << error;
  const std::optional<int> status = p.WaitExit(seconds(180));
  if (!status) p.Stop(seconds(2));
  const std::string log = p.ReadLog();
  ASSERT_TRUE(status.has_value()) << "natscheck subflush did not finish:\n" << log;
  const size_t result = log.rfind("\n{");
  ASSERT_NE(result, std::string::npos) << log;
  const json j = json::parse(log.substr(result + 1), nullptr, false);
  ASSERT_TRUE(j.is_object()) << log;
  EXPECT_EQ(j.value("lost", -1), 0) << log.substr(result);
  EXPECT_EQ(j.value("received", -1), 2000) << log.substr(result);
  EXPECT_TRUE(j.value("ok", false)) << log.substr(result);
}

// zmesh::Client's Subscribe waits for the barrier itself: when it returns,
// a publish anywhere in the mesh reaches the subscription.
TEST_F(InterestBarrierTest, ZmeshClientSubscribeIsLiveWhenItReturns) {
  StartMesh(3);
  Options o;
  o.servers = {mesh_->client_url(0)};
  o.use_node_cache = false;
  o.name = "zsub";
  std::unique_ptr<Client> client;
  const Status st = Client::Connect(o, &client);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(client->connected_url(), mesh_->client_url(0));
  MeshClient pub2("pub2"), pub3("pub3");
  Connect(pub2, 1);
  Connect(pub3, 2);
  constexpr int kRounds = 300;
  std::vector<std::shared_ptr<Subscription>> subs;
  for (int i = 0; i < kRounds; ++i) {
    const std::string subject = "barrier.zmesh." + std::to_string(i);
    std::shared_ptr<Subscription> sub;
    const Status s = client->SubscribeSync(subject, &sub);
    ASSERT_TRUE(s.ok()) << "round " << i << ": " << s.ToString();
    for (MeshClient* p : {&pub2, &pub3}) {
      ASSERT_TRUE(p->Pub(subject, p->name()));
      ASSERT_TRUE(p->Flush());
    }
    subs.push_back(std::move(sub));
  }
  int lost = 0;
  for (auto& sub : subs) {
    Message m;
    for (int k = 0; k < 2; ++k) {
      if (!sub->NextMsg(&m, milliseconds(k == 0 && lost == 0 ? 2000 : 50)).ok()) ++lost;
    }
    EXPECT_EQ(sub->NextMsg(&m, milliseconds(0)).code(), StatusCode::kTimeout) << "a duplicate";
  }
  EXPECT_EQ(lost, 0) << "of " << 2 * kRounds << " messages published right after Subscribe returned";
  client->Close();
}

}  // namespace
}  // namespace zmesh::testing

// Faults in a running mesh (issue 3, item 7): a node killed with SIGKILL,
// ZooKeeper stopped and restarted under traffic, a node paused past its
// session timeout (expiry), and a link flap that makes both ends redial at
// once. (The pairwise partition is in mesh_partition_test.cc.) Publishers keep publishing sequenced messages on every node through
// each fault, and every count is checked exactly: the nodes not involved in
// a fault lose nothing and duplicate nothing; the node involved may lose
// messages (at most once) but never duplicates or reorders them.
//
// Timing (MeshOptions defaults): ZooKeeper tick 500 ms, session timeout
// T = 2000 ms, peer pings every 500 ms with 2 outstanding allowed.

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kTickMs = 500;  // ZooKeeperServer's tickTime

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

int CountMatches(const std::string& text, const std::string& regex) {
  const std::regex re(regex);
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), re), std::sregex_iterator()));
}

// The session timeout ZooKeeper granted the node, from its log line
// "ZooKeeper session 0x... established, timeout N ms"; 0 if absent.
int64_t NegotiatedTimeoutMs(const std::string& log) {
  static const std::regex re("ZooKeeper session 0x[0-9a-f]+ established, timeout ([0-9]+) ms");
  std::smatch m;
  return std::regex_search(log, m, re) ? std::stoll(m[1]) : 0;
}

// The client endpoints of all nodes of `mesh`, in index order.
std::vector<Endpoint> Endpoints(MeshCluster& mesh) {
  std::vector<Endpoint> out;
  for (int i = 0; i < mesh.size(); ++i) out.push_back({mesh.node(i).spec.host, mesh.client_port(i)});
  return out;
}

class MeshFaultTest : public MeshFixture {};

// kill -9 of n3 under traffic: its znode disappears within the negotiated
// session timeout plus one tick (+300 ms for polling on a loaded 2-core
// machine), the survivors drop it from their membership and links, and n1
// and n2 keep forwarding to each other throughout — nothing lost, nothing duplicated,
// order kept. What n3's publisher sent before it died arrives at most once.
TEST_F(MeshFaultTest, KillNineNodeSurvivorsCarryOnExactlyOnce) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(3, &error)) << error;
  NodeTraffic t("mesh.kill");
  ASSERT_TRUE(t.Connect(Endpoints(*mesh_)));
  t.Start();
  for (size_t k = 0; k < 3; ++k) {
    ASSERT_TRUE(t.WaitFlowing(k, {0, 1, 2}, {}, 300, seconds(10))) << t.Describe();
  }

  const std::string victim_path = mesh_->nodes_path() + "/" + mesh_->id(2);
  const auto killed = Clock::now();
  mesh_->Kill(2);
  ASSERT_TRUE(WaitFor(seconds(10), [&] {
    auto members = mesh_->ZkMembers(milliseconds(500));
    return members && !Contains(*members, mesh_->id(2));
  }, milliseconds(10)));
  const int64_t gone_ms = MsSince(killed);
  const int64_t negotiated = NegotiatedTimeoutMs(mesh_->Log(2));
  std::cout << "[ kill -9  ] znode of n3 gone after " << gone_ms << " ms (negotiated T = " << negotiated << " ms)\n";
  RecordProperty("znode_gone_ms", static_cast<int>(gone_ms));
  ASSERT_GT(negotiated, 0) << "no negotiated session timeout in n3's log";
  EXPECT_LE(gone_ms, negotiated + kTickMs + 300)
      << "the znode of a killed node must disappear within the session timeout (+ tick)";

  // The survivors' view follows ZooKeeper, and their links to n3 are gone
  // (the kernel reset the TCP connections at once).
  for (int i : {0, 1}) {
    EXPECT_TRUE(WaitFor(seconds(3), [&] {
      auto e = mesh_->PeerEntry(i, mesh_->id(2));
      return !e || (!e->value("member", true) && !e->value("linked", true));
    })) << mesh_->id(i) << " /peerz: " << mesh_->Peerz(i).value_or(json()).dump();
  }
  // Survivors keep forwarding among themselves after the znode is gone.
  const auto after0 = t.Snapshot(0), after1 = t.Snapshot(1);
  EXPECT_TRUE(t.WaitFlowing(0, {0, 1}, after0, 500, seconds(10))) << t.Describe();
  EXPECT_TRUE(t.WaitFlowing(1, {0, 1}, after1, 500, seconds(10))) << t.Describe();
  ASSERT_TRUE(mesh_->WaitConverged({0, 1}, seconds(10), &error)) << error;

  const auto published = t.Stop();
  EXPECT_TRUE(t.pub(2).failed()) << "n3's publisher should have lost its connection";
  std::vector<MeshClient*> live_pubs = {&t.pub(0).client(), &t.pub(1).client()};
  ASSERT_TRUE(Fence(live_pubs, {&t.sub(0), &t.sub(1)}, seconds(10), &error)) << error;
  for (size_t k : {0u, 1u}) {
    SCOPED_TRACE("subscriber on n" + std::to_string(k + 1));
    const Receipts r = t.Get(k);
    EXPECT_TRUE(ExactlyOnceInOrder(Without(r, "pub3"), {{"pub1", published.at("pub1")}, {"pub2", published.at("pub2")}}))
        << "traffic between the survivors";
    EXPECT_TRUE(NoDuplicatesInOrder(r)) << "including what the killed node's publisher sent";
    EXPECT_LE(r.From("pub3"), published.at("pub3"));
  }
}

// ZooKeeper stopped for longer than the session timeout while all nodes
// publish, then restarted: forwarding never stops (asserted while ZooKeeper
// is down), every node is registered and linked again afterwards, and no
// subscriber lost or duplicated a single message over the whole run.
TEST_F(MeshFaultTest, ZooKeeperStoppedAndRestartedDuringTraffic) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(3, &error)) << error;
  NodeTraffic t("mesh.zk");
  ASSERT_TRUE(t.Connect(Endpoints(*mesh_)));
  t.Start();
  for (size_t k = 0; k < 3; ++k) {
    ASSERT_TRUE(t.WaitFlowing(k, {0, 1, 2}, {}, 300, seconds(10))) << t.Describe();
  }

  ASSERT_TRUE(zk().Stop(SIGTERM));
  const auto stopped = Clock::now();
  ASSERT_FALSE(mesh_->ZkMembers(milliseconds(300)).has_value()) << "ZooKeeper still answers";
  // Messages flow between all nodes while ZooKeeper is down.
  std::vector<std::map<std::string, uint64_t>> at_stop;
  for (size_t k = 0; k < 3; ++k) at_stop.push_back(t.Snapshot(k));
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(t.WaitFlowing(k, {0, 1, 2}, at_stop[k], 500, seconds(10)))
        << "forwarding stalled while ZooKeeper is down: " << t.Describe();
  }
  // The outage lasts past the session timeout (the nodes' local expiry
  // timers fire); the links stay up all along.
  const int64_t outage_ms = 2 * mesh_->options().session_timeout_ms;
  while (MsSince(stopped) < outage_ms) {
    for (int i = 0; i < 3; ++i) {
      auto linked = mesh_->LinkedPeers(i);
      ASSERT_TRUE(linked.has_value()) << mesh_->id(i) << " /peerz did not answer";
      EXPECT_EQ(linked->size(), 2u) << mesh_->id(i) << " lost a link while ZooKeeper was down: "
                                    << mesh_->Peerz(i).value_or(json()).dump();
    }
    std::this_thread::sleep_for(milliseconds(200));  // sampling the outage, which has a fixed length
  }
  std::vector<std::map<std::string, uint64_t>> late;
  for (size_t k = 0; k < 3; ++k) late.push_back(t.Snapshot(k));
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(t.WaitFlowing(k, {0, 1, 2}, late[k], 200, seconds(10)))
        << "forwarding stalled late in the ZooKeeper outage: " << t.Describe();
  }
  ASSERT_FALSE(mesh_->ZkMembers(milliseconds(300)).has_value());

  ASSERT_TRUE(zk().Restart(&error)) << error;
  const auto restarted = Clock::now();
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, seconds(20), &error)) << error;
  std::cout << "[ zk       ] outage " << outage_ms << " ms; mesh registered and healthy again "
            << MsSince(restarted) << " ms after the restart\n";
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(CountMatches(mesh_->Log(i), "ZooKeeper session (suspended|expired)"), 0)
        << mesh_->id(i) << " never noticed the outage";
    EXPECT_EQ(mesh_->Healthz(i), 200) << mesh_->id(i);
  }
  // Traffic continues after the restart too.
  for (size_t k = 0; k < 3; ++k) {
    const auto now = t.Snapshot(k);
    EXPECT_TRUE(t.WaitFlowing(k, {0, 1, 2}, now, 200, seconds(10))) << t.Describe();
  }

  const auto published = t.Stop();
  ASSERT_TRUE(Fence(t.publisher_clients(), t.subscribers(), seconds(10), &error)) << error;
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(ExactlyOnceInOrder(t.Get(k), published)) << "subscriber on n" << k + 1 << " over the whole run";
  }
}

// n3 is paused (SIGSTOP) until ZooKeeper expired its session and deleted its
// znode, and for longer than the negotiated session timeout, then resumed: it must notice the expiry, create a new session,
// register again and rejoin as a full member (links up and synced, its
// subscriber receiving cross-node traffic again). n1 and n2 forward to each
// other without loss throughout; nobody ever receives a duplicate, and a
// fresh round afterwards is exactly once everywhere.
TEST_F(MeshFaultTest, SessionExpiryNodeRejoinsAsFullMember) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(3, &error)) << error;
  const std::string path = mesh_->nodes_path() + "/" + mesh_->id(2);
  auto before = mesh_->zk().Get(path);
  ASSERT_TRUE(before.has_value());

  NodeTraffic t("mesh.expiry");
  ASSERT_TRUE(t.Connect(Endpoints(*mesh_)));
  t.Start();
  for (size_t k = 0; k < 3; ++k) {
    ASSERT_TRUE(t.WaitFlowing(k, {0, 1, 2}, {}, 300, seconds(10))) << t.Describe();
  }

  ASSERT_TRUE(mesh_->Signal(2, SIGSTOP));
  const auto paused = Clock::now();
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return !mesh_->zk().Get(path, milliseconds(500)).has_value(); },
                      milliseconds(10)))
      << "ZooKeeper never expired the paused node's session";
  const int64_t gone_ms = MsSince(paused);
  // The pause must outlast the negotiated timeout (ZooKeeper may expire the
  // session up to T/3 early: the client last pinged before the pause).
  const int64_t negotiated = NegotiatedTimeoutMs(mesh_->Log(0));
  ASSERT_GT(negotiated, 0) << "no negotiated session timeout in n1's log";
  while (MsSince(paused) < negotiated + 200) {
    std::this_thread::sleep_for(milliseconds(20));  // the pause has a fixed minimum length
  }
  // The others notice: n3 is no member, and its links died of unanswered pings.
  for (int i : {0, 1}) {
    EXPECT_TRUE(WaitFor(seconds(5), [&] {
      auto e = mesh_->PeerEntry(i, mesh_->id(2));
      return !e || (!e->value("member", true) && !e->value("linked", true));
    })) << mesh_->id(i) << " /peerz: " << mesh_->Peerz(i).value_or(json()).dump();
  }
  // n1 and n2 keep forwarding to each other meanwhile.
  const auto mid0 = t.Snapshot(0), mid1 = t.Snapshot(1);
  EXPECT_TRUE(t.WaitFlowing(0, {0, 1}, mid0, 300, seconds(10))) << t.Describe();
  EXPECT_TRUE(t.WaitFlowing(1, {0, 1}, mid1, 300, seconds(10))) << t.Describe();

  ASSERT_TRUE(mesh_->Signal(2, SIGCONT));
  const auto resumed = Clock::now();
  std::cout << "[ expiry   ] znode gone " << gone_ms << " ms into the pause; paused for " << MsSince(paused)
            << " ms\n";
  ASSERT_TRUE(WaitFor(seconds(15), [&] { return mesh_->zk().Get(path, milliseconds(500)).has_value(); },
                      milliseconds(10)))
      << "n3 never registered again:\n" << mesh_->Log(2);
  auto after = mesh_->zk().Get(path);
  ASSERT_TRUE(after.has_value());
  EXPECT_NE(after->ephemeral_owner, before->ephemeral_owner) << "the znode must belong to a new session";
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, seconds(20), &error)) << error;
  std::cout << "[ expiry   ] n3 a full member again " << MsSince(resumed) << " ms after SIGCONT\n";
  EXPECT_GT(CountMatches(mesh_->Log(2), "ZooKeeper session expired|expired"), 0) << "n3 never logged the expiry";

  // Its subscriber gets cross-node traffic again, from both other nodes.
  const auto back = t.Snapshot(2);
  EXPECT_TRUE(t.WaitFlowing(2, {0, 1, 2}, back, 300, seconds(10))) << t.Describe();

  const auto published = t.Stop();
  ASSERT_TRUE(Fence(t.publisher_clients(), t.subscribers(), seconds(10), &error)) << error;
  for (size_t k = 0; k < 3; ++k) {
    SCOPED_TRACE("subscriber on n" + std::to_string(k + 1));
    const Receipts r = t.Get(k);
    EXPECT_TRUE(NoDuplicatesInOrder(r)) << "over the whole run";
    if (k < 2) {
      EXPECT_TRUE(ExactlyOnceInOrder(Without(r, "pub3"), {{"pub1", published.at("pub1")},
                                                         {"pub2", published.at("pub2")}}))
          << "between n1 and n2, which were never paused";
    }
  }
  // Afterwards: a fresh round on all three nodes, exactly once everywhere.
  EXPECT_TRUE(TrafficRoundExactlyOnce({mesh_->client_port(0), mesh_->client_port(1), mesh_->client_port(2)}, 1000,
                                      "after"));
}

// A link flap makes both ends redial at the same time: n2 is paused (shorter
// than its session) until n1 declares the link stale; n1 then keeps dialling
// n2, and on SIGCONT n2 finds its old link closed and dials n1 too. Exactly
// one link must remain, and traffic flows exactly once.
TEST_F(MeshFaultTest, LinkFlapBothSidesRedialEndsWithOneLink) {
  auto mesh = NewMesh("", [](MeshOptions& o) { o.session_timeout_ms = 8000; });
  std::string error;
  const int a = mesh->Add(), b = mesh->Add();
  ASSERT_TRUE(mesh->Start(a, &error)) << error;
  ASSERT_TRUE(mesh->Start(b, &error)) << error;
  ASSERT_TRUE(mesh->WaitConverged({a, b}, seconds(15), &error)) << error;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_TRUE(mesh->Signal(b, SIGSTOP));
    EXPECT_TRUE(WaitFor(seconds(5), [&] {
      auto linked = mesh->LinkedPeers(a);
      return linked && linked->empty();
    })) << "n1 never noticed the paused peer";
    // A few of n1's redials pile up at the paused n2 (backoff from 100 ms).
    std::this_thread::sleep_for(milliseconds(400));  // a pause length, not a wait for a condition
    ASSERT_TRUE(mesh->Signal(b, SIGCONT));
    ASSERT_TRUE(mesh->WaitConverged({a, b}, seconds(15), &error)) << error;
    EXPECT_TRUE(WaitFor(seconds(10), [&] {
      auto la = mesh->LinkedPeers(a);
      auto lb = mesh->LinkedPeers(b);
      return la && lb && la->size() == 1 && lb->size() == 1 &&
             CountEstablishedOnLocalPort(mesh->peer_port(a)) + CountEstablishedOnLocalPort(mesh->peer_port(b)) == 1;
    }, milliseconds(50))) << "accepted peer connections: n1 " << CountEstablishedOnLocalPort(mesh->peer_port(a))
                          << ", n2 " << CountEstablishedOnLocalPort(mesh->peer_port(b));
    EXPECT_TRUE(TrafficRoundExactlyOnce({mesh->client_port(a), mesh->client_port(b)}, 1000,
                                        "flap" + std::to_string(round)));
  }
  const int resolved = CountMatches(mesh->Log(a) + mesh->Log(b), "duplicate link|replaces link");
  std::cout << "[ flap     ] duplicate links resolved: " << resolved << "\n";
  RecordProperty("duplicate_links_resolved", resolved);
}

}  // namespace
}  // namespace zmesh::testing

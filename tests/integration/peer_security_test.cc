// Peer links that only the mesh can use (SPEC §3, docs/operations.md "Threat
// model"): each test plays an attacker against real zmesh-server nodes in a
// private ZooKeeper, or drives the mesh through a change that must not lose
// or reorder anything, and fails if the attack works.
//
//  - RelayBetweenTwoNodesGetsNothing: an outsider without the secret opens
//    the peer ports of two nodes and relays between them, then forges a
//    HELLO claiming to be one of them; it reads nothing, injects nothing,
//    and the real link between them never changes.
//  - ReplyWithCrLfFromAPeerResetsTheLink: an insider that completed the
//    handshake sends a MSG whose reply subject carries CR LF: the link is
//    reset and no client ever sees protocol text from a peer.
//  - SameNodeIdTwinIsRefused: a second process with a live node's id is
//    refused on both sides and never becomes a member; the live link stays.
//  - SecretRotationUnderTraffic: the documented three-step rotation, done
//    with SIGHUP while links are being replaced, loses nothing; afterwards
//    the old secret no longer gets in and the new one does.
//  - OrderKeptAcrossLinkReplacement: links replaced every 150 ms under load
//    deliver every message once and in publish order.

#include <signal.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "proto/peer_protocol.h"
#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/scripted_peer.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
namespace peer = proto::peer;

int CountMatches(const std::string& text, const std::string& regex) {
  const std::regex re(regex);
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), re), std::sregex_iterator()));
}

std::vector<Endpoint> Endpoints(MeshCluster& mesh, const std::vector<int>& nodes) {
  std::vector<Endpoint> out;
  for (int i : nodes) out.push_back({mesh.node(i).spec.host, mesh.client_port(i)});
  return out;
}

// Lines where node i's mesh replaced its link to `peer_id` or lost it
// (refusing a link that never carried anything is no change).
int LinkChanges(MeshCluster& mesh, int i, const std::string& peer_id) {
  const std::string log = mesh.Log(i);
  return CountMatches(log, "node " + peer_id + " restarted \\(new incarnation\\)") +
         CountMatches(log, "link [0-9]+ to node " + peer_id + " replaces link") +
         CountMatches(log, "peer link [0-9]+ (to|from) node " + peer_id + " [^\\n]* down: (?!Peer Link Refused)");
}

class PeerSecurityTest : public MeshFixture {};

TEST_F(PeerSecurityTest, RelayBetweenTwoNodesGetsNothing) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(2, &error)) << error;
  constexpr int a = 0, b = 1;
  const int changes_a = LinkChanges(*mesh_, a, mesh_->id(b));
  const int changes_b = LinkChanges(*mesh_, b, mesh_->id(a));

  // On A: a subscriber the attacker wants to feed, and a publisher of secrets.
  MeshClient victim("victim"), payroll("payroll");
  ASSERT_TRUE(victim.Connect(mesh_->client_port(a), &error)) << error;
  ASSERT_TRUE(payroll.Connect(mesh_->client_port(a), &error)) << error;
  const int injected_sid = victim.Sub("injected.>");
  const int secret_sid = victim.Sub("payroll.>");
  ASSERT_TRUE(victim.Flush());
  std::atomic<bool> stop{false};
  std::thread secrets([&] {
    for (int i = 0; i < 2000 && !stop; ++i) {
      payroll.Pub("payroll.secret", "salary-of-the-ceo-" + std::to_string(i));
      std::this_thread::sleep_for(milliseconds(2));
    }
  });

  // 1-2. Connect to both peer ports and wait for their HELLOs.
  ScriptedPeer to_a, to_b;
  ASSERT_TRUE(to_a.Dial(mesh_->peer_port(a)));
  ASSERT_TRUE(to_b.Dial(mesh_->peer_port(b)));
  to_a.ReadSome(milliseconds(1000));
  to_b.ReadSome(milliseconds(1000));
  EXPECT_TRUE(to_a.received().empty() && to_b.received().empty())
      << "a node spoke first to a stranger on its peer port (" << to_a.received().size() << " and "
      << to_b.received().size() << " bytes)";
  // 3. Relay whatever either sends to the other, both ways, for a while.
  const auto relay_until = Clock::now() + milliseconds(1500);
  size_t relayed_a = 0, relayed_b = 0;
  while (Clock::now() < relay_until) {
    if (to_a.ReadSome(milliseconds(20))) {
      to_b.Send(to_a.received().substr(relayed_a));
      relayed_a = to_a.received().size();
    }
    if (to_b.ReadSome(milliseconds(20))) {
      to_a.Send(to_b.received().substr(relayed_b));
      relayed_b = to_b.received().size();
    }
  }
  // 4-5. Claim to be B, in clear: HELLO, interest in everything, a forged message.
  to_a.SendHello(mesh_->id(b), 0x4242424242424242ull);
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frames);
  peer::EncodeInterest({">", "", 1}, &frames);
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {0, 1}, &frames);
  const std::string forged = "forged-by-the-outsider";
  std::string msg;
  peer::EncodeMsgHeader("injected.hello", "", -1, nullptr, 0, forged.size(), &msg);
  frames += msg + forged;
  to_a.Send(frames);
  EXPECT_TRUE(to_a.ClosedWithin(seconds(5))) << "node A kept talking to a forged peer";
  to_a.ReadSome(milliseconds(500));
  to_b.ReadSome(milliseconds(500));
  stop = true;
  secrets.join();
  ASSERT_TRUE(payroll.Flush());

  // Nothing read: no secret in clear, not even a HELLO.
  for (const ScriptedPeer* p : {&to_a, &to_b}) {
    EXPECT_EQ(p->received().find("payroll"), std::string::npos) << "a client's message reached the outsider";
    EXPECT_EQ(p->received().find(mesh_->id(a)), std::string::npos) << "the outsider read node A's HELLO";
  }
  // Nothing injected; the subscriber still gets real traffic (it works).
  EXPECT_FALSE(WaitFor(milliseconds(500), [&] { return !victim.Get(injected_sid).others.empty(); }))
      << "a forged message was delivered";
  EXPECT_GT(victim.Get(secret_sid).others.size(), 0u) << "the victim's own subscription received nothing at all";
  // The real link between A and B never changed.
  EXPECT_EQ(LinkChanges(*mesh_, a, mesh_->id(b)), changes_a) << mesh_->Log(a);
  EXPECT_EQ(LinkChanges(*mesh_, b, mesh_->id(a)), changes_b) << mesh_->Log(b);
  ASSERT_TRUE(mesh_->WaitConverged({a, b}, seconds(10), &error)) << error;
  EXPECT_TRUE(TrafficRoundExactlyOnce(Endpoints(*mesh_, {a, b}), 200, "after-relay"));
}

TEST_F(PeerSecurityTest, ReplyWithCrLfFromAPeerResetsTheLink) {
  std::string error;
  const int a = mesh_->Add();
  ASSERT_TRUE(mesh_->Start(a, &error)) << error;
  MeshClient sub("sub");
  ASSERT_TRUE(sub.Connect(mesh_->client_port(a), &error)) << error;
  const int sid = sub.Sub("payroll.>");
  ASSERT_TRUE(sub.Flush());

  // An insider: it has the secret and completes the handshake as a joining node.
  ScriptedPeer evil;
  ASSERT_TRUE(evil.Dial(mesh_->peer_port(a)));
  ASSERT_TRUE(evil.StartTls(mesh_->options().secret, &error)) << error;
  ASSERT_TRUE(evil.SendHello("evil", 7));
  ASSERT_TRUE(evil.WaitFrame(static_cast<uint8_t>(peer::FrameType::kHello), seconds(5)));
  // A's snapshot arrives once it made us a link (interest in payroll.> included).
  ASSERT_TRUE(evil.WaitFrame(static_cast<uint8_t>(peer::FrameType::kSyncEnd), seconds(5)))
      << "node A did not accept the insider's link";
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frames);
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {0, 0}, &frames);
  const std::string good = "well-formed";
  std::string header;
  peer::EncodeMsgHeader("payroll.ok", "_INBOX.1", -1, nullptr, 0, good.size(), &header);
  frames += header + good;
  ASSERT_TRUE(evil.Send(frames));
  // The well-formed message arrives: the insider really is a working peer.
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return sub.Get(sid).others.count(good) == 1; }))
      << "a valid MSG from the peer was not delivered";

  // Now a reply subject that would write protocol lines into the client.
  const std::string bad = "smuggled";
  header.clear();
  peer::EncodeMsgHeader("payroll.x", "_INBOX.2\r\nMSG payroll.fake 1 5\r\nforge", -1, nullptr, 0, bad.size(), &header);
  ASSERT_TRUE(evil.Send(header + bad));
  EXPECT_TRUE(evil.ClosedWithin(seconds(5))) << "the link survived a reply subject with CR LF";
  EXPECT_TRUE(WaitFor(seconds(5), [&] {
    return CountMatches(mesh_->Log(a), "from node evil [^\\n]*protocol error: MSG with an invalid subject or reply") > 0;
  })) << mesh_->Log(a);
  ASSERT_TRUE(sub.Flush());
  const Receipts r = sub.Get(sid);
  EXPECT_EQ(r.others.count(bad), 0u) << "the malformed message was delivered";
  EXPECT_EQ(r.others.count("forge"), 0u) << "protocol text from a peer reached a client";
  EXPECT_TRUE(sub.errors().empty()) << sub.errors().front();
  EXPECT_FALSE(sub.closed());
}

TEST_F(PeerSecurityTest, SameNodeIdTwinIsRefused) {
  std::string error;
  ASSERT_TRUE(mesh_->StartNodes(2, &error)) << error;
  constexpr int n1 = 0, n2 = 1;
  const int changes = LinkChanges(*mesh_, n2, mesh_->id(n1));
  NodeTraffic t("twin.traffic");
  ASSERT_TRUE(t.Connect(Endpoints(*mesh_, {n1, n2})));
  t.Start();

  MeshNodeSpec twin_spec;
  twin_spec.node_id = mesh_->id(n1);  // the same id, another process and other ports
  const int twin = mesh_->Add(twin_spec);
  ASSERT_TRUE(mesh_->Launch(twin, &error)) << error;
  // n2 refuses it (it dials n2 while joining); the twin hears why.
  EXPECT_TRUE(WaitFor(seconds(10), [&] {
    return CountMatches(mesh_->Log(n2), "refused link [0-9]+ [^\\n]*claims node id " + mesh_->id(n1)) > 0;
  })) << mesh_->Log(n2);
  EXPECT_TRUE(WaitFor(seconds(10), [&] {
    return CountMatches(mesh_->Log(twin), "the peer refused this link: node id " + mesh_->id(n1) + " belongs to a live process") > 0;
  })) << mesh_->Log(twin);
  // Several of its redials later (and past its join timeout), the live link
  // never flapped and the twin never became a member.
  std::this_thread::sleep_for(milliseconds(mesh_->options().join_timeout_ms + 1500));
  EXPECT_EQ(LinkChanges(*mesh_, n2, mesh_->id(n1)), changes) << "n2's link to the live n1 changed:\n" << mesh_->Log(n2);
  EXPECT_EQ(CountMatches(mesh_->Log(twin), "registered; serving clients"), 0) << mesh_->Log(twin);
  auto znode = mesh_->zk().Get(mesh_->nodes_path() + "/" + mesh_->id(n1));
  ASSERT_TRUE(znode.has_value());
  EXPECT_NE(znode->data.find("\"peer_url\":\"127.0.0.1:" + std::to_string(mesh_->peer_port(n1)) + "\""),
            std::string::npos)
      << "the znode no longer names the live process: " << znode->data;
  EXPECT_TRUE(mesh_->Running(twin)) << "the twin should wait, not crash";
  mesh_->Stop(twin);

  const auto published = t.Stop();
  std::vector<MeshClient*> pubs = t.publisher_clients();
  ASSERT_TRUE(Fence(pubs, t.subscribers(), seconds(10), &error)) << error;
  for (size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE("subscriber on n" + std::to_string(k + 1));
    EXPECT_TRUE(ExactlyOnceInOrder(t.Get(k), published));
  }
}

// Rotation as docs/operations.md describes it, each step a rewrite of the
// secret file and a SIGHUP to every node, while links are replaced every
// 300 ms (so new links keep being made with whatever keys are current) and
// traffic flows both ways.
TEST_F(PeerSecurityTest, SecretRotationUnderTraffic) {
  const std::string old_secret = mesh_->options().secret;
  const std::string new_secret = "rotated-cluster-secret-7d1e4b2a90c3";
  std::string error;
  for (int i = 0; i < 3; ++i) {
    MeshNodeSpec spec;
    spec.extra_args = {"--testing_peer_relink_ms=300"};
    mesh_->Add(spec);
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, seconds(20), &error)) << error;
  NodeTraffic t("rotation.traffic");
  ASSERT_TRUE(t.Connect(Endpoints(*mesh_, {0, 1, 2})));
  t.Start();

  const std::string path = mesh_->node(0).secret_path;  // shared by all three
  auto step = [&](const std::string& content) {
    const std::string reloaded = "SIGHUP: reloaded the cluster secret";
    std::vector<int> before_reload;
    for (int i = 0; i < 3; ++i) before_reload.push_back(CountMatches(mesh_->Log(i), reloaded));
    std::ofstream(path) << content;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(mesh_->Signal(i, SIGHUP));
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(WaitFor(seconds(5), [&] { return CountMatches(mesh_->Log(i), reloaded) > before_reload[i]; }))
          << mesh_->Log(i);
    }
    // Links keep being replaced under the new keys; the mesh stays whole.
    const auto before = t.Snapshot(2);
    ASSERT_TRUE(t.WaitFlowing(2, {0, 1}, before, 200, seconds(10))) << t.Describe();
  };
  step(old_secret + "\n" + new_secret + "\n");  // 1. accept the new one too
  step(new_secret + "\n" + old_secret + "\n");  // 2. dial with the new one
  step(new_secret + "\n");                      // 3. forget the old one
  const int replaced = CountMatches(mesh_->Log(0), "replaces link");
  EXPECT_GE(replaced, 3) << "links were not replaced during the rotation, so new keys were never used";

  const auto published = t.Stop();
  ASSERT_TRUE(Fence(t.publisher_clients(), t.subscribers(), seconds(10), &error)) << error;
  for (size_t k = 0; k < 3; ++k) {
    SCOPED_TRACE("subscriber on n" + std::to_string(k + 1));
    EXPECT_TRUE(ExactlyOnceInOrder(t.Get(k), published));
  }
  // The old secret no longer opens the mesh; the new one does.
  ScriptedPeer old_key, new_key;
  ASSERT_TRUE(old_key.Dial(mesh_->peer_port(1)));
  EXPECT_FALSE(old_key.StartTls(old_secret, &error)) << "the retired secret still gets in";
  ASSERT_TRUE(new_key.Dial(mesh_->peer_port(1)));
  EXPECT_TRUE(new_key.StartTls(new_secret, &error)) << error;
}

// Node n1 (the smaller id, so the dialler) replaces its link to n2 with a
// fresh one every 100 ms while a publisher on each node sends as fast as it
// can, so that the link being retired still holds a backlog when the new one
// starts carrying traffic: every message arrives once and in publish order,
// although the old and the new link are read by different threads on the
// receiving node.
TEST_F(PeerSecurityTest, OrderKeptAcrossLinkReplacement) {
  std::string error;
  for (int i = 0; i < 2; ++i) {
    MeshNodeSpec spec;
    // The subscribers fall seconds behind the blast; the server's PINGs wait
    // behind that backlog, so the harness's 500 ms keepalive would call
    // them stale. Liveness is not what this test is about.
    spec.extra_args = {"--testing_peer_relink_ms=100", "--ping_interval_ms=10000"};
    mesh_->Add(spec);
  }
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1}, seconds(20), &error)) << error;
  MeshClient sub1("sub1"), sub2("sub2"), pub1("pub1"), pub2("pub2");
  ASSERT_TRUE(sub1.Connect(mesh_->client_port(0), &error)) << error;
  ASSERT_TRUE(sub2.Connect(mesh_->client_port(1), &error)) << error;
  ASSERT_TRUE(pub1.Connect(mesh_->client_port(0), &error)) << error;
  ASSERT_TRUE(pub2.Connect(mesh_->client_port(1), &error)) << error;
  const int sid1 = sub1.Sub("relink.traffic"), sid2 = sub2.Sub("relink.traffic");
  sub1.SubProbe();
  sub2.SubProbe();
  ASSERT_TRUE(sub1.Flush() && sub2.Flush());
  ASSERT_TRUE(WaitInterest({&pub1, &pub2}, {&sub1, &sub2}, seconds(10), &error)) << error;
  const int replaced_before = CountMatches(mesh_->Log(0), "replaces link");
  std::atomic<bool> stop{false};
  // As fast as the links take it, up to a bound that the subscribers drain
  // in time (a sanitizer build reads several times slower).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr uint64_t kMaxPerPublisher = 40000;
#else
  constexpr uint64_t kMaxPerPublisher = 400000;
#endif
  auto blast = [&stop](MeshClient* pub) {
    while (!stop && pub->published() < kMaxPerPublisher && pub->PublishSeq("relink.traffic", 500)) {
    }
  };
  std::thread t1(blast, &pub1), t2(blast, &pub2);
  const bool replaced = WaitFor(
      seconds(30), [&] { return CountMatches(mesh_->Log(0), "replaces link") >= replaced_before + 15; },
      milliseconds(100));
  stop = true;
  t1.join();
  t2.join();
  ASSERT_TRUE(replaced) << "fewer than 15 link replacements happened:\n" << mesh_->Log(0);
  ASSERT_TRUE(pub1.Flush(seconds(60)) && pub2.Flush(seconds(60)));
  ASSERT_TRUE(Fence({&pub1, &pub2}, {&sub1, &sub2}, seconds(60), &error)) << error;
  const std::map<std::string, uint64_t> published = {{"pub1", pub1.published()}, {"pub2", pub2.published()}};
  EXPECT_TRUE(ExactlyOnceInOrder(sub1.Get(sid1), published)) << "subscriber on n1";
  EXPECT_TRUE(ExactlyOnceInOrder(sub2.Get(sid2), published)) << "subscriber on n2";
  std::cout << "[ relink   ] " << CountMatches(mesh_->Log(0), "replaces link") - replaced_before
            << " link replacements; published " << published.at("pub1") << " + " << published.at("pub2") << "\n";
}

}  // namespace
}  // namespace zmesh::testing

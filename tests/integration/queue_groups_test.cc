// Many queue groups on one subject (issue 10, items 4 and 9): a peer's MSG
// frame that names 50,000 groups of a node's client reaches each of them
// exactly once (each group looked up by name, not by a scan of the group
// list per listed name), names the node does not have are ignored and a
// name listed twice still gets one copy. The peer is played by the test
// (ScriptedPeer over TLS 1.3 with the cluster secret) so the frame is exactly
// the one described.
//
// Before groups were indexed by name, one such message cost the node about
// 10^9 string compares (seconds of a worker); the bound below allows the
// whole exchange far more than linear work needs, under ASan too.

#include <signal.h>

#include <chrono>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "proto/peer_protocol.h"
#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/scripted_peer.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

namespace peer = proto::peer;
using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

class QueueGroupsTest : public MeshFixture {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);  // a scripted peer writes through OpenSSL
    MeshFixture::SetUpTestSuite();
  }
};

std::string MsgFrame(std::string_view subject, const std::vector<std::string_view>& queues, std::string_view payload) {
  std::string out;
  peer::EncodeMsgHeader(subject, {}, -1, queues.data(), queues.size(), payload.size(), &out);
  out.append(payload);
  return out;
}

TEST_F(QueueGroupsTest, PeerFrameListingFiftyThousandGroups) {
  constexpr int kGroups = 50000;
  constexpr uint64_t kMessages = 5;
  // 250,000 MSGs take the test's reader a while: it must not be taken for
  // stale meanwhile (nor the scripted peer, which answers PINGs only between
  // reads).
  mesh_ = NewMesh("", [](MeshOptions& o) { o.ping_interval_ms = 5000; });
  std::string error;
  const int n1 = mesh_->Add();
  ASSERT_TRUE(mesh_->Start(n1, &error)) << error;

  MeshClient sub("sub");
  ASSERT_TRUE(sub.Connect(mesh_->client_port(n1), &error)) << error;
  std::vector<std::string> names;
  std::vector<int> sids;
  for (int i = 0; i < kGroups; ++i) {
    names.push_back("g" + std::to_string(i));
    sids.push_back(sub.Sub("qg.orders", names.back()));
  }
  const int plain = sub.Sub("qg.orders");
  ASSERT_TRUE(sub.Flush(seconds(30)));

  ScriptedPeer sp;
  ASSERT_TRUE(sp.Dial(mesh_->peer_port(n1)));
  ASSERT_TRUE(sp.StartTls(mesh_->options().secret, &error)) << error;
  ASSERT_TRUE(sp.SendHello("zz-scripted", 7));
  ASSERT_TRUE(sp.WaitFrame(static_cast<uint8_t>(peer::FrameType::kHello), std::chrono::milliseconds(5000)))
      << "no HELLO from the node";
  std::string snapshot;  // this peer has no interest of its own
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &snapshot);
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {0, 0, 1}, &snapshot);
  ASSERT_TRUE(sp.Send(snapshot));

  // Every group of the node, groups it does not have, and the first hundred
  // named a second time.
  std::vector<std::string> absent;
  for (int i = 0; i < 100; ++i) absent.push_back("absent-" + std::to_string(i));
  std::vector<std::string_view> listed(names.begin(), names.end());
  listed.insert(listed.end(), absent.begin(), absent.end());
  listed.insert(listed.end(), names.begin(), names.begin() + 100);

  const Clock::time_point start = Clock::now();
  std::string frames;
  for (uint64_t seq = 1; seq <= kMessages; ++seq) frames += MsgFrame("qg.orders", listed, SeqPayload("peer", seq));
  ASSERT_TRUE(sp.Send(frames));
  // The plain subscription's copy of a message is queued before its group
  // copies; the PONG of a flush comes after all of them.
  std::string body;
  ASSERT_TRUE(WaitFor(seconds(30), [&] {
    sp.ReadFrame(&body, std::chrono::milliseconds(1));  // answers the node's PINGs
    return sub.Sequenced(plain) == kMessages || sub.closed();
  }))
      << "the plain subscriber got " << sub.Sequenced(plain) << " of " << kMessages;
  ASSERT_TRUE(sub.Flush(seconds(30)));
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  for (int i = 0; i < kGroups; ++i) {
    ASSERT_TRUE(ExactlyOnceInOrder(sub.Get(sids[static_cast<size_t>(i)]), {{"peer", kMessages}})) << names[i];
  }
  EXPECT_TRUE(ExactlyOnceInOrder(sub.Get(plain), {{"peer", kMessages}}));
  EXPECT_FALSE(sp.ClosedWithin(std::chrono::milliseconds(200))) << "the node closed the peer link";
  EXPECT_LT(elapsed, 20.0) << kMessages << " messages to " << kGroups << " groups took " << elapsed << " s";
  std::cout << kMessages << " peer messages x " << kGroups << " groups delivered in " << elapsed << " s\n";
}

}  // namespace
}  // namespace zmesh::testing

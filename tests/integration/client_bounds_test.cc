// No ordinary client can hurt the mesh (issue 10, items 1, 2 and 9): a
// 2-node mesh of real zmesh-server processes in a private ZooKeeper, driven
// by clients with no special rights.
//
//  - QueueGroupFloodNeverResetsTheLink: a client on B joins 300 queue groups
//    on `x` with names as long as --max_queue_name_length allows (one byte
//    more is refused with -ERR). Each publish on A to `x` is then chosen for
//    all 300 groups on B: 1.2 MB of names, more than B's frame limit in one
//    frame. It must reach every group exactly once and a plain subscriber to
//    `x` on B exactly once, an unrelated subscriber to `y` on B must get all
//    1,000 messages published on A, and the link between A and B must never
//    be reset.
//  - SubscriptionFloodIsRefusedWithinBudget: clients on B try 40,000
//    subscriptions with 1 KB subjects against --max_subs=2000 and
//    --max_subs_total=5000. Exactly the budget is accepted, everything
//    beyond gets nats-server's -ERR 'maximum subscriptions exceeded' on a
//    connection that stays open, RSS of both nodes stays within a stated
//    bound, the peer link stays up, and an UNSUB frees budget again.
//    Subjects and publishes beyond the name bounds get a clear -ERR too.
//  - BoundFlagsBeyondTheWireAreRefusedAtStart: a name bound the peer wire
//    format cannot carry, or any bound flag beyond its upper limit, stops
//    the node at start with exit status 2 and a message naming the flag.

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

int CountMatches(const std::string& text, const std::string& regex) {
  const std::regex re(regex);
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), re), std::sregex_iterator()));
}

// The id of node i's active link to `peer_id` (/peerz link_id); 0 when none.
uint64_t LinkId(MeshCluster& mesh, int i, const std::string& peer_id) {
  auto entry = mesh.PeerEntry(i, peer_id);
  if (!entry || !entry->contains("link_id") || !(*entry)["linked"].get<bool>()) return 0;
  return (*entry)["link_id"].get<uint64_t>();
}

// Log lines where node i lost or replaced its link to `peer_id`, or reset a
// link over a protocol error.
int LinkTrouble(MeshCluster& mesh, int i, const std::string& peer_id) {
  const std::string log = mesh.Log(i);
  return CountMatches(log, "link [0-9]+ to node " + peer_id + " replaces link") +
         CountMatches(log, "peer link [0-9]+ (to|from) node " + peer_id + " [^\\n]* down: ") +
         CountMatches(log, "protocol error");
}

int64_t Rss(MeshCluster& mesh, int i) {
  auto varz = mesh.Varz(i);
  return varz && varz->contains("mem") ? (*varz)["mem"].get<int64_t>() : -1;
}

// Subscribes `client` to `subject` in `count` queue groups whose names are
// `name_bytes` long ("g<i>." then padding); returns their sids.
std::vector<int> JoinGroups(MeshClient& client, const std::string& subject, int count, size_t name_bytes) {
  std::vector<int> sids;
  for (int g = 0; g < count; ++g) {
    std::string name = "g" + std::to_string(g) + ".";
    name.resize(name_bytes, 'n');
    sids.push_back(client.Sub(subject, name));
  }
  return sids;
}

class ClientBoundsTest : public MeshFixture {
 protected:
  // Two nodes with `args`, converged.
  void StartPair(const std::vector<std::string>& args) {
    std::string error;
    for (int k = 0; k < 2; ++k) {
      MeshNodeSpec spec;
      spec.extra_args = args;
      const int i = mesh_->Add(spec);
      ASSERT_TRUE(mesh_->Start(i, &error)) << error;
    }
    ASSERT_TRUE(mesh_->WaitConverged({0, 1}, seconds(20), &error)) << error;
  }
};

TEST_F(ClientBoundsTest, QueueGroupFloodNeverResetsTheLink) {
  constexpr size_t kNameBytes = 4000;
  constexpr int kGroups = 300, kRounds = 20, kXPerRound = 1, kYPerRound = 50;
  ASSERT_NO_FATAL_FAILURE(StartPair({"--max_queue_name_length=" + std::to_string(kNameBytes)}));
  constexpr int a = 0, b = 1;
  std::string error;

  MeshClient groups("groups"), plain_x("plain_x"), plain_y("plain_y"), pub_x("pub_x"), pub_y("pub_y");
  ASSERT_TRUE(groups.Connect(mesh_->client_port(b), &error)) << error;
  ASSERT_TRUE(plain_x.Connect(mesh_->client_port(b), &error)) << error;
  ASSERT_TRUE(plain_y.Connect(mesh_->client_port(b), &error)) << error;
  ASSERT_TRUE(pub_x.Connect(mesh_->client_port(a), &error)) << error;
  ASSERT_TRUE(pub_y.Connect(mesh_->client_port(a), &error)) << error;

  // One byte over the bound: refused, and the connection stays usable.
  groups.Sub("x", std::string(kNameBytes + 1, 'o'));
  ASSERT_TRUE(groups.Flush());
  ASSERT_TRUE(WaitFor(seconds(5), [&] { return !groups.errors().empty(); }));
  EXPECT_EQ(groups.errors().front(), "-ERR 'Invalid Queue Name: longer than 4000 bytes'");

  const std::vector<int> group_sids = JoinGroups(groups, "x", kGroups, kNameBytes);
  const int x_sid = plain_x.Sub("x");
  const int y_sid = plain_y.Sub("y");
  groups.SubProbe();
  plain_x.SubProbe();
  plain_y.SubProbe();
  // The interest barrier: after the PONG every peer has applied the SUBs.
  ASSERT_TRUE(groups.Flush(seconds(10)) && plain_x.Flush() && plain_y.Flush());
  ASSERT_TRUE(WaitInterest({&pub_x, &pub_y}, {&groups, &plain_x, &plain_y}, seconds(10), &error)) << error;
  EXPECT_EQ(groups.errors().size(), 1u) << groups.errors().back();

  const uint64_t link_a = LinkId(*mesh_, a, mesh_->id(b)), link_b = LinkId(*mesh_, b, mesh_->id(a));
  ASSERT_NE(link_a, 0u);
  ASSERT_NE(link_b, 0u);
  const int trouble_a = LinkTrouble(*mesh_, a, mesh_->id(b)), trouble_b = LinkTrouble(*mesh_, b, mesh_->id(a));

  auto stamp = [](const char* what) {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const int64_t ms = std::chrono::duration_cast<milliseconds>(now).count() % 86400000;
    std::cout << what << " at " << ms / 3600000 << ":" << ms / 60000 % 60 << ":" << ms / 1000 % 60 << "." << ms % 1000
              << "\n";
  };
  stamp("publishing");
  // "Now and then": each x message is 1.2 MB of frames on the link; one at a
  // time, while y flows. (A burst of 50 at once can stall a loaded node's
  // TLS link writer for over a second: see the report of issue 10.)
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(pub_x.PublishSeq("x", kXPerRound));
    ASSERT_TRUE(pub_y.PublishSeq("y", kYPerRound));
    ASSERT_TRUE(WaitCount(plain_x, x_sid, "pub_x", pub_x.published(), seconds(10)))
        << "round " << round << ": plain_x got " << plain_x.Sequenced(x_sid);
  }
  stamp("published");
  ASSERT_TRUE(Fence({&pub_x, &pub_y}, {&groups, &plain_x, &plain_y}, seconds(20), &error))
      << error << "\nA: " << mesh_->Peerz(a).value_or(json()).dump() << "\nB: " << mesh_->Peerz(b).value_or(json()).dump()
      << "\nplain_y got " << plain_y.Sequenced(y_sid) << ", plain_x got " << plain_x.Sequenced(x_sid);

  constexpr uint64_t kX = kRounds * kXPerRound, kY = kRounds * kYPerRound;
  EXPECT_TRUE(ExactlyOnceInOrder(plain_y.Get(y_sid), {{"pub_y", kY}})) << "the unrelated subscriber lost messages";
  EXPECT_TRUE(ExactlyOnceInOrder(plain_x.Get(x_sid), {{"pub_x", kX}}))
      << "a plain subscriber must get a message split over several frames once";
  int groups_wrong = 0;
  for (int sid : group_sids) {
    if (!ExactlyOnceInOrder(groups.Get(sid), {{"pub_x", kX}})) ++groups_wrong;
  }
  EXPECT_EQ(groups_wrong, 0) << "groups that did not get every message exactly once";

  EXPECT_EQ(LinkId(*mesh_, a, mesh_->id(b)), link_a) << "A's link to B was replaced";
  EXPECT_EQ(LinkId(*mesh_, b, mesh_->id(a)), link_b) << "B's link to A was replaced";
  EXPECT_EQ(LinkTrouble(*mesh_, a, mesh_->id(b)), trouble_a) << mesh_->Log(a);
  EXPECT_EQ(LinkTrouble(*mesh_, b, mesh_->id(a)), trouble_b) << mesh_->Log(b);
}

// One read of a publisher's input may hold many PUBs, and each can become far
// more bytes on a peer link than it took in (here 300 KB of queue-group
// names, over the link's 256 KB backpressure threshold). The publisher must
// stop at the first PUB that leaves the link behind, not at the end of its
// input: otherwise one read queues all of them before anything is written
// (with TLS only the link's own thread writes, after the publisher's whole
// batch), which took a loaded node over a second, longer than the peer waits
// before calling the link stale. With --peer_max_pending_bytes at its 1 MiB
// minimum, a burst of 20 such PUBs in one write overflows the link at the
// fourth unless the publisher pauses after the first.
TEST_F(ClientBoundsTest, AmplifyingBurstPausesThePublisherPerMessage) {
  constexpr size_t kNameBytes = 4000;
  constexpr int kGroups = 75, kBurst = 20;
  ASSERT_NO_FATAL_FAILURE(StartPair({"--max_queue_name_length=" + std::to_string(kNameBytes),
                                     "--peer_max_pending_bytes=" + std::to_string(1 << 20)}));
  constexpr int a = 0, b = 1;
  std::string error;

  MeshClient groups("groups"), plain_x("plain_x"), pub_x("pub_x");
  ASSERT_TRUE(groups.Connect(mesh_->client_port(b), &error)) << error;
  ASSERT_TRUE(plain_x.Connect(mesh_->client_port(b), &error)) << error;
  ASSERT_TRUE(pub_x.Connect(mesh_->client_port(a), &error)) << error;
  const std::vector<int> group_sids = JoinGroups(groups, "x", kGroups, kNameBytes);
  const int x_sid = plain_x.Sub("x");
  groups.SubProbe();
  plain_x.SubProbe();
  ASSERT_TRUE(groups.Flush(seconds(10)) && plain_x.Flush());
  ASSERT_TRUE(WaitInterest({&pub_x}, {&groups, &plain_x}, seconds(10), &error)) << error;
  const uint64_t link_a = LinkId(*mesh_, a, mesh_->id(b)), link_b = LinkId(*mesh_, b, mesh_->id(a));
  ASSERT_NE(link_a, 0u);
  ASSERT_NE(link_b, 0u);
  const int trouble_a = LinkTrouble(*mesh_, a, mesh_->id(b));

  ASSERT_TRUE(pub_x.PublishSeq("x", kBurst));  // one write, so one read on A
  // Nothing more is sent: the PUBs held back go out as the link drains.
  EXPECT_TRUE(WaitCount(plain_x, x_sid, "pub_x", kBurst, seconds(10))) << "plain_x got " << plain_x.Sequenced(x_sid);
  EXPECT_TRUE(Fence({&pub_x}, {&groups, &plain_x}, seconds(10), &error)) << error;

  EXPECT_EQ(LinkId(*mesh_, a, mesh_->id(b)), link_a) << "A's link to B was reset";
  EXPECT_EQ(LinkId(*mesh_, b, mesh_->id(a)), link_b) << "B's link to A was reset";
  EXPECT_EQ(LinkTrouble(*mesh_, a, mesh_->id(b)), trouble_a) << mesh_->Log(a);
  EXPECT_TRUE(ExactlyOnceInOrder(plain_x.Get(x_sid), {{"pub_x", kBurst}}));
  int groups_wrong = 0;
  for (int sid : group_sids) {
    if (!ExactlyOnceInOrder(groups.Get(sid), {{"pub_x", kBurst}})) ++groups_wrong;
  }
  EXPECT_EQ(groups_wrong, 0) << "groups that did not get every message exactly once";
}

// Reads until PONG; returns the -ERR lines seen before it (-1 on timeout).
int ErrorsUntilPong(RawClient& c, const std::string& expected_err, milliseconds timeout = seconds(20)) {
  int errs = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto line = c.ReadLine(seconds(5));
    if (!line) return -1;
    if (*line == "PONG") return errs;
    if (*line == expected_err) {
      ++errs;
    } else {
      ADD_FAILURE() << "unexpected line: " << Printable(*line);
    }
  }
  return -1;
}

TEST_F(ClientBoundsTest, SubscriptionFloodIsRefusedWithinBudget) {
  constexpr int kPerConnection = 2000, kNodeBudget = 5000, kClients = 4, kAttempts = 10000;
  // Each client sits idle, not reading, while the later ones flood; under
  // ASan the floods together outlast the harness's ping_interval x
  // max_pings_out (1.5 s), and a node rightly closes a client that leaves its
  // PINGs unanswered (Stale Connection), taking its subscriptions along.
  ASSERT_NO_FATAL_FAILURE(StartPair({"--max_subs=" + std::to_string(kPerConnection),
                                     "--max_subs_total=" + std::to_string(kNodeBudget), "--ping_interval_ms=5000"}));
  constexpr int a = 0, b = 1;
  const std::string kMaxSubsErr = "-ERR 'maximum subscriptions exceeded'";

  // Name bounds (defaults: 1024 bytes, 64 tokens): refused, connection open.
  RawClient probe;
  ASSERT_TRUE(probe.Dial(mesh_->client_port(b)));
  ASSERT_TRUE(probe.Connect());
  ASSERT_TRUE(probe.Send("SUB " + std::string(1025, 's') + " 1\r\n"));
  probe.ExpectLine("-ERR 'Invalid Subject: longer than 1024 bytes'");
  std::string many_tokens = "t";
  for (int k = 0; k < 64; ++k) many_tokens += ".t";
  ASSERT_TRUE(probe.Send("SUB " + many_tokens + " 2\r\n"));
  probe.ExpectLine("-ERR 'Invalid Subject: more than 64 tokens'");
  ASSERT_TRUE(probe.Send("PUB " + many_tokens + " 2\r\nhi\r\n"));
  probe.ExpectLine("-ERR 'Invalid Publish Subject: more than 64 tokens'");
  ASSERT_TRUE(probe.Flush());

  const uint64_t link_a = LinkId(*mesh_, a, mesh_->id(b)), link_b = LinkId(*mesh_, b, mesh_->id(a));
  ASSERT_NE(link_a, 0u);
  ASSERT_NE(link_b, 0u);
  const int64_t rss_a = Rss(*mesh_, a), rss_b = Rss(*mesh_, b);
  ASSERT_GT(rss_a, 0);
  ASSERT_GT(rss_b, 0);

  // 4 clients x 10,000 SUBs of ~1 KB subjects, one after the other.
  std::vector<std::unique_ptr<RawClient>> clients;
  int accepted_total = 0;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::make_unique<RawClient>());
    RawClient& client = *clients.back();
    client.set_name("flood" + std::to_string(c));
    ASSERT_TRUE(client.Dial(mesh_->client_port(b)));
    ASSERT_TRUE(client.Connect());
    std::string batch;
    for (int k = 0; k < kAttempts; ++k) {
      std::string subject = "flood." + std::to_string(c) + "." + std::to_string(k) + ".";
      subject.resize(1000, 'p');
      batch += "SUB " + subject + " " + std::to_string(k + 1) + "\r\n";
      if (batch.size() > (1 << 20)) {
        ASSERT_TRUE(client.Send(batch));
        batch.clear();
      }
    }
    ASSERT_TRUE(client.Send(batch + "PING\r\n"));
    const int errs = ErrorsUntilPong(client, kMaxSubsErr);
    const int expected_accepted = std::min(kPerConnection, kNodeBudget - accepted_total);
    EXPECT_EQ(errs, kAttempts - expected_accepted) << "client " << c;
    accepted_total += expected_accepted;
    EXPECT_TRUE(client.Flush()) << "the connection stays open after the error, as with nats-server";
  }
  auto varz = mesh_->Varz(b);
  ASSERT_TRUE(varz.has_value());
  EXPECT_EQ((*varz)["limits"]["local_subscriptions"], kNodeBudget);

  // An UNSUB frees budget: the last client (refused so far) may subscribe one.
  ASSERT_TRUE(clients[0]->Send("UNSUB 1\r\n"));
  ASSERT_TRUE(clients[0]->Flush());
  ASSERT_TRUE(clients[3]->Send("SUB again 1\r\nPING\r\n"));
  EXPECT_EQ(ErrorsUntilPong(*clients[3], kMaxSubsErr), 0);
  ASSERT_TRUE(clients[3]->Send("SUB again.2 2\r\nPING\r\n"));
  EXPECT_EQ(ErrorsUntilPong(*clients[3], kMaxSubsErr), 1);

  // Memory: 5,000 accepted subscriptions of 1 KB subjects cost about 2.5 KB
  // each on B and their interest about as much on A (12.5 MB); the 35,000
  // refused ones must cost nothing that stays. Today's code accepts all
  // 40,000 (~100 MB on B). Sanitizer builds add redzones and a quarantine.
  // B's interest reached A whole, over the same link.
  EXPECT_TRUE(WaitFor(seconds(10), [&] {
    auto entry = mesh_->PeerEntry(a, mesh_->id(b));
    return entry && (*entry)["interest"].get<int64_t>() == kNodeBudget;
  })) << mesh_->Peerz(a).value_or(json()).dump();
  const int64_t kBound = int64_t{kAsan ? 192 : 48} << 20;
  const int64_t grew_a = Rss(*mesh_, a) - rss_a, grew_b = Rss(*mesh_, b) - rss_b;
  std::cout << "RSS growth: A " << (grew_a >> 10) << " KiB, B " << (grew_b >> 10) << " KiB (bound "
            << (kBound >> 10) << " KiB)\n";
  EXPECT_LT(grew_b, kBound) << "B's RSS grew beyond the bound";
  EXPECT_LT(grew_a, kBound) << "A's RSS grew beyond the bound";
  EXPECT_EQ(LinkId(*mesh_, a, mesh_->id(b)), link_a) << "A's link to B was replaced";
  EXPECT_EQ(LinkId(*mesh_, b, mesh_->id(a)), link_b) << "B's link to A was replaced";
  EXPECT_EQ(mesh_->Healthz(a), 200);
  EXPECT_EQ(mesh_->Healthz(b), 200);
}

TEST(ClientBoundsFlagsTest, BoundFlagsBeyondTheWireAreRefusedAtStart) {
  const std::string binary = ZmeshServerPath();
  const std::string log = ::testing::TempDir() + "/client_bounds_flags.log";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--max_subject_length=65536", "--max_subject_length must be in [1, 65535]"},
      {"--max_queue_name_length=70000", "--max_queue_name_length must be in [1, 65535]"},
      {"--max_subject_tokens=0", "--max_subject_tokens must be in [1, 32768]"},
      {"--max_control_line=2000000", "--max_control_line must be at most 1048576"},
      {"--max_subs=-1", "--max_subs must be in [0, 10000000]"},
      {"--max_subs_total=0", "--max_subs_total must be in [1, 100000000]"},
      {"--max_connections=2000000", "--max_connections must be in [1, 1000000]"},
      {"--max_pending_bytes=40000000000", "--max_pending_bytes and --peer_max_pending_bytes must be at most 16 GiB"},
      {"--node_id=" + std::string(300, 'n'), "--node_id must be at most 255 bytes"},
      {"--node_id=a/b", "--node_id must be at most 255 bytes"},
  };
  for (const auto& [flag, message] : cases) {
    std::remove(log.c_str());
    Process p;
    std::string error;
    ASSERT_TRUE(p.Start({binary, "--listen=127.0.0.1:0", "--peer_listen=127.0.0.1:0", flag}, log, &error)) << error;
    const auto status = p.WaitExit(seconds(10));
    ASSERT_TRUE(status.has_value()) << flag << ": the node did not stop";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << flag;
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find(message), std::string::npos) << flag << " logged: " << text;
  }
}

}  // namespace
}  // namespace zmesh::testing

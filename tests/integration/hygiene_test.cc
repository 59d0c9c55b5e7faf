// Connection hygiene (SPEC §4): slow consumers are cut off without slowing
// anyone else and without the server buffering the flood, and dead (stale)
// connections are detected by PING and closed. Runs against zmesh-server or
// nats-server 2.9 (ZMESH_TEST_TARGET).
//
// What nats-server 2.9.10 does, characterised with these tests:
//  - A slow consumer is closed without any -ERR: the socket is just closed,
//    after whatever was already in the kernel buffers (the victim reads those
//    messages, then EOF). Standard clients then reconnect.
//  - With one fast publisher nats-server mostly throttles the publisher
//    ("stalls" it while a subscriber is over half its pending limit), so the
//    slow consumer is often closed by the write deadline rather than by the
//    pending-bytes limit. Either way it is closed; the tests assert that, not
//    which limit fired.
//  - Stale connection: PING every ping_interval; with max_pings_out
//    outstanding, the next interval sends -ERR 'Stale Connection' and closes.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/tcp_state.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kPayloadBytes = 8192;
constexpr int kFloodMessages = 12800;  // x 8 KiB = 100 MiB
constexpr int kPubBatch = 64;          // messages per send(): 512 KiB

// The server's resident set must stay below this while 100 MiB go through
// it: it must not hold the flood for the slow consumer. (nats-server peaks
// around 25 MiB with max_pending 1 MiB.)
// Under TSan (the server is built like this test) every byte the server
// touches costs several more in shadow memory: about 120 MiB measured for
// what is 30 MiB without it. There the bound only guards against gross
// growth; the release and ASan runs are the ones that prove boundedness.
#if defined(__SANITIZE_THREAD__)
constexpr long kRssBoundKb = 3 * 96 * 1024;
#else
constexpr long kRssBoundKb = 96 * 1024;
#endif

std::string Payload(int seq) {
  std::string p = std::to_string(seq) + ":";
  p.resize(kPayloadBytes, 'x');
  return p;
}

std::unique_ptr<RawClient> Connected(const ServerUnderTest& server, const std::string& name,
                                     int rcvbuf = 0) {
  auto c = std::make_unique<RawClient>();
  c->set_name(name);
  if (rcvbuf > 0) c->set_receive_buffer(rcvbuf);
  if (!c->Dial(server.port()) || !c->Connect()) return nullptr;
  return c;
}

// Reads `count` messages on `healthy` in a thread, checking they arrive in
// order, while the caller publishes; samples the server's RSS as it goes.
class HealthyReader {
 public:
  HealthyReader(RawClient* client, const Process* server, int count)
      : thread_([this, client, server, count] { Run(client, server, count); }) {}
  ~HealthyReader() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  int received() const { return received_; }
  long max_rss_kb() const { return max_rss_kb_; }
  bool in_order() const { return in_order_; }

 private:
  void Run(RawClient* client, const Process* server, int count) {
    for (int i = 0; i < count; ++i) {
      std::optional<Msg> m = client->ReadMsg(milliseconds(30000));
      if (!m) return;
      if (!m->payload.starts_with(std::to_string(i) + ":") ||
          m->payload.size() != static_cast<std::size_t>(kPayloadBytes)) {
        in_order_ = false;
        ADD_FAILURE() << "healthy subscriber: message " << i << " is \""
                      << Printable(m->payload.substr(0, 16)) << "...\"";
        return;
      }
      received_ = i + 1;
      if (i % 256 == 0) max_rss_kb_ = std::max(max_rss_kb_.load(), server->RssKb());
    }
  }

  std::atomic<int> received_{0};
  std::atomic<long> max_rss_kb_{0};
  std::atomic<bool> in_order_{true};
  std::thread thread_;
};

// Publishes the flood on "flood"; returns false if the publisher's socket
// failed.
bool Flood(RawClient* pub, int messages) {
  for (int i = 0; i < messages; i += kPubBatch) {
    std::string batch;
    batch.reserve(static_cast<std::size_t>(kPubBatch) * (kPayloadBytes + 32));
    for (int j = i; j < std::min(messages, i + kPubBatch); ++j) {
      batch += "PUB flood " + std::to_string(kPayloadBytes) + "\r\n" + Payload(j) + "\r\n";
    }
    if (!pub->Send(batch)) return false;
  }
  return true;
}

class SlowConsumerTest : public ::testing::Test {
 protected:
  // Starts the server with `options`, a slow subscriber that never reads
  // (small receive buffer), a healthy one and a publisher; floods
  // `messages`; checks the healthy one got everything, the slow one was
  // closed without -ERR, and the server's RSS stayed bounded.
  void RunFlood(const ServerOptions& options, int messages, milliseconds close_timeout) {
    ASSERT_TRUE(server_.Start(options));
    auto slow = Connected(server_, "slow", /*rcvbuf=*/16 * 1024);
    auto healthy = Connected(server_, "healthy");
    auto pub = Connected(server_, "pub");
    auto observer = Connected(server_, "observer");
    ASSERT_TRUE(slow && healthy && pub && observer);
    ASSERT_TRUE(slow->Sub("flood", "1") && slow->Flush());
    ASSERT_TRUE(healthy->Sub("flood", "1") && healthy->Flush());

    const auto start = Clock::now();
    HealthyReader reader(healthy.get(), &server_.process(), messages);
    ASSERT_TRUE(Flood(pub.get(), messages));
    ASSERT_TRUE(pub->Flush(milliseconds(30000)));
    reader.Join();
    const auto elapsed =
        std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
    EXPECT_EQ(reader.received(), messages) << "the healthy subscriber lost messages";
    EXPECT_TRUE(reader.in_order());

    // The server must have closed the slow consumer: its end of the
    // connection leaves ESTABLISHED. Observed in /proc/net/tcp, because the
    // victim itself cannot see the FIN behind the data it has not read, and
    // reading would rescue it from a write deadline.
    const uint16_t slow_port = slow->local_port();
    const bool cut_off = WaitFor(
        close_timeout,
        [&] {
          std::optional<TcpState> st = LoopbackTcpState(server_.port(), slow_port);
          return !st || *st != TcpState::kEstablished;
        },
        milliseconds(10));
    EXPECT_TRUE(cut_off) << "the server did not close the slow consumer within "
                         << close_timeout.count() << " ms of the end of the flood";

    // What the victim reads: whatever was already in flight, then the close,
    // and no -ERR anywhere in it.
    DrainResult drained = slow->DrainUntilClosed(milliseconds(20000));
    EXPECT_TRUE(drained.closed) << "the slow consumer's connection did not close; it read "
                                << drained.bytes << " bytes";
    EXPECT_EQ(drained.errs, 0u) << "tail: " << Printable(drained.tail, 300);
    EXPECT_LT(drained.bytes, static_cast<std::size_t>(messages) * kPayloadBytes / 2)
        << "the slow consumer was not cut off early";

    // The server is healthy afterwards.
    ASSERT_TRUE(observer->Flush());
    const long hwm = server_.process().VmHwmKb();
    EXPECT_LT(reader.max_rss_kb(), kRssBoundKb);
    EXPECT_LT(hwm, kRssBoundKb) << "peak RSS";
    std::cerr << "[flood " << TargetName(server_.target()) << "] " << messages << " x "
              << kPayloadBytes << " B in " << elapsed << " ms; slow consumer read "
              << drained.bytes << " B before close; server RSS max " << reader.max_rss_kb()
              << " KiB, VmHWM " << hwm << " KiB\n";
  }

  ServerUnderTest server_;
};

// max_pending_bytes 1 MiB: a subscriber that stops reading is cut off; a
// healthy subscriber on the same subject receives all 100 MiB, in order.
TEST_F(SlowConsumerTest, PendingBytesLimitClosesSlowConsumerOnly) {
  ServerOptions options;
  options.max_pending_bytes = 1 << 20;
  // nats-server may take its default 10 s write deadline to act (see top).
  RunFlood(options, kFloodMessages, milliseconds(20000));
}

// The write deadline variant: pending limit large (the default 64 MiB), a
// 32 MiB flood that never reaches it, and a 500 ms write deadline, so only
// the deadline can cut the slow consumer off.
TEST_F(SlowConsumerTest, WriteDeadlineClosesSlowConsumerOnly) {
  ServerOptions options;
  options.write_deadline_ms = 500;
  RunFlood(options, kFloodMessages / 4, milliseconds(5000));
}

class StaleConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.ping_interval_ms = 100;
    options.max_pings_out = 2;
    ASSERT_TRUE(server_.Start(options));
  }
  ServerUnderTest server_;
};

// A client that never answers PING gets max_pings_out PINGs, then
// -ERR 'Stale Connection' and a close; one that answers stays.
TEST_F(StaleConnectionTest, UnansweredPingsCloseOnlyTheDeadConnection) {
  RawClient dead;
  dead.set_name("dead");
  dead.set_auto_pong(false);
  RawClient alive;
  alive.set_name("alive");  // auto-pong on: answers every PING
  ASSERT_TRUE(alive.Dial(server_.port()) && alive.Connect());
  ASSERT_TRUE(dead.Dial(server_.port()) && dead.Connect());
  ASSERT_TRUE(alive.Sub("still.here", "1") && alive.Flush());

  // The answering client must keep reading to answer; it does so in a thread
  // for fifteen intervals while the dead one is watched here.
  std::thread alive_reader([&] { EXPECT_TRUE(alive.ExpectSilence(milliseconds(1500))); });
  const auto start = Clock::now();
  EXPECT_TRUE(dead.ExpectLine("PING", milliseconds(2000)));
  EXPECT_TRUE(dead.ExpectLine("PING", milliseconds(2000)));
  EXPECT_TRUE(dead.ExpectLine(R"(-ERR 'Stale Connection')", milliseconds(2000)));
  EXPECT_TRUE(dead.ExpectClosed(milliseconds(2000)));
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  // Three intervals (two PINGs, then the verdict), with generous slack for a
  // loaded machine.
  EXPECT_LT(took, 1500) << "stale detection took " << took << " ms";
  alive_reader.join();

  // The answering client was pinged all along and is still up.
  EXPECT_TRUE(alive.Flush());
  RawClient pub;
  ASSERT_TRUE(pub.Dial(server_.port()) && pub.Connect());
  pub.Pub("still.here", "yes");
  EXPECT_TRUE(alive.ExpectMsg("still.here", "1", "yes"));
}

// PINGs go to idle connections: a client that keeps publishing (and never
// answers a PING) is not stale. nats-server sends at most its one early
// round-trip PING to it.
TEST_F(StaleConnectionTest, ClientTrafficKeepsAConnectionAlive) {
  RawClient c;
  c.set_name("chatty");
  c.set_auto_pong(false);
  ASSERT_TRUE(c.Dial(server_.port()) && c.Connect());
  int pings = 0;
  std::string seen;
  // Ten ping intervals of traffic, a publish every ~20 ms (the read timeout
  // paces the loop).
  const auto deadline = Clock::now() + milliseconds(1000);
  while (Clock::now() < deadline && !c.closed()) {
    ASSERT_TRUE(c.Send("PUB nobody 1\r\nx\r\n"));
    if (std::optional<std::string> line = c.ReadLine(milliseconds(20))) {
      seen += *line + "|";
      if (*line == "PING") ++pings;
    }
  }
  EXPECT_FALSE(c.closed()) << "server lines: " << seen;
  EXPECT_EQ(seen.find("-ERR"), std::string::npos) << seen;
  EXPECT_LE(pings, 1) << seen;
}

}  // namespace
}  // namespace zmesh::testing

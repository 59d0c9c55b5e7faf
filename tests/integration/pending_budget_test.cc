// The node-wide budget for bytes queued to clients (--max_pending_bytes_total,
// issue 10): 200 subscribers that never read, a publisher sending 1 MB
// messages, and one healthy subscriber. Without the budget each stuck
// subscriber may hold --max_pending_bytes (64 MiB) until its write deadline:
// 200 x 64 MiB. With a 128 MiB budget the node's peak RSS stays near the
// budget, the stuck subscribers are cut as slow consumers (counted in /varz
// pending_budget_cuts), and the healthy one receives every message in order.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/mesh_cluster.h"
#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using std::chrono::milliseconds;

constexpr int kStuck = 200;
constexpr int kMessages = 150;
constexpr size_t kPayload = 1000000;
constexpr long kBudgetMiB = 128;
// The budget may be exceeded by one message per subscriber (a fan-out copies
// before any socket is written), plus the process itself. Sanitizer builds
// keep freed memory in quarantine and shadow every byte, so there the bound
// only guards against gross growth. Without the budget: up to 200 x 64 MiB.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr long kRssBoundKb = (kBudgetMiB + 1024) * 1024 + kStuck * long{kPayload} / 1024;
#else
constexpr long kRssBoundKb = (kBudgetMiB + 128) * 1024 + kStuck * long{kPayload} / 1024;
#endif

std::string Payload(int seq) {
  std::string p = std::to_string(seq) + ":";
  p.resize(kPayload, 'x');
  return p;
}

TEST(PendingBudgetTest, StuckSubscribersAreCutAndTheNodeStaysWithinItsBudget) {
  ServerUnderTest server(Target::kZmesh);
  ServerOptions options;
  const uint16_t http_port = PickFreePort();
  options.extra_args = {"--max_pending_bytes_total=" + std::to_string(kBudgetMiB << 20),
                        "--http_listen=127.0.0.1:" + std::to_string(http_port)};
  auto fetch_varz = [&] { return GetJson("127.0.0.1", http_port, "/varz"); };
  ASSERT_TRUE(server.Start(options));

  std::vector<std::unique_ptr<RawClient>> stuck;
  for (int i = 0; i < kStuck; ++i) {
    auto c = std::make_unique<RawClient>();
    c->set_name("stuck" + std::to_string(i));
    c->set_receive_buffer(4096);
    ASSERT_TRUE(c->Dial(server.port()) && c->Connect()) << "stuck subscriber " << i;
    ASSERT_TRUE(c->Sub("big", "1") && c->Flush());
    stuck.push_back(std::move(c));
  }
  RawClient healthy, pub;
  ASSERT_TRUE(healthy.Dial(server.port()) && healthy.Connect());
  ASSERT_TRUE(healthy.Sub("big", "1") && healthy.Flush());
  ASSERT_TRUE(pub.Dial(server.port()) && pub.Connect());

  int received = 0;
  bool in_order = true;
  long max_rss_kb = 0;
  std::thread reader([&] {
    for (int i = 0; i < kMessages; ++i) {
      std::optional<Msg> m = healthy.ReadMsg(milliseconds(30000));
      if (!m) return;
      if (!m->payload.starts_with(std::to_string(i) + ":") || m->payload.size() != kPayload) {
        in_order = false;
        return;
      }
      received = i + 1;
      max_rss_kb = std::max(max_rss_kb, server.process().RssKb());
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(pub.Send("PUB big " + std::to_string(kPayload) + "\r\n" + Payload(i) + "\r\n")) << "message " << i;
  }
  ASSERT_TRUE(pub.Flush(milliseconds(60000)));
  reader.join();
  EXPECT_EQ(received, kMessages) << "the healthy subscriber lost messages";
  EXPECT_TRUE(in_order);

  const long hwm = server.process().VmHwmKb();
  EXPECT_LT(hwm, kRssBoundKb) << "peak RSS over the budget (" << kBudgetMiB << " MiB) plus one message per subscriber";
  EXPECT_LT(max_rss_kb, kRssBoundKb);

  std::optional<nlohmann::json> varz;
  ASSERT_TRUE(WaitFor(milliseconds(10000), [&] {
    varz = fetch_varz();
    return varz && varz->value("pending_budget_cuts", 0) >= kStuck / 2;
  })) << (varz ? varz->dump() : "no /varz");
  // Each connection is counted once, however many copies it was refused.
  EXPECT_LE(varz->value("pending_budget_cuts", 0), kStuck) << varz->dump();
  EXPECT_LE(varz->value("pending_budget_cuts", 0), varz->value("slow_consumers", 0)) << varz->dump();
  EXPECT_LE(varz->value("pending_bytes", int64_t{-1}), int64_t{kBudgetMiB} << 20) << varz->dump();
  EXPECT_EQ(varz->value("pending_budget", int64_t{0}), int64_t{kBudgetMiB} << 20);
  std::cerr << "[budget] " << kStuck << " stuck subscribers, " << kMessages << " x " << kPayload
            << " B: peak RSS " << hwm / 1024 << " MiB, cuts " << varz->value("pending_budget_cuts", 0)
            << ", slow consumers " << varz->value("slow_consumers", 0) << "\n";
}

}  // namespace
}  // namespace zmesh::testing

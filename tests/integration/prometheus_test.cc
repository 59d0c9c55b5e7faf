// /metrics is valid Prometheus text as Prometheus' own tools read it, not
// only as monitor_test's parser reads it: `promtool check metrics` (parse
// errors and lint problems) on a meshed node with traffic, and a real
// `prometheus` (Debian's package) scraping a node every second until its
// HTTP API reports the target up and a zmesh series stored.
//
// Both tools come from Debian's `prometheus` package (scripts/install-deps.sh);
// a missing tool is a failure, never a skip. Prometheus runs on 127.0.0.1 with
// a port, a configuration and a data directory of its own, and is stopped by
// PID.

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/mesh_fixture.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// `name` on $PATH (Debian puts both tools in /usr/bin), or "".
std::string FindTool(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr && *path != '\0' ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

class PrometheusTest : public MeshFixture {
 protected:
  void SetUp() override {
    MeshFixture::SetUp();
    if (HasFatalFailure()) return;
    std::string tmpl = ::testing::TempDir() + "prometheus_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::string error;
    // Two nodes: the peer series (zmesh_peer_*) exist only with a peer.
    ASSERT_TRUE(mesh_->StartNodes(2, &error)) << error;
    GenerateTraffic();
  }

  void TearDown() override {
    MeshFixture::TearDown();
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  // A message from n2 to a subscriber on n1, so that counters are non-zero
  // and the peer series carry traffic.
  void GenerateTraffic() {
    RawClient sub, pub;
    ASSERT_TRUE(sub.Dial(mesh_->client_port(0)));
    ASSERT_TRUE(sub.Connect());
    ASSERT_TRUE(sub.Sub("metrics.traffic", "1"));
    ASSERT_TRUE(sub.Flush());  // the interest barrier: n2 knows the subscription
    ASSERT_TRUE(pub.Dial(mesh_->client_port(1)));
    ASSERT_TRUE(pub.Connect());
    for (int k = 0; k < 10; ++k) ASSERT_TRUE(pub.Pub("metrics.traffic", "payload-" + std::to_string(k)));
    ASSERT_TRUE(pub.Flush());
    for (int k = 0; k < 10; ++k) {
      ASSERT_TRUE(sub.ExpectMsg("metrics.traffic", "1", "payload-" + std::to_string(k)));
    }
  }

  std::string dir_;
};

TEST_F(PrometheusTest, PromtoolAcceptsMetrics) {
  const std::string promtool = FindTool("promtool");
  ASSERT_FALSE(promtool.empty()) << "promtool not found: install Debian's prometheus (scripts/install-deps.sh)";
  for (int node = 0; node < 2; ++node) {
    SCOPED_TRACE(mesh_->id(node));
    const auto reply = HttpGet("127.0.0.1", mesh_->node(node).http_port, "/metrics");
    ASSERT_TRUE(reply.has_value()) << "/metrics did not answer";
    ASSERT_EQ(reply->status, 200) << reply->body;
    // The series this test is about must be in what promtool checks.
    EXPECT_NE(reply->body.find("zmesh_peer_linked{"), std::string::npos) << reply->body;
    EXPECT_NE(reply->body.find("zmesh_in_messages_total"), std::string::npos) << reply->body;
    const std::string metrics = dir_ + "/metrics-" + mesh_->id(node) + ".txt";
    std::ofstream(metrics, std::ios::binary) << reply->body;
    const std::string log = dir_ + "/promtool-" + mesh_->id(node) + ".log";
    Process p;
    std::string error;
    // promtool reads the exposition on stdin; Process gives children /dev/null.
    ASSERT_TRUE(p.Start({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, metrics}, log, &error))
        << error;
    const std::optional<int> status = p.WaitExit(seconds(60));
    ASSERT_TRUE(status.has_value()) << "promtool did not finish";
    // Exit 1 is a parse error, 3 a lint problem (no HELP, a counter without
    // _total, ...): both fail, with promtool's words.
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "promtool check metrics: " << DescribeWaitStatus(*status) << "\n"
        << p.ReadLog() << "\n--- /metrics:\n"
        << reply->body;
  }
}

TEST_F(PrometheusTest, RealPrometheusScrapesNode) {
  const std::string prometheus = FindTool("prometheus");
  ASSERT_FALSE(prometheus.empty()) << "prometheus not found: install Debian's prometheus (scripts/install-deps.sh)";
  const std::string target = "127.0.0.1:" + std::to_string(mesh_->node(0).http_port);
  const std::string config = dir_ + "/prometheus.yml";
  std::ofstream(config) << "# generated by tests/integration/prometheus_test.cc\n"
                        << "global:\n"
                        << "  scrape_interval: 1s\n"
                        << "  scrape_timeout: 1s\n"
                        << "  evaluation_interval: 1s\n"
                        << "scrape_configs:\n"
                        << "  - job_name: zmesh\n"
                        << "    static_configs:\n"
                        << "      - targets: ['" << target << "']\n";

  Process prom;
  uint16_t port = 0;
  std::string error;
  // The port is free when picked; if another process takes it first,
  // Prometheus exits at once and a fresh port is tried.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port = PickFreePort();
    ASSERT_NE(port, 0);
    ASSERT_TRUE(prom.Start({prometheus, "--config.file=" + config, "--storage.tsdb.path=" + dir_ + "/data",
                            "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                           dir_ + "/prometheus.log", &error))
        << error;
    const bool serving = WaitFor(seconds(60), [&] {
      if (!prom.Running()) return true;
      const auto ready = HttpGet("127.0.0.1", port, "/-/ready", milliseconds(1000));
      return ready && ready->status == 200;
    }, milliseconds(100));
    if (serving && prom.Running()) break;
    prom.Stop(seconds(10));
  }
  ASSERT_TRUE(prom.Running()) << "prometheus did not start; log:\n" << prom.ReadLog();

  // One instant query; the JSON result vector, or an empty one.
  auto query = [&](const std::string& promql) -> json {
    const auto reply = HttpGet("127.0.0.1", port, "/api/v1/query?query=" + promql, milliseconds(2000));
    if (!reply || reply->status != 200) return json::array();
    const json j = json::parse(reply->body, nullptr, false);
    if (!j.is_object() || j.value("status", "") != "success") return json::array();
    return j["data"]["result"];
  };
  auto value_of = [&](const json& result, const std::string& instance) -> std::string {
    for (const json& series : result) {
      if (series["metric"].value("instance", "") == instance) return series["value"][1].get<std::string>();
    }
    return "";
  };
  json up, in_messages;
  const bool scraped = WaitFor(seconds(60), [&] {
    up = query("up");
    in_messages = query("zmesh_in_messages_total");
    return value_of(up, target) == "1" && !value_of(in_messages, target).empty();
  }, milliseconds(250));
  EXPECT_TRUE(scraped) << "up: " << up.dump() << "\nzmesh_in_messages_total: " << in_messages.dump()
                       << "\ntargets: "
                       << HttpGet("127.0.0.1", port, "/api/v1/targets").value_or(HttpReply{}).body
                       << "\nprometheus log:\n" << prom.ReadLog();
  if (scraped) {
    EXPECT_GE(std::stod(value_of(in_messages, target)), 10.0) << in_messages.dump();
    EXPECT_EQ(value_of(query("zmesh_up"), target), "1");
  }

  const std::optional<int> status = prom.Stop(seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "prometheus " << DescribeWaitStatus(*status) << "\n" << prom.ReadLog();
}

}  // namespace
}  // namespace zmesh::testing

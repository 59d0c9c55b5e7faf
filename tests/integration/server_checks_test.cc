// The harness's teardown checks (tests/support/server_checks.h) can fail a
// test: the log scanner finds sanitizer reports and nothing else, the exit
// verdict accepts only exit 0 or the test's own SIGKILL, and ServerUnderTest
// and MeshCluster really apply both when they are destroyed. The last part
// runs fake_zmesh_server.py as zmesh-server, so that a "report" can be
// produced on demand without planting a bug in the real server.

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "tests/support/mesh_cluster.h"
#include "tests/support/process.h"
#include "tests/support/server_checks.h"
#include "tests/support/server_under_test.h"

namespace zmesh::testing {
namespace {

// --- The scanner ------------------------------------------------------------------

TEST(SanitizerScanTest, FindsAsanAndUbsanReportsWithTheirLines) {
  const std::string log =
      "I0101 12:00:00.000000 4242 server.cc:10] node n1 listening\n"
      "=================================================================\n"
      "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n"
      "READ of size 8 at 0x602000000010 thread T1\n"
      "    #0 0x55d0 in zmesh::server::Router::Route() server/router.cc:88\n"
      "SUMMARY: AddressSanitizer: heap-use-after-free server/router.cc:88 in Route\n"
      "I0101 12:00:01.000000 4242 server.cc:11] an ordinary line after the report\n"
      "server/outbound.cc:12:7: runtime error: signed integer overflow: 2147483647 + 1\n"
      "    #0 0x55d1 in zmesh::server::Outbound::Grow() server/outbound.cc:12\n";
  const std::vector<SanitizerReport> reports = FindSanitizerReports(log);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].kind, "AddressSanitizer");
  EXPECT_NE(reports[0].excerpt.find("heap-use-after-free on address"), std::string::npos);
  EXPECT_NE(reports[0].excerpt.find("Router::Route"), std::string::npos) << "the stack belongs to the report";
  EXPECT_EQ(reports[0].excerpt.find("ordinary line"), std::string::npos) << "the report ends at SUMMARY";
  EXPECT_EQ(reports[1].kind, "UndefinedBehaviorSanitizer");
  EXPECT_NE(reports[1].excerpt.find("signed integer overflow"), std::string::npos);
  EXPECT_NE(reports[1].excerpt.find("Outbound::Grow"), std::string::npos);
}

TEST(SanitizerScanTest, FindsLeakThreadAndBareUbsanReports) {
  const std::string log =
      "==1==ERROR: LeakSanitizer: detected memory leaks\n"
      "Direct leak of 64 byte(s) in 1 object(s) allocated from:\n"
      "WARNING: ThreadSanitizer: data race (pid=7)\n"
      "  Write of size 8 at 0x7b0400000000 by thread T2:\n"
      "SUMMARY: ThreadSanitizer: data race server/a.cc:3 in F\n"
      "==9==ERROR: UndefinedBehaviorSanitizer: SEGV on unknown address 0x000000000000\n";
  const std::vector<SanitizerReport> reports = FindSanitizerReports(log);
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].kind, "LeakSanitizer");
  EXPECT_EQ(reports[0].excerpt.find("ThreadSanitizer"), std::string::npos) << "a report ends where the next begins";
  EXPECT_EQ(reports[1].kind, "ThreadSanitizer");
  EXPECT_EQ(reports[2].kind, "UndefinedBehaviorSanitizer");
}

TEST(SanitizerScanTest, CleanLogHasNoFindings) {
  const std::string log =
      "==== test harness: starting n1 ====\n"
      "I0101 12:00:00.000000 4242 server.cc:10] node n1 listening on 127.0.0.1:4222\n"
      "E0101 12:00:01.000000 4242 peer_link.cc:99] ERROR: peer n2 closed the link (runtime 3 s)\n"
      "W0101 12:00:02.000000 4242 client.cc:5] client 7 closed: Slow Consumer (Write Deadline)\n"
      "I0101 12:00:03.000000 4242 server.cc:12] node n1 stopped\n";
  EXPECT_TRUE(FindSanitizerReports(log).empty());
  EXPECT_TRUE(FindSanitizerReports("").empty());
}

TEST(SanitizerScanTest, ManyReportsAreBoundedInOutput) {
  std::string log;
  for (int i = 0; i < 200; ++i) log += "a.cc:1:1: runtime error: load of misaligned address\n";
  EXPECT_EQ(FindSanitizerReports(log).size(), 200u);
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    const std::string path = ::testing::TempDir() + "server_checks_many_" + std::to_string(getpid()) + ".log";
    std::ofstream(path) << log;
    ExpectNoSanitizerReports("n1", path);
    std::filesystem::remove(path);
  }
  ASSERT_GE(failures.size(), 1);
  EXPECT_LE(failures.size(), 5);
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("of 200"), std::string::npos);
}

// --- The exit verdict ---------------------------------------------------------------

TEST(UncleanEndTest, OnlyExitZeroOrTheTestsOwnSigkillIsClean) {
  const int exit0 = 0 << 8, exit1 = 1 << 8, exit66 = 66 << 8;  // wait statuses
  EXPECT_EQ(UncleanEnd(exit0, false), "");
  EXPECT_EQ(UncleanEnd(exit0, true), "");
  EXPECT_NE(UncleanEnd(exit1, false), "");
  EXPECT_NE(UncleanEnd(exit66, false), "") << "TSan's exit code under halt_on_error";
  EXPECT_NE(UncleanEnd(SIGKILL, false), "") << "a SIGKILL the test did not send: SIGTERM was not enough";
  EXPECT_EQ(UncleanEnd(SIGKILL, true), "");
  EXPECT_NE(UncleanEnd(SIGABRT, true), "") << "abort_on_error: the sanitizer's abort is no kill -9";
  EXPECT_NE(UncleanEnd(SIGSEGV, false), "");
  EXPECT_NE(UncleanEnd(SIGTERM, false), "") << "killed by SIGTERM means no handler ran";
  EXPECT_NE(UncleanEnd(std::nullopt, false), "");
}

TEST(UncleanEndTest, ProcessTellsTheTestsSigkillFromTheHarnessEscalation) {
  const std::string log = ::testing::TempDir() + "server_checks_sleep_" + std::to_string(getpid()) + ".log";
  std::string error;
  {
    Process p;
    ASSERT_TRUE(p.Start({"/bin/sleep", "60"}, log, &error)) << error;
    ASSERT_TRUE(p.Signal(SIGKILL));
    ASSERT_TRUE(p.WaitExit(std::chrono::seconds(10)).has_value());
    EXPECT_TRUE(p.killed_on_purpose());
    EXPECT_EQ(UncleanEnd(p.exit_status(), p.killed_on_purpose()), "");
  }
  {
    // A program that ignores SIGTERM: Stop() has to escalate, and that is
    // not the test's intent.
    Process p;
    ASSERT_TRUE(p.Start({"/bin/sh", "-c", "trap '' TERM; sleep 60"}, log, &error)) << error;
    ASSERT_TRUE(p.Stop(std::chrono::milliseconds(300)).has_value());
    EXPECT_FALSE(p.killed_on_purpose());
    EXPECT_NE(UncleanEnd(p.exit_status(), p.killed_on_purpose()), "");
  }
  std::filesystem::remove(log);
}

// --- The harnesses, with a fake zmesh-server ------------------------------------------

class HarnessChecksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* src = ::getenv("ZMESH_SOURCE_DIR");
    ASSERT_NE(src, nullptr) << "ZMESH_SOURCE_DIR is not set (ctest sets it)";
    std::string tmpl = ::testing::TempDir() + "server_checks_bin_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    bin_dir_ = tmpl;
    std::filesystem::copy_file(std::string(src) + "/tests/integration/fake_zmesh_server.py",
                               bin_dir_ + "/zmesh-server");
    std::filesystem::permissions(bin_dir_ + "/zmesh-server", std::filesystem::perms::owner_all);
    const char* old = ::getenv("ZMESH_BIN_DIR");
    if (old != nullptr) saved_bin_dir_ = old;
    ::setenv("ZMESH_BIN_DIR", bin_dir_.c_str(), 1);
  }

  void TearDown() override {
    if (saved_bin_dir_) {
      ::setenv("ZMESH_BIN_DIR", saved_bin_dir_->c_str(), 1);
    } else {
      ::unsetenv("ZMESH_BIN_DIR");
    }
    std::error_code ec;
    std::filesystem::remove_all(bin_dir_, ec);
  }

  // The failures a ServerUnderTest running the fake with `args` reports
  // from start to destruction. No ASSERT may run while failures are
  // intercepted (it would end the test as a pass), hence *started.
  void RunServerUnderTest(const std::vector<std::string>& args, ::testing::TestPartResultArray* failures,
                          bool* started, bool kill_it = false) {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, failures);
    ServerUnderTest server(Target::kZmesh);
    ServerOptions o;
    o.extra_args = args;
    *started = server.Start(o);
    if (*started && kill_it) *started = server.process().Signal(SIGKILL);
  }

  static std::string Messages(const ::testing::TestPartResultArray& failures) {
    std::string out;
    for (int k = 0; k < failures.size(); ++k) out += std::string(failures.GetTestPartResult(k).message()) + "\n";
    return out;
  }

  std::string bin_dir_;
  std::optional<std::string> saved_bin_dir_;
};

TEST_F(HarnessChecksTest, ServerUnderTestCleanServerPasses) {
  ::testing::TestPartResultArray failures;
  bool started = false;
  RunServerUnderTest({"--fake_on_term=none"}, &failures, &started);
  ASSERT_TRUE(started) << Messages(failures);
  EXPECT_EQ(failures.size(), 0) << Messages(failures);
}

TEST_F(HarnessChecksTest, ServerUnderTestFailsOnAsanReport) {
  ::testing::TestPartResultArray failures;
  bool started = false;
  RunServerUnderTest({"--fake_on_term=asan"}, &failures, &started);
  ASSERT_TRUE(started) << Messages(failures);
  ASSERT_EQ(failures.size(), 1) << Messages(failures);
  const std::string m = failures.GetTestPartResult(0).message();
  EXPECT_NE(m.find("AddressSanitizer report"), std::string::npos) << m;
  EXPECT_NE(m.find("heap-use-after-free on address"), std::string::npos) << "the excerpt is in the message: " << m;
}

TEST_F(HarnessChecksTest, ServerUnderTestFailsOnNonZeroExit) {
  ::testing::TestPartResultArray failures;
  bool started = false;
  RunServerUnderTest({"--fake_exit=1"}, &failures, &started);
  ASSERT_TRUE(started) << Messages(failures);
  ASSERT_EQ(failures.size(), 1) << Messages(failures);
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("exit 1"), std::string::npos)
      << Messages(failures);
}

TEST_F(HarnessChecksTest, ServerUnderTestKilledOnPurposeIsExempt) {
  ::testing::TestPartResultArray failures;
  bool started = false;
  RunServerUnderTest({"--fake_on_term=none"}, &failures, &started, /*kill_it=*/true);
  ASSERT_TRUE(started) << Messages(failures);
  EXPECT_EQ(failures.size(), 0) << Messages(failures);
}

TEST_F(HarnessChecksTest, MeshClusterChecksEveryNodeAndEveryRun) {
  ::testing::TestPartResultArray failures;
  std::string start_errors;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    MeshOptions o;
    o.zk_connect = "127.0.0.1:1";  // never dialled: nothing here asks ZooKeeper
    o.zk_root = "/zmesh/server_checks_test";
    MeshCluster mesh(o);
    MeshNodeSpec clean, ubsan, killed;
    ubsan.extra_args = {"--fake_on_term=ubsan"};
    // No ASSERT while failures are intercepted: it would end the test as a pass.
    auto start = [&](int i) {
      std::string error;
      if (!mesh.Start(i, &error)) start_errors += error + "\n";
    };
    const int a = mesh.Add(clean), b = mesh.Add(ubsan), c = mesh.Add(killed);
    for (int i : {a, b, c}) start(i);
    mesh.Kill(c);  // on purpose: exempt, and restarted below
    start(c);
    // A run that reports and exits non-zero, then a clean run of the same
    // node: the first run must still count.
    mesh.Stop(a);
    mesh.node(a).spec.extra_args = {"--fake_on_term=tsan", "--fake_exit=66"};
    start(a);
    mesh.Stop(a);
    mesh.node(a).spec.extra_args = {};
    start(a);
  }
  ASSERT_EQ(start_errors, "");
  const std::string all = Messages(failures);
  ASSERT_EQ(failures.size(), 3) << all;
  EXPECT_NE(all.find("zmesh-server n1 ended with exit 66"), std::string::npos) << all;
  EXPECT_NE(all.find("ThreadSanitizer report in zmesh-server n1"), std::string::npos) << all;
  EXPECT_NE(all.find("UndefinedBehaviorSanitizer report in zmesh-server n2"), std::string::npos) << all;
  EXPECT_EQ(all.find("n3"), std::string::npos) << "n3 was killed on purpose: " << all;
}

}  // namespace
}  // namespace zmesh::testing

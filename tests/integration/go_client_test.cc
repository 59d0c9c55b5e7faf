// The standard Go NATS client (Debian's nats.go, through tests/go/natscheck)
// against one real server: every single-node scenario must pass, and its key
// figures are checked here too. ZMESH_TEST_TARGET=nats runs the very same
// expectations against nats-server, the reference they were validated on.
//
// natscheck prints a human log on stderr and one JSON line on stdout; both go
// to one log file, whose last line starting with '{' is the result.

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "auth/password_hash.h"
#include "tests/support/process.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

std::string NatscheckPath() {
  const char* dir = std::getenv("ZMESH_BIN_DIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : ".") + "/natscheck";
}

// What one natscheck run left behind.
struct Outcome {
  std::optional<int> exit_code;  // nullopt: killed by a signal, or ran out of time
  std::string status;            // "exit 0", "timed out", ...
  json result;                   // the JSON result line; discarded when there was none
  std::string log;               // stdout and stderr

  // A failure message: the status, the failures natscheck listed, the log tail.
  std::string Describe() const {
    std::string out = "natscheck " + status;
    if (result.is_object()) {
      if (result.contains("failures")) out += "\nfailures: " + result["failures"].dump(1);
      if (result.contains("error")) out += "\nerror: " + result["error"].dump();
    }
    constexpr size_t kTail = 4000;
    out += "\nlog:\n" + (log.size() > kTail ? "..." + log.substr(log.size() - kTail) : log);
    return out;
  }
};

::testing::AssertionResult Passed(const Outcome& o) {
  if (o.exit_code == 0 && o.result.is_object() && o.result.value("ok", false)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << o.Describe();
}

json ParseResult(const std::string& log) {
  size_t end = log.size();
  while (end > 0) {
    const size_t begin = log.rfind('\n', end - 1);
    const size_t start = begin == std::string::npos ? 0 : begin + 1;
    if (start < end && log[start] == '{') {
      return json::parse(log.substr(start, end - start), nullptr, /*allow_exceptions=*/false);
    }
    if (begin == std::string::npos) break;
    end = begin;
  }
  return json(json::value_t::discarded);
}

class GoClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "go_client_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(std::filesystem::exists(NatscheckPath()))
        << NatscheckPath() << " is missing: build the natscheck target (tests/go)";
  }

  void TearDown() override {
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  // Runs `natscheck <scenario>` with publishers and subscribers on the server
  // under test, plus `args`; natscheck's own watchdog ends it well before `limit`.
  Outcome Run(const std::string& scenario, const std::vector<std::string>& args = {},
              seconds limit = seconds(120)) {
    std::vector<std::string> all = {"--pub-url=" + server_.url(), "--sub-url=" + server_.url()};
    all.insert(all.end(), args.begin(), args.end());
    Process p;
    Outcome o;
    if (!Launch(&p, scenario, all, &o)) return o;
    return Collect(&p, limit);
  }

  // Starts `natscheck <scenario> --timeout=10 <args>` in the background.
  bool Launch(Process* p, const std::string& scenario, const std::vector<std::string>& args, Outcome* o) {
    std::vector<std::string> argv = {NatscheckPath(), scenario, "--timeout=10"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log_path = dir_ + "/" + scenario + "." + std::to_string(++runs_) + ".log";
    std::string error;
    if (!p->Start(argv, log_path, &error)) {
      o->status = "did not start: " + error;
      return false;
    }
    return true;
  }

  // Waits (bounded) for a launched natscheck to finish and reads its result.
  static Outcome Collect(Process* p, seconds limit) {
    Outcome o;
    const std::optional<int> status = p->WaitExit(limit);
    if (!status) {
      p->Stop(seconds(2));
      o.status = "timed out after " + std::to_string(limit.count()) + " s";
    } else {
      o.status = DescribeWaitStatus(*status);
      if (WIFEXITED(*status)) o.exit_code = WEXITSTATUS(*status);
    }
    o.log = p->ReadLog();
    o.result = ParseResult(o.log);
    return o;
  }

  ServerUnderTest server_;
  std::string dir_;
  int runs_ = 0;
};

int64_t Sum(const json& values) {
  int64_t total = 0;
  for (const json& v : values) total += v.get<int64_t>();
  return total;
}

TEST_F(GoClientTest, PubSubExactlyOnceInOrder) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("pubsub", {"--pubs=2", "--subs=3", "--msgs=20000"});
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["received"], json({20000, 20000, 20000})) << o.Describe();
}

TEST_F(GoClientTest, EchoOffSuppressesOwnMessages) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("echo", {"--msgs=100"});
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["echo_on_own"], 100);
  EXPECT_EQ(o.result["echo_off_own"], 0);
  EXPECT_EQ(o.result["echo_off_other"], 100);
}

TEST_F(GoClientTest, WildcardsMatchExactly) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("wildcards");
  ASSERT_TRUE(Passed(o));
  int64_t received = 0;
  for (const auto& [pattern, n] : o.result["received_per_pattern"].items()) received += n.get<int64_t>();
  EXPECT_EQ(received, o.result["expected_total"].get<int64_t>()) << o.Describe();
}

TEST_F(GoClientTest, QueueGroupDeliversEachMessageOnceAndSpreadsEvenly) {
  ASSERT_TRUE(server_.Start());
  // 10,000 messages over 4 members: one standard deviation is ~1.7 % of 1/K.
  Outcome o = Run("queue", {"--members=4", "--msgs=10000", "--max-dev=10"});
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["per_member"].size(), 4u);
  EXPECT_EQ(Sum(o.result["per_member"]), 10000);
  EXPECT_EQ(o.result["groups"]["main"]["duplicates"], 0);
  EXPECT_EQ(o.result["groups"]["wild"]["delivered"], 10000);
  EXPECT_EQ(o.result["plain_received"], 10000);
}

TEST_F(GoClientTest, RequestReplyNewAndOldStyle) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("request", {"--msgs=400"});
  ASSERT_TRUE(Passed(o));
  for (const char* style : {"new", "old"}) {
    EXPECT_EQ(o.result["per_style"][style]["requests"], 400) << style;
    EXPECT_EQ(o.result["per_style"][style]["failed"], 0) << style;
    EXPECT_EQ(o.result["per_style"][style]["wrong"], 0) << style;
  }
  EXPECT_GE(Sum(o.result["per_responder"]), 800) << "each request once, plus the warm-ups";
}

TEST_F(GoClientTest, NoRespondersIsPromptNotATimeout) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("noresponders");
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["new_error"], "nats: no responders available for request");
  EXPECT_EQ(o.result["old_error"], "nats: no responders available for request");
  EXPECT_EQ(o.result["silent_error"], "nats: timeout");
  EXPECT_LT(o.result["new_ms"].get<int64_t>(), 2000);
}

TEST_F(GoClientTest, HeadersRoundTrip) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("headers");
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["cases"], 10);
}

TEST_F(GoClientTest, AutoUnsubscribeDeliversExactlyMax) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("unsub-max", {"--msgs=10"});
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["async_delivered"], 10);
  EXPECT_EQ(o.result["sync_delivered"], 10);
  EXPECT_EQ(o.result["late_delivered"], 10);
  EXPECT_EQ(o.result["server_sent"], 30) << "the server must stop at each subscription's max";
}

TEST_F(GoClientTest, DrainDeliversInFlightMessages) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("drain", {"--msgs=2000"});
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["handled"], 2000);
  EXPECT_EQ(o.result["publisher_drain_delivered"], 2000);
}

TEST_F(GoClientTest, FlushRttAndServerInfo) {
  ASSERT_TRUE(server_.Start());
  Outcome o = Run("flush-rtt");
  ASSERT_TRUE(Passed(o));
  EXPECT_NE(o.result["version"], "");
  EXPECT_NE(o.result["server_id"], "");
  EXPECT_EQ(o.result["headers"], true);
  EXPECT_EQ(o.result["max_payload"], 1 << 20);
  EXPECT_EQ(o.result["servers"], json({server_.url()}));
  EXPECT_EQ(o.result["discovered_servers"], json::array()) << "a single node has no other servers";
}

TEST_F(GoClientTest, AuthAcceptsUsersAndRejectsWrongCredentials) {
  const std::string password = "natscheck:s3cret @x";  // URL-unsafe characters on purpose
  absl::StatusOr<std::string> hash = auth::HashPassword(password, auth::kMinBcryptCost);
  ASSERT_TRUE(hash.ok()) << hash.status();
  UserSpec alice;
  alice.name = "alice";
  alice.password_hash = *hash;
  ServerOptions options;
  options.users.push_back(alice);
  ASSERT_TRUE(server_.Start(options));
  Outcome o = Run("auth", {"--user=alice", "--pass=" + password});
  ASSERT_TRUE(Passed(o));
  for (const char* key : {"wrong_password_error", "unknown_user_error", "no_credentials_error", "empty_password_error"}) {
    // nats.go words the -ERR 'Authorization Violation' it got this way.
    EXPECT_EQ(o.result[key], "nats: Authorization Violation") << key;
  }
  EXPECT_EQ(o.result["url_credentials_error"], "");

  // Without credentials, any other scenario is refused at connect: exit 2.
  Outcome refused = Run("pubsub", {"--msgs=10"});
  EXPECT_EQ(refused.exit_code, 2) << refused.Describe();
}

TEST_F(GoClientTest, SlowConsumerIsCutOffWithoutSlowingOthers) {
  ServerOptions options;
  options.max_pending_bytes = 4 << 20;
  options.write_deadline_ms = 3000;
  const bool zmesh = !server_.is_nats();
  ASSERT_TRUE(server_.Start(options));
  // 60 MB through a subscriber that stops reading: far over the 4 MiB bound
  // plus socket buffers. The publisher stays within 1 MB of the healthy
  // subscriber, so only the stalled one can exceed the bound. nats-server
  // stalls the publisher (and so the healthy subscriber) until the write
  // deadline instead; SPEC §4 wants nobody else slowed down, so only zmesh is
  // held to a time bound.
  std::vector<std::string> args = {"--msgs=60000", "--size=1024", "--stall=1", "--window-mb=1"};
  if (zmesh) args.push_back("--max-healthy-s=5");
  Outcome o = Run("slowconsumer", args);
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["server_closed"], true);
  EXPECT_EQ(o.result["slow_reconnected"], true) << "cut off without a fatal -ERR, it reconnects";
  EXPECT_EQ(o.result["healthy_received"], 60000);
  EXPECT_LT(o.result["slow_received"].get<int64_t>(), 60000);
}

// Two standalone servers (no mesh): publisher and subscriber both list A,B in
// that order, so both start on A; when A stops they move to B, resubscribe, and
// traffic resumes with no duplicates and nothing out of order. (Across a mesh,
// the same scenario runs with the nodes' URLs and connect_urls discovery.)
TEST_F(GoClientTest, FailoverToAnotherServerWhenItsServerStops) {
  ServerUnderTest second(server_.target());
  ASSERT_TRUE(server_.Start());
  ASSERT_TRUE(second.Start());
  const std::string urls = server_.url() + "," + second.url();
  Process p;
  Outcome o;
  ASSERT_TRUE(Launch(&p, "failover",
                     {"--pub-url=" + urls, "--sub-url=" + urls, "--no-randomize", "--duration=4",
                      "--rate=1000", "--min-reconnects=1"},
                     &o))
      << o.status;
  // natscheck prints READY once subscribed and its publisher's probe got through.
  ASSERT_TRUE(WaitFor(seconds(30), [&] {
    return p.ReadLog().find("READY sub=") != std::string::npos || !p.Running();
  }));
  ASSERT_NE(p.ReadLog().find("READY sub=" + server_.url()), std::string::npos) << p.ReadLog();
  std::this_thread::sleep_for(seconds(1));  // a second of traffic through A first
  server_.Stop();
  o = Collect(&p, seconds(120));
  ASSERT_TRUE(Passed(o));
  EXPECT_EQ(o.result["duplicates"], 0);
  EXPECT_EQ(o.result["reordered"], 0);
  EXPECT_EQ(o.result["resumed"], true);
  EXPECT_GE(o.result["reconnects"].get<int>(), 1);
  EXPECT_EQ(o.result["servers"].front(), server_.url()) << o.Describe();
  EXPECT_EQ(o.result["servers"].back(), second.url()) << o.Describe();
  EXPECT_EQ(o.result["pub_servers"].back(), second.url()) << o.Describe();
  // Messages sent while either client was between servers may be lost (at
  // most once); what is sent after both moved must arrive ("resumed").
  EXPECT_GT(o.result["received"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace zmesh::testing

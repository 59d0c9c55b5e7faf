// Logins under a flood of bad CONNECTs (issue 10 item 6): one address
// (127.0.0.2) sends 1,000 bad CONNECTs a second while a legitimate user on
// 127.0.0.1 keeps logging in on fresh connections, each a different user so
// that every login misses the credential cache and costs a real bcrypt check.
//
// Stated bound (also in docs/operations.md), from TCP connect to PONG: every
// legitimate login succeeds, 90% of them within 500 ms and all within 1.5 s
// (three times that in a sanitizer build, whose I/O threads and flood are
// several times slower and take the CPU from the hashing). Generous on
// purpose: the machine running the suite may be shared (with a bcrypt check
// of ~70 ms of CPU, an idle 2-vCPU machine stays near 150 ms). The test is
// RUN_SERIAL: it saturates the cores with bcrypt by design.
// Before the per-address bound, legitimate logins failed outright
// ('Authorization Violation') once the flood filled the queue.
// The flooding address gets -ERR 'Server Busy, Try Again' for what is over its
// --max_logins_in_flight_per_ip, counted in /varz auth_overloaded and
// /metrics zmesh_auth_overloaded_total.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/test_users.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using std::chrono::milliseconds;

constexpr int kFloodPerSecond = 1000;
constexpr auto kFloodDuration = std::chrono::seconds(8);
constexpr int kLegitUsers = 100;  // more than the logins made: each one misses the cache
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kSlowdown = 3;
#else
constexpr int kSlowdown = 1;
#endif
constexpr auto kLoginP90Bound = milliseconds(500) * kSlowdown;
constexpr auto kLoginMaxBound = milliseconds(1500) * kSlowdown;
const char kAttackerAddress[] = "127.0.0.2";
const std::string kBusy = "-ERR 'Server Busy, Try Again'";
const std::string kAuthViolation = "-ERR 'Authorization Violation'";

std::string LegitUser(int i) { return "user" + std::to_string(i); }

// A GET on 127.0.0.1:port; the body, or "" on any failure.
std::string HttpGet(uint16_t port, const std::string& path) {
  RawClient c;
  c.set_name("http");
  if (!c.Dial(port)) return "";
  c.TrySend("GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  std::string response;
  const auto deadline = Clock::now() + milliseconds(5000);
  while (Clock::now() < deadline) {
    std::optional<std::string> chunk = c.ReadExact(1, milliseconds(200));
    if (!chunk) {
      if (c.closed()) break;
      continue;
    }
    response += *chunk;
  }
  const size_t split = response.find("\r\n\r\n");
  return split == std::string::npos ? "" : response.substr(split + 4);
}

// Opens kFloodPerSecond connections a second from kAttackerAddress, each
// sending a CONNECT with a wrong password, and sorts the answers.
class Flood {
 public:
  struct Tally {
    int opened = 0, busy = 0, violation = 0, other = 0, unanswered = 0;
  };

  Tally Run(uint16_t port, std::chrono::milliseconds duration) {
    Tally t;
    struct Open {
      int fd;
      std::string got;
    };
    std::vector<Open> open;
    const auto start = Clock::now();
    const auto stop_opening = start + duration;
    const auto give_up = stop_opening + std::chrono::seconds(5);
    while (Clock::now() < give_up && (Clock::now() < stop_opening || !open.empty())) {
      const auto now = Clock::now();
      const auto elapsed = std::chrono::duration_cast<milliseconds>(std::min(now, stop_opening) - start);
      const int due = static_cast<int>(elapsed.count() * kFloodPerSecond / 1000);
      while (t.opened < due && open.size() < 4000) {
        const int fd = Dial(port);
        ++t.opened;
        if (fd < 0) {
          ++t.other;
          continue;
        }
        const std::string connect = R"(CONNECT {"user":"mallory)" + std::to_string(t.opened) +
                                    R"(","pass":"wrong","verbose":false,"pedantic":false,"protocol":1})"
                                    "\r\nPING\r\n";
        (void)::send(fd, connect.data(), connect.size(), MSG_NOSIGNAL);
        open.push_back({fd, ""});
      }
      std::vector<pollfd> polls;
      for (const Open& o : open) polls.push_back({o.fd, POLLIN, 0});
      if (::poll(polls.data(), polls.size(), 1) <= 0) continue;
      for (size_t i = 0; i < polls.size(); ++i) {
        if (polls[i].revents == 0) continue;
        char buf[4096];
        const ssize_t n = ::recv(open[i].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          open[i].got.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        Classify(open[i].got, &t);
        ::close(open[i].fd);
        open[i].fd = -1;
      }
      std::erase_if(open, [](const Open& o) { return o.fd < 0; });
    }
    for (const Open& o : open) ::close(o.fd);
    t.unanswered = static_cast<int>(open.size());
    return t;
  }

 private:
  static int Dial(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, kAttackerAddress, &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  static void Classify(const std::string& got, Tally* t) {
    if (got.find(kBusy) != std::string::npos) {
      ++t->busy;
    } else if (got.find(kAuthViolation) != std::string::npos) {
      ++t->violation;
    } else {
      ++t->other;
    }
  }
};

class LoginFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    // The same bcrypt hash (cost 10) under many names: a login of a name not
    // seen before always costs a real check.
    for (int i = 0; i < kLegitUsers; ++i) o.users.push_back(MakeUser(LegitUser(i), kAliceHash));
    o.use_ports_file = true;
    // Not what is tested here: a CONNECT that a loaded machine delays past
    // the default 2 s must still reach the password check.
    o.auth_timeout_ms = 10000;
    o.extra_args = {"--http_listen=127.0.0.1:0"};
    ASSERT_TRUE(server_.Start(o));
    http_ = server_.http_port();
    ASSERT_NE(http_, 0);
  }

  // One login on a fresh connection from 127.0.0.1: the first line after
  // CONNECT+PING ("PONG" on success).
  std::string Login(const std::string& user) {
    RawClient c;
    c.set_name(user);
    if (!c.Dial(server_.port())) return "(no connection)";
    std::optional<std::string> info = c.ReadLine(milliseconds(5000));
    if (!info || !info->starts_with("INFO ")) return "(no INFO)";
    c.TrySend(RawClient::ConnectLine(user, kAlicePassword, "{}") + "PING\r\n");
    return c.ReadLine(milliseconds(5000)).value_or("(no answer)");
  }

  ServerUnderTest server_;
  uint16_t http_ = 0;
};

TEST_F(LoginFloodTest, LegitimateLoginsSucceedWithinTheBoundWhileAnotherAddressFloods) {
  Flood::Tally flood;
  std::atomic<bool> flood_done{false};
  std::thread attacker([&] {
    flood = Flood().Run(server_.port(), kFloodDuration);
    flood_done = true;
  });
  // Let the flood fill the attacker's share first.
  std::this_thread::sleep_for(milliseconds(500));

  std::vector<int64_t> latencies_ms;
  std::vector<std::string> failures;
  const auto legit_until = Clock::now() + kFloodDuration - milliseconds(1000);  // ends before the flood
  for (int i = 0; i < kLegitUsers && Clock::now() < legit_until; ++i) {
    const auto start = Clock::now();
    const std::string answer = Login(LegitUser(i));
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
    if (answer == "PONG") {
      latencies_ms.push_back(took);
    } else {
      failures.push_back(LegitUser(i) + ": " + answer);
    }
  }
  const bool flood_still_on = !flood_done;
  attacker.join();

  EXPECT_TRUE(flood_still_on) << "the legitimate logins must all happen during the flood";
  EXPECT_TRUE(failures.empty()) << failures.size() << " legitimate logins failed, first: " << failures.front();
  ASSERT_GE(latencies_ms.size(), 10u) << "too few legitimate logins to judge";
  std::sort(latencies_ms.begin(), latencies_ms.end());
  const int64_t p50 = latencies_ms[latencies_ms.size() / 2];
  const int64_t p90 = latencies_ms[(latencies_ms.size() * 9) / 10];
  const int64_t worst = latencies_ms.back();
  std::printf("legit logins: %zu, p50 %lld ms, p90 %lld ms, max %lld ms; flood: %d opened, %d busy, "
              "%d authorization violations, %d other, %d unanswered\n",
              latencies_ms.size(), static_cast<long long>(p50), static_cast<long long>(p90),
              static_cast<long long>(worst), flood.opened, flood.busy, flood.violation, flood.other,
              flood.unanswered);
  EXPECT_LT(p90, kLoginP90Bound.count()) << "p90 login latency under the flood";
  EXPECT_LT(worst, kLoginMaxBound.count()) << "slowest login under the flood";

  // The flood really was one: near its rate, and mostly turned away as busy.
  const int planned = static_cast<int>(kFloodPerSecond * kFloodDuration.count());
  EXPECT_GE(flood.opened, planned * 9 / 10);
  EXPECT_GE(flood.busy, flood.opened / 2) << "the per-address bound did not turn the flood away";
  EXPECT_EQ(flood.other, 0) << "every bad CONNECT gets a clear -ERR";

  const json varz = json::parse(HttpGet(http_, "/varz"), nullptr, false);
  ASSERT_FALSE(varz.is_discarded());
  ASSERT_TRUE(varz.contains("auth_overloaded")) << varz.dump();
  EXPECT_GE(varz["auth_overloaded"].get<int64_t>(), flood.busy);
  EXPECT_LE(varz["auth_overloaded"].get<int64_t>(), flood.opened);
  const std::string metrics = HttpGet(http_, "/metrics");
  EXPECT_NE(metrics.find("\nzmesh_auth_overloaded_total "), std::string::npos) << metrics.substr(0, 2000);
}

}  // namespace
}  // namespace zmesh::testing

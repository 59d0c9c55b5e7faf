// Connector: non-blocking dials on an EventLoop (a completed connection, a
// refused one, an address that fails at once, the source address), and the
// retry policy DialBackoff.

#include "server/connector.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>
#include <set>
#include <thread>

#include "server/event_loop.h"

namespace zmesh::server {
namespace {

struct DialResult {
  int fd = -1;
  std::string error;
};

// A loopback socket listening on a free port (never accepting: the kernel
// completes connects into its backlog).
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackListener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class ConnectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    thread_ = std::thread([this] { loop_.Run(); });
  }
  void TearDown() override {
    loop_.RunInLoop([this] { connector_.reset(); });
    loop_.Quit();
    thread_.join();
  }

  // Dials on the loop thread; the result once `done` ran (or failed at once).
  DialResult Dial(const std::string& source, const std::string& target) {
    std::promise<DialResult> result;
    loop_.RunInLoop([&] {
      if (!connector_) connector_ = std::make_unique<Connector>(&loop_, source, 2000);
      std::string error;
      if (!connector_->Dial(target, [&](int fd, const std::string& e) { result.set_value({fd, e}); }, &error)) {
        result.set_value({-2, error});  // failed at once
      }
    });
    auto f = result.get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return f.get();
  }

  EventLoop loop_;
  std::thread thread_;
  std::unique_ptr<Connector> connector_;  // loop thread
};

TEST_F(ConnectorTest, ConnectsAndHandsOverTheSocket) {
  LoopbackListener listener;
  DialResult r = Dial("", "127.0.0.1:" + std::to_string(listener.port()));
  ASSERT_GE(r.fd, 0) << r.error;
  EXPECT_TRUE(r.error.empty());
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  EXPECT_EQ(getpeername(r.fd, reinterpret_cast<sockaddr*>(&peer), &len), 0);
  EXPECT_EQ(ntohs(peer.sin_port), listener.port());
  ::close(r.fd);
}

TEST_F(ConnectorTest, LeavesFromTheSourceAddress) {
  LoopbackListener listener;
  DialResult r = Dial("127.0.0.1", "127.0.0.1:" + std::to_string(listener.port()));
  ASSERT_GE(r.fd, 0) << r.error;
  sockaddr_in self{};
  socklen_t len = sizeof self;
  ASSERT_EQ(getsockname(r.fd, reinterpret_cast<sockaddr*>(&self), &len), 0);
  EXPECT_EQ(ntohl(self.sin_addr.s_addr), INADDR_LOOPBACK);
  EXPECT_NE(self.sin_port, 0);  // the port was picked at connect() time
  ::close(r.fd);
}

TEST_F(ConnectorTest, RefusedConnectionReportsAnError) {
  int port;
  {
    LoopbackListener gone;  // a port that was free a moment ago and is closed now
    port = gone.port();
  }
  DialResult r = Dial("", "127.0.0.1:" + std::to_string(port));
  EXPECT_LT(r.fd, 0);
  EXPECT_FALSE(r.error.empty());
}

TEST_F(ConnectorTest, BadAddressFailsAtOnce) {
  DialResult r = Dial("", "no port here");
  EXPECT_EQ(r.fd, -2);
  EXPECT_NE(r.error.find("bad peer address"), std::string::npos) << r.error;
}

TEST(DialBackoffTest, DoublesWithinBoundsWithAtMostAQuarterOfJitter) {
  DialBackoff b;
  int64_t expected = DialBackoff::kMinMs;
  for (int i = 0; i < 12; ++i) {
    const int64_t delay = b.Failed();
    EXPECT_EQ(b.base_ms(), expected);
    EXPECT_GE(delay, expected);
    EXPECT_LE(delay, expected + expected / 4);
    expected = std::min<int64_t>(expected * 2, DialBackoff::kMaxMs);
  }
  EXPECT_EQ(b.base_ms(), DialBackoff::kMaxMs);
  b.Reset();
  b.Failed();
  EXPECT_EQ(b.base_ms(), DialBackoff::kMinMs);
}

TEST(DialBackoffTest, JitterSpreadsRetries) {
  DialBackoff a;
  for (int i = 0; i < 10; ++i) a.Failed();  // at the cap: delays in [5000, 6250]
  std::set<int64_t> delays;
  for (int i = 0; i < 50; ++i) delays.insert(a.Failed());
  EXPECT_GT(delays.size(), 10u);  // 50 draws from 1,251 values
}

}  // namespace
}  // namespace zmesh::server

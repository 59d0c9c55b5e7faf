// The node selection and failover policy (client/server_pool.h), with a fixed
// seed and explicit time: random choice, never straight back to the node that
// just failed, exponential backoff with bounded jitter, lame duck hold-off.

#include "client/server_pool.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace zmesh::client {
namespace {

using std::chrono::milliseconds;
using Clock = ServerPool::Clock;

ServerUrl Url(const std::string& s) { return *ParseServerUrl(s); }

std::vector<ServerUrl> Urls(std::initializer_list<const char*> list) {
  std::vector<ServerUrl> out;
  for (const char* s : list) out.push_back(Url(s));
  return out;
}

ServerPool::Policy TestPolicy() {
  ServerPool::Policy p;
  p.backoff_initial = milliseconds(100);
  p.backoff_max = milliseconds(1000);
  p.jitter = 0.5;
  p.stable_after = milliseconds(1000);
  return p;
}

TEST(ServerPoolTest, EmptyPoolHasNoPick) {
  ServerPool pool(TestPolicy(), 1);
  EXPECT_FALSE(pool.Next(Clock::now()).has_value());
}

TEST(ServerPoolTest, PicksUniformlyAtRandom) {
  ServerPool pool(TestPolicy(), 42);
  pool.Update(ServerPool::kStatic, Urls({"a:1", "b:1", "c:1"}));
  std::map<std::string, int> counts;
  const auto now = Clock::now();
  for (int i = 0; i < 3000; ++i) counts[pool.Next(now)->server.key()]++;
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [key, n] : counts) {
    EXPECT_GT(n, 850) << key;  // 1000 expected each
    EXPECT_LT(n, 1150) << key;
  }
}

TEST(ServerPoolTest, NeverStraightBackToTheNodeThatFailed) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    ServerPool pool(TestPolicy(), seed);
    pool.Update(ServerPool::kStatic, Urls({"a:1", "b:1", "c:1"}));
    auto now = Clock::now();
    pool.OnConnected("a:1", now);
    now += std::chrono::seconds(10);
    pool.OnConnectionLost("a:1", now);
    auto pick = pool.Next(now);
    ASSERT_TRUE(pick);
    EXPECT_NE(pick->server.key(), "a:1");
    EXPECT_EQ(pick->delay, Clock::duration(0)) << "a healthy node is tried at once";
    // Even much later, the next pick is not the node that failed last.
    now += std::chrono::seconds(60);
    EXPECT_NE(pool.Next(now)->server.key(), "a:1");
  }
}

TEST(ServerPoolTest, TwoNodesAlternateWhenBothFail) {
  ServerPool pool(TestPolicy(), 7);
  pool.Update(ServerPool::kStatic, Urls({"a:1", "b:1"}));
  auto now = Clock::now();
  std::string last = "a:1";
  pool.OnAttemptFailed(last, now);
  for (int i = 0; i < 20; ++i) {
    auto pick = pool.Next(now);
    ASSERT_TRUE(pick);
    EXPECT_NE(pick->server.key(), last);
    now += pick->delay;
    last = pick->server.key();
    pool.OnAttemptFailed(last, now);
  }
}

TEST(ServerPoolTest, SingleNodeIsRetriedAfterBackoff) {
  ServerPool pool(TestPolicy(), 3);
  pool.Update(ServerPool::kStatic, Urls({"a:1"}));
  auto now = Clock::now();
  pool.OnConnected("a:1", now);
  now += std::chrono::seconds(5);
  pool.OnConnectionLost("a:1", now);
  auto pick = pool.Next(now);
  ASSERT_TRUE(pick);
  EXPECT_EQ(pick->server.key(), "a:1");
  EXPECT_GT(pick->delay, milliseconds(49));   // 100 ms * (1 - 0.5 * U)
  EXPECT_LE(pick->delay, milliseconds(100));
}

TEST(ServerPoolTest, BackoffDoublesUpToTheMaximumWithBoundedJitter) {
  ServerPool pool(TestPolicy(), 11);
  EXPECT_EQ(pool.BaseBackoff(0), Clock::duration(0));
  EXPECT_EQ(pool.BaseBackoff(1), milliseconds(100));
  EXPECT_EQ(pool.BaseBackoff(2), milliseconds(200));
  EXPECT_EQ(pool.BaseBackoff(3), milliseconds(400));
  EXPECT_EQ(pool.BaseBackoff(4), milliseconds(800));
  EXPECT_EQ(pool.BaseBackoff(5), milliseconds(1000));
  EXPECT_EQ(pool.BaseBackoff(1000), milliseconds(1000));

  pool.Update(ServerPool::kStatic, Urls({"a:1"}));
  auto now = Clock::now();
  std::set<Clock::duration::rep> delays;
  for (uint32_t k = 1; k <= 8; ++k) {
    pool.OnAttemptFailed("a:1", now);
    EXPECT_EQ(pool.failures("a:1"), k);
    auto pick = pool.Next(now);
    const auto base = pool.BaseBackoff(k);
    EXPECT_GT(pick->delay, base / 2 - milliseconds(1)) << k;
    EXPECT_LE(pick->delay, base) << k;
    delays.insert(pick->delay.count());
    now += pick->delay;
  }
  EXPECT_GT(delays.size(), 4u) << "jitter makes the delays differ";
}

TEST(ServerPoolTest, WhenAllAreBackingOffTheEarliestIsChosen) {
  ServerPool::Policy p = TestPolicy();
  p.jitter = 0;
  ServerPool pool(p, 5);
  pool.Update(ServerPool::kStatic, Urls({"a:1", "b:1", "c:1"}));
  auto now = Clock::now();
  pool.OnAttemptFailed("a:1", now);  // a: 100 ms
  pool.OnAttemptFailed("b:1", now);
  pool.OnAttemptFailed("b:1", now);  // b: 200 ms
  pool.OnAttemptFailed("c:1", now);  // c: 100 ms, failed last -> excluded
  auto pick = pool.Next(now);
  EXPECT_EQ(pick->server.key(), "a:1");
  EXPECT_EQ(pick->delay, milliseconds(100));
}

TEST(ServerPoolTest, ShortLivedConnectionsKeepBackingOff) {
  ServerPool::Policy p = TestPolicy();
  p.jitter = 0;
  ServerPool pool(p, 9);
  pool.Update(ServerPool::kStatic, Urls({"a:1"}));
  auto now = Clock::now();
  for (uint32_t k = 1; k <= 4; ++k) {
    pool.OnConnected("a:1", now);
    now += milliseconds(10);  // accepted and dropped at once
    pool.OnConnectionLost("a:1", now);
    EXPECT_EQ(pool.failures("a:1"), k);
  }
  pool.OnConnected("a:1", now);
  now += std::chrono::seconds(2);  // stable
  pool.OnConnectionLost("a:1", now);
  EXPECT_EQ(pool.failures("a:1"), 1u);
}

TEST(ServerPoolTest, LameDuckNodeIsHeldOut) {
  ServerPool pool(TestPolicy(), 13);
  pool.Update(ServerPool::kStatic, Urls({"a:1", "b:1"}));
  auto now = Clock::now();
  pool.OnConnected("a:1", now);
  pool.Leave("a:1", now, std::chrono::seconds(30));
  pool.OnAttemptFailed("b:1", now);  // b fails too: a is still held out
  auto pick = pool.Next(now);
  EXPECT_EQ(pick->server.key(), "b:1");
  EXPECT_GT(pick->delay, Clock::duration(0));
}

// A rolling restart: the node that left is listed again by the mesh once it
// is back, and then it is a fine place to go (a planned move off the next
// leaving node needs somewhere to go).
TEST(ServerPoolTest, LameDuckNodeListedAgainIsEligibleAtOnce) {
  ServerPool pool(TestPolicy(), 13);
  pool.Update(ServerPool::kStatic, Urls({"a:1"}));
  pool.Update(ServerPool::kAnnounced, Urls({"a:1", "b:1"}));
  auto now = Clock::now();
  pool.OnConnected("a:1", now);
  pool.Leave("a:1", now, std::chrono::seconds(30));
  pool.Update(ServerPool::kAnnounced, Urls({"a:1", "b:1"}));  // not gone from the list yet
  pool.OnAttemptFailed("b:1", now);
  EXPECT_GT(pool.Next(now)->delay, Clock::duration(0)) << "still held: the mesh never dropped it";
  pool.Update(ServerPool::kAnnounced, Urls({"b:1"}));  // its znode is gone
  pool.Update(ServerPool::kAnnounced, Urls({"a:1", "b:1"}));  // restarted
  auto pick = pool.Next(now);
  EXPECT_EQ(pick->server.key(), "a:1");
  EXPECT_EQ(pick->delay, Clock::duration(0));
}

TEST(ServerPoolTest, SourcesMergeAndKeepHistory) {
  ServerPool pool(TestPolicy(), 17);
  EXPECT_TRUE(pool.Update(ServerPool::kStatic, Urls({"nats://a:1"})));
  EXPECT_TRUE(pool.Update(ServerPool::kDiscovered, Urls({"a:1", "b:1"})));
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_FALSE(pool.Update(ServerPool::kAnnounced, Urls({"b:1"})));
  pool.OnAttemptFailed("b:1", Clock::now());
  // ZooKeeper no longer lists b, but INFO still does: b stays, with its history.
  EXPECT_FALSE(pool.Update(ServerPool::kDiscovered, Urls({"a:1"})));
  EXPECT_EQ(pool.failures("b:1"), 1u);
  // Nobody lists b any more: forgotten.
  EXPECT_TRUE(pool.Update(ServerPool::kAnnounced, {}));
  EXPECT_EQ(pool.size(), 1u);
  // The static entry survives a discovery list that drops it.
  pool.Update(ServerPool::kDiscovered, {});
  EXPECT_EQ(pool.size(), 1u);
}

TEST(ServerPoolTest, CurrentNodeSurvivesRemovalUntilItsConnectionEnds) {
  ServerPool pool(TestPolicy(), 19);
  pool.Update(ServerPool::kDiscovered, Urls({"a:1", "b:1"}));
  auto now = Clock::now();
  pool.OnConnected("a:1", now);
  pool.Update(ServerPool::kDiscovered, Urls({"b:1"}));
  EXPECT_EQ(pool.size(), 2u);
  pool.OnConnectionLost("a:1", now);
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_EQ(pool.Next(now)->server.key(), "b:1");
}

TEST(ServerUrlTest, ParsesTheUsualSpellings) {
  auto u = ParseServerUrl("nats://bob:s3cret@10.0.0.1:4333");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "10.0.0.1");
  EXPECT_EQ(u->port, 4333);
  EXPECT_EQ(u->user, "bob");
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_EQ(u->key(), "10.0.0.1:4333");
  EXPECT_EQ(u->ToString(), "nats://10.0.0.1:4333");
  EXPECT_EQ(ParseServerUrl("localhost")->port, 4222);
  EXPECT_TRUE(ParseServerUrl("tls://h:1")->tls);
  EXPECT_EQ(ParseServerUrl("[::1]:4222")->host, "::1");
  EXPECT_EQ(ParseServerUrl("[::1]:4222")->key(), "[::1]:4222");
  std::string error;
  EXPECT_FALSE(ParseServerUrl("http://h:1", &error));
  EXPECT_FALSE(ParseServerUrl("h:0"));
  EXPECT_FALSE(ParseServerUrl("h:99999"));
  EXPECT_FALSE(ParseServerUrl(""));
  EXPECT_FALSE(ParseServerUrl("h:12x"));
}

}  // namespace
}  // namespace zmesh::client

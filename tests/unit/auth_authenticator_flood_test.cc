// The Authenticator under a login flood (per-source bound, round-robin
// between sources) and racing a reload (verdicts are the new table's).
// Deterministic: Options::testing_after_check holds a worker at a known point.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "auth/authenticator.h"
#include "auth/password_hash.h"

namespace zmesh::auth {
namespace {

constexpr auto kResultTimeout = std::chrono::seconds(30);

std::string Hash(std::string_view password) {
  absl::StatusOr<std::string> hash = HashPassword(password, 4);
  if (!hash.ok()) ADD_FAILURE() << hash.status();
  return hash.value_or("");
}

// Holds the first worker that reaches testing_after_check until Release().
class Gate {
 public:
  std::function<void()> Hook() {
    return [this] {
      if (passed_.fetch_add(1) != 0) return;
      entered_.set_value();
      released_.wait();
    };
  }
  bool WaitEntered() { return entered_future_.wait_for(kResultTimeout) == std::future_status::ready; }
  void Release() { release_.set_value(); }

 private:
  std::atomic<int> passed_{0};
  std::promise<void> entered_;
  std::future<void> entered_future_ = entered_.get_future();
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
};

// Holds the first two checks to reach testing_after_check, each until its
// own release.
class TwoGates {
 public:
  std::function<void()> Hook() {
    return [this] {
      const int pass = passed_.fetch_add(1);
      if (pass > 1) return;
      entered_[pass].set_value();
      released_[pass].wait();
    };
  }
  bool WaitEntered(int i) { return entered_future_[i].wait_for(kResultTimeout) == std::future_status::ready; }
  void Release(int i) { release_[i].set_value(); }

 private:
  std::atomic<int> passed_{0};
  std::promise<void> entered_[2];
  std::future<void> entered_future_[2] = {entered_[0].get_future(), entered_[1].get_future()};
  std::promise<void> release_[2];
  std::shared_future<void> released_[2] = {release_[0].get_future().share(), release_[1].get_future().share()};
};

// Results in the order the workers delivered them.
class Results {
 public:
  std::function<void(AuthResult)> Add(std::string tag) {
    return [this, tag](AuthResult r) {
      std::lock_guard lock(mu_);
      order_.push_back(tag);
      results_.push_back(std::move(r));
    };
  }
  bool WaitCount(size_t n) {
    auto deadline = std::chrono::steady_clock::now() + kResultTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mu_);
        if (results_.size() >= n) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
  std::vector<std::string> order() {
    std::lock_guard lock(mu_);
    return order_;
  }
  AuthResult Of(const std::string& tag) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < order_.size(); ++i) {
      if (order_[i] == tag) return results_[i];
    }
    ADD_FAILURE() << "no result for " << tag;
    return AuthResult{};
  }

 private:
  std::mutex mu_;
  std::vector<std::string> order_;
  std::vector<AuthResult> results_;
};

class AuthenticatorFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/auth_flood_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/users.txt";
    alice_hash_ = Hash("alice-pw");
    bob_hash_ = Hash("bob-pw");
    WriteUsers("alice:" + alice_hash_ + " pub=orders.>\nbob:" + bob_hash_ + "\n");
  }
  void TearDown() override {
    auth_.reset();
    std::filesystem::remove_all(dir_);
  }
  void WriteUsers(const std::string& contents) { std::ofstream(path_, std::ios::trunc) << contents; }

  // One worker, held by `gate_` after its first check.
  void Start(size_t per_source, size_t cache_capacity = 0) {
    Authenticator::Options options;
    options.users_file = path_;
    options.workers = 1;
    options.max_in_flight_per_source = per_source;
    options.cache_capacity = cache_capacity;
    options.testing_after_check = gate_.Hook();
    absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::Create(options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
  }

  std::string dir_, path_, alice_hash_, bob_hash_;
  Gate gate_;
  Results results_;
  std::unique_ptr<Authenticator> auth_;
};

TEST_F(AuthenticatorFloodTest, SourceOverItsBoundIsRefusedWithoutTakingOthersSlots) {
  Start(/*per_source=*/2);
  auth_->Verify("10.0.0.1", "alice", "wrong", results_.Add("a0"));
  ASSERT_TRUE(gate_.WaitEntered());  // a0 is being checked: in flight
  auth_->Verify("10.0.0.1", "alice", "wrong", results_.Add("a1"));
  bool refused_at_once = false;
  auth_->Verify("10.0.0.1", "alice", "alice-pw", [&](AuthResult r) {
    refused_at_once = true;
    EXPECT_EQ(r.status, AuthStatus::kOverloaded);
    EXPECT_TRUE(IsRetryable(r.status));
    EXPECT_EQ(r.permissions, nullptr);
  });
  EXPECT_TRUE(refused_at_once) << "the source's third login must be refused before Verify returns";
  // Other addresses are not affected by 10.0.0.1's bound.
  auth_->Verify("10.0.0.2", "bob", "bob-pw", results_.Add("b0"));
  auth_->Verify("10.0.0.3", "alice", "alice-pw", results_.Add("c0"));
  AuthStats stats = auth_->stats();
  EXPECT_EQ(stats.overloaded, 1u);
  EXPECT_EQ(stats.overloaded_source, 1u);

  gate_.Release();
  ASSERT_TRUE(results_.WaitCount(4));
  EXPECT_TRUE(results_.Of("b0").ok());
  EXPECT_TRUE(results_.Of("c0").ok());
  EXPECT_EQ(results_.Of("a1").status, AuthStatus::kBadCredentials);
  // Once its checks are done, the source may log in again.
  auth_->Verify("10.0.0.1", "alice", "alice-pw", results_.Add("a2"));
  ASSERT_TRUE(results_.WaitCount(5));
  EXPECT_TRUE(results_.Of("a2").ok());
}

TEST_F(AuthenticatorFloodTest, QuietSourceIsServedBeforeAFloodingSourcesBacklog) {
  Start(/*per_source=*/16);
  auth_->Verify("10.0.0.66", "mallory", "x", results_.Add("flood0"));
  ASSERT_TRUE(gate_.WaitEntered());
  for (int i = 1; i <= 10; ++i) auth_->Verify("10.0.0.66", "mallory", "x", results_.Add("flood" + std::to_string(i)));
  auth_->Verify("10.0.0.1", "bob", "bob-pw", results_.Add("legit"));
  gate_.Release();
  ASSERT_TRUE(results_.WaitCount(12));
  std::vector<std::string> order = results_.order();
  auto legit = std::find(order.begin(), order.end(), "legit");
  ASSERT_NE(legit, order.end());
  // flood0 (held) and at most one more flood check go first; FIFO would put
  // the legitimate login last.
  EXPECT_LE(legit - order.begin(), 2) << "legit login delivered at position " << (legit - order.begin());
  EXPECT_TRUE(results_.Of("legit").ok());
}

// Both workers hash the flooding source's checks; the next free worker takes
// the quiet source's check, not the flood's next one.
TEST_F(AuthenticatorFloodTest, FreeWorkerGoesToASourceWithNothingRunning) {
  TwoGates gates;
  Authenticator::Options options;
  options.users_file = path_;
  options.workers = 2;
  options.cache_capacity = 0;
  options.testing_after_check = gates.Hook();
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::Create(options);
  ASSERT_TRUE(auth.ok()) << auth.status();
  auth_ = *std::move(auth);

  auth_->Verify("10.0.0.66", "mallory", "x", results_.Add("flood0"));
  ASSERT_TRUE(gates.WaitEntered(0));
  auth_->Verify("10.0.0.66", "mallory", "x", results_.Add("flood1"));
  ASSERT_TRUE(gates.WaitEntered(1));
  auth_->Verify("10.0.0.66", "mallory", "x", results_.Add("flood2"));
  auth_->Verify("10.0.0.66", "mallory", "x", results_.Add("flood3"));
  auth_->Verify("10.0.0.1", "bob", "bob-pw", results_.Add("legit"));
  gates.Release(0);
  ASSERT_TRUE(results_.WaitCount(2));
  std::vector<std::string> order = results_.order();
  EXPECT_EQ(order[0], "flood0");
  EXPECT_EQ(order[1], "legit") << "the flood got a second worker while a quiet source waited";
  gates.Release(1);
  ASSERT_TRUE(results_.WaitCount(5));
  EXPECT_TRUE(results_.Of("legit").ok());
  auth_.reset();  // before `gates`, which its hook uses
}

TEST_F(AuthenticatorFloodTest, UserRemovedByAReloadDuringTheCheckIsRefused) {
  Start(/*per_source=*/16);
  auth_->Verify("10.0.0.1", "alice", "alice-pw", results_.Add("alice"));
  ASSERT_TRUE(gate_.WaitEntered());  // alice verified against the old table
  WriteUsers("bob:" + bob_hash_ + "\n");
  ASSERT_TRUE(auth_->Reload().ok());
  gate_.Release();
  ASSERT_TRUE(results_.WaitCount(1));
  AuthResult r = results_.Of("alice");
  EXPECT_EQ(r.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(r.permissions, nullptr);
  EXPECT_EQ(r.table, auth_->table());
  EXPECT_GE(auth_->stats().rechecked, 1u);
}

TEST_F(AuthenticatorFloodTest, PasswordChangedByAReloadDuringTheCheckIsRefused) {
  Start(/*per_source=*/16);
  auth_->Verify("10.0.0.1", "alice", "alice-pw", results_.Add("old-pw"));
  ASSERT_TRUE(gate_.WaitEntered());
  // bob's line is the same hash with new permissions.
  WriteUsers("alice:" + Hash("new-pw") + "\nbob:" + bob_hash_ + " pub=only.this\n");
  ASSERT_TRUE(auth_->Reload().ok());
  gate_.Release();
  ASSERT_TRUE(results_.WaitCount(1));
  EXPECT_EQ(results_.Of("old-pw").status, AuthStatus::kBadCredentials);

  auth_->Verify("10.0.0.1", "alice", "new-pw", results_.Add("new-pw"));
  auth_->Verify("10.0.0.1", "bob", "bob-pw", results_.Add("bob"));
  ASSERT_TRUE(results_.WaitCount(3));
  EXPECT_TRUE(results_.Of("new-pw").ok());
  AuthResult bob = results_.Of("bob");
  ASSERT_TRUE(bob.ok());
  EXPECT_FALSE(bob.permissions->CanPublish("other"));
}

// A cache hit queued before a reload must not be delivered after it with the
// old table's answer.
TEST_F(AuthenticatorFloodTest, CacheHitQueuedBeforeAReloadIsCheckedAgainstTheNewTable) {
  Start(/*per_source=*/16, /*cache_capacity=*/64);
  auth_->Verify("10.0.0.1", "bob", "bob-pw", results_.Add("bob"));  // held by the gate
  ASSERT_TRUE(gate_.WaitEntered());
  gate_.Release();
  ASSERT_TRUE(results_.WaitCount(1));
  ASSERT_TRUE(results_.Of("bob").ok());

  // The gate passes everyone now; hold the worker in a callback instead.
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  auth_->Verify("10.0.0.2", "alice", "wrong", [&entered, released](AuthResult) {
    entered.set_value();
    released.wait();
  });
  ASSERT_EQ(entered.get_future().wait_for(kResultTimeout), std::future_status::ready);
  auth_->Verify("10.0.0.1", "bob", "bob-pw", results_.Add("bob-cached"));  // a cache hit, queued
  WriteUsers("alice:" + alice_hash_ + "\n");
  ASSERT_TRUE(auth_->Reload().ok());
  release.set_value();
  ASSERT_TRUE(results_.WaitCount(2));
  AuthResult cached = results_.Of("bob-cached");
  EXPECT_EQ(cached.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(cached.permissions, nullptr);
}

// Confirm() covers the last window: between the worker and the connection's
// loop acting on the verdict.
TEST_F(AuthenticatorFloodTest, ConfirmJudgesAVerdictOvertakenByAReloadByTheNewTable) {
  Start(/*per_source=*/16);
  gate_.Release();  // nothing to hold here
  auto check = [&](const std::string& user, const std::string& password) {
    std::promise<AuthResult> p;
    auth_->Verify("10.0.0.1", user, password, [&p](AuthResult r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  };
  AuthResult alice = check("alice", "alice-pw");
  AuthResult bob = check("bob", "bob-pw");
  AuthResult carol = check("carol", "carol-pw");
  ASSERT_TRUE(alice.ok());
  ASSERT_TRUE(bob.ok());
  ASSERT_EQ(carol.status, AuthStatus::kBadCredentials);
  EXPECT_TRUE(auth_->Confirm(alice).ok());  // no reload: unchanged
  EXPECT_EQ(auth_->Confirm(alice).permissions, alice.permissions);

  // alice is gone, bob has new permissions under the same hash, carol is new.
  WriteUsers("bob:" + bob_hash_ + " pub=only.this\ncarol:" + Hash("carol-pw") + "\n");
  ASSERT_TRUE(auth_->Reload().ok());
  AuthResult alice_now = auth_->Confirm(alice);
  EXPECT_EQ(alice_now.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(alice_now.permissions, nullptr);
  AuthResult bob_now = auth_->Confirm(bob);
  ASSERT_TRUE(bob_now.ok());
  EXPECT_FALSE(bob_now.permissions->CanPublish("other"));
  EXPECT_EQ(auth_->Confirm(carol).status, AuthStatus::kStale);  // ask again, don't refuse

  // bob's password changes: his earlier verdict cannot stand.
  WriteUsers("bob:" + Hash("bob-pw2") + "\n");
  ASSERT_TRUE(auth_->Reload().ok());
  AuthResult bob_changed = auth_->Confirm(bob);
  EXPECT_EQ(bob_changed.status, AuthStatus::kStale);
  EXPECT_FALSE(bob_changed.ok());
  EXPECT_EQ(bob_changed.permissions, nullptr);
}

}  // namespace
}  // namespace zmesh::auth

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "auth/authenticator.h"
#include "auth/password_hash.h"

namespace zmesh::auth {
namespace {

using std::chrono::seconds;

constexpr auto kResultTimeout = seconds(30);
constexpr char kSource[] = "192.0.2.1";

struct Outcome {
  AuthResult result;
  std::thread::id thread;
};

Authenticator::Options MakeOptions(int workers, size_t max_queue, size_t cache_capacity) {
  Authenticator::Options options;
  options.workers = workers;
  options.max_queue = max_queue;
  options.cache_capacity = cache_capacity;
  return options;
}

std::string Hash(std::string_view password) {
  absl::StatusOr<std::string> hash = HashPassword(password, 4);
  if (!hash.ok()) ADD_FAILURE() << hash.status();
  return hash.value_or("");
}

// Polls instead of sleeping a guessed amount.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/auth_authenticator_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/users.txt";
    alice_hash_ = Hash("alice-pw");
    bob_hash_ = Hash("bob-pw");
    WriteUsers("alice:" + alice_hash_ + " pub=orders.> sub=_INBOX.>\n" + "bob:" + bob_hash_ + "\n");
  }
  void TearDown() override {
    auth_.reset();
    std::filesystem::remove_all(dir_);
  }

  void WriteUsers(const std::string& contents) {
    std::ofstream(path_, std::ios::trunc) << contents;
  }

  void Start(Authenticator::Options options = Authenticator::Options()) {
    options.users_file = path_;
    absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::Create(options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
  }

  // Verifies and waits for the callback.
  Outcome Check(const std::string& user, const std::string& password) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    std::future<Outcome> future = promise->get_future();
    auth_->Verify(kSource, user, password, [promise](AuthResult result) {
      promise->set_value(Outcome{std::move(result), std::this_thread::get_id()});
    });
    EXPECT_EQ(future.wait_for(kResultTimeout), std::future_status::ready);
    return future.get();
  }

  std::string dir_;
  std::string path_;
  std::string alice_hash_, bob_hash_;
  std::unique_ptr<Authenticator> auth_;
};

TEST_F(AuthenticatorTest, GoodPasswordOnAWorkerThreadWithPermissions) {
  Start();
  Outcome outcome = Check("alice", "alice-pw");
  EXPECT_TRUE(outcome.result.ok());
  EXPECT_EQ(outcome.result.user, "alice");
  EXPECT_FALSE(outcome.result.from_cache);
  EXPECT_NE(outcome.thread, std::this_thread::get_id());
  ASSERT_NE(outcome.result.permissions, nullptr);
  EXPECT_TRUE(outcome.result.permissions->CanPublish("orders.new"));
  EXPECT_FALSE(outcome.result.permissions->CanPublish("payments.new"));
  EXPECT_EQ(auth_->stats().ok, 1u);

  Outcome bob = Check("bob", "bob-pw");
  EXPECT_TRUE(bob.result.ok());
  EXPECT_TRUE(bob.result.permissions->unrestricted());
}

TEST_F(AuthenticatorTest, WrongPasswordAndUnknownUserFail) {
  Start();
  Outcome wrong = Check("alice", "bob-pw");
  EXPECT_EQ(wrong.result.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(wrong.result.permissions, nullptr);
  EXPECT_NE(wrong.thread, std::this_thread::get_id());

  Outcome unknown = Check("mallory", "alice-pw");
  EXPECT_EQ(unknown.result.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(unknown.result.permissions, nullptr);
  EXPECT_NE(unknown.thread, std::this_thread::get_id());

  EXPECT_EQ(Check("alice", "").result.status, AuthStatus::kBadCredentials);
  AuthStats stats = auth_->stats();
  EXPECT_EQ(stats.ok, 0u);
  EXPECT_EQ(stats.bad_password, 2u);
  EXPECT_EQ(stats.unknown_user, 1u);
}

TEST_F(AuthenticatorTest, CacheServesRepeatsButNeverWrongPasswords) {
  Start();
  EXPECT_FALSE(Check("alice", "alice-pw").result.from_cache);
  Outcome again = Check("alice", "alice-pw");
  EXPECT_TRUE(again.result.ok());
  EXPECT_TRUE(again.result.from_cache);
  EXPECT_NE(again.thread, std::this_thread::get_id());
  ASSERT_NE(again.result.permissions, nullptr);
  EXPECT_FALSE(again.result.permissions->CanPublish("payments.new"));

  EXPECT_EQ(Check("alice", "alice-pw2").result.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(Check("bob", "alice-pw").result.status, AuthStatus::kBadCredentials);
  EXPECT_EQ(auth_->stats().cache_hits, 1u);
}

TEST_F(AuthenticatorTest, CacheDisabled) {
  Start(MakeOptions(2, 1024, 0));
  EXPECT_TRUE(Check("alice", "alice-pw").result.ok());
  Outcome again = Check("alice", "alice-pw");
  EXPECT_TRUE(again.result.ok());
  EXPECT_FALSE(again.result.from_cache);
}

TEST_F(AuthenticatorTest, ReloadSwapsTableAndEmptiesCache) {
  Start();
  ASSERT_TRUE(Check("alice", "alice-pw").result.ok());
  ASSERT_TRUE(Check("alice", "alice-pw").result.from_cache);

  WriteUsers("alice:" + Hash("new-pw") + "\ncarol:" + Hash("carol-pw") + "\n");
  ASSERT_TRUE(auth_->Reload().ok());
  EXPECT_EQ(auth_->table()->size(), 2u);
  // Without invalidation the old password would still be served from the cache.
  EXPECT_EQ(Check("alice", "alice-pw").result.status, AuthStatus::kBadCredentials);
  Outcome fresh = Check("alice", "new-pw");
  EXPECT_TRUE(fresh.result.ok());
  EXPECT_FALSE(fresh.result.from_cache);
  EXPECT_TRUE(fresh.result.permissions->unrestricted());  // the new line has no lists
  EXPECT_TRUE(Check("carol", "carol-pw").result.ok());
  EXPECT_EQ(Check("bob", "bob-pw").result.status, AuthStatus::kBadCredentials);
}

TEST_F(AuthenticatorTest, ReloadOfSameFileStillEmptiesCache) {
  Start();
  ASSERT_TRUE(Check("bob", "bob-pw").result.ok());
  ASSERT_TRUE(Check("bob", "bob-pw").result.from_cache);
  ASSERT_TRUE(auth_->Reload().ok());
  Outcome after = Check("bob", "bob-pw");
  EXPECT_TRUE(after.result.ok());
  EXPECT_FALSE(after.result.from_cache);
}

TEST_F(AuthenticatorTest, FailedReloadKeepsOldTable) {
  Start();
  std::shared_ptr<const UsersTable> before = auth_->table();
  WriteUsers("carol:" + Hash("carol-pw") + "\ncarol:" + Hash("x") + "\n");
  absl::Status status = auth_->Reload();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()),
            path_ + ":2: duplicate user \"carol\" (first defined on line 1)");
  EXPECT_EQ(auth_->table(), before);
  EXPECT_TRUE(Check("alice", "alice-pw").result.ok());
  EXPECT_EQ(Check("carol", "carol-pw").result.status, AuthStatus::kBadCredentials);

  std::filesystem::remove(path_);
  EXPECT_EQ(auth_->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Check("bob", "bob-pw").result.ok());
}

TEST_F(AuthenticatorTest, CreateFailsOnBadFile) {
  WriteUsers("alice:plaintext\n");
  Authenticator::Options options;
  options.users_file = path_;
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::Create(options);
  ASSERT_FALSE(auth.ok());
  EXPECT_TRUE(std::string(auth.status().message()).starts_with(path_ + ":1: bad password hash"))
      << auth.status();
  options.users_file = dir_ + "/missing";
  EXPECT_EQ(Authenticator::Create(options).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Authenticator::Create(Authenticator::Options()).ok());
}

// Unknown users must not answer faster than known ones, or names could be
// probed. Minimums over a few runs: noise only ever adds time.
TEST_F(AuthenticatorTest, UnknownUserCostsASlowHashToo) {
  absl::StatusOr<std::string> slow = HashPassword("alice-pw", 8);
  ASSERT_TRUE(slow.ok());
  WriteUsers("alice:" + *slow + "\n");
  Start(MakeOptions(1, 1024, 0));
  auto min_time = [&](const std::string& user) {
    auto best = std::chrono::steady_clock::duration::max();
    for (int i = 0; i < 3; ++i) {
      auto start = std::chrono::steady_clock::now();
      EXPECT_EQ(Check(user, "wrong").result.status, AuthStatus::kBadCredentials);
      best = std::min(best, std::chrono::steady_clock::now() - start);
    }
    return best;
  };
  auto known = min_time("alice");
  auto unknown = min_time("mallory");
  using std::chrono::microseconds;
  EXPECT_GE(unknown * 2, known) << "unknown user "
                                << std::chrono::duration_cast<microseconds>(unknown).count()
                                << " us, known user "
                                << std::chrono::duration_cast<microseconds>(known).count() << " us";
}

// The one worker is held inside a callback; the queue then fills up.
TEST_F(AuthenticatorTest, FullQueueFailsAtOnceOnTheCallingThread) {
  Start(MakeOptions(1, 2, 4096));
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  auth_->Verify(kSource, "alice", "alice-pw", [&entered, released](AuthResult) {
    entered.set_value();
    released.wait();
  });
  ASSERT_EQ(entered.get_future().wait_for(kResultTimeout), std::future_status::ready);

  std::atomic<int> queued_done{0};
  for (int i = 0; i < 2; ++i) {
    auth_->Verify(kSource, "bob", "bob-pw", [&](AuthResult r) {
      EXPECT_TRUE(r.ok());
      ++queued_done;
    });
  }
  bool called = false;
  auth_->Verify(kSource, "bob", "bob-pw", [&](AuthResult r) {
    called = true;
    EXPECT_EQ(r.status, AuthStatus::kOverloaded);
    EXPECT_EQ(r.user, "bob");
    EXPECT_EQ(r.permissions, nullptr);
  });
  EXPECT_TRUE(called) << "an overloaded request must complete before Verify returns";
  EXPECT_EQ(auth_->stats().overloaded, 1u);
  EXPECT_EQ(queued_done.load(), 0);

  release.set_value();
  EXPECT_TRUE(WaitFor([&] { return queued_done.load() == 2; }));
}

TEST_F(AuthenticatorTest, ShutdownFailsQueuedAndLaterRequests) {
  Start(MakeOptions(1, 1024, 4096));
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  auth_->Verify(kSource, "alice", "alice-pw", [&entered, released](AuthResult) {
    entered.set_value();
    released.wait();
  });
  ASSERT_EQ(entered.get_future().wait_for(kResultTimeout), std::future_status::ready);
  std::promise<AuthResult> queued;
  auth_->Verify(kSource, "bob", "bob-pw", [&](AuthResult r) { queued.set_value(std::move(r)); });

  std::thread stopper([&] { auth_->Shutdown(); });
  // Shutdown has begun once a new request is refused on this thread. Probes
  // sent before that are queued and outlive this scope's locals.
  struct Probe {
    std::atomic<bool> done{false};
    std::thread::id where;
    AuthStatus status = AuthStatus::kOk;
  };
  std::vector<std::shared_ptr<Probe>> probes;
  EXPECT_TRUE(WaitFor([&] {
    auto probe = std::make_shared<Probe>();
    probes.push_back(probe);
    auth_->Verify(kSource, "bob", "bob-pw", [probe](AuthResult r) {
      probe->where = std::this_thread::get_id();
      probe->status = r.status;
      probe->done = true;
    });
    return probe->done && probe->where == std::this_thread::get_id() &&
           probe->status == AuthStatus::kShuttingDown;
  }));
  release.set_value();
  stopper.join();
  std::future<AuthResult> queued_result = queued.get_future();
  ASSERT_EQ(queued_result.wait_for(seconds(0)), std::future_status::ready);
  EXPECT_EQ(queued_result.get().status, AuthStatus::kShuttingDown);
  for (const std::shared_ptr<Probe>& probe : probes) {
    EXPECT_TRUE(probe->done);  // every request got its answer
    EXPECT_EQ(probe->status, AuthStatus::kShuttingDown);
  }
  auth_->Shutdown();  // idempotent
}

// Readers on several threads while the table is swapped under them.
TEST_F(AuthenticatorTest, ConcurrentVerifyAndReload) {
  Authenticator::Options options = MakeOptions(2, 1024, 4096);
  options.max_in_flight_per_source = 0;  // 200 logins from one address
  Start(options);
  constexpr int kThreads = 4, kPerThread = 50;
  std::atomic<int> ok{0}, done{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auth_->Verify(kSource, "alice", "alice-pw", [&](AuthResult r) {
          if (r.ok() && r.permissions && r.permissions->CanPublish("orders.x")) ++ok;
          ++done;
        });
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(auth_->Reload().ok());
    ASSERT_EQ(auth_->table()->size(), 2u);
  }
  for (std::thread& c : clients) c.join();
  EXPECT_TRUE(WaitFor([&] { return done.load() == kThreads * kPerThread; }));
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
}

}  // namespace
}  // namespace zmesh::auth

#include "auth/authenticator.h"

#include <glog/logging.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

#include "auth/password_hash.h"

namespace zmesh::auth {
namespace {

void Wipe(std::string* secret) {
  OPENSSL_cleanse(secret->data(), secret->size());
  secret->clear();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(Options options) {
  if (options.users_file.empty()) return absl::InvalidArgumentError("no users file given");
  absl::StatusOr<UsersTable> table = LoadUsersFile(options.users_file);
  if (!table.ok()) return table.status();
  if (table->empty()) {
    LOG(WARNING) << "users file " << options.users_file << " has no users: every login will fail";
  }
  LOG(INFO) << "loaded " << table->size() << " users from " << options.users_file;
  return std::unique_ptr<Authenticator>(
      new Authenticator(std::move(options), std::make_shared<const UsersTable>(*std::move(table))));
}

Authenticator::Authenticator(Options options, std::shared_ptr<const UsersTable> table)
    : options_(std::move(options)),
      cache_(options_.cache_capacity, options_.cache_ttl),
      table_(std::move(table)) {
  int workers = std::clamp(options_.workers, 1, 4);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

Authenticator::~Authenticator() { Shutdown(); }

void Authenticator::Verify(std::string user, std::string password,
                           std::function<void(AuthResult)> done) {
  Job job{std::move(user), std::move(password), {}, nullptr, std::move(done)};
  if (options_.cache_capacity > 0) {
    job.key = cache_.MakeKey(job.user, job.password);
    job.cached = cache_.Find(job.key);
    if (job.cached) Wipe(&job.password);
  }
  AuthStatus refused = AuthStatus::kOk;
  {
    std::lock_guard lock(mu_);
    std::deque<Job>& queue = job.cached ? hits_ : pending_;
    if (stopping_) {
      refused = AuthStatus::kShuttingDown;
    } else if (queue.size() >= options_.max_queue) {
      refused = AuthStatus::kOverloaded;
    } else {
      queue.push_back(std::move(job));
    }
  }
  if (refused == AuthStatus::kOk) {
    cv_.notify_one();
    return;
  }
  if (refused == AuthStatus::kOverloaded) ++overloaded_;
  Wipe(&job.password);
  job.done(AuthResult{refused, std::move(job.user), nullptr, false});
}

void Authenticator::WorkerLoop() {
  while (true) {
    Job job;
    bool stopping;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !hits_.empty() || !pending_.empty(); });
      if (hits_.empty() && pending_.empty()) return;
      std::deque<Job>& queue = hits_.empty() ? pending_ : hits_;
      job = std::move(queue.front());
      queue.pop_front();
      stopping = stopping_;
    }
    if (stopping) {
      Wipe(&job.password);
      job.done(AuthResult{AuthStatus::kShuttingDown, std::move(job.user), nullptr, false});
    } else {
      job.done(Check(job));
    }
  }
}

AuthResult Authenticator::Check(Job& job) {
  AuthResult result{AuthStatus::kBadCredentials, std::move(job.user), nullptr, false};
  if (job.cached) {
    ++cache_hits_;
    ++ok_;
    result.status = AuthStatus::kOk;
    result.permissions = std::move(job.cached);
    result.from_cache = true;
    return result;
  }
  std::shared_ptr<const UsersTable> table;
  uint64_t epoch;
  {
    std::lock_guard lock(mu_);
    table = table_;
    epoch = cache_.epoch();  // read with the table: a later Reload() bumps it
  }
  if (const UserEntry* entry = table->Find(result.user)) {
    if (VerifyPassword(job.password, entry->hash)) {
      ++ok_;
      result.status = AuthStatus::kOk;
      result.permissions = entry->permissions;
      if (options_.cache_capacity > 0) cache_.Insert(job.key, entry->permissions, epoch);
    } else {
      ++bad_password_;
    }
  } else {
    // The same slow work as for a real user, so timing does not reveal names.
    if (!table->dummy_hash().empty()) VerifyPassword(job.password, table->dummy_hash());
    ++unknown_user_;
  }
  Wipe(&job.password);
  return result;
}

absl::Status Authenticator::Reload() {
  std::lock_guard reload_lock(reload_mu_);
  absl::StatusOr<UsersTable> loaded = LoadUsersFile(options_.users_file);
  if (!loaded.ok()) {
    LOG(ERROR) << "users file not reloaded, the previous users stay in force: "
               << loaded.status().message();
    return loaded.status();
  }
  size_t users = loaded->size();
  auto table = std::make_shared<const UsersTable>(*std::move(loaded));
  {
    std::lock_guard lock(mu_);
    table_ = std::move(table);
    cache_.Invalidate();
  }
  LOG(INFO) << "reloaded " << users << " users from " << options_.users_file;
  return absl::OkStatus();
}

void Authenticator::Shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  std::lock_guard join_lock(shutdown_mu_);
  for (std::thread& worker : workers_) {
    CHECK(worker.get_id() != std::this_thread::get_id())
        << "Authenticator::Shutdown() called from a worker (a done callback)";
    if (worker.joinable()) worker.join();
  }
}

std::shared_ptr<const UsersTable> Authenticator::table() const {
  std::lock_guard lock(mu_);
  return table_;
}

AuthStats Authenticator::stats() const {
  return AuthStats{ok_.load(), bad_password_.load(), unknown_user_.load(), overloaded_.load(),
                   cache_hits_.load()};
}

}  // namespace zmesh::auth

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

void Authenticator::Verify(std::string source, std::string user, std::string password,
                           std::function<void(AuthResult)> done) {
  Job job{std::move(user), std::move(password), {}, nullptr, nullptr, nullptr, std::move(done)};
  if (options_.cache_capacity > 0) job.key = cache_.MakeKey(job.user, job.password);
  AuthStatus refused = AuthStatus::kOk;
  bool source_full = false;
  {
    std::lock_guard lock(mu_);
    if (options_.cache_capacity > 0) {
      // Found with the table read under the same lock that Reload() swaps the
      // table and empties the cache under: the entry belongs to that table.
      job.cached = cache_.Find(job.key);
      if (job.cached) job.table = table_;
    }
    if (stopping_) {
      refused = AuthStatus::kShuttingDown;
    } else if (job.cached) {
      if (hits_.size() >= options_.max_queue) {
        refused = AuthStatus::kOverloaded;
      } else {
        hits_.push_back(std::move(job));
      }
    } else if (pending_ >= options_.max_queue) {
      refused = AuthStatus::kOverloaded;
    } else {
      auto [it, inserted] = sources_.try_emplace(source);
      Source& from = it->second;
      if (inserted) from.address = std::move(source);
      const size_t bound = options_.max_in_flight_per_source;
      if (bound > 0 && from.in_flight >= bound) {
        refused = AuthStatus::kOverloaded;
        source_full = true;
      } else {
        if (from.pending.empty()) ready_.push_back(&from);
        ++from.in_flight;
        ++pending_;
        job.source = &from;
        from.pending.push_back(std::move(job));
      }
    }
  }
  if (refused == AuthStatus::kOk) {
    cv_.notify_one();
    return;
  }
  if (refused == AuthStatus::kOverloaded) {
    ++overloaded_;
    if (source_full) ++overloaded_source_;
  }
  Wipe(&job.password);
  job.done(AuthResult{refused, std::move(job.user), nullptr, false, nullptr});
}

bool Authenticator::TakeJob(Job* job) {
  if (!hits_.empty()) {
    *job = std::move(hits_.front());
    hits_.pop_front();
    return true;
  }
  if (ready_.empty()) return false;
  // Round-robin, but a source that has no worker yet goes first: a flooding
  // source does not get a second worker while a quiet one waits.
  auto next = std::find_if(ready_.begin(), ready_.end(), [](const Source* s) { return s->running == 0; });
  if (next == ready_.end()) next = ready_.begin();
  Source* from = *next;
  ready_.erase(next);
  *job = std::move(from->pending.front());
  from->pending.pop_front();
  --pending_;
  ++from->running;
  if (!from->pending.empty()) ready_.push_back(from);  // its next check waits for every other source's
  return true;
}

void Authenticator::Finished(Source* source) {
  if (source == nullptr) return;
  std::lock_guard lock(mu_);
  --source->running;
  if (--source->in_flight == 0) sources_.erase(source->address);
}

void Authenticator::WorkerLoop() {
  while (true) {
    Job job;
    bool stopping;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !hits_.empty() || !ready_.empty(); });
      if (!TakeJob(&job)) return;  // stopping, and nothing is left
      stopping = stopping_;
    }
    AuthResult result;
    if (stopping) {
      Wipe(&job.password);
      result = AuthResult{AuthStatus::kShuttingDown, std::move(job.user), nullptr, false, nullptr};
    } else {
      result = Check(job);
    }
    Finished(job.source);
    job.done(std::move(result));
  }
}

AuthResult Authenticator::Check(Job& job) {
  AuthResult result{AuthStatus::kBadCredentials, std::move(job.user), nullptr, false, nullptr};
  // Hashes the password is known to match, or not to match: a check repeated
  // because a reload overtook it hashes again only when the user's hash changed.
  std::string matched, mismatched;
  if (job.cached) {
    if (const UserEntry* entry = job.table->Find(result.user)) matched = entry->hash;
  }
  bool hashed = false;
  while (true) {
    std::shared_ptr<const UsersTable> table;
    uint64_t epoch;
    {
      std::lock_guard lock(mu_);
      table = table_;
      epoch = cache_.epoch();  // read with the table: a later Reload() bumps it
    }
    const UserEntry* entry = table->Find(result.user);
    bool ok = false;
    if (entry == nullptr) {
      // The same slow work as for a real user, so timing does not reveal names.
      if (!hashed && !table->dummy_hash().empty()) VerifyPassword(job.password, table->dummy_hash());
      hashed = true;
    } else if (entry->hash == matched) {
      ok = true;
    } else if (entry->hash != mismatched) {
      ok = VerifyPassword(job.password, entry->hash);
      (ok ? matched : mismatched) = entry->hash;
      hashed = true;
    }
    if (options_.testing_after_check) options_.testing_after_check();
    {
      std::lock_guard lock(mu_);
      if (table_ != table) {
        ++rechecked_;
        continue;  // a reload came meanwhile: the verdict must be the new table's
      }
    }
    result.table = std::move(table);
    if (ok) {
      ++ok_;
      result.status = AuthStatus::kOk;
      result.permissions = entry->permissions;
      result.from_cache = !hashed;
      if (!hashed) ++cache_hits_;
      if (hashed && options_.cache_capacity > 0) cache_.Insert(job.key, entry->permissions, epoch);
    } else if (entry != nullptr) {
      ++bad_password_;
    } else {
      ++unknown_user_;
    }
    break;
  }
  Wipe(&job.password);
  return result;
}

AuthResult Authenticator::Confirm(AuthResult result) const {
  if (result.table == nullptr) return result;  // refused up front: nothing was judged
  if (!result.ok() && result.status != AuthStatus::kBadCredentials) return result;
  std::shared_ptr<const UsersTable> now = table();
  if (now == result.table) return result;
  ++rechecked_;
  const UserEntry* before = result.table->Find(result.user);
  const UserEntry* after = now->Find(result.user);
  result.table = std::move(now);
  if (after == nullptr) {
    result.status = AuthStatus::kBadCredentials;
    result.permissions = nullptr;
  } else if (before != nullptr && before->hash == after->hash) {
    if (result.ok()) result.permissions = after->permissions;  // same password, new permissions
  } else {
    result.status = AuthStatus::kStale;  // a new user or a new hash: only the password can tell
    result.permissions = nullptr;
  }
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
  return AuthStats{ok_.load(),        bad_password_.load(),      unknown_user_.load(), overloaded_.load(),
                   overloaded_source_.load(), rechecked_.load(), cache_hits_.load()};
}

}  // namespace zmesh::auth

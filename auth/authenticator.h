#pragma once

// Checks CONNECT credentials against the users file without ever running a
// slow hash on an I/O thread.
//
// Verify() queues the check for a small pool of worker threads and returns
// at once; the worker calls `done`, and the server posts the result back to
// the connection's event loop. The queue is bounded: past it, requests fail
// (kOverloaded) instead of piling up, so a login flood costs bounded memory
// and at most `workers` cores.
//
// A flood from one source address cannot starve the others: each source
// (the client's IP address) has at most `max_in_flight_per_source` checks
// queued or being hashed (beyond: kOverloaded at once, without taking a
// slot), and the workers take slow checks from the sources round-robin,
// preferring a source none of whose checks is running: a login from a quiet
// address waits only for the next worker to finish its current check.
//
// Credentials that verified recently are served from a CredentialCache (no
// slow hash), so a reconnect storm of the same users stays cheap. An unknown
// user costs one slow hash too, against a dummy hash, so that response times
// do not tell which user names exist.
//
// The users table can be replaced at run time (SIGHUP -> Reload()); readers
// always see either the old or the new table, whole, and the cache is
// emptied with every successful reload. Reloads are exact: a verdict that a
// reload overtook on a worker is checked again against the new table before
// `done` runs, and Confirm() re-checks it once more where it is acted upon.
//
// Threads: the server creates it and shuts it down from its main thread; I/O
// threads call Verify() and Confirm(), the SIGHUP handler Reload(); the
// queues, sources and table are guarded by mu_, and each job belongs to the
// worker that took it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "auth/credential_cache.h"
#include "auth/permissions.h"
#include "auth/users_file.h"

namespace zmesh::auth {

enum class AuthStatus {
  kOk,
  kBadCredentials,  // unknown user or wrong password; the client is told neither
  kOverloaded,      // the queue of pending checks, or this source's share of it, was full
  kShuttingDown,    // Shutdown() had begun
  kStale,           // Confirm(): a reload changed this user's password hash after the check; ask again
};

// The client should simply try again later: the credentials were not judged.
inline bool IsRetryable(AuthStatus status) {
  return status == AuthStatus::kOverloaded || status == AuthStatus::kStale;
}

struct AuthResult {
  AuthStatus status = AuthStatus::kBadCredentials;
  std::string user;
  std::shared_ptr<const Permissions> permissions;  // set exactly when ok()
  bool from_cache = false;
  // The users table the verdict was reached under (null when refused
  // up front); Confirm() compares it with the table in force.
  std::shared_ptr<const UsersTable> table;
  bool ok() const { return status == AuthStatus::kOk; }
};

struct AuthStats {
  uint64_t ok = 0;
  uint64_t bad_password = 0;
  uint64_t unknown_user = 0;
  uint64_t overloaded = 0;
  uint64_t overloaded_source = 0;  // included in overloaded: the source's own bound was reached
  uint64_t rechecked = 0;          // verdicts checked again because a reload overtook them
  uint64_t cache_hits = 0;         // included in ok
};

class Authenticator {
 public:
  struct Options {
    std::string users_file;
    int workers = 2;                      // clamped to [1, 4]
    size_t max_queue = 1024;              // checks waiting for a worker; beyond: kOverloaded
    size_t max_in_flight_per_source = 16;  // slow checks queued or running per source; 0 = no bound
    size_t cache_capacity = 4096;         // verified credentials remembered; 0 = no cache
    std::chrono::seconds cache_ttl{600};  // how long one verification is trusted
    // Tests only: runs on the worker after a verdict was reached under a
    // table and before that table is compared with the one in force.
    std::function<void()> testing_after_check;
  };

  // Loads options.users_file (an error if it cannot be read or parsed) and
  // starts the workers. Any thread.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(Options options);

  // Shutdown().
  ~Authenticator();

  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Checks `password` for `user`, who connected from `source` (the client's
  // IP address), and calls `done` exactly once. Safe to call from any
  // thread, never blocks on a hash: only an HMAC and a mutex.
  //  - Normally `done` runs on a worker thread, possibly before Verify has
  //    returned; it must not block for long (post the result to a loop) and
  //    must not call Shutdown() or destroy the Authenticator.
  //  - When the request is refused up front (queue full, or `source` has
  //    max_in_flight_per_source slow checks in flight: kOverloaded;
  //    shutting down: kShuttingDown), `done` runs on the calling thread
  //    before Verify returns.
  // The password is wiped from memory once checked.
  void Verify(std::string source, std::string user, std::string password,
              std::function<void(AuthResult)> done);

  // `result` as of the table in force now. Call it on the thread that acts
  // on a verdict, right before acting: a reload may have come between the
  // worker and that thread. Unchanged when no reload came; otherwise a user
  // who is gone gets kBadCredentials, a user whose hash is unchanged keeps
  // ok with the new permissions, and a changed hash gives kStale (the
  // password is gone by now; the client should log in again). Any thread.
  AuthResult Confirm(AuthResult result) const;

  // Re-reads the users file. On success the new table replaces the old one
  // and the cache is emptied; on error the old table stays in force and the
  // error (file:line: reason) is returned and logged. Safe to call from any
  // thread; concurrent calls are serialised. Slow-ish (file I/O): call it off
  // the I/O threads, e.g. from the thread that handles SIGHUP.
  absl::Status Reload();

  // Stops accepting requests, completes queued ones with kShuttingDown
  // without hashing, and joins the workers. Idempotent. Any thread except a
  // worker (i.e. not from a `done` callback).
  void Shutdown();

  // The table in force. Any thread; the snapshot stays valid while held.
  std::shared_ptr<const UsersTable> table() const;

  // Counters since creation. Any thread.
  AuthStats stats() const;

 private:
  struct Source;
  struct Job {
    std::string user;
    std::string password;
    CredentialCache::Key key;
    std::shared_ptr<const Permissions> cached;  // set: a cache hit, no hash to compute
    std::shared_ptr<const UsersTable> table;    // the table `cached` came from
    Source* source = nullptr;                   // set for slow checks: counted in its in_flight
    std::function<void(AuthResult)> done;
  };
  // One client address with slow checks queued or running.
  struct Source {
    std::string address;
    std::deque<Job> pending;
    size_t in_flight = 0;  // pending plus the ones being hashed
    size_t running = 0;    // being hashed
  };

  Authenticator(Options options, std::shared_ptr<const UsersTable> table);
  void WorkerLoop();
  bool TakeJob(Job* job);  // with mu_ held
  AuthResult Check(Job& job);
  void Finished(Source* source);

  const Options options_;
  CredentialCache cache_;

  mutable std::mutex mu_;  // guards the fields below; lock order: server/lock_order.h
  std::condition_variable cv_;
  std::shared_ptr<const UsersTable> table_;
  std::deque<Job> hits_;  // cache hits, delivered first: they cost nothing
  // Checks that need the slow hash, queued per source; ready_ lists the
  // sources with pending checks in round-robin order.
  absl::node_hash_map<std::string, Source> sources_;
  std::deque<Source*> ready_;
  size_t pending_ = 0;  // over all sources
  bool stopping_ = false;

  std::mutex reload_mu_;    // serialises Reload()
  std::mutex shutdown_mu_;  // serialises joining
  std::vector<std::thread> workers_;

  std::atomic<uint64_t> ok_{0};
  std::atomic<uint64_t> bad_password_{0};
  std::atomic<uint64_t> unknown_user_{0};
  std::atomic<uint64_t> overloaded_{0};
  std::atomic<uint64_t> overloaded_source_{0};
  mutable std::atomic<uint64_t> rechecked_{0};  // Confirm() counts too
  std::atomic<uint64_t> cache_hits_{0};
};

}  // namespace zmesh::auth

#pragma once

// The node selection and failover policy: which node to try next, and when.
// Pure logic (no I/O, no threads); time and randomness are passed in, so the
// policy is unit-tested deterministically.
//
// Policy:
// - Nodes come from sources (static list, discovery = ZooKeeper or its cache
//   file, announced = INFO connect_urls); a node stays while any source lists
//   it. Each source's set is replaced as a whole when it reports.
// - Next() picks uniformly at random among the eligible nodes, except the
//   node that failed last ("never straight back"), unless it is the only node
//   or every other node is held out more than twice as long as it.
//   A node is eligible when its backoff has expired; a node that never failed
//   is eligible at once, so failing over to a healthy node costs no delay.
// - After its k-th consecutive failure a node waits
//   min(initial * 2^(k-1), max) * (1 - jitter * U[0,1)) before it is eligible.
// - When no node is eligible, Next() returns the one whose backoff ends first
//   (ties broken at random) with the delay to wait.
// - A connection lost after at least `stable_after` counts as a first failure
//   (k = 1); one lost sooner adds to k, so a node that accepts and drops at
//   once backs off like one that refuses.
// - Leave(): a node announced lame duck mode; it is held out for `hold` (and
//   counts as the last failed), or until a discovering source (ZooKeeper,
//   INFO connect_urls) that had stopped listing it lists it again: it came
//   back (a rolling restart).
//
// Thread safety: none; owned by the client's I/O thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "client/server_url.h"

namespace zmesh::client {

class ServerPool {
 public:
  using Clock = std::chrono::steady_clock;
  using Duration = Clock::duration;
  using TimePoint = Clock::time_point;

  struct Policy {
    Duration backoff_initial = std::chrono::milliseconds(100);
    Duration backoff_max = std::chrono::seconds(5);
    double jitter = 0.5;  // 0..1
    Duration stable_after = std::chrono::seconds(1);
  };

  enum Source : uint8_t { kStatic = 1, kDiscovered = 2, kAnnounced = 4 };

  struct Pick {
    ServerUrl server;
    Duration delay{0};  // wait this long before trying (0 = now)
  };

  ServerPool(Policy policy, uint64_t seed);

  // Replaces the set of nodes from `source`. Returns true if the set of all
  // known nodes changed. Failure history of nodes that stay is kept.
  bool Update(Source source, const std::vector<ServerUrl>& servers);

  // Which node to try next, or nullopt when no node is known.
  std::optional<Pick> Next(TimePoint now);

  // An attempt to connect to `key` failed.
  void OnAttemptFailed(const std::string& key, TimePoint now);
  // A connection to `key` is established.
  void OnConnected(const std::string& key, TimePoint now);
  // An established connection to `key` was lost.
  void OnConnectionLost(const std::string& key, TimePoint now);
  // We closed an established connection to `key` ourselves (a planned move
  // left it): no failure, no backoff.
  void OnDisconnected(const std::string& key);
  // `key` announced lame duck mode: keep away from it for `hold`.
  void Leave(const std::string& key, TimePoint now, Duration hold);

  // Known nodes in a stable order (by first appearance).
  std::vector<ServerUrl> servers() const;
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // For tests and logs.
  uint32_t failures(const std::string& key) const;
  const std::string& last_failed() const { return last_failed_; }

  // The backoff for the k-th consecutive failure, before jitter.
  Duration BaseBackoff(uint32_t failures) const;

 private:
  struct Entry {
    ServerUrl url;
    std::string key;
    uint8_t sources = 0;
    uint32_t failures = 0;
    TimePoint eligible_at{};  // earliest next attempt
    TimePoint connected_at{};
    bool connected = false;
    bool left = false;  // held out after its lame duck, until it is seen back
  };

  Entry* Find(const std::string& key);
  const Entry* Find(const std::string& key) const;
  void Fail(Entry* e, TimePoint now);
  Duration Jittered(Duration d);

  Policy policy_;
  std::mt19937_64 rng_;
  std::vector<Entry> entries_;
  std::string last_failed_;
};

}  // namespace zmesh::client

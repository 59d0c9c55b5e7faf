#pragma once

// The mesh-wide interest barrier (SPEC §2): which of this node's interest
// changes every peer has applied. Each change gets a sequence number
// (LocalInterest); peers acknowledge the highest one they applied
// (INTEREST_ACK); a client's PING after a SUB or UNSUB is answered once every
// attached link acknowledged the change's number.
//
// The set that must acknowledge is the set of attached links: the peers
// linked now, plus any that link meanwhile (their full snapshot, which
// includes the change, is acknowledged like a change). A link that goes away
// leaves the set (its node, if it comes back, gets a snapshot). A link that
// stays but does not acknowledge within the barrier timeout is reported by
// Overdue() so the mesh resets it. The timeout does not run while our
// snapshot still streams to the link: it acknowledges only after the
// snapshot's end, and a large snapshot on a busy link takes what it takes
// (the link's own write deadline and pings catch a peer that stopped).
//
// Threading: every method is safe from any thread; one mutex (its place in
// the lock order: server/lock_order.h). `done` callbacks run outside the
// lock, on whichever thread released them.

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "server/connection.h"

namespace zmesh::server::mesh {

class PeerLink;

class InterestBarrier {
 public:
  // Propagation time (local change -> last peer's acknowledgement) buckets, ms.
  static constexpr double kBucketsMs[] = {0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
  static constexpr size_t kBuckets = sizeof(kBucketsMs) / sizeof(kBucketsMs[0]);
  struct Stats {
    uint64_t waits = 0;     // PINGs that had to wait
    uint64_t timeouts = 0;  // links reset for not acknowledging in time
    uint64_t propagation_count = 0;
    double propagation_sum_ms = 0;
    uint64_t propagation_buckets[kBuckets] = {};  // cumulative: <= bound
  };

  // Called by LocalInterest under its own lock.
  void AddLink(const PeerLink* link);
  void RemoveLink(const PeerLink* link);
  void OnChange(uint64_t seq, int64_t now_ms);
  // Our snapshot to `link` started (true) or ended (false).
  void SetStreaming(const PeerLink* link, bool streaming, int64_t now_ms);

  // A peer applied every change up to `seq` (from that link's thread).
  void OnAck(const PeerLink* link, uint64_t seq);

  // True when every attached link acknowledged `seq`. Otherwise false, and
  // `done` runs once they have (or left the set).
  bool Wait(uint64_t seq, int64_t now_ms, std::function<void()> done);
  bool Covered(uint64_t seq) const;

  // Links that keep a waiter waiting longer than `timeout_ms`; each is
  // reported once (and counted as a timeout).
  std::vector<RefPtr<PeerLink>> Overdue(int64_t now_ms, int64_t timeout_ms);

  uint64_t acked(const PeerLink* link) const;
  Stats stats() const;

 private:
  struct Waiter {
    uint64_t seq;
    int64_t since_ms;
    std::function<void()> done;
  };
  struct LinkState {
    uint64_t acked = 0;
    bool reported_overdue = false;
    bool streaming = false;     // our snapshot is still on its way
    int64_t streamed_ms = 0;    // when the last snapshot ended
  };
  // The smallest acknowledged seq over the links (UINT64_MAX with none).
  uint64_t MinAckedLocked() const;
  // Pops released waiters and records propagation times; runs nothing.
  std::vector<std::function<void()>> ReleaseLocked(int64_t now_ms);

  mutable std::mutex mu_;
  absl::flat_hash_map<const PeerLink*, LinkState> links_;
  std::deque<Waiter> waiters_;                      // in seq order (a client's seqs only grow)
  std::deque<std::pair<uint64_t, int64_t>> changes_;  // seq, when, not yet acknowledged by all
  Stats stats_;
};

}  // namespace zmesh::server::mesh

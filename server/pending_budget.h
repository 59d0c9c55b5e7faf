#pragma once

// The node-wide bound on bytes queued to clients (--max_pending_bytes_total).
//
// Each client connection may queue up to --max_pending_bytes (64 MiB), but K
// subscribers that stop reading could hold K times that before their write
// deadline cuts them. The budget bounds the sum: while the node's queued
// total is over it, a connection that is behind (more than its backpressure
// threshold, 256 KiB, still queued: what its socket did not take) and is
// handed another message is cut as a slow consumer instead of queuing it.
// So consumers that make no progress stop getting copies as soon as the
// node is short, long before their own limit or write deadline, and the
// ones holding the most go with their next message; clients that keep up
// have their bytes in the socket, not here, and are not touched. The node
// may exceed the budget by one message per client (a fan-out copies before
// any socket is written).
//
// Threading: lock-free counters; any thread. Owned by ServerContext, which
// outlives every connection.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace zmesh::server {

class PendingBudget {
 public:
  explicit PendingBudget(size_t limit) : limit_(limit) {}
  PendingBudget(const PendingBudget&) = delete;
  PendingBudget& operator=(const PendingBudget&) = delete;

  // 0: no node-wide bound.
  size_t limit() const { return limit_; }
  size_t total() const { return total_.load(std::memory_order_relaxed); }
  // Would queuing `adding` more bytes exceed the budget?
  bool Exceeded(size_t adding) const { return limit_ != 0 && total() + adding > limit_; }

  void Add(size_t n) { total_.fetch_add(n, std::memory_order_relaxed); }
  void Release(size_t n) { total_.fetch_sub(n, std::memory_order_relaxed); }

  // Connections cut because the budget was exceeded.
  void CountCut() { cuts_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t cuts() const { return cuts_.load(std::memory_order_relaxed); }

 private:
  const size_t limit_;
  std::atomic<size_t> total_{0};
  std::atomic<uint64_t> cuts_{0};
};

}  // namespace zmesh::server

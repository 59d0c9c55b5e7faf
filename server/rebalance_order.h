#pragma once

// What the mesh currently asks of this node's movable clients (issue 12
// item 3, connection balance): move `budget` of them to the node at
// `target_url`. The mesh's rebalancer sets it about once a second; client
// connections that can move (CONNECT "moves") claim one move each from
// their ticks and send that client an INFO with "move_to".
//
// Threading: Set on the main thread; Take from any worker.

#include <atomic>
#include <mutex>
#include <string>

namespace zmesh::server {

class RebalanceOrder {
 public:
  void Set(int budget, std::string target_url) {
    std::lock_guard<std::mutex> lock(mu_);
    target_url_ = std::move(target_url);
    budget_.store(budget > 0 ? budget : 0, std::memory_order_release);
  }

  // Claims one move; false when none is asked for.
  bool Take(std::string* target_url) {
    if (budget_.load(std::memory_order_acquire) <= 0) return false;  // the common case: one load
    std::lock_guard<std::mutex> lock(mu_);
    const int left = budget_.load(std::memory_order_relaxed);
    if (left <= 0) return false;
    budget_.store(left - 1, std::memory_order_relaxed);
    *target_url = target_url_;
    return true;
  }

 private:
  std::atomic<int> budget_{0};
  std::mutex mu_;  // guards target_url_ and the claim
  std::string target_url_;
};

// Planned moves and rebalancing, for /varz and /metrics. Any thread.
struct MoveCounters {
  std::atomic<uint64_t> out{0};                 // clients moved away (MOVED sent)
  std::atomic<uint64_t> in{0};                  // connections that arrived as the new end of a move
  std::atomic<uint64_t> timed_out{0};           // moves that stopped waiting for a cut (--move_timeout_ms)
  std::atomic<uint64_t> rebalance_requests{0};  // clients asked to move for balance (INFO move_to)
};

}  // namespace zmesh::server

#pragma once

// The most recently closed client connections with their close reasons, for
// /connz?state=closed (nats-server keeps the last 10,000 the same way).
//
// Threading: any thread; a mutex guards the ring.

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace zmesh::server {

struct ClosedConnection {
  uint64_t cid = 0;
  std::string ip;
  int port = 0;
  int64_t start_unix_ms = 0;
  int64_t stop_unix_ms = 0;
  std::string reason;
  std::string name, lang, version, user;
  uint64_t in_msgs = 0, in_bytes = 0, out_msgs = 0, out_bytes = 0;
  size_t subscriptions = 0;
};

class ClosedConnections {
 public:
  explicit ClosedConnections(size_t capacity = 10000) : capacity_(capacity) {}

  void Add(ClosedConnection c) {
    std::lock_guard<std::mutex> lock(mu_);
    ring_.push_back(std::move(c));
    if (ring_.size() > capacity_) ring_.pop_front();
  }
  // Oldest first.
  std::vector<ClosedConnection> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {ring_.begin(), ring_.end()};
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::deque<ClosedConnection> ring_;
};

}  // namespace zmesh::server

#include "server/mesh/interest_barrier.h"

#include <algorithm>
#include <limits>

#include "server/event_loop.h"
#include "server/mesh/peer_link.h"

namespace zmesh::server::mesh {
namespace {
// Changes remembered for the propagation histogram while some peer lags;
// beyond it the oldest are dropped from the histogram (not from the barrier).
constexpr size_t kMaxTrackedChanges = 1 << 16;
}  // namespace

void InterestBarrier::AddLink(const PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  links_.emplace(link, LinkState{});
}

void InterestBarrier::RemoveLink(const PeerLink* link) {
  std::vector<std::function<void()>> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (links_.erase(link) == 0) return;
    released = ReleaseLocked(MonotonicMs());
  }
  for (auto& done : released) done();
}

void InterestBarrier::OnChange(uint64_t seq, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (links_.empty()) return;  // nobody to propagate to
  if (changes_.size() >= kMaxTrackedChanges) changes_.pop_front();
  changes_.emplace_back(seq, now_ms);
}

void InterestBarrier::SetStreaming(const PeerLink* link, bool streaming, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = links_.find(link);
  if (it == links_.end()) return;
  it->second.streaming = streaming;
  if (!streaming) it->second.streamed_ms = now_ms;
}

void InterestBarrier::OnAck(const PeerLink* link, uint64_t seq) {
  std::vector<std::function<void()>> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = links_.find(link);
    if (it == links_.end() || seq <= it->second.acked) return;
    it->second.acked = seq;
    released = ReleaseLocked(MonotonicMs());
  }
  for (auto& done : released) done();
}

uint64_t InterestBarrier::MinAckedLocked() const {
  uint64_t min = std::numeric_limits<uint64_t>::max();
  for (const auto& [link, state] : links_) min = std::min(min, state.acked);
  return min;
}

std::vector<std::function<void()>> InterestBarrier::ReleaseLocked(int64_t now_ms) {
  const uint64_t min = MinAckedLocked();
  std::vector<std::function<void()>> released;
  // Waiters come from many clients, so their seqs are not sorted overall.
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->seq <= min) {
      released.push_back(std::move(it->done));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  if (links_.empty()) {
    changes_.clear();
  } else {
    while (!changes_.empty() && changes_.front().first <= min) {
      const double ms = static_cast<double>(now_ms - changes_.front().second);
      ++stats_.propagation_count;
      stats_.propagation_sum_ms += ms;
      for (size_t b = 0; b < kBuckets; ++b) {
        if (ms <= kBucketsMs[b]) ++stats_.propagation_buckets[b];
      }
      changes_.pop_front();
    }
  }
  return released;
}

bool InterestBarrier::Wait(uint64_t seq, int64_t now_ms, std::function<void()> done) {
  std::lock_guard<std::mutex> lock(mu_);
  if (MinAckedLocked() >= seq) return true;
  ++stats_.waits;
  waiters_.push_back(Waiter{seq, now_ms, std::move(done)});
  return false;
}

bool InterestBarrier::Covered(uint64_t seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  return MinAckedLocked() >= seq;
}

std::vector<RefPtr<PeerLink>> InterestBarrier::Overdue(int64_t now_ms, int64_t timeout_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RefPtr<PeerLink>> overdue;
  for (const Waiter& w : waiters_) {
    if (now_ms - w.since_ms < timeout_ms) continue;
    for (auto& [link, state] : links_) {
      if (state.acked >= w.seq || state.reported_overdue) continue;
      // A waiter older than the snapshot waits on the snapshot's end, and
      // gets the whole timeout from there.
      if (state.streaming || now_ms - state.streamed_ms < timeout_ms) continue;
      state.reported_overdue = true;
      ++stats_.timeouts;
      // Attached links are referenced by LocalInterest while they are here.
      overdue.emplace_back(const_cast<PeerLink*>(link));
    }
  }
  return overdue;
}

uint64_t InterestBarrier::acked(const PeerLink* link) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = links_.find(link);
  return it == links_.end() ? 0 : it->second.acked;
}

InterestBarrier::Stats InterestBarrier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace zmesh::server::mesh

#include "client/subscription_table.h"

#include <algorithm>

namespace zmesh::client {

bool SubState::Admit(int64_t bytes) {
  const int64_t lm = limit_msgs.load(std::memory_order_relaxed);
  const int64_t lb = limit_bytes.load(std::memory_order_relaxed);
  const int64_t msgs = pending_msgs.load(std::memory_order_relaxed);
  const int64_t held = pending_bytes.load(std::memory_order_relaxed);
  if ((lm > 0 && msgs + 1 > lm) || (lb > 0 && held + bytes > lb)) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  pending_msgs.fetch_add(1, std::memory_order_relaxed);
  pending_bytes.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

void SubState::Push(Message msg) {
  {
    std::lock_guard<std::mutex> lock(mu);
    queue.push_back(std::move(msg));
  }
  cv.notify_one();
}

Status SubState::Pop(Message* out, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu);
  cv.wait_until(lock, deadline, [this] { return !queue.empty() || closed.load(); });
  if (queue.empty()) {
    return closed.load() ? Status(StatusCode::kClosed, "subscription closed")
                         : Status(StatusCode::kTimeout, "no message within the timeout");
  }
  *out = std::move(queue.front());
  queue.pop_front();
  Release(static_cast<int64_t>(out->size()));
  lock.unlock();
  cv.notify_all();  // a drain may wait for the queue to empty
  return Status::Ok();
}

void SubState::Close(bool discard) {
  closed.store(true);
  {
    std::lock_guard<std::mutex> lock(mu);
    if (discard) {
      for (const Message& m : queue) Release(static_cast<int64_t>(m.size()));
      queue.clear();
    }
  }
  cv.notify_all();
}

bool SubState::WaitEmpty(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu);
  return cv.wait_until(lock, deadline, [this] { return pending_msgs.load() <= 0; });
}

void SubState::NotifyProgress() {
  // Taking the lock orders this with WaitEmpty's predicate check.
  { std::lock_guard<std::mutex> lock(mu); }
  cv.notify_all();
}

void SubscriptionTable::Add(std::shared_ptr<SubState> sub) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t sid = sub->sid;
  subs_[sid] = std::move(sub);
}

std::shared_ptr<SubState> SubscriptionTable::Remove(uint64_t sid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(sid);
  if (it == subs_.end()) return nullptr;
  std::shared_ptr<SubState> sub = std::move(it->second);
  subs_.erase(it);
  return sub;
}

std::shared_ptr<SubState> SubscriptionTable::Find(uint64_t sid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(sid);
  return it == subs_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<SubState>> SubscriptionTable::All() const {
  std::vector<std::shared_ptr<SubState>> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.reserve(subs_.size());
    for (const auto& [sid, sub] : subs_) out.push_back(sub);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->sid < b->sid; });
  return out;
}

std::vector<std::shared_ptr<SubState>> SubscriptionTable::Clear() {
  std::vector<std::shared_ptr<SubState>> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.reserve(subs_.size());
  for (auto& [sid, sub] : subs_) out.push_back(std::move(sub));
  subs_.clear();
  return out;
}

size_t SubscriptionTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subs_.size();
}

}  // namespace zmesh::client

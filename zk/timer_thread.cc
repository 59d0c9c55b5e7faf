#include "zk/timer_thread.h"

namespace zmesh::zk {

TimerThread::~TimerThread() { Stop(); }

uint64_t TimerThread::Schedule(std::chrono::milliseconds delay, std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return 0;
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  const uint64_t id = next_id_++;
  const Clock::time_point deadline = Clock::now() + delay;
  timers_.emplace(std::make_pair(deadline, id), std::move(fn));
  deadlines_.emplace(id, deadline);
  cv_.notify_one();
  return id;
}

void TimerThread::Cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  deadlines_.erase(it);
}

void TimerThread::Stop() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    timers_.clear();
    deadlines_.clear();
    thread = std::move(thread_);
    cv_.notify_one();
  }
  if (thread.joinable()) thread.join();
}

void TimerThread::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (timers_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = timers_.begin();
    // A copy: Cancel() or Stop() may erase the entry while we wait.
    const Clock::time_point deadline = first->first.first;
    if (Clock::now() < deadline) {
      cv_.wait_until(lock, deadline);
      continue;
    }
    std::function<void()> fn = std::move(first->second);
    deadlines_.erase(first->first.second);
    timers_.erase(first);
    // Run without the lock: the closure may Schedule() again.
    lock.unlock();
    fn();
    lock.lock();
  }
}

}  // namespace zmesh::zk

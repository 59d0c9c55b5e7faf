#pragma once

// A single background thread that runs short closures after a delay.
//
// The Registry interface only gives us an Executor (run now, on the owner
// thread), but session handling needs timers: the Curator TN12 "disconnected
// for longer than the session timeout" timer, retry back-off, and the bound on
// Unregister. A timer closure should do nothing but post to an Executor, so the
// real work still happens on the owner thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace zmesh::zk {

class TimerThread {
 public:
  using Clock = std::chrono::steady_clock;

  TimerThread() = default;
  TimerThread(const TimerThread&) = delete;
  TimerThread& operator=(const TimerThread&) = delete;
  // Stops the thread; pending closures are dropped.
  ~TimerThread();

  // Runs `fn` on the timer thread after `delay` and returns an id for
  // Cancel(). The thread starts on first use. Returns 0 (and drops `fn`) after
  // Stop(). Safe to call from any thread, including from a timer closure.
  uint64_t Schedule(std::chrono::milliseconds delay, std::function<void()> fn);

  // Drops a pending closure; no-op if it already ran. Safe from any thread.
  // A closure that is running right now is not waited for.
  void Cancel(uint64_t id);

  // Drops pending closures and joins the thread. Safe from any thread except
  // the timer thread itself; idempotent.
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  // Ordered by deadline; the id breaks ties and makes keys unique.
  std::map<std::pair<Clock::time_point, uint64_t>, std::function<void()>> timers_;
  std::unordered_map<uint64_t, Clock::time_point> deadlines_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace zmesh::zk

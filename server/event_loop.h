#pragma once

// One libevent event_base driven by one thread. The only way for another
// thread to reach a loop is RunInLoop/QueueInLoop: a mutex-protected task
// queue plus an eventfd the loop watches (memcached's worker handoff).
//
// Threading: constructed on any thread; Run() binds the loop to the calling
// thread, which owns the event_base and everything registered on it from then
// on. Methods say which thread may call them.

#include <event2/event.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace zmesh::server {

class EventLoop {
 public:
  using Task = std::function<void()>;

  explicit EventLoop(int index = 0);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs until Quit(). The calling thread becomes the loop thread.
  void Run();
  // Safe to call from any thread.
  void Quit();

  // Runs `task` now when called on the loop thread, otherwise queues it.
  // Safe to call from any thread.
  void RunInLoop(Task task);
  // Always queues; runs after the current callback returns. Any thread.
  void QueueInLoop(Task task);

  bool IsInLoopThread() const { return std::this_thread::get_id() == thread_id_.load(std::memory_order_relaxed); }
  // The first line of every method documented "owner thread", "loop thread",
  // "worker thread" or "main thread": aborts (with the loop's index) when
  // called from another thread once Run() has bound the loop; before Run() the
  // object may still be set up from any thread, so it passes. Compiled in only
  // where kChecksThreads holds (debug and sanitizer builds); in a Release
  // build it is an empty inline function and costs nothing.
  void AssertInLoopThread() const {
    if constexpr (kChecksThreads) {
      if (!IsInLoopThread() && thread_id_.load(std::memory_order_relaxed) != std::thread::id()) {
        DieNotInLoopThread();
      }
    }
  }
#if !defined(NDEBUG) || defined(ZMESH_CHECK_THREADS)
  static constexpr bool kChecksThreads = true;
#else
  static constexpr bool kChecksThreads = false;
#endif

  // The loop's event_base, for registering events. Loop thread only (or
  // before Run()).
  event_base* base() const { return base_; }
  int index() const { return index_; }

  // Cached monotonic time in milliseconds, refreshed once per callback batch
  // by the loop. Loop thread only.
  int64_t now_ms() const { return now_ms_; }
  void RefreshNow();

  // A repeating timer on this loop; the callback runs on the loop thread. The
  // timer lives until the returned handle is destroyed (loop thread only).
  class Timer;
  std::unique_ptr<Timer> RunEvery(std::chrono::milliseconds interval, Task task);

  // The EventLoop running on the current thread, or nullptr.
  static EventLoop* Current();

 private:
  static void OnWakeup(evutil_socket_t fd, short what, void* arg);
  [[noreturn]] void DieNotInLoopThread() const;
  void RunQueuedTasks();

  const int index_;
  event_base* base_;
  int wakeup_fd_;
  event* wakeup_event_;
  std::atomic<std::thread::id> thread_id_;
  int64_t now_ms_ = 0;

  std::mutex mu_;
  std::vector<Task> queued_;  // guarded by mu_
  bool wakeup_pending_ = false;  // guarded by mu_: an eventfd write is in flight
};

class EventLoop::Timer {
 public:
  Timer(EventLoop* loop, std::chrono::milliseconds interval, Task task);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

 private:
  static void OnFire(evutil_socket_t, short, void* arg);
  event* event_;
  Task task_;
};

// Monotonic clock in milliseconds.
int64_t MonotonicMs();

}  // namespace zmesh::server

#pragma once

// The thread that runs application callbacks: message handlers of async
// subscriptions and the status event handler, one at a time, in the order the
// I/O thread queued them. Keeping callbacks off the I/O thread means a slow
// handler delays only later callbacks, never reading, writing or failover.
//
// The queue is unbounded by itself; each subscription's pending limits (see
// SubState::Admit) bound what it holds.
//
// Thread safety: all methods are thread-safe. Stop() may be called from a
// callback (the thread then finishes on its own after the callback returns).

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <zmesh/message.h>
#include <zmesh/options.h>

namespace zmesh::client {

struct SubState;

class Dispatcher : public std::enable_shared_from_this<Dispatcher> {
 public:
  struct Item {
    std::shared_ptr<SubState> sub;  // null for an event
    Message msg;
    std::unique_ptr<Event> event;
  };

  explicit Dispatcher(EventHandler on_event);
  ~Dispatcher();

  // Starts the thread if it is not running (idempotent).
  void Start();
  // Queues items in order; the vector is left empty (its capacity kept).
  void PushBatch(std::vector<Item>* batch);
  void PushEvent(Event event);
  // Builds and queues a status event (nothing without an event handler).
  void Emit(EventType type, std::string url, Status status, std::string subject = {});
  // Waits until everything queued before the call has run; false on timeout.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);
  // Runs the remaining events (not messages) and stops the thread. Joins it
  // unless called on it.
  void Stop();
  bool OnDispatcherThread() const;

 private:
  void Run();

  const EventHandler on_event_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // work arrived / stop
  std::condition_variable idle_cv_;  // progress, for WaitIdle
  std::vector<Item> queue_;
  uint64_t queued_ = 0;    // items ever queued
  uint64_t finished_ = 0;  // items ever finished
  bool waiting_ = false;   // the thread sleeps on cv_
  bool stopping_ = false;
  bool started_ = false;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace zmesh::client

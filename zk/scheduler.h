#pragma once

// Delayed tasks on the owner thread: what the registry's timers (the Curator
// TN12 disconnect timer, re-open back-off, the bound on Unregister) need. A
// seam so that unit tests drive time by hand (zk/testing/manual_loop.h).

#include <chrono>
#include <functional>
#include <memory>

#include "zk/registry.h"
#include "zk/timer_thread.h"

namespace zmesh::zk {

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Runs `task` on the owner thread, as a task of its own, after `delay`.
  // Owner thread.
  virtual void RunAfter(std::chrono::milliseconds delay, std::function<void()> task) = 0;
  // Drops every pending task: none runs after Stop() returned, not even one
  // already handed to the owner thread. Owner thread; idempotent.
  virtual void Stop() = 0;
};

// Real time: a TimerThread that posts due tasks to `executor`.
class TimerThreadScheduler final : public Scheduler {
 public:
  explicit TimerThreadScheduler(Executor executor);
  // Calls Stop().
  ~TimerThreadScheduler() override;

  void RunAfter(std::chrono::milliseconds delay, std::function<void()> task) override;
  void Stop() override;

 private:
  const Executor executor_;
  // Read and cleared on the owner thread only; posted tasks check it.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  TimerThread timer_;
};

}  // namespace zmesh::zk

#pragma once

// A deterministic owner thread for unit tests: posted tasks wait until the
// test runs them, and time moves only when the test advances it. The test's
// own thread is the owner thread.
//
// Threading: single-threaded. Every method, and the Executor and Schedulers
// it hands out, must be used on the thread that created the loop.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <utility>

#include "zk/registry.h"
#include "zk/scheduler.h"

namespace zmesh::zk::testing {

class ManualLoop {
 public:
  ManualLoop() : state_(std::make_shared<State>()) {}
  ManualLoop(const ManualLoop&) = delete;
  ManualLoop& operator=(const ManualLoop&) = delete;

  // Queues tasks on this loop. May outlive the loop (tasks are then dropped).
  Executor executor() const {
    return [state = std::weak_ptr<State>(state_)](std::function<void()> task) {
      if (auto s = state.lock()) s->tasks.push_back(std::move(task));
    };
  }

  // Runs queued tasks, and the ones they post, until none is left. Returns
  // how many ran. Aborts the test after a million: a livelock, not a wait.
  size_t RunUntilIdle() {
    size_t ran = 0;
    while (!state_->tasks.empty()) {
      std::function<void()> task = std::move(state_->tasks.front());
      state_->tasks.pop_front();
      task();
      if (++ran > 1000000) std::abort();
    }
    return ran;
  }

  size_t pending() const { return state_->tasks.size(); }

  // A Scheduler on this loop's manual clock.
  std::unique_ptr<Scheduler> NewScheduler() const { return std::make_unique<ManualScheduler>(state_); }

  // Moves the clock forward by `delay`: each timer that falls due runs (as a
  // posted task, with everything it posts) in deadline order.
  void Advance(std::chrono::milliseconds delay) {
    RunUntilIdle();
    const std::chrono::milliseconds until = state_->now + delay;
    while (!state_->timers.empty() && state_->timers.begin()->first.first <= until) {
      auto it = state_->timers.begin();
      state_->now = it->first.first;
      std::function<void()> task = std::move(it->second);
      state_->timers.erase(it);
      state_->tasks.push_back(std::move(task));
      RunUntilIdle();
    }
    state_->now = until;
  }

  std::chrono::milliseconds now() const { return state_->now; }
  size_t pending_timers() const { return state_->timers.size(); }

 private:
  struct State {
    std::deque<std::function<void()>> tasks;
    std::chrono::milliseconds now{0};
    // (deadline, sequence) -> task; the sequence keeps equal deadlines in order.
    std::map<std::pair<std::chrono::milliseconds, uint64_t>, std::function<void()>> timers;
    uint64_t next_sequence = 0;
  };

  class ManualScheduler final : public Scheduler {
   public:
    explicit ManualScheduler(std::shared_ptr<State> state) : state_(std::move(state)) {}
    ~ManualScheduler() override { Stop(); }
    void RunAfter(std::chrono::milliseconds delay, std::function<void()> task) override {
      state_->timers.emplace(std::make_pair(state_->now + delay, state_->next_sequence++),
                             [alive = alive_, task = std::move(task)] {
                               if (*alive) task();
                             });
    }
    void Stop() override { *alive_ = false; }

   private:
    const std::shared_ptr<State> state_;
    const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  };

  std::shared_ptr<State> state_;
};

}  // namespace zmesh::zk::testing

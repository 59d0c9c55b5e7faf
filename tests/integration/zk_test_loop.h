#pragma once

// A single-threaded task queue standing in for the server's event loop in
// ZooKeeper registry tests: the registry's owner thread. Header-only; used by
// zk_registry_test and zk_registry_helper.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

#include "zk/registry.h"

namespace zmesh::testing {

class TestLoop {
 public:
  TestLoop() : state_(std::make_shared<State>()) {
    thread_ = std::thread([state = state_] { Run(*state); });
    thread_id_ = thread_.get_id();
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;
  ~TestLoop() { Shutdown(); }

  // Posts to this loop. The executor may outlive the loop: tasks posted after
  // Shutdown() are dropped.
  zk::Executor executor() const {
    return [state = state_](std::function<void()> task) { Post(*state, std::move(task)); };
  }

  bool InLoop() const { return std::this_thread::get_id() == thread_id_; }

  // Runs `fn` on the loop and returns its result. Not from the loop thread.
  // Aborts after 60 s: returning while `fn` may still run would be worse.
  template <typename F>
  auto RunSync(F fn) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    auto promise = std::make_shared<std::promise<R>>();
    std::future<R> future = promise->get_future();
    Post(*state_, [promise, &fn] {
      if constexpr (std::is_void_v<R>) {
        fn();
        promise->set_value();
      } else {
        promise->set_value(fn());
      }
    });
    if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      std::fprintf(stderr, "TestLoop::RunSync: task did not finish within 60 s\n");
      std::abort();
    }
    return future.get();
  }

  // Runs what is queued, then stops and joins. Idempotent.
  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->stopping = true;
      state_->cv.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stopping = false;
    bool stopped = false;
  };

  static void Post(State& state, std::function<void()> task) {
    std::lock_guard<std::mutex> lock(state.mu);
    if (state.stopped) return;
    state.tasks.push_back(std::move(task));
    state.cv.notify_one();
  }

  static void Run(State& state) {
    std::unique_lock<std::mutex> lock(state.mu);
    while (true) {
      state.cv.wait(lock, [&] { return state.stopping || !state.tasks.empty(); });
      if (state.tasks.empty()) break;  // stopping, and drained
      std::function<void()> task = std::move(state.tasks.front());
      state.tasks.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
    state.stopped = true;
    state.tasks.clear();
  }

  std::shared_ptr<State> state_;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace zmesh::testing

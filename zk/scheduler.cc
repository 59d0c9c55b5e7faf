#include "zk/scheduler.h"

#include <utility>

namespace zmesh::zk {

TimerThreadScheduler::TimerThreadScheduler(Executor executor) : executor_(std::move(executor)) {}

TimerThreadScheduler::~TimerThreadScheduler() { Stop(); }

void TimerThreadScheduler::RunAfter(std::chrono::milliseconds delay, std::function<void()> task) {
  timer_.Schedule(delay, [executor = executor_, alive = alive_, task = std::move(task)] {
    executor([alive, task] {
      if (*alive) task();
    });
  });
}

void TimerThreadScheduler::Stop() {
  *alive_ = false;
  timer_.Stop();
}

}  // namespace zmesh::zk

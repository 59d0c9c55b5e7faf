#include "server/event_loop.h"

#include <glog/logging.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>

namespace zmesh::server {
namespace {
thread_local EventLoop* t_current_loop = nullptr;
}  // namespace

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

EventLoop::EventLoop(int index) : index_(index) {
  event_config* cfg = event_config_new();
  // Each base is used by exactly one thread: no libevent locking needed.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  base_ = event_base_new_with_config(cfg);
  event_config_free(cfg);
  CHECK(base_ != nullptr) << "event_base_new failed";
  wakeup_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  PCHECK(wakeup_fd_ >= 0) << "eventfd";
  wakeup_event_ = event_new(base_, wakeup_fd_, EV_READ | EV_PERSIST, &EventLoop::OnWakeup, this);
  event_add(wakeup_event_, nullptr);
  now_ms_ = MonotonicMs();
}

EventLoop::~EventLoop() {
  event_free(wakeup_event_);
  close(wakeup_fd_);
  event_base_free(base_);
}

EventLoop* EventLoop::Current() { return t_current_loop; }

void EventLoop::Run() {
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  t_current_loop = this;
  RefreshNow();
  event_base_loop(base_, 0);
  // Tasks queued during shutdown still run, so that nothing waiting on them hangs.
  RunQueuedTasks();
  t_current_loop = nullptr;
}

void EventLoop::Quit() {
  QueueInLoop([this] { event_base_loopbreak(base_); });
}

void EventLoop::DieNotInLoopThread() const {
  LOG(FATAL) << "EventLoop " << index_ << " used from a foreign thread";
  std::abort();  // LOG(FATAL) does not return; this tells the compiler so
}

void EventLoop::RefreshNow() { now_ms_ = MonotonicMs(); }

void EventLoop::RunInLoop(Task task) {
  if (IsInLoopThread()) {
    task();
  } else {
    QueueInLoop(std::move(task));
  }
}

void EventLoop::QueueInLoop(Task task) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_.push_back(std::move(task));
    wake = !wakeup_pending_;
    wakeup_pending_ = true;
  }
  if (wake) {
    uint64_t one = 1;
    // EAGAIN means the counter is already non-zero: the loop wakes anyway.
    ssize_t n = write(wakeup_fd_, &one, sizeof one);
    (void)n;
  }
}

void EventLoop::OnWakeup(evutil_socket_t fd, short, void* arg) {
  auto* loop = static_cast<EventLoop*>(arg);
  uint64_t value;
  ssize_t n = read(fd, &value, sizeof value);
  (void)n;
  loop->RefreshNow();
  loop->RunQueuedTasks();
}

void EventLoop::RunQueuedTasks() {
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(queued_);
    wakeup_pending_ = false;
  }
  for (Task& t : tasks) t();
}

EventLoop::Timer::Timer(EventLoop* loop, std::chrono::milliseconds interval, Task task) : task_(std::move(task)) {
  event_ = event_new(loop->base(), -1, EV_PERSIST, &Timer::OnFire, this);
  timeval tv{static_cast<time_t>(interval.count() / 1000), static_cast<suseconds_t>((interval.count() % 1000) * 1000)};
  event_add(event_, &tv);
}

EventLoop::Timer::~Timer() { event_free(event_); }

void EventLoop::Timer::OnFire(evutil_socket_t, short, void* arg) {
  auto* timer = static_cast<Timer*>(arg);
  if (EventLoop* loop = EventLoop::Current()) loop->RefreshNow();
  timer->task_();
}

std::unique_ptr<EventLoop::Timer> EventLoop::RunEvery(std::chrono::milliseconds interval, Task task) {
  return std::make_unique<Timer>(this, interval, std::move(task));
}

}  // namespace zmesh::server

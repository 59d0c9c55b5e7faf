#include "client/dispatcher.h"

#include "client/subscription_table.h"

namespace zmesh::client {

Dispatcher::Dispatcher(EventHandler on_event) : on_event_(std::move(on_event)) {}

Dispatcher::~Dispatcher() {
  // Stop() joined or detached the thread; a still-joinable thread here means
  // the owner forgot Stop(): stop it now (never from the thread itself, as
  // the thread holds a reference that keeps us alive).
  if (thread_.joinable()) Stop();
}

void Dispatcher::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  // The thread keeps the dispatcher alive, so Stop() from a callback may
  // detach it and let the owner go.
  thread_ = std::thread([self = shared_from_this()] { self->Run(); });
  thread_id_ = thread_.get_id();
}

void Dispatcher::PushBatch(std::vector<Item>* batch) {
  if (batch->empty()) return;
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_ += batch->size();
    if (queue_.empty()) {
      queue_.swap(*batch);
    } else {
      for (Item& item : *batch) queue_.push_back(std::move(item));
      batch->clear();
    }
    notify = waiting_;
  }
  if (notify) cv_.notify_one();
}

void Dispatcher::PushEvent(Event event) {
  if (!on_event_) return;
  std::vector<Item> one;
  one.push_back(Item{nullptr, Message(), std::make_unique<Event>(std::move(event))});
  PushBatch(&one);
}

void Dispatcher::Emit(EventType type, std::string url, Status status, std::string subject) {
  if (!on_event_) return;
  Event e;
  e.type = type;
  e.url = std::move(url);
  e.status = std::move(status);
  e.subject = std::move(subject);
  PushEvent(std::move(e));
}

bool Dispatcher::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!started_) return true;
  const uint64_t target = queued_;
  return idle_cv_.wait_until(lock, deadline, [&] { return finished_ >= target || stopping_; });
}

bool Dispatcher::OnDispatcherThread() const {
  std::lock_guard<std::mutex> lock(mu_);
  return started_ && std::this_thread::get_id() == thread_id_;
}

void Dispatcher::Stop() {
  bool self = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    self = started_ && std::this_thread::get_id() == thread_id_;
  }
  cv_.notify_all();
  idle_cv_.notify_all();
  if (!thread_.joinable()) return;
  if (self) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void Dispatcher::Run() {
  std::vector<Item> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      finished_ += batch.size();
      if (!batch.empty()) idle_cv_.notify_all();
      batch.clear();
      waiting_ = true;
      cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      waiting_ = false;
      if (queue_.empty() && stopping_) return;
      batch.swap(queue_);
    }
    bool stopping = false;
    for (Item& item : batch) {
      if (item.event) {
        // A throwing callback must not take the dispatcher (and with it every
        // later callback) down; there is nobody to report it to.
        try {
          if (on_event_) on_event_(*item.event);
        } catch (...) {
        }
        continue;
      }
      SubState* sub = item.sub.get();
      const int64_t bytes = static_cast<int64_t>(item.msg.size());
      if (!stopping) {
        std::lock_guard<std::mutex> lock(mu_);
        stopping = stopping_;
      }
      // After Stop() or Unsubscribe() queued messages are discarded.
      if (!stopping && !sub->closed.load(std::memory_order_relaxed)) {
        try {
          sub->handler(std::move(item.msg));
        } catch (...) {
        }
      }
      sub->Release(bytes);
      if (sub->draining.load(std::memory_order_relaxed) || sub->closed.load(std::memory_order_relaxed)) {
        sub->NotifyProgress();
      }
    }
  }
}

}  // namespace zmesh::client

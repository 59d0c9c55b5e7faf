#pragma once

// A one-shot result handed from the I/O thread to a waiting caller (Flush's
// PONG, a Request's reply). The first Complete() wins; later ones are ignored,
// so a caller that gave up (timeout) leaves a harmless orphan behind.
//
// Thread safety: Complete and Wait may be called from any threads.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include <zmesh/status.h>

namespace zmesh::client {

template <typename T>
class Completion {
 public:
  // Returns false if it was already complete.
  bool Complete(Status status, T value = T{}) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return false;
      done_ = true;
      status_ = std::move(status);
      value_ = std::move(value);
    }
    cv_.notify_all();
    return true;
  }

  // Waits until complete or `deadline`; false on timeout.
  bool WaitUntil(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [this] { return done_; });
  }

  bool done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  // Valid after a successful wait.
  const Status& status() const { return status_; }
  T& value() { return value_; }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Status status_;
  T value_{};
};

}  // namespace zmesh::client

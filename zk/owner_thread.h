#pragma once

// The zk/ counterpart of EventLoop::AssertInLoopThread(): the registry and its
// parts belong to the thread that runs their Executor's tasks, known only once
// Start() runs there. Check() checks that a method documented as "owner
// thread" runs on it, in debug and sanitizer builds (like the server's
// EventLoop::AssertInLoopThread); in Release it compiles to nothing.

#include <glog/logging.h>

#include <thread>

namespace zmesh::zk {

class OwnerThread {
 public:
  // Owner thread: the calling thread becomes the owner.
  void Bind() { id_ = std::this_thread::get_id(); }
  // True before Bind(): an object may be set up on another thread.
  bool IsCurrent() const {
    return id_ == std::thread::id() || id_ == std::this_thread::get_id();
  }
  void Check(const char* what) const {
#if !defined(NDEBUG) || defined(ZMESH_CHECK_THREADS)
    CHECK(IsCurrent()) << what << " called off its owner thread (check the Executor)";
#endif
  }

 private:
  std::thread::id id_;
};

}  // namespace zmesh::zk

#pragma once

// Binds an object to the one thread that may use it, muduo's
// assertInLoopThread() for the client: Check() aborts on any other thread.
// Ownership starts with the constructing thread and moves once, explicitly
// (TakeOver() on the new thread, ordered by the std::thread start).
//
// Thread safety: Check() from the owner; TakeOver() as described above.

#include <cstdio>
#include <cstdlib>
#include <thread>

namespace zmesh::client {

class ThreadOwner {
 public:
  explicit ThreadOwner(const char* what) : what_(what), id_(std::this_thread::get_id()) {}

  void TakeOver() { id_ = std::this_thread::get_id(); }

  void Check() const {
    if (std::this_thread::get_id() == id_) return;
    std::fprintf(stderr, "zmesh client: %s used outside its I/O thread\n", what_);
    std::abort();
  }

 private:
  const char* const what_;
  std::thread::id id_;
};

}  // namespace zmesh::client

#pragma once

// A point that splits this node's forwarding stream in two for a planned
// client move (docs/design-lossless-moves.md, "The cut"). A local publish
// holds its worker's gate while it delivers and forwards one message; a cut
// holds every gate while it writes its CUT frames. So each message either
// precedes the marks on every link or follows them on every link, and a
// local delivery either precedes the cut or follows it.
//
// Threading: Shared(i) only on worker i's thread, where nothing but a cut
// competes for it (an uncontended lock per publish). LockAll/UnlockAll from
// a thread that holds no gate (the main thread, or a worker outside a
// publish); gates are always taken in index order.

#include <algorithm>
#include <memory>
#include <mutex>

namespace zmesh::server {

class ForwardGate {
 public:
  explicit ForwardGate(int workers) : count_(std::max(workers, 1)), gates_(new Gate[count_]) {}
  ForwardGate(const ForwardGate&) = delete;
  ForwardGate& operator=(const ForwardGate&) = delete;

  std::mutex& Shared(int worker_index) { return gates_[static_cast<size_t>(worker_index) % count_].mu; }

  void LockAll() {
    for (size_t i = 0; i < count_; ++i) gates_[i].mu.lock();
  }
  void UnlockAll() {
    for (size_t i = count_; i > 0; --i) gates_[i - 1].mu.unlock();
  }

 private:
  struct alignas(64) Gate {  // one cache line each: workers never share one
    std::mutex mu;
  };
  const size_t count_;
  const std::unique_ptr<Gate[]> gates_;
};

// Holds every gate for a scope.
class ForwardGateCut {
 public:
  explicit ForwardGateCut(ForwardGate* gate) : gate_(gate) { gate_->LockAll(); }
  ~ForwardGateCut() { gate_->UnlockAll(); }
  ForwardGateCut(const ForwardGateCut&) = delete;
  ForwardGateCut& operator=(const ForwardGateCut&) = delete;

 private:
  ForwardGate* const gate_;
};

}  // namespace zmesh::server

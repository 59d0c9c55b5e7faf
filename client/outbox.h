#pragma once

// The one handoff between application threads and the client's I/O thread.
//
// Application threads encode operations (PUB, SUB, UNSUB, PING) straight into
// `pending`, an ordered byte buffer, under one mutex; rare control work
// (close, ZooKeeper callbacks) is posted as tasks. The I/O thread is woken
// through an eventfd only when it is idle, so a stream of publishes costs one
// wake-up per batch, not per message, and no allocation once the buffers
// have grown (the I/O thread swaps `pending` with its drained write buffer).
//
// Connected: appends are limited to `connected_high_water` bytes; Publish
// blocks beyond it until the I/O thread takes the bytes (back-pressure).
// Disconnected: SUB/UNSUB are not queued (the subscription table is re-sent
// on the next connection); publishes are kept up to `disconnected_max`
// bytes, beyond which Publish fails with kBufferFull.
//
// Thread safety: methods marked "any thread" may be called concurrently;
// methods marked "I/O thread" only from the owning I/O thread.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <zmesh/status.h>

#include "client/completion.h"

namespace zmesh::client {

// Completed with OK when the PONG for its PING arrives; nullptr for the
// client's own keepalive PINGs.
using PongWaiter = std::shared_ptr<Completion<bool>>;

class Outbox {
 public:
  struct Limits {
    size_t connected_high_water = 4 << 20;
    size_t disconnected_max = 8 << 20;
  };

  explicit Outbox(Limits limits);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Creates the eventfd. Call once before use.
  Status Init();
  // The eventfd the I/O thread watches for reads.
  int wake_fd() const { return wake_fd_; }

  // ---- any thread ----

  // Encodes a PUB (or HPUB when `headers` is non-empty). kBufferFull when
  // disconnected and it does not fit; kClosed after Close().
  Status AppendPub(std::string_view subject, std::string_view reply, std::string_view headers,
                   std::string_view data);
  // Runs fn(connected, &pending) under the lock. Subscription changes use it
  // so that a SUB is either in the byte stream or covered by the next
  // connection's re-subscribe, never both or neither. Returns false (without
  // running fn) after Close().
  template <typename Fn>
  bool WithLock(Fn&& fn) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      const size_t before = pending_.size();
      fn(connected_, &pending_);
      wake = pending_.size() != before && NeedsWakeLocked();
    }
    if (wake) Wake();
    return true;
  }
  // Queues a PING whose PONG completes `waiter` (in order with everything
  // appended before). Allowed while disconnected: it is sent after reconnect.
  Status AppendPing(PongWaiter waiter);
  // Runs `task` on the I/O thread. Dropped after Close().
  void Post(std::function<void()> task);
  // Bytes appended and not yet taken by the I/O thread.
  size_t pending_bytes() const;

  // ---- I/O thread ----

  // Consumes the wake-up and returns the posted tasks.
  std::vector<std::function<void()>> TakeTasks();
  // Connected only: moves pending bytes to the end of *wbuf and their ping
  // waiters to the end of *waiters. Returns false when there was nothing.
  bool TakePending(std::string* wbuf, std::deque<PongWaiter>* waiters);
  // True when nothing is pending: the I/O thread may sleep, the next append
  // will wake it. False: more arrived, take it first.
  bool ArmIfIdle();
  // The connection is ready. `resubscribe` runs under the lock, before the
  // flip becomes visible, and writes every SUB into the new connection (it
  // must not call back into the Outbox).
  template <typename Fn>
  void SetConnected(Fn&& resubscribe) {
    std::lock_guard<std::mutex> lock(mu_);
    resubscribe();
    connected_ = true;
  }
  // A planned move (client/move.h): `resubscribe` runs under the lock and
  // writes every SUB into the new connection. Returns how many pending bytes
  // that snapshot covers: their SUB/UNSUB are in it, so ResumeAfterMove
  // drops them. The I/O thread takes nothing from pending while a move runs.
  template <typename Fn>
  size_t SnapshotSubscriptions(Fn&& resubscribe) {
    std::lock_guard<std::mutex> lock(mu_);
    resubscribe();
    return pending_.size();
  }
  // The new connection of a move takes over: the SUB/UNSUB within the first
  // `covered` pending bytes are dropped, and the publishes in `salvaged`
  // (written to the old connection but never sent) go first.
  void ResumeAfterMove(size_t covered, std::string_view salvaged);
  // The connection was lost. `salvaged` (publishes the dead connection never
  // wrote) goes before what is pending; pending keeps its publishes and
  // PINGs and loses SUB/UNSUB. Wakes blocked publishers.
  void SetDisconnected(std::string_view salvaged);
  // Fails all appends from now on; returns the waiters still queued.
  std::deque<PongWaiter> Close();

 private:
  bool NeedsWakeLocked();
  void Wake();
  // Blocks while connected and over the high-water mark.
  void WaitForSpaceLocked(std::unique_lock<std::mutex>* lock, size_t need);

  const Limits limits_;
  int wake_fd_ = -1;

  mutable std::mutex mu_;
  std::condition_variable space_cv_;
  int space_waiters_ = 0;
  std::string pending_;
  std::deque<PongWaiter> pending_waiters_;  // one per PING in pending_, in order
  std::vector<std::function<void()>> tasks_;
  bool connected_ = false;
  bool closed_ = false;
  bool signaled_ = false;  // an eventfd write is outstanding
  bool io_idle_ = false;   // the I/O thread waits for bytes
};

}  // namespace zmesh::client

#pragma once

// The client's subscriptions: what to re-send after every move to another
// node, and where each incoming MSG goes (looked up by sid on the I/O thread).
//
// A SubState is shared by the table, the application's Subscription handle
// and messages queued for its callback; it outlives its removal from the
// table until the last of those lets go.
//
// Thread safety: SubscriptionTable methods are thread-safe (one mutex).
// SubState fields are atomics or guarded by its own mutex as noted.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmesh/client.h>
#include <zmesh/message.h>

namespace zmesh::client {

struct SubState {
  enum class Kind : uint8_t {
    kAsync,  // handler runs on the dispatcher thread
    kSync,   // messages wait in `queue` for NextMsg
    kMux,    // the request/reply inbox, handled on the I/O thread
  };

  SubState(uint64_t sid, std::string subject, std::string queue, Kind kind, MessageHandler handler,
           int64_t limit_msgs, int64_t limit_bytes)
      : sid(sid),
        subject(std::move(subject)),
        queue_group(std::move(queue)),
        kind(kind),
        handler(std::move(handler)),
        limit_msgs(limit_msgs),
        limit_bytes(limit_bytes) {}

  const uint64_t sid;
  const std::string subject;
  const std::string queue_group;
  const Kind kind;
  const MessageHandler handler;  // kAsync only; called on the dispatcher thread

  // Auto-unsubscribe: total messages allowed, 0 = no limit.
  std::atomic<int64_t> max_msgs{0};
  // Messages received for this subscription (I/O thread writes).
  std::atomic<int64_t> delivered{0};
  // Set once the subscription ended (unsubscribed, reached max, closed).
  std::atomic<bool> closed{false};
  // Set while draining: no new subscriptions block on it; delivery goes on.
  std::atomic<bool> draining{false};

  // Pending accounting: queued for the callback / NextMsg and not yet taken.
  std::atomic<int64_t> pending_msgs{0};
  std::atomic<int64_t> pending_bytes{0};
  std::atomic<int64_t> dropped{0};
  std::atomic<int64_t> limit_msgs;   // <= 0 = unlimited
  std::atomic<int64_t> limit_bytes;  // <= 0 = unlimited
  std::atomic<bool> slow_reported{false};

  // Admits one message of `bytes` into the pending count, or returns false
  // (counting a drop) when a limit would be exceeded.
  bool Admit(int64_t bytes);
  // The message left the queue (callback ran, or NextMsg took it).
  void Release(int64_t bytes) {
    pending_msgs.fetch_sub(1, std::memory_order_relaxed);
    pending_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  }

  // ---- sync subscriptions (and drain waits) ----
  // Pushes a message for NextMsg (caller already Admitted it).
  void Push(Message msg);
  // Waits for a message; kTimeout, or kClosed once closed and empty.
  Status Pop(Message* out, std::chrono::steady_clock::time_point deadline);
  // Marks the subscription closed and wakes NextMsg waiters. `discard`
  // drops queued messages (Unsubscribe); otherwise they stay readable (Drain).
  void Close(bool discard);
  // Waits until no message is pending (drain); false on timeout.
  bool WaitEmpty(std::chrono::steady_clock::time_point deadline);
  // Called by the dispatcher after a callback, to wake WaitEmpty.
  void NotifyProgress();

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> queue;  // guarded by mu
};

class SubscriptionTable {
 public:
  uint64_t NextSid() { return next_sid_.fetch_add(1, std::memory_order_relaxed); }

  void Add(std::shared_ptr<SubState> sub);
  // Returns the removed entry, or nullptr.
  std::shared_ptr<SubState> Remove(uint64_t sid);
  std::shared_ptr<SubState> Find(uint64_t sid) const;
  // Every live subscription, in sid order (= creation order).
  std::vector<std::shared_ptr<SubState>> All() const;
  // Removes and returns everything.
  std::vector<std::shared_ptr<SubState>> Clear();
  size_t size() const;

 private:
  std::atomic<uint64_t> next_sid_{1};
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<SubState>> subs_;
};

}  // namespace zmesh::client

#pragma once

// One entry of the subject index: a client's SUB, or the interest a peer node
// announced (remote == true; for a queue group `weight` is that node's member
// count).
//
// Threading: created, inserted and removed by the thread that owns `owner`;
// read by any thread that matched it. Match results hold a reference, so a
// subscription outlives its removal until every result that saw it is gone;
// `closed` tells such late readers to skip it. The fields that other threads
// read are immutable after insertion, or atomic.

#include <atomic>
#include <cstdint>
#include <string>

namespace zmesh::server {

class SubscriberEndpoint;

class Subscription {
 public:
  Subscription(SubscriberEndpoint* owner, std::string subject, std::string queue, std::string sid, bool remote,
               uint32_t weight = 1);
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  SubscriberEndpoint* owner() const { return owner_; }
  const std::string& subject() const { return subject_; }
  const std::string& queue() const { return queue_; }
  const std::string& sid() const { return sid_; }
  bool remote() const { return remote_; }
  bool is_queue() const { return !queue_.empty(); }

  bool closed() const { return closed_.load(std::memory_order_acquire); }
  void set_closed() { closed_.store(true, std::memory_order_release); }

  // A local queue member of a client in a planned move (server/mesh/
  // move_table.h): the new end's member is latent until every node has
  // switched its picks to it, the old end's is released from its own
  // release on. An unsettled member takes a message in its turn only if
  // the node that picked it counted it (DeliveryEndpoint::TakesQueueTurn),
  // otherwise only when no other member can, so each node's picks go to
  // the old member first and to the new one after, never back.
  enum class MoveState : uint8_t { kSettled, kLatent, kReleased };
  MoveState move_state() const { return move_state_.load(std::memory_order_acquire); }
  void set_move_state(MoveState state) { move_state_.store(state, std::memory_order_release); }
  bool settled() const { return move_state() == MoveState::kSettled; }
  // Latent -> settled; a member released meanwhile (its client moves on)
  // stays released.
  void SettleIfLatent() {
    MoveState latent = MoveState::kLatent;
    move_state_.compare_exchange_strong(latent, MoveState::kSettled, std::memory_order_acq_rel);
  }

  // Queue members this entry stands for: 1 for a client, the member count on
  // the announcing node for remote interest. Changed only by re-inserting.
  uint32_t weight() const { return weight_; }

  // Auto-unsubscribe (UNSUB <sid> <max>): 0 means unlimited.
  uint64_t max_msgs() const { return max_msgs_.load(std::memory_order_relaxed); }
  void set_max_msgs(uint64_t max) { max_msgs_.store(max, std::memory_order_relaxed); }
  // Counts one delivery and returns the new count. Any thread.
  uint64_t CountDelivery() { return delivered_.fetch_add(1, std::memory_order_relaxed) + 1; }
  uint64_t delivered() const { return delivered_.load(std::memory_order_relaxed); }

  // Position among its index node's plain subscriptions, or among its queue
  // group's members there; private to SubjectIndex (under its lock).
  uint32_t index_slot = 0;

 private:
  std::atomic<int32_t> refs_{1};
  std::atomic<bool> closed_{false};
  std::atomic<MoveState> move_state_{MoveState::kSettled};
  const bool remote_;
  const uint32_t weight_;
  std::atomic<uint64_t> max_msgs_{0};
  std::atomic<uint64_t> delivered_{0};
  SubscriberEndpoint* const owner_;  // referenced for the subscription's lifetime
  const std::string subject_;
  const std::string queue_;
  const std::string sid_;
};

// Holds a counted reference to a Subscription.
class SubscriptionRef {
 public:
  SubscriptionRef() = default;
  explicit SubscriptionRef(Subscription* s) : s_(s) {
    if (s_) s_->Ref();
  }
  SubscriptionRef(const SubscriptionRef& o) : SubscriptionRef(o.s_) {}
  SubscriptionRef(SubscriptionRef&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  SubscriptionRef& operator=(SubscriptionRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~SubscriptionRef() {
    if (s_) s_->Unref();
  }
  Subscription* get() const { return s_; }
  Subscription* operator->() const { return s_; }

 private:
  Subscription* s_ = nullptr;
};

}  // namespace zmesh::server

#pragma once

// Whatever a subscription delivers to, and the two narrow interfaces the
// router reaches it through: a DeliveryEndpoint (a local client connection)
// or a PeerForwarder (a remote node of the mesh). The router knows only
// these, not the connection or mesh classes behind them.
//
// A SubscriberEndpoint is bound to its interface once, by the concrete class's
// constructor; the router reads delivery() or forwarder() (a plain load) and
// makes one virtual call per destination, the call that used to be a
// static_cast on the owner.
//
// Threading: reference counted with atomics; the last Unref (any thread)
// deletes the object, so destructors must not touch loop state. kind() and the
// bound interface never change after construction; any thread reads them.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace zmesh::proto {
class MsgFrame;
}  // namespace zmesh::proto

namespace zmesh::server {

class Connection;
class IoWorker;
class Subscription;
struct Message;
template <typename T>
class RefPtr;

// A local client as the router sees it: the receiving end of a delivery, and
// the publisher the router may ask to slow down.
class DeliveryEndpoint {
 public:
  // Any thread (the publisher's worker, `worker`): queues `msg` for `sub`, a
  // subscription this endpoint owns that is not closed. Applies what the
  // client decides (auto-unsubscribe limit, delivery permissions, MSG or
  // HMSG framing). False if nothing was queued (a consumer over its pending
  // limit is closed as slow). `source`, when a local publisher, is told
  // (PushBackOn) when this delivery should slow it down.
  virtual bool Deliver(IoWorker* worker, Subscription* sub, proto::MsgFrame& frame, const Message& msg,
                       DeliveryEndpoint* source) = 0;

  // Owner thread (the publisher's own worker): a delivery of ours left
  // `consumer` behind; this client pauses after the current message.
  virtual void PushBackOn(Connection* consumer) = 0;

  // Any thread, for `sub`, our queue member that is not settled (a planned
  // move's; Subscription::MoveState): may it take a queue message from
  // `origin` ("" = this node) in its turn, like a settled member? Only if
  // `origin` picked it with `sub` counted: the new end's member once
  // `origin` switched to it, the old end's until `origin` switched away.
  // (It takes one anyway when no other member can.)
  virtual bool TakesQueueTurn(const Subscription& sub, std::string_view origin) const = 0;

 protected:
  ~DeliveryEndpoint() = default;
};

// A remote node as the router sees it.
class PeerForwarder {
 public:
  // Any thread: sends `msg` to the node once, naming the `queue_count`
  // queue groups it was chosen for. False when the node cannot take it.
  // *busy_link is set when the node's link is behind and the publishing
  // client should pause (see IoWorker::StallProducer).
  virtual bool Forward(const Message& msg, const std::string_view* queues, size_t queue_count,
                       RefPtr<Connection>* busy_link) = 0;

 protected:
  ~PeerForwarder() = default;
};

class SubscriberEndpoint {
 public:
  enum class Kind : uint8_t {
    kClient,    // a local client connection (delivers MSG): delivery() is set
    kPeer,      // a remote node: its interest, forwarded over its active link: forwarder() is set
    kPeerLink,  // a peer link connection; never owns subscriptions
  };

  explicit SubscriberEndpoint(Kind kind) : kind_(kind) {}
  SubscriberEndpoint(const SubscriberEndpoint&) = delete;
  SubscriberEndpoint& operator=(const SubscriberEndpoint&) = delete;

  Kind kind() const { return kind_; }
  // The interface for kClient (else null).
  DeliveryEndpoint* delivery() const { return delivery_; }
  // The interface for kPeer (else null).
  PeerForwarder* forwarder() const { return forwarder_; }

  // Who this is, for monitoring (/subsz): a connection's id (kClient,
  // kPeerLink) or a remote node's id (kPeer); 0 or empty otherwise. Fixed
  // at construction; any thread.
  virtual uint64_t connection_id() const { return 0; }
  virtual std::string_view remote_node_id() const { return {}; }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 protected:
  virtual ~SubscriberEndpoint() = default;

  // From the concrete class's constructor, before the object is shared.
  void BindDelivery(DeliveryEndpoint* delivery) { delivery_ = delivery; }
  void BindForwarder(PeerForwarder* forwarder) { forwarder_ = forwarder; }

 private:
  std::atomic<int32_t> refs_{1};
  const Kind kind_;
  DeliveryEndpoint* delivery_ = nullptr;
  PeerForwarder* forwarder_ = nullptr;
};

}  // namespace zmesh::server

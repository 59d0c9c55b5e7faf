#pragma once

// Fan-out: given a published message, find the matching subscriptions and
// hand the message to each local subscriber's DeliveryEndpoint (one copy per
// plain subscription, one member per matching queue group), and to each peer
// node with matching interest, once, through its PeerForwarder (see
// server/subscriber_endpoint.h). It knows no connection or mesh class.
//
// Nothing here blocks or writes to a socket: subscribers that received data
// are scheduled on the publishing worker and flushed once per loop
// iteration. A subscriber over its pending-bytes limit is closed as a slow
// consumer instead of slowing the publisher.
//
// Threading: called on the publisher's worker thread; uses that worker's
// match cache. Stateless otherwise, so every worker uses the same Router.
// Reaches nothing else of the node: what it delivers to hangs off the
// subscriptions it matched.

#include <cstdint>
#include <string_view>
#include <vector>

#include "server/message.h"

namespace zmesh::server {

class IoWorker;
class DeliveryEndpoint;

class Router {
 public:
  // A message from the local client `source`; its own subscriptions take it
  // only with `echo`. Returns true if it reached anyone, locally or on a peer
  // with matching interest; the caller answers a request that reached no one
  // (no-responders).
  bool PublishFromClient(IoWorker* worker, DeliveryEndpoint* source, bool echo, const Message& msg) const;

  // A message a peer forwarded to us: local subscribers only, never another
  // peer (loop freedom); a queue group only when `queues` names it, i.e. the
  // sender chose this node for it; then one of our members, whoever is left.
  // `to_plain` is false for a continuation frame (MSG_QUEUES) of a message
  // whose first frame already reached the plain subscribers.
  void PublishFromPeer(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                       bool to_plain = true) const;
};

}  // namespace zmesh::server

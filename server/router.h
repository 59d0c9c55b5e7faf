#pragma once

// Fan-out: given a published message, find the matching subscriptions and
// append the message to each subscriber's outbound buffer (one copy per plain
// subscription, one member per matching queue group), and hand it to each
// peer node with matching interest, once.
//
// Nothing here blocks or writes to a socket: subscribers that received data
// are scheduled on the publishing worker and flushed once per loop
// iteration. A subscriber over its pending-bytes limit is closed as a slow
// consumer instead of slowing the publisher.
//
// Threading: called on the publisher's worker thread; uses that worker's
// match cache. Stateless otherwise, so every worker uses the same Router.

#include <cstdint>
#include <string_view>
#include <vector>

#include "server/message.h"

namespace zmesh::server {

struct ServerContext;
class IoWorker;
class ClientConnection;
class Subscription;
struct MatchResult;

class Router {
 public:
  explicit Router(ServerContext* ctx) : ctx_(ctx) {}

  // A message from a local client. Returns true if it reached anyone,
  // locally or on a peer with matching interest.
  bool PublishFromClient(IoWorker* worker, ClientConnection* source, const Message& msg);

  // A message a peer forwarded to us: local subscribers only, never another
  // peer (loop freedom); a queue group only when `queues` names it, i.e. the
  // sender chose this node for it; then one of our members, whoever is left.
  // `to_plain` is false for a continuation frame (MSG_QUEUES) of a message
  // whose first frame already reached the plain subscribers.
  void PublishFromPeer(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                       bool to_plain = true);

  // Delivers `msg` to one subscription of a local client (also used for the
  // no-responders status). Returns true if it was queued.
  bool DeliverToClient(IoWorker* worker, Subscription* sub, const Message& msg);

 private:
  ServerContext* const ctx_;
};

}  // namespace zmesh::server

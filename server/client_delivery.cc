// ClientConnection's DeliveryEndpoint half: what the router calls on the
// publisher's thread to hand one of this client's subscriptions a message,
// and the replies that take the same path (no-responders). The session (the
// owner thread's protocol handling) is in client_connection.cc.
#include <string_view>

#include "auth/permissions.h"
#include "proto/msg_framing.h"
#include "server/client_connection.h"
#include "server/io_worker.h"
#include "server/message.h"
#include "server/subscription.h"

namespace zmesh::server {

bool ClientConnection::Deliver(IoWorker* worker, Subscription* sub, proto::MsgFrame& frame, const Message& msg,
                               DeliveryEndpoint* source) {
  if (!MoveAccepts(sub, msg)) return false;  // the other end of a planned move delivers it
  const uint64_t max = sub->max_msgs();
  const uint64_t n = sub->CountDelivery();
  if (max != 0) {
    if (n > max) return false;
    if (n == max) PostAutoUnsubscribe(sub);
  }
  if (const auth::Permissions* perms = permissions();
      perms != nullptr && !perms->unrestricted() && perms->NeedsDeliveryFilter(sub->subject()) &&
      perms->DeniesDelivery(msg.subject)) {
    return false;
  }
  const bool headers = headers_supported();
  std::string_view pieces[proto::MsgFrame::kMaxPieces];
  const size_t count = frame.Pieces(headers, sub->sid(), pieces);
  const size_t payload = frame.payload_size(headers);
  size_t pending = 0;
  if (!Enqueue(pieces, count, payload, /*is_message=*/true, CloseReason::kSlowConsumerPendingBytes, &pending)) {
    return false;
  }
  worker->stats().Add(worker->stats().out_msgs, 1);
  worker->stats().Add(worker->stats().out_bytes, payload);
  if (source != nullptr && source != this && WantsBackpressure(pending)) source->PushBackOn(this);
  return true;
}

void ClientConnection::PostAutoUnsubscribe(Subscription* sub) {
  sub->Ref();
  RefPtr<ClientConnection> self(this);
  loop()->QueueInLoop([self, sub] {
    auto it = self->subs_.find(sub->sid());
    if (it != self->subs_.end() && it->second == sub) self->RemoveSubscription(sub);
    sub->Unref();
  });
}

void ClientConnection::SendNoResponders(std::string_view reply) {
  if (!headers_supported()) return;
  // nats-server answers on the requester's own subscription matching the reply subject.
  const MatchResult* r = worker()->match_cache().Lookup(reply);
  for (Subscription* sub : r->plain) {
    if (sub->owner() != this || sub->closed()) continue;
    Message status{reply, {}, proto::kNoRespondersHeaders, static_cast<int64_t>(proto::kNoRespondersHeaders.size()), {}};
    proto::MsgFrame frame(status.subject, status.reply, status.payload, status.header_size);
    Deliver(worker(), sub, frame, status, nullptr);
    return;
  }
}

}  // namespace zmesh::server

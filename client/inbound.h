#pragma once

// Hands each MSG/HMSG the I/O thread reads to its subscription: request
// replies to the RequestMux, sync subscriptions to their queue, async ones
// into a batch for the Dispatcher (handed over once per read, Flush()).
// Applies auto-unsubscribe limits and the pending limits (slow consumer).
//
// Thread contract: I/O thread only; every method checks the Session's
// ThreadOwner.

#include <cstdint>
#include <memory>
#include <vector>

#include "client/dispatcher.h"
#include "client/server_url.h"
#include "client/thread_owner.h"
#include "proto/parser.h"

namespace zmesh::client {

class ClientState;
class RequestMux;
class SubscriptionTable;
struct SubState;

class Inbound {
 public:
  // All borrowed; they outlive the Inbound.
  Inbound(const ThreadOwner* io_thread, SubscriptionTable* subs, RequestMux* mux, Dispatcher* dispatcher,
          ClientState* state);

  // I/O thread: one MSG or HMSG from the node at `from` (named in slow
  // consumer events).
  void Deliver(const proto::Op& op, const ServerUrl& from);
  // I/O thread: hands the batched async deliveries to the Dispatcher.
  void Flush();
  // I/O thread: the connection ended; flushes and forgets cached lookups.
  void Reset();

 private:
  const ThreadOwner* const io_thread_;
  SubscriptionTable* const subs_;
  RequestMux* const mux_;
  Dispatcher* const dispatcher_;
  ClientState* const state_;
  std::vector<Dispatcher::Item> batch_;
  // The last subscription looked up: consecutive messages mostly share one.
  uint64_t cached_sid_ = 0;
  std::shared_ptr<SubState> cached_sub_;
};

}  // namespace zmesh::client

#pragma once

// What every connection of a node shares: the options, the subject index, the
// router, authentication and the INFO line. Owned by Server; outlives every
// connection.
//
// Threading: immutable after start-up: Server::Start builds it whole (Init)
// before any worker runs, and no field is assigned afterwards. The members
// that change are thread safe themselves (the index, the INFO builder, the
// pending budget, the closed-connections ring, the counters; see each type);
// any thread may use them.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "auth/authenticator.h"
#include "auth/tls_context.h"
#include "server/closed_connections.h"
#include "server/forward_gate.h"
#include "server/info_builder.h"
#include "server/options.h"
#include "server/pending_budget.h"
#include "server/rebalance_order.h"
#include "server/router.h"
#include "server/subject_index.h"

namespace zmesh::server {

struct ServerContext {
  // What Server::Start decides before the context exists.
  struct Init {
    std::string node_id;
    InfoStatic info;
    std::unique_ptr<auth::Authenticator> authenticator;  // null: no users file
    std::unique_ptr<auth::TlsContexts> tls;               // null: no --tls_cert
    // Re-sends INFO to every connected client (connect_urls or lame duck
    // changed). Any thread.
    std::function<void()> broadcast_info;
  };

  ServerContext(const Options& opts, Init init)
      : options(opts),
        node_id(std::move(init.node_id)),
        started_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count()),
        authenticator(std::move(init.authenticator)),
        tls(std::move(init.tls)),
        broadcast_info(std::move(init.broadcast_info)),
        router(),
        forward_gate(opts.threads),
        client_pending(opts.max_pending_bytes_total),
        info(std::move(init.info)) {}

  const Options options;
  const std::string node_id;
  const int64_t started_unix_ms;  // when the context was built
  const std::unique_ptr<auth::Authenticator> authenticator;  // null: no users file
  const std::unique_ptr<auth::TlsContexts> tls;               // null: no --tls_cert
  const std::function<void()> broadcast_info;                 // see Init
  const Router router;

  ForwardGate forward_gate;      // local publishes vs. a planned move's cut
  PendingBudget client_pending;  // bytes queued to all clients (--max_pending_bytes_total)
  SubjectIndex index;
  InfoBuilder info;
  ClosedConnections closed;  // recently closed clients, for monitoring
  RebalanceOrder rebalance;  // set by the mesh, taken by movable clients
  MoveCounters moves;

  std::atomic<int> client_count{0};
  // Local client subscriptions on this node, against --max_subs_total.
  std::atomic<int64_t> subscription_count{0};
  std::atomic<uint64_t> next_client_id{1};
  std::atomic<uint64_t> total_connections{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> auth_overloaded{0};  // logins closed unjudged as retryable (authenticator busy)
};

}  // namespace zmesh::server

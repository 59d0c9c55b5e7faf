#pragma once

// What every connection of a node shares: the options, the subject index, the
// router, authentication and the INFO line. Owned by Server; outlives every
// connection.
//
// Threading: the members are either immutable after start-up or thread safe
// themselves (see each type); any thread may use them.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "auth/authenticator.h"
#include "auth/tls_context.h"
#include "server/closed_connections.h"
#include "server/info_builder.h"
#include "server/options.h"
#include "server/pending_budget.h"
#include "server/router.h"
#include "server/subject_index.h"

namespace zmesh::server {

class IoWorker;
class InterestObserver;

struct ServerContext {
  explicit ServerContext(const Options& opts, InfoStatic info)
      : options(opts), client_pending(opts.max_pending_bytes_total), info(std::move(info)), router(this) {}

  const Options options;
  PendingBudget client_pending;  // bytes queued to all clients (--max_pending_bytes_total)
  std::string node_id;
  SubjectIndex index;
  InfoBuilder info;
  Router router;
  std::unique_ptr<auth::Authenticator> authenticator;  // null: no users file
  std::unique_ptr<auth::TlsContexts> tls;               // null: no --tls_cert
  InterestObserver* interest = nullptr;                // null: standalone node

  int64_t started_unix_ms = 0;
  // Re-sends INFO to every connected client (connect_urls or lame duck
  // changed). Set by the server; any thread.
  std::function<void()> broadcast_info;

  ClosedConnections closed;  // recently closed clients, for monitoring

  std::atomic<int> client_count{0};
  // Local client subscriptions on this node, against --max_subs_total.
  std::atomic<int64_t> subscription_count{0};
  std::atomic<uint64_t> next_client_id{1};
  std::atomic<uint64_t> total_connections{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> auth_overloaded{0};  // logins closed unjudged as retryable (authenticator busy)
};

}  // namespace zmesh::server

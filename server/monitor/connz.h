#pragma once

// /connz in pieces that need no server: parsing nats-server's query
// parameters and building the page, so paging and sorting can be tested on
// their own. ServeConnz (endpoints.h) glues them to the live connections.
//
// Threading: pure functions; any thread.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/monitor/connection_snapshot.h"
#include "server/monitor/query.h"

namespace zmesh::server::monitor {

struct ConnzOptions {
  enum class State { kOpen, kClosed, kAll };
  State state = State::kOpen;
  std::string sort = "cid";  // nats-server's sort options
  bool subs = false;         // list each connection's subjects
  int64_t offset = 0;
  int64_t limit = 1024;
  uint64_t cid = 0;          // only this connection; 0 = all
};

// offset, limit (capped at kMaxListLimit), sort, subs, state, cid. False
// with *error for an unknown sort or state, or a non-numeric number.
bool ParseConnzOptions(const Query& query, ConnzOptions* options, std::string* error);

// The page of `conns` the options ask for: filtered by cid, sorted, then
// offset/limit applied. *total is the count before paging.
std::vector<ConnectionInfo> SelectConnzPage(const ConnzOptions& options, std::vector<ConnectionInfo> conns,
                                            int64_t now_unix_ms, size_t* total);

// Renders nats-server's Connz object for a page SelectConnzPage chose. With
// options.subs, each connection lists its `subjects` (at most
// kMaxConnzSubjects; "subscriptions_list_truncated" when cut).
nlohmann::json RenderConnz(const ConnzOptions& options, const std::vector<ConnectionInfo>& page, size_t total,
                           const std::string& server_id, int64_t now_unix_ms);

// SelectConnzPage, then RenderConnz.
nlohmann::json BuildConnz(const ConnzOptions& options, std::vector<ConnectionInfo> conns,
                          const std::string& server_id, int64_t now_unix_ms);

}  // namespace zmesh::server::monitor

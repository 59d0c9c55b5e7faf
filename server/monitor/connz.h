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

// Filters, sorts and pages `conns`, and renders nats-server's Connz object.
nlohmann::json BuildConnz(const ConnzOptions& options, std::vector<ConnectionInfo> conns,
                          const std::string& server_id, int64_t now_unix_ms);

}  // namespace zmesh::server::monitor

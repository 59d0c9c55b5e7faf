#pragma once

// Copies of client connections for /connz: the open ones, read on their
// workers, and the recently closed ones from ServerContext::closed. The
// subjects are a separate, second step, for the connections of one page only.
//
// Threading: CollectOpenConnections and CollectSubjects are called on the
// main loop and answer there (see worker_fanout.h); the copies are plain
// values.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "server/monitor/monitor_context.h"

namespace zmesh::server {
struct ClosedConnection;
}

namespace zmesh::server::monitor {

struct ConnectionInfo {
  uint64_t cid = 0;
  std::string ip;
  int port = 0;
  int64_t start_unix_ms = 0;
  int64_t last_activity_unix_ms = 0;  // open connections: the last read
  int64_t stop_unix_ms = 0;           // closed connections only
  bool closed = false;
  std::string reason;                 // closed connections only
  size_t pending_bytes = 0;
  uint64_t in_msgs = 0, out_msgs = 0, in_bytes = 0, out_bytes = 0;
  size_t subscriptions = 0;  // exact, whatever `subjects` holds
  std::string name, lang, version, user;
  std::vector<std::string> subjects;  // only when asked for (subs=1), capped
  bool subjects_truncated = false;    // `subjects` holds fewer than `subscriptions`
  // Open connections that are an end of a planned move (the last one).
  struct Move {
    bool incoming = false;  // the new end (else the old one)
    uint64_t token = 0;
    bool complete = false;  // every node's cut is in
    bool finished = false;  // the filter no longer splits the stream
    uint64_t withheld = 0;  // plain messages left to the other end
  };
  std::optional<Move> move;
};

// Main loop: snapshots every open client connection on its worker (no
// subjects: a few strings each), then calls `done` on the main loop.
void CollectOpenConnections(const MonitorSources& sources, std::function<void(std::vector<ConnectionInfo>)> done);

// Up to `max_per_connection` subscription subjects of one connection.
struct SubjectList {
  std::vector<std::string> subjects;
  bool truncated = false;
};
using SubjectsByCid = absl::flat_hash_map<uint64_t, SubjectList>;

// Main loop: the subjects of the open connections in `cids`, read on their
// workers, then `done` on the main loop. The workers are asked in rounds of
// a few connections, so no worker task copies more than
// kConnectionsPerRound * max_per_connection subjects between its events.
// A connection that closed meanwhile is simply absent.
inline constexpr size_t kConnectionsPerRound = 64;
void CollectSubjects(const MonitorSources& sources, std::vector<uint64_t> cids, size_t max_per_connection,
                     std::function<void(SubjectsByCid)> done);

// Any thread.
ConnectionInfo FromClosed(const ClosedConnection& c);

}  // namespace zmesh::server::monitor

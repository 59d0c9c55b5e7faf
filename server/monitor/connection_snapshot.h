#pragma once

// Copies of client connections for /connz: the open ones, read on their
// workers, and the recently closed ones from ServerContext::closed.
//
// Threading: CollectOpenConnections is called on the main loop and answers
// there (see worker_fanout.h); the copies are plain values.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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
  size_t subscriptions = 0;
  std::string name, lang, version, user;
  std::vector<std::string> subjects;  // only when asked for (subs=1)
};

// Main loop: snapshots every open client connection on its worker, then
// calls `done` on the main loop. With `with_subjects`, each one's
// subscription subjects too.
void CollectOpenConnections(const MonitorSources& sources, bool with_subjects,
                            std::function<void(std::vector<ConnectionInfo>)> done);

// Any thread.
ConnectionInfo FromClosed(const ClosedConnection& c);

}  // namespace zmesh::server::monitor

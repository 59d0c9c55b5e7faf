#pragma once

// What the monitoring endpoints read from (the server's parts, borrowed) and
// the little state monitoring keeps itself.
//
// Threading: a MonitorContext is created, used and destroyed on the main
// loop thread. The borrowed parts say for themselves which of their members
// other threads may touch; connection state is reached only through the
// workers (see worker_fanout.h).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "server/monitor/process_stats.h"
#include "server/options.h"

namespace zmesh::server {
struct ServerContext;
class EventLoop;
class IoWorker;
namespace mesh {
class Mesh;
}
}  // namespace zmesh::server

namespace zmesh::server::monitor {

// The parts of a running Server monitoring reads. All outlive the monitor.
struct MonitorSources {
  ServerContext* ctx = nullptr;
  EventLoop* main_loop = nullptr;
  std::vector<IoWorker*> workers;
  // Main thread: the mesh, or null on a standalone node. A getter because
  // monitoring starts before the mesh exists, to answer 503 while joining.
  std::function<mesh::Mesh*()> mesh;
  std::function<bool()> serving;  // main thread: the client port accepts connections
};

// The node's fixed identity, as its INFO line states it.
struct ServerIdentity {
  std::string server_id;
  std::string server_name;
  std::string node_id;
  std::string version;  // the NATS server version whose protocol we speak
  std::string zmesh_version;
  std::string host;
  int port = 0;
  bool auth_required = false;
  bool tls_required = false;
  int64_t max_payload = 0;
};

// Reads the identity from ServerContext: the fields its INFO line is
// encoded from, and the node id. Any thread.
ServerIdentity IdentityOf(const ServerContext& ctx);

struct MonitorContext {
  MonitorContext(MonitorSources s, ServerIdentity id) : sources(std::move(s)), identity(std::move(id)) {}

  const MonitorSources sources;
  const ServerIdentity identity;
  HostPort http_address;                           // bound monitoring address
  CpuMeter cpu;                                    // for /varz "cpu"
  std::map<std::string, uint64_t> http_req_stats;  // requests per endpoint path
};

}  // namespace zmesh::server::monitor

#pragma once

// A zmesh mesh for integration tests: real zmesh-server processes on loopback
// registered in a private ZooKeeper (tests/support/zookeeper_server.h), with
// the observation points the mesh tests need:
// - each node's ports from its --ports_file (written once it serves clients);
// - its monitoring endpoints (/peerz, /varz, /healthz) over plain HTTP;
// - the membership as ZooKeeper itself holds it, read with the C client
//   (ZkReader), not through the code under test.
//
// Every node is started with short timeouts so that the fault tests run in
// seconds (session 2000 ms with tick 500 ms, pings every 500 ms). Only
// processes started here are signalled, by PID. The working directory (logs,
// ports files, secrets) is kept when the current test failed, or always with
// ZMESH_KEEP_MESH_DIRS=1.
//
// Not thread safe: one test thread drives a MeshCluster.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/http_get.h"
#include "tests/support/process.h"

typedef struct _zhandle zhandle_t;

namespace zmesh::testing {

using std::chrono::milliseconds;

// --- Plain observation helpers ------------------------------------------------

// ESTABLISHED IPv4 TCP sockets whose local port is `local_port`, on any
// address (from /proc/net/tcp of this network namespace). Counting them on a
// peer listen port counts the accepted peer links of that node.
int CountEstablishedOnLocalPort(uint16_t local_port);

// A reader of ZooKeeper's own view, through the multi-threaded C client with
// one session of its own. Reconnects by itself when ZooKeeper was restarted.
// Not thread safe.
class ZkReader {
 public:
  explicit ZkReader(std::string connect);
  ~ZkReader();
  ZkReader(const ZkReader&) = delete;
  ZkReader& operator=(const ZkReader&) = delete;

  // Children of `path`, sorted; nullopt when ZooKeeper cannot be asked within
  // `timeout` (down, or `path` does not exist: an empty list then).
  std::optional<std::vector<std::string>> Children(const std::string& path,
                                                  milliseconds timeout = milliseconds(2000));
  // Data of `path` and the session that owns it (0 for a persistent znode);
  // nullopt when it does not exist or ZooKeeper cannot be asked.
  struct Znode {
    std::string data;
    int64_t ephemeral_owner = 0;
  };
  std::optional<Znode> Get(const std::string& path, milliseconds timeout = milliseconds(2000));

 private:
  bool EnsureConnected(milliseconds timeout);
  void Close();

  std::string connect_;
  zhandle_t* zh_ = nullptr;
};

// --- The mesh ----------------------------------------------------------------

// How one node is started; the defaults suit most tests.
struct MeshNodeSpec {
  std::string node_id;        // default: "n<index+1>"
  std::string secret;         // default: the cluster's secret
  std::string host = "127.0.0.1";  // --listen/--peer_listen/--http_listen host
  // Fixed ports (restarts on the same ports); 0 = let the node pick (port 0)
  // and learn the ports from its ports file.
  uint16_t client_port = 0;
  uint16_t peer_port = 0;
  uint16_t http_port = 0;
  std::vector<std::string> extra_args;  // appended last: gflags lets them override
  // The test expects the node to exit by itself with this status (a refused
  // configuration); teardown then accepts that exit instead of failing on it.
  std::optional<int> expected_exit_code;
};

struct MeshOptions {
  std::string zk_connect;  // required
  std::string zk_root;     // required, unique per test
  int session_timeout_ms = 2000;
  int ping_interval_ms = 500;
  int max_pings_out = 2;
  int join_timeout_ms = 3000;
  int anti_entropy_interval_ms = 1000;
  int threads = 2;
  std::string secret = "mesh-test-cluster-secret-5f1c0e7a9b";
};

class MeshCluster {
 public:
  struct Node {
    MeshNodeSpec spec;
    std::string id;
    std::string ports_path;
    std::string log_path;
    std::string secret_path;
    uint16_t client_port = 0;  // known once ready (or fixed)
    uint16_t peer_port = 0;
    uint16_t http_port = 0;
    std::unique_ptr<Process> process;
  };

  explicit MeshCluster(MeshOptions options);
  // Stops every node (SIGTERM, SIGKILL after a bound). Every run of every
  // node must have ended cleanly and logged no sanitizer report
  // (tests/support/server_checks.h), else the test fails. When the current
  // test failed: keeps the directory and prints the tail of every node's log.
  ~MeshCluster();
  MeshCluster(const MeshCluster&) = delete;
  MeshCluster& operator=(const MeshCluster&) = delete;

  // Adds a node (not started); returns its index.
  int Add(MeshNodeSpec spec = {});
  // Starts the process without waiting (simultaneous starts).
  bool Launch(int i, std::string* error);
  // Waits until the node serves clients (its ports file appears with the
  // ports it bound). False with the log tail in *error.
  bool WaitReady(int i, milliseconds timeout, std::string* error);
  // Launch + WaitReady.
  bool Start(int i, std::string* error, milliseconds timeout = milliseconds(15000));
  // Adds and starts `count` nodes one after the other, then waits until the
  // whole mesh converged (WaitConverged). Returns the first new index.
  bool StartNodes(int count, std::string* error);

  // SIGKILL, reap.
  void Kill(int i);
  // SIGTERM, wait (bounded), SIGKILL.
  void Stop(int i);
  bool Signal(int i, int sig);
  bool Running(int i);

  int size() const { return static_cast<int>(nodes_.size()); }
  Node& node(int i) { return nodes_.at(static_cast<size_t>(i)); }
  const std::string& id(int i) const { return nodes_.at(static_cast<size_t>(i)).id; }
  uint16_t client_port(int i) const { return nodes_.at(static_cast<size_t>(i)).client_port; }
  uint16_t peer_port(int i) const { return nodes_.at(static_cast<size_t>(i)).peer_port; }
  std::string client_url(int i) const;
  std::string Log(int i) const;
  const std::string& dir() const { return dir_; }
  const MeshOptions& options() const { return options_; }
  std::string nodes_path() const { return options_.zk_root + "/nodes"; }

  // --- Monitoring (GET on the node's --http_listen) ---
  std::optional<nlohmann::json> Peerz(int i);
  std::optional<nlohmann::json> Varz(int i);
  // /connz with `query` (for example "subs=1").
  std::optional<nlohmann::json> Connz(int i, const std::string& query = "");
  // HTTP status of /healthz; 0 when it did not answer.
  int Healthz(int i);

  // What node i's /peerz says about node `peer_id`; nullopt when /peerz did
  // not answer or lists no such peer.
  std::optional<nlohmann::json> PeerEntry(int i, const std::string& peer_id);
  // Node ids node i has an active link to (/peerz linked:true).
  std::optional<std::set<std::string>> LinkedPeers(int i);

  // The mesh formed by exactly the nodes in `nodes`: ZooKeeper lists exactly
  // their znodes, and each of them is registered and healthy with every other
  // one member, linked and synced, and no link to anyone else — steadily for
  // a few of the nodes' monitoring ticks (400 ms). On timeout
  // false with the last state seen in *why.
  bool WaitConverged(const std::vector<int>& nodes, milliseconds timeout, std::string* why);
  // All running nodes.
  std::vector<int> RunningNodes();

  ZkReader& zk() { return zk_; }
  // The znode ids under <root>/nodes, from ZooKeeper itself.
  std::optional<std::vector<std::string>> ZkMembers(milliseconds timeout = milliseconds(2000));

 private:
  std::vector<std::string> Argv(const Node& n) const;
  bool ReadPortsFile(Node& n);
  std::string LogTail(int i, size_t bytes) const;
  // One line per node describing its /peerz, for failure messages.
  std::string DescribeState(const std::vector<int>& nodes);

  MeshOptions options_;
  std::string dir_;
  std::string secret_path_;
  std::vector<Node> nodes_;
  ZkReader zk_;
};

// zmesh-server in $ZMESH_BIN_DIR.
std::string ZmeshServerPath();

}  // namespace zmesh::testing

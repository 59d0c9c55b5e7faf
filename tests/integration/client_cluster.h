#pragma once

// Clusters of real servers for the client library's integration tests:
// - kNats: nats-server 2.9 nodes joined by routes (which also announce
//   connect_urls and support lame duck mode);
// - kNatsInZooKeeper: the same, with connect_urls off (--no_advertise), each
//   node registered in ZooKeeper by a zk_registry_helper process of its own
//   (killed together with its node, so its ephemeral znode lingers for the
//   session timeout exactly like a crashed zmesh-server's): a stand-in mesh
//   for ZooKeeper discovery until zmesh-server runs;
// - kZmesh: zmesh-server nodes registered in ZooKeeper themselves. Nodes can be killed with SIGKILL, stopped, and
// restarted on the same ports. Only processes started here are signalled,
// by PID. Logs go to a temporary directory that is kept when a test fails.
//
// Not thread safe: one test thread.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace zmesh::testing {

// True once a TCP connect to 127.0.0.1:port succeeds and the server's first
// line (INFO) arrives, within `timeout`.
bool WaitForInfo(int port, std::chrono::milliseconds timeout);

class NodeCluster {
 public:
  enum class Kind { kNats, kNatsInZooKeeper, kZmesh };

  // kNatsInZooKeeper and kZmesh need `zk_connect`; zmesh-server and
  // zk_registry_helper are found in $ZMESH_BIN_DIR.
  NodeCluster(Kind kind, int size, std::string zk_connect = "", std::string zk_root = "/zmesh/client-test");
  ~NodeCluster();

  // Starts every node and waits until each serves; false with *error.
  bool Start(std::string* error);
  bool StartNode(int i, std::string* error);
  // SIGKILL and reap.
  void Kill(int i);
  // SIGTERM, wait (bounded), then SIGKILL.
  void Stop(int i);
  // Sends a signal without waiting (e.g. lame duck: nats-server --signal ldm).
  bool LameDuck(int i);
  bool running(int i) const;

  int size() const { return static_cast<int>(nodes_.size()); }
  int port(int i) const { return nodes_[i].port; }
  std::string url(int i) const { return "nats://127.0.0.1:" + std::to_string(nodes_[i].port); }
  std::vector<std::string> urls() const;
  pid_t pid(int i) const { return nodes_[i].process ? nodes_[i].process->pid() : -1; }
  // Index of the node with this client URL, -1 if none.
  int IndexOf(const std::string& url) const;
  const std::string& dir() const { return dir_; }
  const std::string& zk_root() const { return zk_root_; }
  std::string Log(int i) const;

 private:
  struct Node {
    int port = 0;
    int peer_port = 0;
    std::unique_ptr<Process> process;
    std::unique_ptr<Process> registrar;  // kNatsInZooKeeper
  };
  bool StartRegistrar(int i, std::string* error);
  std::vector<std::string> Argv(int i) const;

  Kind kind_;
  std::string zk_connect_;
  std::string zk_root_;
  std::string dir_;
  std::vector<Node> nodes_;
};

}  // namespace zmesh::testing

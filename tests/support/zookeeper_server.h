#pragma once

// A private ZooKeeper for integration tests (ZOOKEEPER.md Part 2): Debian's
// zookeeper.jar run directly with QuorumPeerMain on 127.0.0.1, a free port,
// its own temporary data directory and tickTime 500 ms (negotiable session
// timeouts 1000..10000 ms). No systemd, nothing in /etc or /var, no admin
// server on 8080. Only the process started here is ever signalled, by PID.
//
// A test that needs ZooKeeper and cannot start it must fail, not skip:
//   ZooKeeperServer zk;
//   std::string error;
//   ASSERT_TRUE(zk.Start(&error)) << error;
//
// Not thread safe: use one ZooKeeperServer from one thread, which should
// outlive the server (the JVM gets SIGKILL when the thread that started it
// exits, so a crashed test leaves no JVM behind).

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace zmesh::testing {

// Sends a four-letter word ("srvr", "mntr", "dump", ...) to 127.0.0.1:port and
// returns the whole answer, or "" if nothing answered within `timeout`.
std::string ZooKeeperFourLetterWord(int port, const std::string& word,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(2));

// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago.
std::vector<int> FreeLoopbackPorts(int count);

class ZooKeeperServer {
 public:
  struct Options {
    int tick_ms = 500;
    int port = 0;  // 0: pick a free one
    std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
    // For ensembles: "server.N=..." lines and this server's id (myid file).
    std::vector<std::string> extra_config;
    int myid = 0;
  };

  ZooKeeperServer() : ZooKeeperServer(Options()) {}
  explicit ZooKeeperServer(Options options);
  ZooKeeperServer(const ZooKeeperServer&) = delete;
  ZooKeeperServer& operator=(const ZooKeeperServer&) = delete;
  // SIGKILL by PID if still running, then removes the data directory.
  ~ZooKeeperServer();

  // Starts the server and waits until it serves: `srvr` prints a Mode line
  // (`ruok` says imok too early). The first call creates the data directory
  // and zoo.cfg. On failure returns false with the reason and the log's tail.
  bool Start(std::string* error);
  // Starts without waiting for it to serve (ensembles start all, then wait).
  bool Launch(std::string* error);
  bool WaitServing(std::chrono::milliseconds timeout, std::string* error);

  // Sends `sig` and waits (polling, bounded) until the process is gone;
  // escalates to SIGKILL after 10 s. True once it is gone.
  bool Stop(int sig = 15 /* SIGTERM */);
  // Stop (if running), then Start on the same port and data directory.
  bool Restart(std::string* error, int sig = 15 /* SIGTERM */);

  bool running();
  int port() const { return port_; }
  // "127.0.0.1:<port>"
  std::string connect_string() const;
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return process_.pid(); }
  // "standalone", "leader", "follower"; "" when not serving.
  std::string Mode() const;
  std::string ReadLog() const { return process_.ReadLog(); }

 private:
  bool Prepare(std::string* error);
  std::string LogTail() const;

  Options options_;
  std::string dir_;
  int port_ = 0;
  Process process_;
};

// Several servers forming one ensemble on loopback.
class ZooKeeperEnsemble {
 public:
  explicit ZooKeeperEnsemble(int size = 3, int tick_ms = 500);
  ZooKeeperEnsemble(const ZooKeeperEnsemble&) = delete;
  ZooKeeperEnsemble& operator=(const ZooKeeperEnsemble&) = delete;

  // Starts every server, then waits until each one serves.
  bool Start(std::string* error, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  int size() const { return static_cast<int>(servers_.size()); }
  ZooKeeperServer& server(int index) { return *servers_[index]; }
  // Index of the server reporting Mode: leader; -1 if none does.
  int LeaderIndex() const;
  // "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c"
  std::string connect_string() const;

 private:
  std::vector<std::unique_ptr<ZooKeeperServer>> servers_;
};

}  // namespace zmesh::testing

#pragma once

// What the client reports about itself, written by the I/O thread (Session)
// and read by application threads (Engine): the connection state and URL,
// the last error, the known nodes, the lifecycle flags (first connect failed,
// close requested, draining, finished), the current node's max_payload and
// the traffic counters.
//
// Thread safety: all methods are thread-safe. mu_ is a leaf lock: no
// callback runs and no other lock is taken while it is held.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <zmesh/client.h>
#include <zmesh/status.h>

namespace zmesh::client {

class ClientState {
 public:
  using Clock = std::chrono::steady_clock;

  // Traffic counters; relaxed atomics, each written by one thread.
  std::atomic<uint64_t> in_msgs{0}, in_bytes{0}, out_msgs{0}, out_bytes{0}, reconnects{0}, dropped{0};
  std::atomic<uint64_t> moves{0}, moves_abandoned{0};
  // max_payload of the node we are on (-1: none announced); publishes check it.
  std::atomic<int64_t> server_max_payload{-1};

  // ---- written by the I/O thread ----
  // Ignored once Finish() ran: a closed client stays closed.
  void SetState(ConnectionState state, const std::string& url);
  void SetLastError(const Status& status);
  void SetKnownServers(std::vector<std::string> servers);
  // Every node was tried once and none took us (Start may give up).
  void MarkInitialConnectFailed();

  // ---- lifecycle, any thread ----
  // No new work is accepted from here on (Close, or the engine gave up).
  void MarkCloseRequested();
  // Stops new subscriptions; kClosed when the client is closed already.
  Status BeginDrain();
  // Once: the state becomes kClosed. false when it already was finished.
  bool Finish();
  // Waits until Start may return: connected, closed, or (unless
  // retry_on_failed_connect) every node failed, or `deadline`. Ok when
  // connected, or still trying with retry_on_failed_connect; otherwise why not.
  Status WaitForFirstConnection(Clock::time_point deadline, bool retry_on_failed_connect);

  // ---- any thread ----
  // Ok, kClosed or kDraining: whether a new subscription is accepted.
  Status CheckAcceptsSubscriptions() const;
  bool closed() const;  // close requested or finished
  ConnectionState state() const;
  std::string connected_url() const;
  std::vector<std::string> known_servers() const;
  Status last_error() const;
  ClientStats stats() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;  // state, initial_failed_, close_requested_, finished_
  ConnectionState state_ = ConnectionState::kConnecting;  // guarded by mu_
  std::string connected_url_;                             // guarded by mu_
  Status last_error_;                                     // guarded by mu_
  std::vector<std::string> known_;                        // guarded by mu_
  bool initial_failed_ = false;                           // guarded by mu_
  bool draining_ = false;                                 // guarded by mu_
  bool close_requested_ = false;                          // guarded by mu_
  bool finished_ = false;                                 // guarded by mu_
};

}  // namespace zmesh::client

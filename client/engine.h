#pragma once

// The client's core: the I/O thread with its event loop, the current
// Connection, node selection (ServerPool), discovery, re-subscription after
// a move, keepalive, and the thread-safe operations behind zmesh::Client.
//
// Threads:
// - The I/O thread owns everything marked "I/O thread" below: the event
//   base, the pool, discovery, the connection and its write buffer. Other
//   threads reach it only through the Outbox (bytes in order + tasks).
// - Application threads call the thread-safe methods; they touch the Outbox,
//   the SubscriptionTable, the RequestMux and `mu_`-guarded status fields.
// - The Dispatcher runs callbacks.
// Lock order: Outbox -> SubscriptionTable -> SubState::mu; mu_ is a leaf.
//
// Thread safety: public methods are thread-safe unless noted.

#include <event2/event.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmesh/client.h>
#include <zmesh/options.h>

#include "client/connection.h"
#include "client/discovery.h"
#include "client/dispatcher.h"
#include "client/outbox.h"
#include "client/request_mux.h"
#include "client/server_pool.h"
#include "client/subscription_table.h"

namespace zmesh::client {

class TlsContext;

class Engine : public Connection::Delegate, public std::enable_shared_from_this<Engine> {
 public:
  using Clock = std::chrono::steady_clock;

  // Test seams. Empty members use the real thing.
  struct Hooks {
    // Replaces ZooKeeper discovery (used when Options::zk_connect is set).
    std::function<std::unique_ptr<Discovery>(zk::Executor executor)> discovery_factory;
    // Replaces the zk::Registry behind the default RegistryDiscovery.
    RegistryFactory registry_factory;
  };

  Engine(Options options, Hooks hooks);
  ~Engine() override;

  // Starts the threads and waits for the first connection (see Options).
  // On failure the engine is closed. Call once.
  Status Start();

  Status Publish(std::string_view subject, std::string_view reply, std::string_view headers,
                 std::string_view data);
  // `handler` empty = sync subscription.
  Status Subscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                   std::shared_ptr<SubState>* out);
  Status Unsubscribe(const std::shared_ptr<SubState>& sub);
  Status AutoUnsubscribe(const std::shared_ptr<SubState>& sub, int64_t max);
  Status DrainSubscription(const std::shared_ptr<SubState>& sub, Clock::time_point deadline);
  Status Flush(Clock::time_point deadline);
  Status Request(std::string_view subject, std::string_view headers, std::string_view data,
                 std::chrono::milliseconds timeout, Message* reply);
  Status Drain(Clock::time_point deadline);
  void Close();

  ConnectionState state() const;
  std::string connected_url() const;
  std::vector<std::string> known_servers() const;
  Status last_error() const;
  size_t buffered_bytes() const { return outbox_->pending_bytes(); }
  ClientStats stats() const;
  std::string NewInbox() const;
  bool closed() const;

 private:
  // ---- I/O thread ----
  void Run();
  // Frees the loop and its events: on the I/O thread after it ran, or in
  // Close() when Start failed before the thread began.
  void FreeLoop();
  static void OnWakeEvent(evutil_socket_t, short, void* arg);
  static void OnTickEvent(evutil_socket_t, short, void* arg);
  static void OnRetryEvent(evutil_socket_t, short, void* arg);
  static void OnReapEvent(evutil_socket_t, short, void* arg);
  static void OnPumpEvent(evutil_socket_t, short, void* arg);
  void HandleWake();
  void Tick();
  // Moves pending bytes from the Outbox to the socket.
  void Pump();
  // Picks a node and connects now, or arms the retry timer for later.
  void TryNext();
  void StartAttempt(const ServerUrl& url);
  void OnNodes(const std::vector<std::string>& urls, std::string_view source);
  void UpdateAnnounced(const std::vector<std::string>& urls);
  void PublishKnownServers();
  void HandleMsg(const proto::Op& op);
  void HandleServerInfo(const proto::Info& info);
  // Ends the current (ready) connection: salvage unsent publishes, fail
  // in-flight flushes, tell the pool, and fail over.
  void DropConnection(Status why, bool lame_duck);
  void AttemptFailed(const ServerUrl& url, const Status& why);
  void DoClose(Status why);
  void Retire(std::unique_ptr<Connection> conn);

  void OnConnectionReady(Connection* conn) override;
  void OnConnectionOp(Connection* conn, const proto::Op& op) override;
  void OnConnectionReadDone(Connection* conn) override;
  void OnConnectionWritable(Connection* conn) override;
  void OnConnectionClosed(Connection* conn, const Status& why) override;

  // ---- any thread ----
  void SetState(ConnectionState state, const std::string& url);
  void SetLastError(const Status& status);
  void Emit(EventType type, std::string url, Status status, std::string subject = {});
  Status EnsureMux();
  void FinishClose();

  const Options options_;
  const Hooks hooks_;
  std::shared_ptr<Outbox> outbox_;
  SubscriptionTable subs_;
  RequestMux mux_;
  std::shared_ptr<Dispatcher> dispatcher_;
  std::atomic<int64_t> server_max_payload_{-1};

  std::mutex mux_mu_;
  std::shared_ptr<SubState> mux_sub_;  // guarded by mux_mu_

  mutable std::mutex mu_;
  std::condition_variable state_cv_;
  ConnectionState state_ = ConnectionState::kConnecting;  // guarded by mu_
  std::string connected_url_;                             // guarded by mu_
  Status last_error_;                                     // guarded by mu_
  std::vector<std::string> known_;                        // guarded by mu_
  bool initial_failed_ = false;                           // guarded by mu_
  bool draining_ = false;                                 // guarded by mu_
  bool close_requested_ = false;                          // guarded by mu_
  bool finished_ = false;                                 // guarded by mu_

  std::atomic<uint64_t> in_msgs_{0}, in_bytes_{0}, out_msgs_{0}, out_bytes_{0}, reconnects_{0}, dropped_{0};

  std::thread io_thread_;
  std::once_flag close_once_;

  // ---- I/O thread only ----
  ConnectionOptions conn_options_;
  event_base* base_ = nullptr;
  event* wake_ev_ = nullptr;
  event* tick_ev_ = nullptr;
  event* retry_ev_ = nullptr;
  event* reap_ev_ = nullptr;
  event* pump_ev_ = nullptr;
  ServerPool pool_;
  std::unique_ptr<Discovery> discovery_;
  bool discovery_settled_ = true;  // false until ZooKeeper itself reported
  std::unique_ptr<Connection> conn_;
  bool conn_ready_ = false;
  std::vector<std::unique_ptr<Connection>> graveyard_;
  std::deque<PongWaiter> inflight_pongs_;
  int pings_out_ = 0;
  Clock::time_point last_ping_{};
  int failed_attempts_ = 0;
  bool ever_connected_ = false;
  std::set<std::string> initial_tried_;
  bool io_closed_ = false;
  std::vector<Dispatcher::Item> batch_;
  uint64_t cached_sid_ = 0;
  std::shared_ptr<SubState> cached_sub_;
};

}  // namespace zmesh::client

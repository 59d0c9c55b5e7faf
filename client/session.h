#pragma once

// The client's I/O side: the event loop, the connection to the current node,
// choosing nodes and failing over (ServerPool, discovery, backoff), keepalive,
// re-subscription after a move, handing received messages to the Dispatcher,
// and moving what the Outbox holds to the socket. Discovery, connect_urls
// and what an INFO asks of us are in session_nodes.cc. Planned, lossless moves
// (client/move.h) are driven from session_move.cc: while one runs, the
// Outbox is not pumped; what the application sends waits there, in order,
// for the new connection.
//
// Thread contract: a Session belongs to one thread at a time. The owner
// (Engine) constructs it and calls Init() on its own thread; from Run() on
// it belongs to the I/O thread that runs Run(), and every other method runs
// there — AssertInIoThread() aborts otherwise. Other threads reach a running
// Session only through the Outbox: bytes in order, and tasks it runs (Close
// included). The destructor runs on the owner's thread after Run() returned
// (or when it never ran).
//
// What application threads read (state, errors, counters) goes through
// ClientState; the SubscriptionTable and RequestMux are thread-safe.

#include <event2/event.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <zmesh/options.h>
#include <zmesh/status.h>

#include "client/connection.h"
#include "client/discovery.h"
#include "client/dispatcher.h"
#include "client/inbound.h"
#include "client/move.h"
#include "client/outbox.h"
#include "client/server_pool.h"
#include "client/thread_owner.h"

namespace zmesh::client {

class ClientState;
class RequestMux;
class SubscriptionTable;

class Session : public Connection::Delegate, private Move::Host {
 public:
  using Clock = std::chrono::steady_clock;

  // Test seams. Empty members use the real thing.
  struct Hooks {
    // Replaces ZooKeeper discovery (used when Options::zk_connect is set).
    std::function<std::unique_ptr<Discovery>(zk::Executor executor)> discovery_factory;
    // Replaces the zk::Registry behind the default RegistryDiscovery.
    RegistryFactory registry_factory;
  };

  // Everything but `hooks` is borrowed and outlives the Session.
  Session(const Options& options, Hooks hooks, std::shared_ptr<Outbox> outbox, SubscriptionTable* subs,
          RequestMux* mux, Dispatcher* dispatcher, ClientState* state);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Owner thread, once, before Run(): the static node list, CONNECT and TLS
  // settings, the Outbox's wake-up, and the event loop.
  Status Init();
  // I/O thread: connects and serves until Close(); frees everything the I/O
  // thread owns before it returns.
  void Run();
  // I/O thread (the engine posts it through the Outbox): flushes what is
  // already encoded if it can, fails pending flushes, ends the loop. Also
  // how the session gives up on its own (reconnect attempts exhausted).
  void Close(Status why);
  // I/O thread: moves to `target` the lossless way (rebalancing; tests).
  // False when no move starts: not connected, a move already running, the
  // node does not support moves, Options::lossless_moves is off, or
  // `target` is the current node.
  bool RequestMove(const ServerUrl& target);

 private:
  void AssertInIoThread() const { owner_.Check(); }

  // ---- I/O thread ----
  void FreeLoop();  // also from the destructor when Run never ran
  static void OnWakeEvent(evutil_socket_t, short, void* arg);
  static void OnTickEvent(evutil_socket_t, short, void* arg);
  static void OnRetryEvent(evutil_socket_t, short, void* arg);
  static void OnReapEvent(evutil_socket_t, short, void* arg);
  static void OnPumpEvent(evutil_socket_t, short, void* arg);
  void StartDiscovery();
  void HandleWake();
  void Tick();
  // Moves pending bytes from the Outbox to the socket.
  void Pump();
  // Picks a node and connects now, or arms the retry timer for later.
  void TryNext();
  void StartAttempt(const ServerUrl& url);
  void OnNodes(const std::vector<std::string>& urls, std::string_view source);
  void UpdateAnnounced(const std::vector<std::string>& urls);
  // Owner thread in Init(), then I/O thread.
  void PublishKnownServers();
  void HandleServerInfo(const proto::Info& info);
  // Ends the current (ready) connection: salvage unsent publishes, fail
  // in-flight flushes, tell the pool, and fail over.
  void DropConnection(Status why, bool lame_duck);
  void AttemptFailed(const ServerUrl& url, const Status& why);
  // Emits kConnected the first time, kReconnected after.
  void ReportConnected(const ServerUrl& url);
  // Keeps a closed connection until the loop is past the callback it was
  // closed in (a Connection must not be freed inside its own callback).
  void Retire(std::unique_ptr<Connection> conn);
  // Under the Outbox lock: SUB (and UNSUB <remaining> for auto-unsubscribe
  // limits) for every subscription; those already at their limit go to
  // *ended. Returns how many were written.
  size_t AppendResubscription(std::string* out, std::vector<std::shared_ptr<SubState>>* ended) const;

  // ---- I/O thread: planned moves (session_move.cc) ----
  bool CanMove() const;
  // The current node announced lame duck mode: starts a move to a node
  // failover would pick. False when none is eligible now (or moves are off).
  bool StartLameDuckMove();
  void StartMove(const ServerUrl& target, Move::Reason reason);
  // Ends the move without switching: pool bookkeeping, the counter, and
  // (replay) what the new node delivered goes to the application first.
  // Returns why the move was made.
  Move::Reason AbandonMove(bool replay);
  // Makes the move's connection the current one. why.ok(): the old node
  // said MOVED (kMoved); otherwise an unplanned failover after the cut
  // (kDisconnected + kReconnected).
  void SwitchToNew(const Status& why);
  // The old connection ends while a move runs (DropConnection): true when
  // the session switched to the new connection instead; else the move is
  // over and *lame_duck tells whether it was made for lame duck mode.
  bool EndMoveOnOldLoss(const Status& why, bool* lame_duck);
  // MOVED <token> on the old connection.
  void HandleMoved(std::string_view token);
  void RetireMove(std::unique_ptr<Move> move);
  // Move::Host.
  void OnMoveConnected(Move* move) override;
  void OnMoveConfirmed(Move* move) override;
  void OnMoveFailed(Move* move, Move::Failure failure, const Status& why) override;

  // Connection::Delegate, I/O thread.
  void OnConnectionReady(Connection* conn) override;
  void OnConnectionOp(Connection* conn, const proto::Op& op) override;
  void OnConnectionReadDone(Connection* conn) override;
  void OnConnectionWritable(Connection* conn) override;
  void OnConnectionClosed(Connection* conn, const Status& why) override;

  const Options& options_;
  const Hooks hooks_;
  const std::shared_ptr<Outbox> outbox_;
  SubscriptionTable* const subs_;
  Dispatcher* const dispatcher_;
  ClientState* const state_;
  // The constructing thread until Run() takes the session over.
  ThreadOwner owner_;
  Inbound inbound_;

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
  std::unique_ptr<Move> move_;  // the planned move in progress, if any
  std::vector<std::unique_ptr<Move>> retired_moves_;  // freed with the graveyard
  std::deque<PongWaiter> inflight_pongs_;
  int pings_out_ = 0;
  Clock::time_point last_ping_{};
  int failed_attempts_ = 0;
  bool ever_connected_ = false;
  bool reported_connected_ = false;  // kConnected was emitted; later connections are kReconnected
  // The PONG after a connection's re-subscription; the connection is
  // reported (kConnected/kReconnected) when it arrives.
  PongWaiter resubscribed_;
  std::set<std::string> initial_tried_;
  bool io_closed_ = false;
};

}  // namespace zmesh::client

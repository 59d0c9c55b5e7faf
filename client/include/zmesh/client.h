#pragma once

// zmesh::Client: a failover-aware client for a zmesh mesh (or any server that
// speaks the NATS client protocol).
//
//   zmesh::Options opts;
//   opts.zk_connect = "127.0.0.1:2181";
//   opts.zk_root = "/zmesh/prod";
//   std::unique_ptr<zmesh::Client> client;
//   zmesh::Status st = zmesh::Client::Connect(opts, &client);
//   std::shared_ptr<zmesh::Subscription> sub;
//   st = client->Subscribe("orders.>", [](zmesh::Message m) { ... }, &sub);
//   st = client->Publish("orders.new", "{...}");
//
// What the client does for you:
// - finds nodes in ZooKeeper (<zk_root>/nodes) and/or a static list, keeps the
//   list in a cache file for when ZooKeeper is unreachable, and learns more
//   nodes from the servers' INFO connect_urls;
// - connects to a node chosen at random; when it fails (or announces lame
//   duck mode) moves to another one, never straight back to the one that just
//   failed, with per-node exponential backoff and jitter;
// - when a node that supports planned moves announces lame duck mode, moves
//   make before break instead, losing, duplicating and reordering nothing
//   (Options::lossless_moves; reported as kMoved);
// - after every move re-sends all subscriptions (queue groups and remaining
//   auto-unsubscribe counts included) before anything buffered, then sends
//   the publishes buffered while it was disconnected (bounded; a publish that
//   does not fit fails, it is never dropped silently).
//
// Threads: each Client runs one I/O thread that owns the connection, and one
// dispatcher thread (started with the first async subscription or when
// Options::on_event is set) that runs message and event callbacks, one at a
// time, in arrival order. Callbacks may call any Client method, including
// Close() and the destructor's work, but should not block for long: the next
// callbacks wait.
//
// Unless stated otherwise, every method below is safe to call from any thread,
// concurrently, including from callbacks.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zmesh/message.h>
#include <zmesh/options.h>
#include <zmesh/status.h>

namespace zmesh {

namespace client {
class Engine;
struct SubState;
struct ClientAccess;
}  // namespace client

// Runs on the dispatcher thread. The message is the callee's to keep.
using MessageHandler = std::function<void(Message)>;

enum class ConnectionState {
  kConnecting,    // before the first connection
  kConnected,
  kReconnecting,  // lost the node (or it left); trying others
  kClosed,
};

struct ClientStats {
  uint64_t in_msgs = 0;
  uint64_t in_bytes = 0;   // payload bytes received
  uint64_t out_msgs = 0;
  uint64_t out_bytes = 0;  // payload bytes published
  uint64_t reconnects = 0;
  uint64_t dropped_msgs = 0;  // dropped at subscription pending limits
  // Planned moves (Options::lossless_moves): finished losslessly (MOVED),
  // and begun but ended otherwise (a fallback or a failover).
  uint64_t moves = 0;
  uint64_t moves_abandoned = 0;
};

// A handle on one subscription. Dropping the handle does not unsubscribe (an
// async subscription keeps running until Unsubscribe, Drain or Close). All
// methods are thread-safe; after the client is closed they return kClosed.
class Subscription {
 public:
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  const std::string& subject() const;
  const std::string& queue() const;  // empty for a plain subscription
  uint64_t sid() const;
  // False once unsubscribed, auto-unsubscribed to its end, or closed.
  bool valid() const;

  // Stops delivery at once; messages already queued for it are discarded.
  Status Unsubscribe();
  // Ends the subscription after `max` messages in total (counting those
  // already delivered). Survives failover: the remaining count is re-sent.
  Status AutoUnsubscribe(int64_t max);
  // Unsubscribes at the server, lets the messages already received run
  // through the callback (or stay readable with NextMsg), then ends. Called
  // from a callback it cannot wait for the callbacks queued behind it: they
  // still run, after it returned.
  Status Drain(std::chrono::milliseconds timeout);

  // Sync subscriptions only: waits up to `timeout` for the next message.
  // kTimeout when none came, kClosed when the subscription ended and its
  // queue is empty. Several threads may wait; each message goes to one.
  Status NextMsg(Message* out, std::chrono::milliseconds timeout);

  // Bounds of messages waiting for the callback / NextMsg; <= 0 = unlimited.
  Status SetPendingLimits(int64_t msgs, int64_t bytes);
  int64_t pending_msgs() const;
  int64_t pending_bytes() const;
  int64_t delivered() const;  // messages received for it
  int64_t dropped() const;    // dropped at the pending limits

 private:
  friend class Client;
  Subscription(std::weak_ptr<client::Engine> engine, std::shared_ptr<client::SubState> state);

  std::weak_ptr<client::Engine> engine_;
  std::shared_ptr<client::SubState> state_;
};

class Client {
 public:
  // Starts the client and waits for its first connection (see
  // Options::initial_connect_timeout, Options::retry_on_failed_connect).
  // On success *out holds the client. Thread-safe.
  static Status Connect(Options options, std::unique_ptr<Client>* out);

  // Closes (see Close). May be called from a callback of this client.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queues a message. Returns once it is in the client's buffer, not when it
  // reached the server (use Flush for that). While connected it blocks if
  // more than Options::max_pending_write_bytes are waiting; while
  // disconnected it fails with kBufferFull when the reconnect buffer is full.
  Status Publish(std::string_view subject, std::string_view data);
  Status Publish(std::string_view subject, std::string_view reply, std::string_view data);
  Status Publish(std::string_view subject, std::string_view reply, const Headers& headers, std::string_view data);

  // Async subscription: `handler` runs on the dispatcher thread.
  Status Subscribe(std::string_view subject, MessageHandler handler, std::shared_ptr<Subscription>* out);
  // Queue group: each message goes to one member of `queue` mesh-wide.
  Status QueueSubscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                        std::shared_ptr<Subscription>* out);
  // Sync subscription: read with Subscription::NextMsg.
  Status SubscribeSync(std::string_view subject, std::shared_ptr<Subscription>* out);
  Status QueueSubscribeSync(std::string_view subject, std::string_view queue, std::shared_ptr<Subscription>* out);

  // Publishes `data` with a unique reply subject and waits up to `timeout`
  // for the first reply. kNoResponders when nobody is subscribed, kTimeout
  // when no reply came. Survives failover while the timeout lasts.
  Status Request(std::string_view subject, std::string_view data, std::chrono::milliseconds timeout,
                 Message* reply);
  Status Request(std::string_view subject, const Headers& headers, std::string_view data,
                 std::chrono::milliseconds timeout, Message* reply);

  // Waits until the server has processed everything this client sent
  // before the call (PING/PONG). kDisconnected if the connection was lost
  // meanwhile; called while disconnected it waits for the reconnect.
  Status Flush(std::chrono::milliseconds timeout);

  // Drains every subscription (unsubscribe at the server, deliver what was
  // received), flushes publishes, then closes. New subscriptions fail with
  // kDraining meanwhile. kTimeout if it did not finish in time (the client
  // is closed anyway). Called from a callback it cannot wait for the
  // callbacks queued behind the current one; those are discarded.
  Status Drain(std::chrono::milliseconds timeout);

  // Closes the connection and stops all threads; pending callbacks are not
  // run, waiting calls return kClosed. Idempotent. Publishes not yet written
  // are lost: call Flush (or Drain) first.
  void Close();

  ConnectionState state() const;
  bool connected() const { return state() == ConnectionState::kConnected; }
  // The node we are connected to ("nats://host:port"), empty when none.
  std::string connected_url() const;
  // Every node known now (static + ZooKeeper/cache + INFO connect_urls).
  std::vector<std::string> known_servers() const;
  // The last error that caused a disconnect or failed attempt.
  Status last_error() const;
  // Bytes of publishes buffered and not yet written to a socket.
  size_t buffered_bytes() const;
  ClientStats stats() const;

  // A unique subject under _INBOX for replies.
  std::string NewInbox() const;

 private:
  friend struct client::ClientAccess;  // builds clients on a test-configured engine
  explicit Client(std::shared_ptr<client::Engine> engine);
  Status DoSubscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                     std::shared_ptr<Subscription>* out);

  std::shared_ptr<client::Engine> engine_;
};

}  // namespace zmesh

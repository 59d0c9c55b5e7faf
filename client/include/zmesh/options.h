#pragma once

// Everything a zmesh::Client can be configured with. Build an Options, fill
// in how to find the mesh (ZooKeeper, a static list, or both) and pass it to
// Client::Connect. Defaults suit production; tests shrink the durations.
//
// Thread safety: plain data; copied into the client at Connect.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <zmesh/status.h>

namespace zmesh {

// What a status callback is told about.
enum class EventType {
  kConnected,       // first connection established and its subscriptions live mesh-wide (url = the node)
  kDisconnected,    // the connection was lost; the client is failing over
  kReconnected,     // connected again after a loss or a move, every subscription re-made and live
                    // mesh-wide (url = the new node)
  kLameDuck,        // our node announced lame duck mode; the client moves away
  kMoved,           // a planned move finished losslessly (url = the new node); no kDisconnected or
                    // kReconnected is reported for it (see Options::lossless_moves)
  kServersChanged,  // the set of known nodes changed (ZooKeeper or INFO connect_urls)
  kSlowConsumer,    // a subscription dropped messages at its pending limit (subject set)
  kError,           // an asynchronous error, e.g. -ERR 'Permissions Violation...'
  kClosed,          // the client is closed for good (status says why)
};

std::string_view EventTypeName(EventType type);

struct Event {
  EventType type = EventType::kError;
  std::string url;      // node involved, when there is one
  std::string subject;  // subscription involved (slow consumer)
  Status status;        // cause (disconnect reason, error text)
};

// Called on the client's dispatcher thread, in order with message callbacks.
// It must not block for long: it delays message delivery.
using EventHandler = std::function<void(const Event&)>;

struct TlsOptions {
  // Use TLS even when the server does not ask for it (fails if it cannot).
  // TLS is always used when the server's INFO says tls_required.
  bool required = false;
  std::string ca_file;    // PEM bundle to verify the server; empty = system default paths
  std::string cert_file;  // client certificate (PEM), for servers that verify clients
  std::string key_file;
  // Name to verify the certificate against; empty = the host from the URL
  // (an IP address is checked against IP SANs).
  std::string server_name;
  bool insecure_skip_verify = false;  // tests only
};

struct Options {
  // ---- Finding the mesh. At least one of `servers` and `zk_connect`. ----
  // Static node list: "nats://host:port", "tls://host:port" or "host:port";
  // credentials may be embedded ("nats://user:pass@host:port").
  std::vector<std::string> servers;
  // ZooKeeper connect string ("host:port,host:port"); nodes are read from
  // <zk_root>/nodes (SPEC §3).
  std::string zk_connect;
  std::string zk_root = "/zmesh/default";
  std::chrono::milliseconds zk_session_timeout{10000};
  // The node list last seen in ZooKeeper is written (atomically) to this file
  // and read at start, so the client finds the mesh while ZooKeeper is down.
  // Empty = $XDG_CACHE_HOME/zmesh (or ~/.cache/zmesh) + a name derived from
  // zk_connect and zk_root. Unused without zk_connect.
  std::string node_cache_file;
  bool use_node_cache = true;

  // ---- Identity. ----
  std::string name;  // CONNECT "name", shown in the server's monitoring
  std::string user;
  std::string password;
  TlsOptions tls;

  // ---- Connecting and failing over. ----
  // One attempt: TCP connect + INFO + TLS + CONNECT/PING until PONG.
  std::chrono::milliseconds connect_timeout{2000};
  // How long Connect() waits for a first connection (including the time to
  // learn nodes from ZooKeeper) before it fails.
  std::chrono::milliseconds initial_connect_timeout{10000};
  // If true, Connect() succeeds even when no node is reachable yet; the
  // client keeps trying in the background and buffers publishes meanwhile.
  bool retry_on_failed_connect = false;
  // Backoff per node after it failed: min(initial * 2^(k-1), max) for the
  // k-th consecutive failure, shortened by up to `reconnect_jitter` (0..1)
  // at random. Another node that has not failed is tried at once.
  std::chrono::milliseconds reconnect_wait_initial{100};
  std::chrono::milliseconds reconnect_wait_max{5000};
  double reconnect_jitter = 0.5;
  // A connection that lived less than this counts as a failure of its node
  // (so a node that accepts and drops at once backs off as if it refused).
  std::chrono::milliseconds stable_connection{1000};
  // After a lame duck announcement, the node is not tried for this long, or
  // until the mesh lists it again after it left (it was restarted), by
  // failover; a planned move away from a leaving node tries it anyway when
  // every other node is held out too.
  std::chrono::milliseconds lame_duck_hold{30000};
  // Consecutive failed attempts before the client gives up and closes;
  // -1 = never.
  int max_reconnect_attempts = -1;
  // Planned moves (docs/design-lossless-moves.md): when a node that
  // advertises INFO "move" announces lame duck mode, the client first
  // connects to another node and re-subscribes there, then asks the old node
  // to cut over (MOVE) and switches when it says it is done (MOVED):
  // nothing lost, duplicated or reordered, reported as kMoved. Publishes
  // and subscription changes made meanwhile wait in the client (Publish
  // blocks beyond max_pending_write_bytes) and go to the new node after the
  // switch. A move that cannot be made (no other node now, the new
  // connection fails) falls back to the move without the guarantee: drop,
  // then connect (kDisconnected, kReconnected). false = always the latter.
  bool lossless_moves = true;
  // A move not finished within this long (the old node never said MOVED)
  // is ended: before the cut the client stays on (or, lame duck, leaves)
  // the old node; after it, it switches to the new node as after a failure
  // (kDisconnected, kReconnected).
  std::chrono::milliseconds move_timeout{15000};
  // Bytes of messages the new node may deliver before the switch; they are
  // held back so that the old node's messages come first. Beyond it the
  // move ends early as when move_timeout passes.
  size_t move_buffer_bytes = 64 << 20;

  // ---- Liveness. ----
  // The client PINGs every ping_interval; with more than max_pings_out
  // unanswered the connection is considered dead and the client moves.
  std::chrono::milliseconds ping_interval{120000};
  int max_pings_out = 2;
  // A write that makes no progress for this long also counts as dead.
  std::chrono::milliseconds write_deadline{10000};

  // ---- Bounds. ----
  // Publishes buffered while disconnected; a publish that does not fit fails
  // with kBufferFull (never a silent drop).
  size_t reconnect_buffer_bytes = 8 << 20;
  // While connected, Publish blocks once this many bytes wait for the I/O
  // thread (back-pressure from a slow socket).
  size_t max_pending_write_bytes = 4 << 20;
  // Per subscription, messages waiting for a callback or NextMsg. Beyond
  // either limit messages are dropped and kSlowConsumer is reported.
  // <= 0 = unlimited. Subscription::SetPendingLimits changes one subscription.
  int64_t pending_msgs_limit = 512 * 1024;
  int64_t pending_bytes_limit = 64 << 20;
  // Limits applied to what servers send; larger input closes the connection
  // with kProtocolError (and the client fails over).
  size_t max_control_line = 64 * 1024;
  int64_t max_incoming_payload = 64 << 20;

  // ---- Protocol. ----
  bool echo = true;  // receive our own publishes on matching subscriptions
  // Subscribe (every variant) returns once the subscription is live on every
  // node of the mesh: it sends SUB then PING, and a zmesh node answers the
  // PONG only after every linked peer applied the SUB (the interest barrier),
  // so a message published anywhere after Subscribe returns reaches it. The
  // cost is one round trip to the node plus one from it to its slowest peer.
  // Not confirmed within subscribe_confirm_timeout: Subscribe undoes the
  // subscription and fails with kTimeout. Called while disconnected it
  // returns at once; the re-subscription on reconnect is confirmed before
  // kReconnected is reported. 0 = do not wait (nats.go's behaviour).
  std::chrono::milliseconds subscribe_confirm_timeout{10000};

  // ---- Notifications. ----
  EventHandler on_event;

  // Seeds node selection and jitter; 0 = random. Tests only.
  uint64_t random_seed = 0;
};

}  // namespace zmesh

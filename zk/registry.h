#pragma once

// Mesh membership: which nodes are alive, as registered under
// <root>/nodes/<node_id> in ZooKeeper (SPEC §3). The server registers itself
// and watches the others; the client library only reads the member list.
//
// Threading: a Registry is owned by one thread (the server's main event loop,
// or the client library's I/O thread). Every method must be called on that
// thread. Every callback is delivered through the Executor given at
// construction, i.e. on that same thread; implementations never run user code
// on ZooKeeper's own threads.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::zk {

// The JSON a node stores in its znode:
// {"id","client_url","peer_url","version","started_ms","incarnation"}.
struct NodeInfo {
  std::string id;
  std::string client_url;  // nats://host:port
  std::string peer_url;    // host:port
  std::string version;
  int64_t started_ms = 0;
  // Random per process start. The znode owns the node id: peers accept links
  // only from the incarnation it names (0 = not stated, e.g. a client's view).
  uint64_t incarnation = 0;
  // The node takes part in planned client moves (CUT/MARK peer frames);
  // nodes send those frames only to nodes that announce it.
  bool moves = false;
  // It also takes QUEUE_SWITCH frames (docs/design-lossless-moves.md,
  // "Queue groups"); a node of the release before does not.
  bool queue_switch = false;

  bool operator==(const NodeInfo&) const = default;
};

std::string EncodeNodeInfo(const NodeInfo& node);
// nullopt when the data is not valid JSON or lacks id/client_url/peer_url.
std::optional<NodeInfo> DecodeNodeInfo(std::string_view json);

// Runs a task on the owner's thread. Must be safe to call from any thread, and
// must run tasks in the order they were posted (events depend on it).
using Executor = std::function<void(std::function<void()>)>;

struct RegistryOptions {
  std::string connect;                 // ZooKeeper connect string, "host:port,host:port"
  std::string root = "/zmesh/default"; // mesh root; nodes live in <root>/nodes
  int session_timeout_ms = 10000;      // requested; ZooKeeper may negotiate another
  std::string credentials;             // "user:password" -> digest ACLs; empty -> open ACLs
  // When our own znode exists from an earlier session: wait for it to expire
  // (default), or delete it when its data proves it is ours (same peer_url).
  bool steal_stale_znode = false;
};

enum class SessionState {
  kConnecting,  // no session yet
  kConnected,   // session established (or re-established after expiry)
  kSuspended,   // connection lost; keep going with the last known membership
  kExpired,     // session expired (or counted as lost after the session timeout
                // without a connection); a new one is being created. The last
                // membership is still reported; registered() is false until the
                // znode is re-created.
};

class Registry {
 public:
  struct Listener {
    // The full current member list (including this node once registered),
    // after every change; the first list as soon as it was read, even if it
    // is empty. Always called on the owner thread.
    std::function<void(const std::vector<NodeInfo>&)> on_members;
    std::function<void(SessionState)> on_session;
  };

  virtual ~Registry() = default;

  // Connects and keeps a children watch armed on <root>/nodes. Owner thread.
  virtual void Start(Listener listener) = 0;

  // Creates the ephemeral znode for `self` and keeps it: re-created after
  // session expiry. `done(ok, error)` runs once, when the znode first exists
  // (or fails for good). Owner thread.
  virtual void Register(const NodeInfo& self, std::function<void(bool ok, const std::string& error)> done) = 0;

  // Deletes our znode (graceful leave) and stops re-creating it; `done` runs
  // when ZooKeeper confirmed the delete or gave up within a bounded time.
  virtual void Unregister(std::function<void()> done) = 0;

  // Closes the session. Safe to call once; blocks for a bounded time.
  virtual void Stop() = 0;

  // Last known member list (may be stale while suspended).
  virtual std::vector<NodeInfo> members() const = 0;
  virtual bool registered() const = 0;
  virtual SessionState state() const = 0;
};

std::unique_ptr<Registry> NewZooKeeperRegistry(RegistryOptions options, Executor executor);

}  // namespace zmesh::zk

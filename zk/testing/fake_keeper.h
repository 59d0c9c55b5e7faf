#pragma once

// An in-memory ZooKeeper behind the Keeper interface (ClickHouse's
// TestKeeper), so that ZooKeeperRegistry's state machine is unit-tested with
// faults injected at will: connection loss, session expiry, a failed or
// half-applied request, the stale znode of a killed process, digest ACLs.
//
// What it models, after ZOOKEEPER.md: sessions that outlive a lost connection
// and expire only when told to (or when their Keeper is destroyed, like
// zookeeper_close); ephemeral znodes that go with their session; versions;
// one-shot data, exists and children watches, fired before the completion of
// the request that triggered them and held back while disconnected; requests
// of an expired handle failing with kInvalidState. Not modelled: the wire
// protocol, sequence nodes, multi, ZooKeeper's own timers.
//
// Threading: single-threaded. The server, its keepers and every call on them
// belong to one thread (the test's, running a ManualLoop). Keepers deliver
// completions and events through their Executor, never inside a call, and
// none after they are destroyed.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "zk/keeper.h"
#include "zk/registry.h"

namespace zmesh::zk::testing {

class FakeKeeper;

class FakeKeeperServer {
 public:
  enum class Op { kAddAuth, kSync, kCreate, kDelete, kGetData, kGetChildren, kExists };

  struct Znode {
    std::string data;
    int64_t ephemeral_owner = 0;  // session id; 0 = persistent
    int32_t version = 0;
    std::string acl_credentials;  // "user:password" of a digest ACL; empty = open
  };

  FakeKeeperServer() = default;
  ~FakeKeeperServer();
  FakeKeeperServer(const FakeKeeperServer&) = delete;
  FakeKeeperServer& operator=(const FakeKeeperServer&) = delete;

  // Opens FakeKeepers on this server that deliver through `executor` and
  // negotiate `session_timeout_ms`.
  KeeperFactory Factory(Executor executor, int session_timeout_ms = 4000);

  // --- The tree, as another ZooKeeper client sees and changes it (watches fire).
  std::optional<Znode> Get(const std::string& path) const;
  // Names of the direct children, sorted.
  std::vector<std::string> Children(const std::string& path) const;
  // Creates (with missing ancestors) or overwrites a persistent znode.
  void Put(const std::string& path, const std::string& data);
  // Deletes a znode whoever owns it; false if there was none.
  bool Remove(const std::string& path);
  // An ephemeral znode of a session that no keeper holds, as left by a process
  // killed with SIGKILL: it stays until ExpireSession(returned id).
  int64_t AddStaleEphemeral(const std::string& path, const std::string& data);
  // Puts a digest ACL on an existing znode: only keepers that added
  // `credentials` may create children, delete or change it.
  void Protect(const std::string& path, const std::string& credentials);

  // --- Faults.
  // Ends a session as ZooKeeper does: its ephemeral znodes go at once; its
  // keeper sees kExpired now if connected, else when it reconnects.
  void ExpireSession(int64_t session_id);
  // Cuts the connection of the keeper holding `session_id`: it sees
  // kConnecting; its requests fail with kConnectionLoss. The session lives on.
  void Disconnect(int64_t session_id);
  // Restores it: kConnected with the same session and the watch events it
  // missed, or kExpired if the session ended meanwhile.
  void Reconnect(int64_t session_id);
  // The whole server down (every keeper disconnected, new ones keep
  // connecting) or up again.
  void SetReachable(bool reachable);
  // The next `op` request on `path` answers `rc`. With `applied`, it is
  // carried out first: a connection loss after the server applied it.
  void FailNext(Op op, const std::string& path, KeeperRc rc, bool applied = false);

  // --- Observation.
  bool SessionAlive(int64_t session_id) const;
  // Requests of kind `op` on `path` received so far.
  int Requests(Op op, const std::string& path) const;
  // (path, version) of every Delete request received, in order.
  const std::vector<std::pair<std::string, int32_t>>& deletes() const { return deletes_; }
  // Keepers open now.
  size_t open_keepers() const { return keepers_.size(); }

 private:
  friend class FakeKeeper;

  struct Session {
    bool alive = true;
    FakeKeeper* keeper = nullptr;  // nullptr: nobody holds it (a dead process)
    bool reachable = true;
  };
  struct Fault {
    Op op;
    std::string path;
    KeeperRc rc;
    bool applied;
  };

  void Attach(FakeKeeper* keeper);
  void Detach(FakeKeeper* keeper);
  // Gives a keeper its session, or reconnects it, when it can be reached.
  void Connect(FakeKeeper* keeper);
  std::optional<Fault> TakeFault(Op op, const std::string& path);
  bool Allowed(const Znode& node, const FakeKeeper* keeper) const;
  // Applies a request; the watch events it causes are delivered first.
  KeeperRc DoCreate(FakeKeeper* keeper, const std::string& path, const std::string& data,
                    KeeperAcl acl, CreateMode mode, ZnodeStat* stat);
  KeeperRc DoDelete(FakeKeeper* keeper, const std::string& path, int32_t version);
  void EndSession(int64_t session_id);
  void Fire(const std::string& path, KeeperEvent event);
  static std::string Parent(const std::string& path);

  std::map<std::string, Znode> nodes_;
  std::map<int64_t, Session> sessions_;
  std::set<FakeKeeper*> keepers_;
  std::vector<Fault> faults_;
  std::map<std::pair<Op, std::string>, int> requests_;
  std::vector<std::pair<std::string, int32_t>> deletes_;
  bool reachable_ = true;
  int64_t next_session_id_ = 0x100;
};

// One handle on a FakeKeeperServer. See Keeper for the contract.
class FakeKeeper final : public Keeper {
 public:
  FakeKeeper(FakeKeeperServer& server, Executor executor, Watcher watcher,
             int session_timeout_ms);
  // Ends the session like zookeeper_close if connected (else the session
  // lives on until ExpireSession); nothing is delivered any more.
  ~FakeKeeper() override;

  std::optional<ZooKeeperSession> session() const override;
  int negotiated_timeout_ms() const override;
  KeeperRc AddAuth(const std::string& scheme, const std::string& credentials,
                   Done done) override;
  KeeperRc Sync(const std::string& path, Done done) override;
  KeeperRc Create(const std::string& path, const std::string& data, KeeperAcl acl,
                  CreateMode mode, StatDone done) override;
  KeeperRc Delete(const std::string& path, int32_t version, Done done) override;
  KeeperRc GetData(const std::string& path, bool watch, DataDone done) override;
  KeeperRc GetChildren(const std::string& path, bool watch, ChildrenDone done) override;
  KeeperRc Exists(const std::string& path, bool watch, StatDone done) override;

 private:
  friend class FakeKeeperServer;

  // What posted tasks use: outlives the keeper, so that a callback may
  // destroy the keeper that called it.
  struct Shared {
    bool alive = true;
    Watcher watcher;
  };

  // Runs `fn` as a task of its own unless the keeper is gone by then.
  void Post(std::function<void()> fn);
  void DeliverSession(KeeperState state);
  void DeliverEvent(KeeperEvent event, const std::string& path);
  // The common start of a request: counts it and settles the cases where it
  // is not carried out. Returns the synchronous result, or sets *answer to
  // the rc to complete with without carrying it out.
  KeeperRc Begin(FakeKeeperServer::Op op, const std::string& path,
                 std::optional<KeeperRc>* answer,
                 std::optional<FakeKeeperServer::Fault>* applied_fault);

  FakeKeeperServer& server_;
  const Executor executor_;
  const std::shared_ptr<Shared> shared_;
  const int session_timeout_ms_;
  int64_t session_id_ = 0;  // 0 until the first connect
  bool connected_ = false;
  bool expired_ = false;
  std::set<std::string> credentials_;
  std::set<std::string> data_watches_;   // GetData and Exists
  std::set<std::string> child_watches_;  // GetChildren
  // Events that fired while disconnected, delivered on reconnect.
  std::vector<std::pair<KeeperEvent, std::string>> missed_;
};

}  // namespace zmesh::zk::testing

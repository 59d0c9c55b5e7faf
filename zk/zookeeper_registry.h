#pragma once

// Registry over the multi-threaded ZooKeeper C client (SPEC §3, ZOOKEEPER.md).
//
// Threads: the C client runs an IO thread and a completion thread per handle.
// Every watcher and completion only copies its arguments and posts them to the
// Executor; all state below lives on the owner thread (the thread that runs
// the Executor's tasks and calls Start()). User callbacks are posted as tasks
// of their own, so they never run inside a Registry method and may call back
// into the registry.
//
// Behaviour, in short:
// - Connection loss: kSuspended; the last member list stays; operations that
//   failed with ZCONNECTIONLOSS are retried after the reconnect.
// - Session expiry (ZooKeeper said so): kExpired; close the handle, open a new
//   one, add auth, re-create our znode, re-read and re-arm the watches.
// - Disconnected for longer than the negotiated session timeout (Curator TN12):
//   the same recovery, started locally, since ZooKeeper may have expired the
//   session already without being able to tell us. Members are still reported
//   as last known: peers are never dropped because ZooKeeper is unreachable.
// - Our znode exists from an earlier session: ours (a create retried after a
//   connection loss) -> done; otherwise wait for it to go away, or with
//   `steal_stale_znode` delete it (by version) when its peer_url is ours.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "zk/registry.h"
#include "zk/timer_thread.h"

namespace zmesh::zk {

// A ZooKeeper session, as needed to attach a second handle to it (tests force
// an expiry that way, ZOOKEEPER.md Part 2 (b)).
struct ZooKeeperSession {
  int64_t id = 0;
  std::string password;  // the 16 raw bytes of clientid_t::passwd
};

class ZooKeeperRegistry final : public Registry {
 public:
  // Any thread; the object then belongs to the thread that calls Start(). The
  // executor must run tasks in the order they were posted.
  ZooKeeperRegistry(RegistryOptions options, Executor executor);
  // Calls Stop(). Owner thread, or any thread once the owner thread no longer
  // runs this registry's tasks. Must not run inside one of its own callbacks.
  ~ZooKeeperRegistry() override;

  ZooKeeperRegistry(const ZooKeeperRegistry&) = delete;
  ZooKeeperRegistry& operator=(const ZooKeeperRegistry&) = delete;

  // See Registry. All owner thread. After Stop() no callback runs any more,
  // including pending `done` callbacks of Register/Unregister.
  void Start(Listener listener) override;
  void Register(const NodeInfo& self,
                std::function<void(bool ok, const std::string& error)> done) override;
  // Deletes our znode by the version we created it with (never -1). `done`
  // runs once the delete is confirmed, or after at most the session timeout;
  // in that case the delete is still issued after the reconnect.
  void Unregister(std::function<void()> done) override;
  // Closes the session (our ephemeral znode goes at once). Blocks for at most
  // a few seconds (zookeeper_close). Idempotent.
  void Stop() override;
  std::vector<NodeInfo> members() const override;
  bool registered() const override;
  SessionState state() const override;

  // Test and debug hooks. Owner thread.
  // The current session once ZooKeeper established one.
  std::optional<ZooKeeperSession> session() const;
  // The negotiated session timeout; 0 before the first session.
  int negotiated_session_timeout_ms() const { return negotiated_timeout_ms_; }

 private:
  struct Bridge;
  struct HandleContext;
  struct Handle;
  struct OpContext;
  struct OpResult;
  struct Callbacks;
  enum class OpKind;

  struct Child {
    std::optional<NodeInfo> info;  // nullopt: not fetched yet, or undecodable
    bool fresh = false;            // read (with a data watch) on the current handle
    bool in_flight = false;
    bool warned = false;           // undecodable data already logged
  };

  // Owner-thread handlers of what the C client reported.
  void OnSessionEvent(uint64_t generation, int zk_state);
  void OnPathEvent(uint64_t generation, int type, const std::string& path);
  void OnOpDone(uint64_t generation, const OpResult& result);
  void OnDisconnectTimeout(uint64_t generation, uint64_t epoch);
  void OnReopenTimer(uint64_t generation);
  void OnUnregisterTimeout(uint64_t epoch);

  void OnSyncDone(const OpResult& r);
  void OnParentCreated(const OpResult& r);
  void OnSelfCreated(const OpResult& r);
  void OnSelfInspected(const OpResult& r);
  void OnStaleDeleted(const OpResult& r);
  void OnSelfDeleted(const OpResult& r);
  void OnChildren(const OpResult& r);
  void OnChildData(const OpResult& r);
  void OnNodesDirExists(const OpResult& r);

  // Issues whatever the current state still needs (idempotent): the sync
  // round trip of a new session, missing parents, our znode, the delete of
  // Unregister, the children list and member data.
  void Resync();
  void IssueSync();
  void IssueAddAuth();
  void IssueCreateParents();
  void IssueCreateSelf();
  void IssueInspectSelf();
  void IssueStealDelete(int32_t version);
  void IssueDeleteSelf();
  void IssueGetChildren();
  void IssueGetChild(const std::string& name);
  void IssueWatchNodesDir();

  void OpenHandle();
  void CloseHandle();
  void ResetSessionState();
  void HandleSessionLost(const std::string& reason, std::chrono::milliseconds reopen_delay);
  OpContext* NewOp(OpKind kind, std::string path);
  bool CheckIssued(const char* what, const std::string& path, int rc);

  void SetState(SessionState state);
  void MaybeDeliverMembers();
  void FinishRegister(bool ok, const std::string& error);
  void MaybeFinishUnregister();
  void FinishUnregister();
  // Posts a user callback as a task of its own; dropped after Stop().
  void PostCallback(std::function<void()> callback);
  bool InOwnerThread() const;
  std::chrono::milliseconds SessionTimeout() const;

  const RegistryOptions options_;
  const std::string nodes_path_;  // <root>/nodes
  std::shared_ptr<Bridge> bridge_;
  TimerThread timer_;
  Listener listener_;
  std::thread::id owner_thread_;
  bool started_ = false;
  bool stopped_ = false;

  // The current handle; replaced after expiry. Events of older handles carry
  // an older generation and are ignored.
  std::unique_ptr<Handle> handle_;
  uint64_t generation_ = 0;
  SessionState state_ = SessionState::kConnecting;
  int64_t session_id_ = 0;
  std::string session_password_;
  int negotiated_timeout_ms_ = 0;
  bool connected_ = false;      // CONNECTED seen, no CONNECTING since
  bool session_ready_ = false;  // the sync round trip after auth completed
  bool sync_in_flight_ = false;
  uint64_t disconnect_epoch_ = 0;
  std::chrono::steady_clock::time_point suspended_since_;

  bool parents_needed_ = false;
  int parents_in_flight_ = 0;
  int parents_error_ = 0;     // first failure creating an ancestor
  int parents_last_rc_ = 0;   // result of creating <root>/nodes itself
  bool parents_failed_ = false;  // not allowed to create them; wait for someone who is

  std::optional<NodeInfo> self_;
  std::string self_path_;
  bool want_registered_ = false;
  bool registered_ = false;  // our znode exists, owned by the current session
  int32_t self_version_ = 0;
  bool create_in_flight_ = false;
  bool inspect_in_flight_ = false;
  bool steal_in_flight_ = false;
  bool waiting_for_stale_ = false;
  int64_t stale_owner_logged_ = -1;
  std::function<void(bool, const std::string&)> register_done_;

  bool unregistering_ = false;
  bool delete_in_flight_ = false;
  uint64_t unregister_epoch_ = 0;
  std::function<void()> unregister_done_;

  bool children_in_flight_ = false;
  bool children_stale_ = true;  // the list must be (re-)read
  bool children_known_ = false; // read at least once on the current handle
  bool nodes_dir_watch_in_flight_ = false;
  std::vector<std::string> children_;
  std::map<std::string, Child> cache_;
  std::vector<NodeInfo> members_;
  bool members_delivered_ = false;
};

}  // namespace zmesh::zk

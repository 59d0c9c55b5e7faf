#pragma once

// Registry over ZooKeeper (SPEC §3, ZOOKEEPER.md): the state machine, on top
// of a Keeper (zk/keeper.h) — the C client in production, an in-memory fake
// in unit tests.
//
// Threads: all state lives on the owner thread (the thread that runs the
// Executor's tasks and calls Start()); Keeper delivers every completion and
// watch event there. User callbacks are posted as tasks of their own, so they
// never run inside a Registry method and may call back into the registry.
//
// Behaviour, in short (the parts say more):
// - Connection loss: kSuspended; the last member list stays; operations that
//   failed with a connection loss are retried after the reconnect.
// - Session expiry (ZooKeeper said so): kExpired; close the handle, open a new
//   one, add auth, re-create our znode, re-read and re-arm the watches.
// - Disconnected for longer than the negotiated session timeout (Curator TN12):
//   the same recovery, started locally. Members are still reported as last
//   known: peers are never dropped because ZooKeeper is unreachable.
//   (RegistrySession, zk/registry_session.h)
// - Our znode exists from an earlier session: ours (a create retried after a
//   connection loss) -> done; otherwise wait for it to go away, or with
//   `steal_stale_znode` delete it (by version) when its peer_url is ours.
//   (SelfRegistration, zk/self_registration.h)
// - The children watch on <root>/nodes and a data watch per member, re-armed
//   on every read. (MembershipWatch, zk/membership_watch.h)
// - <root>/nodes and its ancestors are created when missing (here).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "zk/keeper.h"
#include "zk/membership_watch.h"
#include "zk/owner_thread.h"
#include "zk/registry.h"
#include "zk/registry_session.h"
#include "zk/scheduler.h"
#include "zk/self_registration.h"

namespace zmesh::zk {

class ZooKeeperRegistry final : public Registry {
 public:
  // Over the ZooKeeper C client at options.connect, with real-time timers.
  // Any thread; the object then belongs to the thread that calls Start(). The
  // executor must run tasks in the order they were posted.
  ZooKeeperRegistry(RegistryOptions options, Executor executor);
  // Over any Keeper and Scheduler (unit tests: zk/testing/fake_keeper.h).
  ZooKeeperRegistry(RegistryOptions options, Executor executor, KeeperFactory keepers,
                    std::unique_ptr<Scheduler> scheduler);
  // Calls Stop(). Owner thread, or any thread once the owner thread no longer
  // runs this registry's tasks. Must not run inside one of its own callbacks.
  ~ZooKeeperRegistry() override;

  ZooKeeperRegistry(const ZooKeeperRegistry&) = delete;
  ZooKeeperRegistry& operator=(const ZooKeeperRegistry&) = delete;

  // See Registry. All owner thread (DCHECKed once Start() ran). After Stop()
  // no callback runs any more, including pending `done` callbacks of
  // Register/Unregister.
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
  std::optional<ZooKeeperSession> session() const { return session_.id(); }
  // The negotiated session timeout; 0 before the first session.
  int negotiated_session_timeout_ms() const { return session_.negotiated_timeout_ms(); }

 private:
  // Issues whatever the current state still needs (idempotent): the sync
  // round trip of a new session, missing parents, our znode, the delete of
  // Unregister, the children list and member data.
  void Resync();
  void OnEvent(KeeperEvent event, const std::string& path);
  void OnSessionLost(const std::string& reason);
  void OnReset();
  void IssueCreateParents();
  void OnParentCreated(const std::string& path, KeeperRc rc);
  void OnNodesDirMissing();
  // Posts a user callback as a task of its own; dropped after Stop().
  void PostCallback(std::function<void()> callback);

  const RegistryOptions options_;
  const std::string nodes_path_;  // <root>/nodes
  const Executor executor_;
  // Cleared by Stop(); posted user callbacks check it on the owner thread.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  const std::unique_ptr<Scheduler> scheduler_;
  OwnerThread owner_;
  Listener listener_;
  bool started_ = false;
  bool stopped_ = false;

  bool parents_needed_ = false;
  int parents_in_flight_ = 0;
  KeeperRc parents_error_ = KeeperRc::kOk;    // first failure creating an ancestor
  KeeperRc parents_last_rc_ = KeeperRc::kOk;  // result of creating <root>/nodes itself
  bool parents_failed_ = false;  // not allowed to create them; wait for someone who is

  // Declared last: they keep references to the members above.
  RegistrySession session_;
  SelfRegistration registration_;
  MembershipWatch watch_;
};

}  // namespace zmesh::zk

#pragma once

// Our own ephemeral znode <root>/nodes/<id> (SPEC §3): created on Register,
// re-created on every new session until Unregister, deleted (by version) on
// Unregister.
//
// The znode may already exist when we create it:
// - owned by our session: a create retried after a connection loss that had
//   been applied after all -> ours, done;
// - owned by another session (our previous process, or a live duplicate):
//   wait for it to go (a watch reports the delete), or with
//   `steal_stale_znode` delete it by version when its peer_url is ours, which
//   proves its owner is dead (we have just bound that address).
//
// Threading: owner thread only, DCHECKed. Requests go out only when the
// registry calls Resync(); their completions run on the owner thread (Keeper's
// contract). User callbacks are handed to `post`, never run here.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "zk/keeper.h"
#include "zk/owner_thread.h"
#include "zk/registry.h"
#include "zk/registry_session.h"
#include "zk/scheduler.h"

namespace zmesh::zk {

class SelfRegistration {
 public:
  struct Hooks {
    // State changed so that the registry may have requests to issue.
    std::function<void()> resync;
    // Our create found no <root>/nodes.
    std::function<void()> need_parents;
    // Runs a user callback as a task of its own (dropped after Stop).
    std::function<void(std::function<void()>)> post;
  };

  SelfRegistration(const RegistryOptions& options, const std::string& nodes_path,
                   RegistrySession& session, Scheduler& scheduler, const OwnerThread& owner,
                   Hooks hooks);

  // See Registry::Register / Unregister. Owner thread.
  void Register(const NodeInfo& self, std::function<void(bool ok, const std::string& error)> done);
  void Unregister(std::function<void()> done);

  // Issues the create or the delete that the current state needs. Owner
  // thread, with the session ready.
  void Resync();
  // Forgets requests of a closed handle (none of them answers any more).
  void Reset();
  // The session is gone and our znode with it: an Unregister is done.
  void OnSessionLost();
  // A watch on our path fired.
  void OnEvent(KeeperEvent event, const std::string& path);
  // <root>/nodes cannot be created: Register fails for good.
  void FailRegister(const std::string& error);
  // Reports Unregister done once nothing of ours is left in ZooKeeper.
  void MaybeFinishUnregister();
  // Drops pending callbacks (Registry::Stop).
  void Stop();

  bool registered() const { return registered_; }
  bool wanted() const { return want_registered_; }
  const std::string& path() const { return self_path_; }

 private:
  void IssueCreate();
  void IssueInspect();
  void IssueStealDelete(int32_t version);
  void IssueDelete();
  void OnCreated(KeeperRc rc, const std::optional<ZnodeStat>& stat);
  void OnInspected(KeeperRc rc, const std::optional<std::string>& data,
                   const std::optional<ZnodeStat>& stat);
  void OnStaleDeleted(KeeperRc rc);
  void OnDeleted(KeeperRc rc);
  void OnUnregisterTimeout(uint64_t epoch);
  void FinishRegister(bool ok, const std::string& error);
  void FinishUnregister();

  const RegistryOptions& options_;
  const std::string& nodes_path_;
  RegistrySession& session_;
  Scheduler& scheduler_;
  const OwnerThread& owner_;
  const Hooks hooks_;

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
};

}  // namespace zmesh::zk

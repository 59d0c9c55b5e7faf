#pragma once

// The member list: a children watch on <root>/nodes plus a data watch on each
// member, read again and re-armed whenever one fires and on every new handle.
// Lists are only reported complete (every member's data read) and changed.
// The last list stays while the session is suspended or being replaced:
// peers are never dropped because ZooKeeper is unreachable (SPEC §3).
//
// Threading: owner thread only, DCHECKed. Requests go out only when the
// registry calls Resync(); completions run on the owner thread (Keeper's
// contract).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "zk/keeper.h"
#include "zk/owner_thread.h"
#include "zk/registry.h"
#include "zk/registry_session.h"

namespace zmesh::zk {

class MembershipWatch {
 public:
  struct Hooks {
    // State changed so that the registry may have requests to issue.
    std::function<void()> resync;
    // The list read found no <root>/nodes.
    std::function<void()> nodes_dir_missing;
    // A new complete member list, sorted by id.
    std::function<void(const std::vector<NodeInfo>&)> on_members;
  };

  MembershipWatch(const std::string& nodes_path, RegistrySession& session,
                  const OwnerThread& owner, Hooks hooks);

  // Issues the list and data reads the current state needs. Owner thread,
  // with the session ready.
  void Resync();
  // A new handle: keep the members (still reported) but read everything again,
  // which also re-arms the watches there.
  void Reset();
  // A watch fired.
  void OnEvent(KeeperEvent event, const std::string& path);
  // The list must be read again.
  void MarkStale() { children_stale_ = true; }
  // Nobody may create <root>/nodes for us: watch for someone who may.
  void WatchNodesDir();
  // Reports the list if it is complete and changed.
  void MaybeDeliver();

  const std::vector<NodeInfo>& members() const { return members_; }

 private:
  struct Child {
    std::optional<NodeInfo> info;  // nullopt: not read yet, or undecodable
    bool fresh = false;            // read (with a data watch) on the current handle
    bool in_flight = false;
    bool warned = false;           // undecodable data already logged
  };

  void IssueGetChildren();
  void IssueGetChild(const std::string& name);
  void OnChildren(KeeperRc rc, const std::vector<std::string>& children);
  void OnChildData(const std::string& path, KeeperRc rc, const std::optional<std::string>& data);
  void OnNodesDirExists(KeeperRc rc);

  const std::string& nodes_path_;
  RegistrySession& session_;
  const OwnerThread& owner_;
  const Hooks hooks_;

  bool children_in_flight_ = false;
  bool children_stale_ = true;   // the list must be (re-)read
  bool children_known_ = false;  // read at least once on the current handle
  bool nodes_dir_watch_in_flight_ = false;
  std::vector<std::string> children_;
  std::map<std::string, Child> cache_;
  std::vector<NodeInfo> members_;
  bool members_delivered_ = false;
};

}  // namespace zmesh::zk

#include "zk/membership_watch.h"

#include <glog/logging.h>

#include <algorithm>
#include <set>
#include <utility>

namespace zmesh::zk {
namespace {

std::string Describe(const NodeInfo& node) {
  return "id=" + node.id + " client_url=" + node.client_url + " peer_url=" + node.peer_url +
         " version=" + node.version;
}

std::string Truncated(const std::string& data) {
  constexpr size_t kMax = 160;
  return data.size() <= kMax ? data : data.substr(0, kMax) + "...";
}

}  // namespace

MembershipWatch::MembershipWatch(const std::string& nodes_path, RegistrySession& session,
                                 const OwnerThread& owner, Hooks hooks)
    : nodes_path_(nodes_path), session_(session), owner_(owner), hooks_(std::move(hooks)) {}

void MembershipWatch::Reset() {
  children_in_flight_ = false;
  children_stale_ = true;
  children_known_ = false;
  nodes_dir_watch_in_flight_ = false;
  for (auto& [name, child] : cache_) {
    child.fresh = false;
    child.in_flight = false;
  }
}

void MembershipWatch::Resync() {
  owner_.Check("MembershipWatch::Resync");
  if (children_stale_ && !children_in_flight_) IssueGetChildren();
  if (children_known_) {
    for (auto& [name, child] : cache_) {
      if (!child.fresh && !child.in_flight) IssueGetChild(name);
    }
  }
}

void MembershipWatch::IssueGetChildren() {
  // Returns the list and (re-)arms the children watch in one call.
  children_in_flight_ = true;
  children_stale_ = false;
  const KeeperRc rc = session_.keeper()->GetChildren(
      nodes_path_, /*watch=*/true,
      [this](KeeperRc rc, const std::vector<std::string>& children) { OnChildren(rc, children); });
  if (rc != KeeperRc::kOk) {
    children_in_flight_ = false;
    children_stale_ = true;
  }
}

void MembershipWatch::IssueGetChild(const std::string& name) {
  // With a data watch, so a member that is deleted and re-created between
  // two list reads (a quick restart) is still read again.
  const std::string path = nodes_path_ + "/" + name;
  Child& child = cache_[name];
  child.in_flight = true;
  const KeeperRc rc = session_.keeper()->GetData(
      path, /*watch=*/true,
      [this, path](KeeperRc rc, const std::optional<std::string>& data,
                   const std::optional<ZnodeStat>&) { OnChildData(path, rc, data); });
  if (rc != KeeperRc::kOk) child.in_flight = false;
}

void MembershipWatch::WatchNodesDir() {
  owner_.Check("MembershipWatch::WatchNodesDir");
  if (nodes_dir_watch_in_flight_ || !session_.keeper()) return;
  nodes_dir_watch_in_flight_ = true;
  const KeeperRc rc = session_.keeper()->Exists(
      nodes_path_, /*watch=*/true,
      [this](KeeperRc rc, const std::optional<ZnodeStat>&) { OnNodesDirExists(rc); });
  if (rc != KeeperRc::kOk) nodes_dir_watch_in_flight_ = false;
}

void MembershipWatch::OnChildren(KeeperRc rc, const std::vector<std::string>& children) {
  owner_.Check("MembershipWatch::OnChildren");
  children_in_flight_ = false;
  if (rc == KeeperRc::kOk) {
    children_known_ = true;
    children_ = children;
    std::sort(children_.begin(), children_.end());
    const std::set<std::string> names(children_.begin(), children_.end());
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = names.count(it->first) ? std::next(it) : cache_.erase(it);
    }
    for (const std::string& name : children_) cache_.try_emplace(name);
    hooks_.resync();  // reads the new members' data
    return MaybeDeliver();
  }
  if (rc == KeeperRc::kNoNode) {
    // No <root>/nodes (yet): no members.
    children_known_ = true;
    children_.clear();
    cache_.clear();
    hooks_.nodes_dir_missing();
    MaybeDeliver();
    return hooks_.resync();
  }
  if (IsConnectionLoss(rc)) {
    children_stale_ = true;
    return hooks_.resync();
  }
  if (IsSessionGone(rc)) return;
  LOG(ERROR) << "cannot list " << nodes_path_ << ": " << KeeperError(rc);
}

void MembershipWatch::OnChildData(const std::string& path, KeeperRc rc,
                                  const std::optional<std::string>& data) {
  owner_.Check("MembershipWatch::OnChildData");
  const std::string name = path.substr(nodes_path_.size() + 1);
  auto it = cache_.find(name);
  if (it == cache_.end()) return MaybeDeliver();
  Child& child = it->second;
  child.in_flight = false;
  if (rc == KeeperRc::kOk) {
    child.fresh = true;
    std::optional<NodeInfo> info = DecodeNodeInfo(data ? *data : "");
    if (!info) {
      if (!child.warned) {
        LOG(WARNING) << "skipping member " << path
                     << ": data is not a node description: " << Truncated(data.value_or(""));
      }
      child.warned = true;
      child.info.reset();
    } else {
      if (info->id != name && !child.warned) {
        LOG(WARNING) << path << " describes node id " << info->id;
      }
      child.info = std::move(info);
    }
  } else if (rc == KeeperRc::kNoNode) {
    cache_.erase(it);
    children_stale_ = true;
    hooks_.resync();
  } else if (IsConnectionLoss(rc)) {
    hooks_.resync();
  } else if (!IsSessionGone(rc)) {
    LOG(WARNING) << "cannot read " << path << ": " << KeeperError(rc);
    child.fresh = true;  // until it changes
  }
  MaybeDeliver();
}

void MembershipWatch::OnNodesDirExists(KeeperRc rc) {
  owner_.Check("MembershipWatch::OnNodesDirExists");
  nodes_dir_watch_in_flight_ = false;
  if (rc == KeeperRc::kOk) {
    children_stale_ = true;
    return hooks_.resync();
  }
  if (IsConnectionLoss(rc)) {
    children_stale_ = true;  // the read after reconnect sets this watch again
    return hooks_.resync();
  }
  // kNoNode: the watch is armed; kCreated arrives in OnEvent.
}

void MembershipWatch::OnEvent(KeeperEvent event, const std::string& path) {
  owner_.Check("MembershipWatch::OnEvent");
  if (path == nodes_path_) {
    if (event == KeeperEvent::kDeleted) LOG(WARNING) << nodes_path_ << " was deleted";
    children_stale_ = true;
  } else if (path.size() > nodes_path_.size() + 1 &&
             path.compare(0, nodes_path_.size(), nodes_path_) == 0 &&
             path[nodes_path_.size()] == '/') {
    const std::string name = path.substr(nodes_path_.size() + 1);
    auto it = cache_.find(name);
    if (event == KeeperEvent::kDeleted) {
      if (it != cache_.end()) cache_.erase(it);
      children_stale_ = true;
    } else if (event == KeeperEvent::kChanged && it != cache_.end()) {
      it->second.fresh = false;
    }
  }
}

void MembershipWatch::MaybeDeliver() {
  owner_.Check("MembershipWatch::MaybeDeliver");
  if (!children_known_ || children_in_flight_) return;
  for (const auto& [name, child] : cache_) {
    if (child.in_flight) return;  // deliver complete lists only
  }
  std::vector<NodeInfo> list;
  for (const std::string& name : children_) {
    auto it = cache_.find(name);
    if (it != cache_.end() && it->second.info) list.push_back(*it->second.info);
  }
  std::sort(list.begin(), list.end(),
            [](const NodeInfo& a, const NodeInfo& b) { return a.id < b.id; });
  if (members_delivered_ && list == members_) return;

  std::map<std::string, const NodeInfo*> before, after;
  for (const NodeInfo& node : members_) before[node.id] = &node;
  for (const NodeInfo& node : list) after[node.id] = &node;
  for (const auto& [id, node] : after) {
    auto it = before.find(id);
    if (it == before.end()) {
      LOG(INFO) << "node joined: " << Describe(*node);
    } else if (!(*it->second == *node)) {
      LOG(INFO) << "node changed: " << Describe(*node) << " (was " << Describe(*it->second) << ")";
    }
  }
  for (const auto& [id, node] : before) {
    if (!after.count(id)) LOG(INFO) << "node left: " << Describe(*node);
  }
  members_ = std::move(list);
  members_delivered_ = true;
  hooks_.on_members(members_);
}

}  // namespace zmesh::zk


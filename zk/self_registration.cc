#include "zk/self_registration.h"

#include <glog/logging.h>

#include <utility>

namespace zmesh::zk {
namespace {

std::string Describe(const NodeInfo& node) {
  return "id=" + node.id + " client_url=" + node.client_url + " peer_url=" + node.peer_url +
         " version=" + node.version;
}

bool ValidNodeName(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id != "zookeeper" &&
         id.find('/') == std::string::npos && id.find('\0') == std::string::npos;
}

}  // namespace

SelfRegistration::SelfRegistration(const RegistryOptions& options, const std::string& nodes_path,
                                   RegistrySession& session, Scheduler& scheduler,
                                   const OwnerThread& owner, Hooks hooks)
    : options_(options),
      nodes_path_(nodes_path),
      session_(session),
      scheduler_(scheduler),
      owner_(owner),
      hooks_(std::move(hooks)) {}

void SelfRegistration::Register(const NodeInfo& self,
                                std::function<void(bool ok, const std::string& error)> done) {
  owner_.Check("SelfRegistration::Register");
  if (want_registered_ || registered_ || unregistering_) {
    hooks_.post([done = std::move(done)] { done(false, "already registered"); });
    return;
  }
  if (!ValidNodeName(self.id)) {
    hooks_.post([done = std::move(done), id = self.id] {
      done(false, "invalid node id '" + id + "' (must be a single znode name)");
    });
    return;
  }
  self_ = self;
  self_path_ = nodes_path_ + "/" + self.id;
  want_registered_ = true;
  register_done_ = std::move(done);
  stale_owner_logged_ = -1;
  hooks_.resync();
}

void SelfRegistration::Unregister(std::function<void()> done) {
  owner_.Check("SelfRegistration::Unregister");
  want_registered_ = false;
  waiting_for_stale_ = false;
  FinishRegister(false, "unregistered before the znode was created");
  if (unregistering_) {
    auto previous = std::move(unregister_done_);
    unregister_done_ = [previous = std::move(previous), done = std::move(done)] {
      if (previous) previous();
      if (done) done();
    };
    return;
  }
  unregistering_ = true;
  unregister_done_ = std::move(done);
  const uint64_t epoch = ++unregister_epoch_;
  scheduler_.RunAfter(session_.Timeout(), [this, epoch] { OnUnregisterTimeout(epoch); });
  if (registered_) LOG(INFO) << "unregistering: deleting " << self_path_;
  hooks_.resync();  // issues the delete, or finishes at once when there is nothing to delete
}

void SelfRegistration::Resync() {
  owner_.Check("SelfRegistration::Resync");
  if (want_registered_ && !registered_ && !create_in_flight_ && !inspect_in_flight_ &&
      !steal_in_flight_ && !waiting_for_stale_) {
    IssueCreate();
  }
  if (unregistering_ && registered_ && !delete_in_flight_) IssueDelete();
}

void SelfRegistration::Reset() {
  registered_ = false;
  create_in_flight_ = false;
  inspect_in_flight_ = false;
  steal_in_flight_ = false;
  waiting_for_stale_ = false;
  delete_in_flight_ = false;
}

void SelfRegistration::OnSessionLost() {
  if (unregistering_) FinishUnregister();
}

void SelfRegistration::Stop() {
  registered_ = false;
  register_done_ = nullptr;
  unregister_done_ = nullptr;
}

void SelfRegistration::IssueCreate() {
  const std::string data = EncodeNodeInfo(*self_);
  const KeeperAcl acl = options_.credentials.empty() ? KeeperAcl::kOpen : KeeperAcl::kDigest;
  create_in_flight_ = true;
  const KeeperRc rc = session_.keeper()->Create(
      self_path_, data, acl, CreateMode::kEphemeral,
      [this, path = self_path_](KeeperRc rc, const std::optional<ZnodeStat>& stat) {
        if (path != self_path_) {
          create_in_flight_ = false;
          return hooks_.resync();
        }
        OnCreated(rc, stat);
      });
  if (rc != KeeperRc::kOk) create_in_flight_ = false;
}

void SelfRegistration::IssueInspect() {
  // With a watch: if the znode is a stale one we wait for, its deletion
  // arrives as a kDeleted event (OnEvent).
  inspect_in_flight_ = true;
  const KeeperRc rc = session_.keeper()->GetData(
      self_path_, /*watch=*/true,
      [this, path = self_path_](KeeperRc rc, const std::optional<std::string>& data,
                                const std::optional<ZnodeStat>& stat) {
        if (path != self_path_) {
          inspect_in_flight_ = false;
          return hooks_.resync();
        }
        OnInspected(rc, data, stat);
      });
  if (rc != KeeperRc::kOk) inspect_in_flight_ = false;
}

void SelfRegistration::IssueStealDelete(int32_t version) {
  // By version, never -1: if the znode changed hands meanwhile, we lose.
  steal_in_flight_ = true;
  const KeeperRc rc = session_.keeper()->Delete(self_path_, version,
                                                [this](KeeperRc rc) { OnStaleDeleted(rc); });
  if (rc != KeeperRc::kOk) steal_in_flight_ = false;
}

void SelfRegistration::IssueDelete() {
  delete_in_flight_ = true;
  const KeeperRc rc = session_.keeper()->Delete(self_path_, self_version_,
                                                [this](KeeperRc rc) { OnDeleted(rc); });
  if (rc != KeeperRc::kOk) delete_in_flight_ = false;
}

void SelfRegistration::OnCreated(KeeperRc rc, const std::optional<ZnodeStat>& stat) {
  owner_.Check("SelfRegistration::OnCreated");
  create_in_flight_ = false;
  if (rc == KeeperRc::kOk) {
    registered_ = true;
    self_version_ = stat ? stat->version : 0;
    stale_owner_logged_ = -1;
    LOG(INFO) << "registered " << self_path_ << " (session "
              << SessionIdHex(session_.session_id()) << "): " << Describe(*self_);
    if (want_registered_) FinishRegister(true, "");
    return hooks_.resync();  // deletes it again if Unregister came meanwhile
  }
  if (rc == KeeperRc::kNodeExists) return IssueInspect();
  if (rc == KeeperRc::kNoNode) {
    hooks_.need_parents();
    return hooks_.resync();
  }
  // The create may have been applied: the retry then finds kNodeExists with
  // our own session as the owner.
  if (IsConnectionLoss(rc)) return hooks_.resync();
  if (IsSessionGone(rc)) return;
  LOG(ERROR) << "cannot create " << self_path_ << ": " << KeeperError(rc);
  FailRegister("cannot create " + self_path_ + ": " + KeeperError(rc));
  MaybeFinishUnregister();
}

void SelfRegistration::OnInspected(KeeperRc rc, const std::optional<std::string>& data,
                                   const std::optional<ZnodeStat>& stat) {
  owner_.Check("SelfRegistration::OnInspected");
  inspect_in_flight_ = false;
  if (rc == KeeperRc::kNoNode || IsConnectionLoss(rc)) return hooks_.resync();  // create again
  if (IsSessionGone(rc)) return;
  if (rc != KeeperRc::kOk || !stat || !data) {
    LOG(ERROR) << "cannot read " << self_path_ << ": " << KeeperError(rc);
    FailRegister("cannot read " + self_path_ + ": " + KeeperError(rc));
    return MaybeFinishUnregister();
  }
  const int64_t owner = stat->ephemeral_owner;
  if (owner == session_.session_id()) {
    registered_ = true;
    self_version_ = stat->version;
    LOG(INFO) << self_path_ << " already exists and is ours (session "
              << SessionIdHex(session_.session_id())
              << "; a create retried after a connection loss)";
    if (want_registered_) FinishRegister(true, "");
    return hooks_.resync();
  }
  if (!want_registered_) return MaybeFinishUnregister();
  const std::optional<NodeInfo> theirs = DecodeNodeInfo(*data);
  if (options_.steal_stale_znode && owner != 0 && theirs && theirs->peer_url == self_->peer_url) {
    // It names the peer address we have just bound, so its owner is dead.
    LOG(WARNING) << self_path_ << " is left over from our previous process (session "
                 << SessionIdHex(owner) << ", peer_url " << theirs->peer_url
                 << "); deleting version " << stat->version;
    return IssueStealDelete(stat->version);
  }
  waiting_for_stale_ = true;
  if (stale_owner_logged_ != owner) {
    stale_owner_logged_ = owner;
    if (owner == 0) {
      LOG(ERROR) << self_path_ << " exists as a persistent znode; waiting until it is deleted";
    } else {
      LOG(WARNING) << self_path_ << " exists, owned by session " << SessionIdHex(owner)
                   << (theirs ? " with peer_url " + theirs->peer_url : std::string())
                   << "; waiting for it to go away (at most a session timeout once its owner "
                      "is dead)";
    }
  }
  // The watch set by the inspect reports the deletion (OnEvent).
}

void SelfRegistration::OnStaleDeleted(KeeperRc rc) {
  owner_.Check("SelfRegistration::OnStaleDeleted");
  steal_in_flight_ = false;
  if (rc == KeeperRc::kOk || rc == KeeperRc::kNoNode) {
    LOG(INFO) << "deleted stale " << self_path_;
    return hooks_.resync();
  }
  // kBadVersion: it changed hands; look again.
  if (rc == KeeperRc::kBadVersion || IsConnectionLoss(rc)) return hooks_.resync();
  if (IsSessionGone(rc)) return;
  LOG(ERROR) << "cannot delete stale " << self_path_ << ": " << KeeperError(rc)
             << "; waiting for it to expire instead";
  waiting_for_stale_ = true;  // the inspect's watch is still armed
}

void SelfRegistration::OnDeleted(KeeperRc rc) {
  owner_.Check("SelfRegistration::OnDeleted");
  delete_in_flight_ = false;
  if (rc == KeeperRc::kOk || rc == KeeperRc::kNoNode || rc == KeeperRc::kBadVersion) {
    registered_ = false;
    LOG(INFO) << (rc == KeeperRc::kOk ? "unregistered: deleted " : "unregistered: already gone: ")
              << self_path_;
    return hooks_.resync();
  }
  if (IsConnectionLoss(rc)) return hooks_.resync();
  if (IsSessionGone(rc)) return;
  LOG(ERROR) << "cannot delete " << self_path_ << ": " << KeeperError(rc)
             << "; it goes when the session closes";
  FinishUnregister();
}

void SelfRegistration::OnEvent(KeeperEvent event, const std::string& path) {
  owner_.Check("SelfRegistration::OnEvent");
  if (self_path_.empty() || path != self_path_) return;
  if (event == KeeperEvent::kChanged && waiting_for_stale_) {
    // The one-shot watch we waited on is used up: look again, which re-arms
    // it (create -> kNodeExists -> inspect).
    waiting_for_stale_ = false;
  }
  if (event == KeeperEvent::kDeleted) {
    if (waiting_for_stale_) {
      LOG(INFO) << "stale " << self_path_ << " is gone; creating ours";
      waiting_for_stale_ = false;
    } else if (registered_ && !delete_in_flight_) {
      LOG(WARNING) << "our znode " << self_path_ << " was deleted by someone else"
                   << (want_registered_ ? "; re-creating it" : "");
      registered_ = false;
    }
  }
}

void SelfRegistration::FailRegister(const std::string& error) {
  if (!want_registered_) return;
  want_registered_ = false;
  FinishRegister(false, error);
}

void SelfRegistration::FinishRegister(bool ok, const std::string& error) {
  if (!register_done_) return;
  auto done = std::move(register_done_);
  register_done_ = nullptr;
  hooks_.post([done = std::move(done), ok, error] { done(ok, error); });
}

void SelfRegistration::MaybeFinishUnregister() {
  if (unregistering_ && !registered_ && !create_in_flight_ && !inspect_in_flight_ &&
      !steal_in_flight_ && !delete_in_flight_) {
    FinishUnregister();
  }
}

void SelfRegistration::FinishUnregister() {
  unregistering_ = false;
  ++unregister_epoch_;
  auto done = std::move(unregister_done_);
  unregister_done_ = nullptr;
  if (done) hooks_.post(std::move(done));
}

void SelfRegistration::OnUnregisterTimeout(uint64_t epoch) {
  owner_.Check("SelfRegistration::OnUnregisterTimeout");
  if (!unregistering_ || epoch != unregister_epoch_) return;
  LOG(WARNING) << "ZooKeeper did not confirm the delete of " << self_path_ << " within "
               << session_.Timeout().count()
               << " ms; going on, and deleting it once reconnected (or it goes with the session)";
  // The caller's graceful leave must not hang on ZooKeeper; the delete itself
  // stays wanted (unregistering_) until the znode is gone.
  auto done = std::move(unregister_done_);
  unregister_done_ = nullptr;
  if (done) hooks_.post(std::move(done));
}

}  // namespace zmesh::zk

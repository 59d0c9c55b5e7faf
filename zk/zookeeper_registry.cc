#include "zk/zookeeper_registry.h"

#include <glog/logging.h>

#include <utility>

#include "zk/zookeeper_keeper.h"

namespace zmesh::zk {
namespace {

std::string NormalizeRoot(std::string root) {
  while (!root.empty() && root.back() == '/') root.pop_back();
  if (!root.empty() && root.front() != '/') root.insert(root.begin(), '/');
  return root;
}

}  // namespace

ZooKeeperRegistry::ZooKeeperRegistry(RegistryOptions options, Executor executor)
    : ZooKeeperRegistry(options, executor,
                        ZooKeeperKeeperFactory(options.connect, options.session_timeout_ms, executor),
                        std::make_unique<TimerThreadScheduler>(executor)) {}

ZooKeeperRegistry::ZooKeeperRegistry(RegistryOptions options, Executor executor,
                                     KeeperFactory keepers, std::unique_ptr<Scheduler> scheduler)
    : options_(std::move(options)),
      nodes_path_(NormalizeRoot(options_.root) + "/nodes"),
      executor_(std::move(executor)),
      scheduler_(std::move(scheduler)),
      session_(options_, std::move(keepers), *scheduler_, owner_,
               RegistrySession::Hooks{
                   .on_state =
                       [this](SessionState state) {
                         if (listener_.on_session) {
                           PostCallback([callback = listener_.on_session, state] { callback(state); });
                         }
                       },
                   .on_reset = [this] { OnReset(); },
                   .on_lost = [this](const std::string& reason) { OnSessionLost(reason); },
                   .on_progress = [this] { Resync(); },
                   .on_event = [this](KeeperEvent event,
                                      const std::string& path) { OnEvent(event, path); },
               }),
      registration_(options_, nodes_path_, session_, *scheduler_, owner_,
                    SelfRegistration::Hooks{
                        .resync = [this] { Resync(); },
                        .need_parents = [this] { parents_needed_ = true; },
                        .post = [this](std::function<void()> callback) {
                          PostCallback(std::move(callback));
                        },
                    }),
      watch_(nodes_path_, session_, owner_,
             MembershipWatch::Hooks{
                 .resync = [this] { Resync(); },
                 .nodes_dir_missing = [this] { OnNodesDirMissing(); },
                 .on_members =
                     [this](const std::vector<NodeInfo>& members) {
                       if (listener_.on_members) {
                         PostCallback([callback = listener_.on_members, members] { callback(members); });
                       }
                     },
             }) {}

ZooKeeperRegistry::~ZooKeeperRegistry() { Stop(); }

void ZooKeeperRegistry::Start(Listener listener) {
  if (started_ || stopped_) {
    LOG(ERROR) << "ZooKeeperRegistry::Start called twice or after Stop; ignored";
    return;
  }
  started_ = true;
  owner_.Bind();
  listener_ = std::move(listener);
  LOG(INFO) << "ZooKeeper registry: connect=" << options_.connect << " nodes=" << nodes_path_
            << " session_timeout_ms=" << options_.session_timeout_ms
            << (options_.credentials.empty() ? " open ACLs" : " digest ACLs");
  session_.Open();
}

void ZooKeeperRegistry::Register(const NodeInfo& self,
                                 std::function<void(bool ok, const std::string& error)> done) {
  owner_.Check("ZooKeeperRegistry::Register");
  if (stopped_) return;
  registration_.Register(self, std::move(done));
}

void ZooKeeperRegistry::Unregister(std::function<void()> done) {
  owner_.Check("ZooKeeperRegistry::Unregister");
  if (stopped_) return;
  registration_.Unregister(std::move(done));
}

void ZooKeeperRegistry::Stop() {
  if (stopped_) return;
  stopped_ = true;
  *alive_ = false;
  scheduler_->Stop();
  const bool had_znode = registration_.registered();
  // Closing the session deletes our ephemeral znode at once, so peers see us
  // leave now rather than a session timeout later.
  session_.Close();
  registration_.Stop();
  listener_ = {};
  if (started_) {
    LOG(INFO) << "ZooKeeper registry stopped"
              << (had_znode ? "; " + registration_.path() + " went with the session" : "");
  }
}

std::vector<NodeInfo> ZooKeeperRegistry::members() const {
  owner_.Check("ZooKeeperRegistry::members");
  return watch_.members();
}

bool ZooKeeperRegistry::registered() const {
  owner_.Check("ZooKeeperRegistry::registered");
  return registration_.registered();
}

SessionState ZooKeeperRegistry::state() const {
  owner_.Check("ZooKeeperRegistry::state");
  return session_.state();
}

void ZooKeeperRegistry::Resync() {
  if (stopped_) return;
  registration_.MaybeFinishUnregister();
  if (!session_.connected()) return;
  if (!session_.ready()) return session_.MakeReady();
  if (parents_needed_) {
    if (parents_in_flight_ == 0) IssueCreateParents();
    return;
  }
  // Our own znode first: a children read issued after it already lists it.
  registration_.Resync();
  watch_.Resync();
}

void ZooKeeperRegistry::OnEvent(KeeperEvent event, const std::string& path) {
  owner_.Check("ZooKeeperRegistry::OnEvent");
  if (stopped_) return;
  watch_.OnEvent(event, path);
  registration_.OnEvent(event, path);
  Resync();
  watch_.MaybeDeliver();
}

void ZooKeeperRegistry::OnReset() {
  parents_needed_ = false;
  parents_in_flight_ = 0;
  parents_error_ = KeeperRc::kOk;
  parents_last_rc_ = KeeperRc::kOk;
  parents_failed_ = false;
  registration_.Reset();
  watch_.Reset();
}

void ZooKeeperRegistry::OnSessionLost(const std::string& reason) {
  LOG(WARNING) << "after losing the session: "
               << (registration_.wanted() ? "re-registering " + registration_.path() + "; "
                                          : std::string())
               << "keeping the last known " << watch_.members().size() << " members meanwhile";
  registration_.OnSessionLost();
}

void ZooKeeperRegistry::IssueCreateParents() {
  // Persistent parents, all issued at once: one session's requests are
  // applied in order, so each create finds its parent.
  std::vector<std::string> paths;
  for (size_t pos = nodes_path_.find('/', 1); pos != std::string::npos;
       pos = nodes_path_.find('/', pos + 1)) {
    paths.push_back(nodes_path_.substr(0, pos));
  }
  paths.push_back(nodes_path_);
  parents_error_ = KeeperRc::kOk;
  parents_last_rc_ = KeeperRc::kOk;
  const KeeperAcl acl = options_.credentials.empty() ? KeeperAcl::kOpen : KeeperAcl::kDigest;
  for (const std::string& path : paths) {
    const KeeperRc rc = session_.keeper()->Create(
        path, "", acl, CreateMode::kPersistent,
        [this, path](KeeperRc rc, const std::optional<ZnodeStat>&) { OnParentCreated(path, rc); });
    if (rc != KeeperRc::kOk) break;
    ++parents_in_flight_;
  }
}

void ZooKeeperRegistry::OnParentCreated(const std::string& path, KeeperRc rc) {
  owner_.Check("ZooKeeperRegistry::OnParentCreated");
  --parents_in_flight_;
  if (path == nodes_path_) {
    parents_last_rc_ = rc;
  } else if (rc != KeeperRc::kOk && rc != KeeperRc::kNodeExists &&
             parents_error_ == KeeperRc::kOk) {
    // Not fatal by itself: an existing ancestor that we may not write to
    // answers kNoAuth even though it exists.
    parents_error_ = rc;
  }
  if (parents_in_flight_ > 0) return;
  if (parents_last_rc_ == KeeperRc::kOk || parents_last_rc_ == KeeperRc::kNodeExists) {
    if (parents_last_rc_ == KeeperRc::kOk) LOG(INFO) << "created " << nodes_path_;
    parents_needed_ = false;
    parents_failed_ = false;
    watch_.MarkStale();
    return Resync();
  }
  const KeeperRc err = parents_last_rc_ == KeeperRc::kNoNode && parents_error_ != KeeperRc::kOk
                           ? parents_error_
                           : parents_last_rc_;
  if (IsConnectionLoss(err)) return Resync();  // parents_needed_ stays: again after reconnect
  if (IsSessionGone(err)) return;
  LOG(ERROR) << "cannot create " << nodes_path_ << ": " << KeeperError(err)
             << (err == KeeperRc::kNoAuth ? " (wrong or missing credentials?)" : "");
  parents_needed_ = false;
  parents_failed_ = true;
  registration_.FailRegister("cannot create " + nodes_path_ + ": " + KeeperError(err));
  // Members: wait until somebody who may creates the directory.
  watch_.WatchNodesDir();
  registration_.MaybeFinishUnregister();
}

void ZooKeeperRegistry::OnNodesDirMissing() {
  if (parents_failed_) {
    watch_.WatchNodesDir();
  } else {
    parents_needed_ = true;
    watch_.MarkStale();
  }
}

void ZooKeeperRegistry::PostCallback(std::function<void()> callback) {
  executor_([alive = alive_, callback = std::move(callback)] {
    if (*alive) callback();
  });
}

std::unique_ptr<Registry> NewZooKeeperRegistry(RegistryOptions options, Executor executor) {
  return std::make_unique<ZooKeeperRegistry>(std::move(options), std::move(executor));
}

}  // namespace zmesh::zk

#include "zk/testing/fake_keeper.h"

#include <algorithm>
#include <utility>

namespace zmesh::zk::testing {

using Op = FakeKeeperServer::Op;

// ---------------------------------------------------------------------------
// FakeKeeperServer

FakeKeeperServer::~FakeKeeperServer() {
  for (FakeKeeper* keeper : keepers_) keeper->connected_ = false;
}

KeeperFactory FakeKeeperServer::Factory(Executor executor, int session_timeout_ms) {
  return [this, executor = std::move(executor),
          session_timeout_ms](Keeper::Watcher watcher) -> std::unique_ptr<Keeper> {
    return std::make_unique<FakeKeeper>(*this, executor, std::move(watcher), session_timeout_ms);
  };
}

std::string FakeKeeperServer::Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::optional<FakeKeeperServer::Znode> FakeKeeperServer::Get(const std::string& path) const {
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> FakeKeeperServer::Children(const std::string& path) const {
  std::vector<std::string> names;
  const std::string prefix = path == "/" ? "/" : path + "/";
  for (auto it = nodes_.lower_bound(prefix);
       it != nodes_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    const std::string rest = it->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) names.push_back(rest);
  }
  return names;
}

void FakeKeeperServer::Put(const std::string& path, const std::string& data) {
  const std::string parent = Parent(path);
  if (parent != "/" && !nodes_.count(parent)) Put(parent, "");
  auto [it, inserted] = nodes_.try_emplace(path);
  if (!inserted) ++it->second.version;
  it->second.data = data;
  it->second.ephemeral_owner = 0;
  if (inserted) {
    Fire(path, KeeperEvent::kCreated);
    Fire(parent, KeeperEvent::kChildren);
  } else {
    Fire(path, KeeperEvent::kChanged);
  }
}

bool FakeKeeperServer::Remove(const std::string& path) {
  if (nodes_.erase(path) == 0) return false;
  Fire(path, KeeperEvent::kDeleted);
  Fire(Parent(path), KeeperEvent::kChildren);
  return true;
}

int64_t FakeKeeperServer::AddStaleEphemeral(const std::string& path, const std::string& data) {
  const int64_t id = next_session_id_++;
  sessions_[id] = Session{};
  const std::string parent = Parent(path);
  if (parent != "/" && !nodes_.count(parent)) Put(parent, "");
  nodes_[path] = Znode{data, id, 0, ""};
  Fire(path, KeeperEvent::kCreated);
  Fire(parent, KeeperEvent::kChildren);
  return id;
}

void FakeKeeperServer::Protect(const std::string& path, const std::string& credentials) {
  auto it = nodes_.find(path);
  if (it != nodes_.end()) it->second.acl_credentials = credentials;
}

void FakeKeeperServer::ExpireSession(int64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || !it->second.alive) return;
  it->second.alive = false;
  FakeKeeper* keeper = it->second.keeper;
  if (keeper != nullptr) {
    // Its watches die with the session: it hears nothing of its own znodes going.
    keeper->data_watches_.clear();
    keeper->child_watches_.clear();
    keeper->missed_.clear();
  }
  EndSession(session_id);
  if (keeper != nullptr && keeper->connected_) {
    keeper->connected_ = false;
    keeper->expired_ = true;
    keeper->DeliverSession(KeeperState::kExpired);
  }
}

void FakeKeeperServer::Disconnect(int64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  it->second.reachable = false;
  FakeKeeper* keeper = it->second.keeper;
  if (keeper != nullptr && keeper->connected_) {
    keeper->connected_ = false;
    keeper->DeliverSession(KeeperState::kConnecting);
  }
}

void FakeKeeperServer::Reconnect(int64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  it->second.reachable = true;
  if (it->second.keeper != nullptr) Connect(it->second.keeper);
}

void FakeKeeperServer::SetReachable(bool reachable) {
  reachable_ = reachable;
  for (FakeKeeper* keeper : std::vector<FakeKeeper*>(keepers_.begin(), keepers_.end())) {
    if (!reachable && keeper->connected_) {
      keeper->connected_ = false;
      keeper->DeliverSession(KeeperState::kConnecting);
    } else if (reachable) {
      Connect(keeper);
    }
  }
}

void FakeKeeperServer::FailNext(Op op, const std::string& path, KeeperRc rc, bool applied) {
  faults_.push_back(Fault{op, path, rc, applied});
}

bool FakeKeeperServer::SessionAlive(int64_t session_id) const {
  auto it = sessions_.find(session_id);
  return it != sessions_.end() && it->second.alive;
}

int FakeKeeperServer::Requests(Op op, const std::string& path) const {
  auto it = requests_.find({op, path});
  return it == requests_.end() ? 0 : it->second;
}

void FakeKeeperServer::Attach(FakeKeeper* keeper) {
  keepers_.insert(keeper);
  Connect(keeper);
}

void FakeKeeperServer::Detach(FakeKeeper* keeper) {
  keepers_.erase(keeper);
  if (keeper->session_id_ == 0) return;
  auto it = sessions_.find(keeper->session_id_);
  if (it == sessions_.end()) return;
  it->second.keeper = nullptr;
  if (it->second.alive && keeper->connected_) {
    // zookeeper_close: the session ends now, its znodes with it. A handle
    // that cannot reach the server leaves its session to expire.
    it->second.alive = false;
    EndSession(keeper->session_id_);
  }
}

void FakeKeeperServer::Connect(FakeKeeper* keeper) {
  if (!reachable_ || keeper->connected_ || keeper->expired_) return;
  if (keeper->session_id_ == 0) {
    const int64_t id = next_session_id_++;
    sessions_[id] = Session{true, keeper, true};
    keeper->session_id_ = id;
    keeper->connected_ = true;
    keeper->DeliverSession(KeeperState::kConnected);
    return;
  }
  Session& session = sessions_[keeper->session_id_];
  if (!session.reachable) return;
  if (!session.alive) {
    keeper->expired_ = true;
    keeper->data_watches_.clear();
    keeper->child_watches_.clear();
    keeper->missed_.clear();
    keeper->DeliverSession(KeeperState::kExpired);
    return;
  }
  keeper->connected_ = true;
  keeper->DeliverSession(KeeperState::kConnected);
  // The watches are set again on the new connection; what fired meanwhile
  // is reported now.
  auto missed = std::move(keeper->missed_);
  keeper->missed_.clear();
  for (auto& [event, path] : missed) keeper->DeliverEvent(event, path);
}

std::optional<FakeKeeperServer::Fault> FakeKeeperServer::TakeFault(Op op,
                                                                   const std::string& path) {
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->op == op && it->path == path) {
      Fault fault = *it;
      faults_.erase(it);
      return fault;
    }
  }
  return std::nullopt;
}

bool FakeKeeperServer::Allowed(const Znode& node, const FakeKeeper* keeper) const {
  return node.acl_credentials.empty() || keeper->credentials_.count(node.acl_credentials) > 0;
}

KeeperRc FakeKeeperServer::DoCreate(FakeKeeper* keeper, const std::string& path,
                                    const std::string& data, KeeperAcl acl, CreateMode mode,
                                    ZnodeStat* stat) {
  const std::string parent = Parent(path);
  if (nodes_.count(path)) return KeeperRc::kNodeExists;
  if (parent != "/") {
    auto it = nodes_.find(parent);
    if (it == nodes_.end()) return KeeperRc::kNoNode;
    if (!Allowed(it->second, keeper)) return KeeperRc::kNoAuth;
  }
  Znode node;
  node.data = data;
  node.ephemeral_owner = mode == CreateMode::kEphemeral ? keeper->session_id_ : 0;
  if (acl == KeeperAcl::kDigest && !keeper->credentials_.empty()) {
    node.acl_credentials = *keeper->credentials_.begin();
  }
  nodes_[path] = node;
  *stat = ZnodeStat{node.version, node.ephemeral_owner};
  Fire(path, KeeperEvent::kCreated);
  Fire(parent, KeeperEvent::kChildren);
  return KeeperRc::kOk;
}

KeeperRc FakeKeeperServer::DoDelete(FakeKeeper* keeper, const std::string& path,
                                    int32_t version) {
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return KeeperRc::kNoNode;
  if (!Allowed(it->second, keeper)) return KeeperRc::kNoAuth;
  if (version != -1 && version != it->second.version) return KeeperRc::kBadVersion;
  if (!Children(path).empty()) return static_cast<KeeperRc>(-111);  // ZNOTEMPTY
  nodes_.erase(it);
  Fire(path, KeeperEvent::kDeleted);
  Fire(Parent(path), KeeperEvent::kChildren);
  return KeeperRc::kOk;
}

void FakeKeeperServer::EndSession(int64_t session_id) {
  std::vector<std::string> gone;
  for (const auto& [path, node] : nodes_) {
    if (node.ephemeral_owner == session_id) gone.push_back(path);
  }
  for (const std::string& path : gone) Remove(path);
}

void FakeKeeperServer::Fire(const std::string& path, KeeperEvent event) {
  for (FakeKeeper* keeper : keepers_) {
    bool fired = false;
    if (event == KeeperEvent::kChildren) {
      fired = keeper->child_watches_.erase(path) > 0;
    } else {
      fired = keeper->data_watches_.erase(path) > 0;
      // Deleting a znode also ends the children watch on it.
      if (event == KeeperEvent::kDeleted && keeper->child_watches_.erase(path) > 0) fired = true;
    }
    if (!fired) continue;
    if (keeper->connected_) {
      keeper->DeliverEvent(event, path);
    } else {
      keeper->missed_.emplace_back(event, path);
    }
  }
}

// ---------------------------------------------------------------------------
// FakeKeeper

FakeKeeper::FakeKeeper(FakeKeeperServer& server, Executor executor, Watcher watcher,
                       int session_timeout_ms)
    : server_(server),
      executor_(std::move(executor)),
      shared_(std::make_shared<Shared>()),
      session_timeout_ms_(session_timeout_ms) {
  shared_->watcher = std::move(watcher);
  server_.Attach(this);
}

FakeKeeper::~FakeKeeper() {
  shared_->alive = false;
  server_.Detach(this);
}

std::optional<ZooKeeperSession> FakeKeeper::session() const {
  if (session_id_ == 0) return std::nullopt;
  return ZooKeeperSession{session_id_, std::string(16, 'p')};
}

int FakeKeeper::negotiated_timeout_ms() const {
  return session_id_ == 0 ? 0 : session_timeout_ms_;
}

void FakeKeeper::Post(std::function<void()> fn) {
  executor_([shared = shared_, fn = std::move(fn)] {
    if (shared->alive) fn();
  });
}

void FakeKeeper::DeliverSession(KeeperState state) {
  Post([shared = shared_, state] {
    if (shared->watcher.on_session) shared->watcher.on_session(state);
  });
}

void FakeKeeper::DeliverEvent(KeeperEvent event, const std::string& path) {
  Post([shared = shared_, event, path] {
    if (shared->watcher.on_event) shared->watcher.on_event(event, path);
  });
}

KeeperRc FakeKeeper::Begin(Op op, const std::string& path, std::optional<KeeperRc>* answer,
                           std::optional<FakeKeeperServer::Fault>* applied_fault) {
  ++server_.requests_[{op, path}];
  if (expired_) return KeeperRc::kInvalidState;
  if (!connected_) {
    *answer = KeeperRc::kConnectionLoss;
    return KeeperRc::kOk;
  }
  std::optional<FakeKeeperServer::Fault> fault = server_.TakeFault(op, path);
  if (fault && !fault->applied) *answer = fault->rc;
  if (fault && fault->applied) *applied_fault = fault;
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::AddAuth(const std::string& scheme, const std::string& credentials,
                             Done done) {
  // The C client keeps credentials for every (re)connect of the handle.
  if (expired_) return KeeperRc::kInvalidState;
  ++server_.requests_[{Op::kAddAuth, scheme}];
  if (scheme == "digest") credentials_.insert(credentials);
  Post([done = std::move(done)] { done(KeeperRc::kOk); });
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::Sync(const std::string& path, Done done) {
  std::optional<KeeperRc> answer;
  std::optional<FakeKeeperServer::Fault> applied;
  const KeeperRc rc = Begin(Op::kSync, path, &answer, &applied);
  if (rc != KeeperRc::kOk) return rc;
  const KeeperRc result = answer ? *answer : applied ? applied->rc : KeeperRc::kOk;
  Post([done = std::move(done), result] { done(result); });
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::Create(const std::string& path, const std::string& data, KeeperAcl acl,
                            CreateMode mode, StatDone done) {
  std::optional<KeeperRc> answer;
  std::optional<FakeKeeperServer::Fault> applied;
  const KeeperRc rc = Begin(Op::kCreate, path, &answer, &applied);
  if (rc != KeeperRc::kOk) return rc;
  std::optional<ZnodeStat> stat;
  KeeperRc result;
  if (answer) {
    result = *answer;
  } else {
    ZnodeStat created;
    result = server_.DoCreate(this, path, data, acl, mode, &created);
    if (result == KeeperRc::kOk) stat = created;
    if (applied) {
      result = applied->rc;
      stat.reset();
    }
  }
  Post([done = std::move(done), result, stat] { done(result, stat); });
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::Delete(const std::string& path, int32_t version, Done done) {
  std::optional<KeeperRc> answer;
  std::optional<FakeKeeperServer::Fault> applied;
  const KeeperRc rc = Begin(Op::kDelete, path, &answer, &applied);
  if (rc != KeeperRc::kOk) return rc;
  server_.deletes_.emplace_back(path, version);
  KeeperRc result = answer ? *answer : server_.DoDelete(this, path, version);
  if (!answer && applied) result = applied->rc;
  Post([done = std::move(done), result] { done(result); });
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::GetData(const std::string& path, bool watch, DataDone done) {
  std::optional<KeeperRc> answer;
  std::optional<FakeKeeperServer::Fault> applied;
  const KeeperRc rc = Begin(Op::kGetData, path, &answer, &applied);
  if (rc != KeeperRc::kOk) return rc;
  KeeperRc result = KeeperRc::kNoNode;
  std::optional<std::string> data;
  std::optional<ZnodeStat> stat;
  if (answer) {
    result = *answer;
  } else if (auto node = server_.Get(path)) {
    if (watch) data_watches_.insert(path);
    result = applied ? applied->rc : KeeperRc::kOk;
    if (!applied) {
      data = node->data;
      stat = ZnodeStat{node->version, node->ephemeral_owner};
    }
  }
  Post([done = std::move(done), result, data, stat] { done(result, data, stat); });
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::GetChildren(const std::string& path, bool watch, ChildrenDone done) {
  std::optional<KeeperRc> answer;
  std::optional<FakeKeeperServer::Fault> applied;
  const KeeperRc rc = Begin(Op::kGetChildren, path, &answer, &applied);
  if (rc != KeeperRc::kOk) return rc;
  KeeperRc result = KeeperRc::kNoNode;
  std::vector<std::string> children;
  if (answer) {
    result = *answer;
  } else if (server_.Get(path) || path == "/") {
    if (watch) child_watches_.insert(path);
    result = applied ? applied->rc : KeeperRc::kOk;
    if (!applied) {
      children = server_.Children(path);
      // ZooKeeper promises no order.
      std::reverse(children.begin(), children.end());
    }
  }
  Post([done = std::move(done), result, children] { done(result, children); });
  return KeeperRc::kOk;
}

KeeperRc FakeKeeper::Exists(const std::string& path, bool watch, StatDone done) {
  std::optional<KeeperRc> answer;
  std::optional<FakeKeeperServer::Fault> applied;
  const KeeperRc rc = Begin(Op::kExists, path, &answer, &applied);
  if (rc != KeeperRc::kOk) return rc;
  KeeperRc result;
  std::optional<ZnodeStat> stat;
  if (answer) {
    result = *answer;
  } else {
    if (watch) data_watches_.insert(path);
    auto node = server_.Get(path);
    result = node ? KeeperRc::kOk : KeeperRc::kNoNode;
    if (node) stat = ZnodeStat{node->version, node->ephemeral_owner};
    if (applied) {
      result = applied->rc;
      stat.reset();
    }
  }
  Post([done = std::move(done), result, stat] { done(result, stat); });
  return KeeperRc::kOk;
}

}  // namespace zmesh::zk::testing

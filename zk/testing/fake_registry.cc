#include "zk/testing/fake_registry.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

namespace zmesh::zk {
namespace {

std::string NodesPath(std::string root) {
  while (!root.empty() && root.back() == '/') root.pop_back();
  if (!root.empty() && root.front() != '/') root.insert(root.begin(), '/');
  return root + "/nodes";
}

}  // namespace

FakeRegistry::FakeRegistry(std::shared_ptr<FakeZooKeeper> zookeeper, RegistryOptions options,
                           Executor executor)
    : zk_(std::move(zookeeper)),
      options_(std::move(options)),
      nodes_path_(NodesPath(options_.root)),
      client_(std::make_shared<FakeZooKeeper::Client>(std::move(executor))) {
  client_->registry = this;
}

FakeRegistry::~FakeRegistry() {
  Stop();
  client_->registry = nullptr;
}

void FakeRegistry::Start(Listener listener) {
  if (started_ || stopped_) return;
  started_ = true;
  listener_ = std::move(listener);
  zk_->AddClient(client_);
  // Session establishment is asynchronous in ZooKeeper too.
  FakeZooKeeper::Poke({client_});
}

void FakeRegistry::Register(const NodeInfo& self,
                            std::function<void(bool ok, const std::string& error)> done) {
  if (stopped_) return;
  if (want_registered_ || registered_) {
    PostCallback([done = std::move(done)] { done(false, "already registered"); });
    return;
  }
  if (self.id.empty() || self.id.find('/') != std::string::npos) {
    PostCallback([done = std::move(done)] { done(false, "invalid node id"); });
    return;
  }
  self_ = self;
  self_path_ = nodes_path_ + "/" + self.id;
  want_registered_ = true;
  register_done_ = std::move(done);
  stale_owner_logged_ = -1;
  if (started_) FakeZooKeeper::Poke({client_});
}

void FakeRegistry::Unregister(std::function<void()> done) {
  if (stopped_) return;
  want_registered_ = false;
  FinishRegister(false, "unregistered before the znode was created");
  unregistering_ = true;
  auto previous = std::move(unregister_done_);
  unregister_done_ = [previous = std::move(previous), done = std::move(done)] {
    if (previous) previous();
    if (done) done();
  };
  Sync();
}

void FakeRegistry::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (started_) {
    // Like zookeeper_close: the session ends, our znode goes at once.
    if (session_id_ != 0) zk_->CloseSession(session_id_);
    zk_->RemoveClient(client_);
  }
  registered_ = false;
  register_done_ = nullptr;
  unregister_done_ = nullptr;
  listener_ = {};
}

std::vector<NodeInfo> FakeRegistry::members() const { return members_; }
bool FakeRegistry::registered() const { return registered_; }
SessionState FakeRegistry::state() const { return state_; }

void FakeRegistry::Sync() {
  // Re-entrant safe: with an inline executor a store change made below
  // pokes us again from inside this call.
  if (in_sync_) {
    sync_again_ = true;
    return;
  }
  in_sync_ = true;
  do {
    sync_again_ = false;
    SyncOnce();
  } while (sync_again_);
  in_sync_ = false;
}

void FakeRegistry::SyncOnce() {
  if (stopped_) return;
  if (!started_) {
    if (unregistering_) FinishUnregister();
    return;
  }
  FakeZooKeeper::View view = zk_->GetView(client_, session_id_);
  if (!view.connected) {
    if (state_ == SessionState::kConnected) {
      LOG(WARNING) << "fake ZooKeeper: connection lost; keeping " << members_.size()
                   << " members";
      SetState(SessionState::kSuspended);
    }
    // A real registry would retry the delete until a timeout; the fake
    // gives up at once and leaves the znode to its session.
    if (unregistering_) FinishUnregister();
    return;
  }
  if (session_id_ == 0 || !view.session_alive) {
    if (session_id_ != 0) {
      LOG(WARNING) << "fake ZooKeeper: session " << session_id_ << " expired";
      SetState(SessionState::kExpired);
      registered_ = false;
      if (unregistering_) FinishUnregister();
    }
    const int64_t id = zk_->OpenSession(client_);
    if (id == 0) return;  // lost the connection meanwhile; poked again on reconnect
    session_id_ = id;
  }
  SetState(SessionState::kConnected);

  if (registered_) {
    // Someone deleted our znode: re-create it, as the real registry does.
    std::optional<FakeZooKeeper::Znode> node = zk_->Get(self_path_);
    if (!node || node->ephemeral_owner != session_id_) {
      if (want_registered_) LOG(WARNING) << "fake ZooKeeper: " << self_path_ << " was deleted";
      registered_ = false;
    }
  }
  if (want_registered_ && !registered_) TryCreate();
  if (unregistering_) {
    if (registered_) zk_->DeleteVersion(self_path_, self_version_);
    registered_ = false;
    FinishUnregister();
  }
  DeliverMembers();
}

void FakeRegistry::TryCreate() {
  const std::string data = EncodeNodeInfo(*self_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    FakeZooKeeper::CreateResult result =
        zk_->CreateEphemeral(client_, session_id_, self_path_, data);
    switch (result.status) {
      case FakeZooKeeper::CreateStatus::kOk:
        registered_ = true;
        self_version_ = result.version;
        stale_owner_logged_ = -1;
        LOG(INFO) << "fake ZooKeeper: registered " << self_path_ << " (session " << session_id_
                  << ")";
        FinishRegister(true, "");
        return;
      case FakeZooKeeper::CreateStatus::kNotConnected:
      case FakeZooKeeper::CreateStatus::kSessionGone:
        return;  // the store pokes us when that changes
      case FakeZooKeeper::CreateStatus::kExists:
        break;
    }
    const FakeZooKeeper::Znode& existing = result.existing;
    if (existing.ephemeral_owner == session_id_) {
      registered_ = true;
      self_version_ = existing.version;
      FinishRegister(true, "");
      return;
    }
    std::optional<NodeInfo> theirs = DecodeNodeInfo(existing.data);
    if (attempt == 0 && options_.steal_stale_znode && existing.ephemeral_owner != 0 && theirs &&
        theirs->peer_url == self_->peer_url) {
      LOG(WARNING) << "fake ZooKeeper: deleting stale " << self_path_ << " of session "
                   << existing.ephemeral_owner;
      zk_->DeleteVersion(self_path_, existing.version);
      continue;
    }
    if (stale_owner_logged_ != existing.ephemeral_owner) {
      stale_owner_logged_ = existing.ephemeral_owner;
      LOG(WARNING) << "fake ZooKeeper: " << self_path_ << " exists, owned by session "
                   << existing.ephemeral_owner << "; waiting for it to go away";
    }
    return;  // the store pokes us when it is deleted
  }
}

void FakeRegistry::DeliverMembers() {
  std::vector<NodeInfo> list;
  for (const auto& [name, data] : zk_->ListChildren(nodes_path_)) {
    std::optional<NodeInfo> info = DecodeNodeInfo(data);
    if (!info) {
      if (warned_.insert(name + '\0' + data).second) {
        LOG(WARNING) << "fake ZooKeeper: skipping member " << name << ": undecodable data";
      }
      continue;
    }
    list.push_back(std::move(*info));
  }
  std::sort(list.begin(), list.end(),
            [](const NodeInfo& a, const NodeInfo& b) { return a.id < b.id; });
  if (members_delivered_ && list == members_) return;
  members_ = std::move(list);
  members_delivered_ = true;
  if (listener_.on_members) {
    PostCallback([callback = listener_.on_members, members = members_] { callback(members); });
  }
}

void FakeRegistry::SetState(SessionState state) {
  if (state == state_) return;
  state_ = state;
  if (listener_.on_session) {
    PostCallback([callback = listener_.on_session, state] { callback(state); });
  }
}

void FakeRegistry::FinishRegister(bool ok, const std::string& error) {
  if (!register_done_) return;
  auto done = std::move(register_done_);
  register_done_ = nullptr;
  PostCallback([done = std::move(done), ok, error] { done(ok, error); });
}

void FakeRegistry::FinishUnregister() {
  unregistering_ = false;
  auto done = std::move(unregister_done_);
  unregister_done_ = nullptr;
  if (done) PostCallback(std::move(done));
}

void FakeRegistry::PostCallback(std::function<void()> callback) {
  client_->executor([client = client_, callback = std::move(callback)] {
    if (client->registry != nullptr && !client->registry->stopped_) callback();
  });
}

}  // namespace zmesh::zk

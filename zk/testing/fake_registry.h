#pragma once

// A Registry over a FakeZooKeeper, for unit tests of code that uses a
// Registry (the mesh, the client library's failover). Same interface and the
// same callback discipline as ZooKeeperRegistry: every callback is posted
// through the Executor, never run inside a Registry method. Same session
// semantics: connection loss -> kSuspended with the last member list kept;
// session killed -> kExpired, then a new session and re-registration; a stale
// znode of our id -> wait for it, or steal it when its peer_url is ours.
//
// Usage:
//   auto zk = std::make_shared<FakeZooKeeper>();
//   FakeRegistry a(zk, {.root = "/zmesh/test"}, executor_a);
//   a.Start({.on_members = ..., .on_session = ...});
//   a.Register(info, done);
//   zk->KillSession(a.session_id());  // later: kExpired, kConnected, registered again
//
// Differences from ZooKeeper: no timers (expiry only through KillSession), no
// ACLs, and Unregister while disconnected reports done at once and leaves the
// znode to its session.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "zk/testing/fake_zookeeper.h"
#include "zk/registry.h"

namespace zmesh::zk {

class FakeRegistry final : public Registry {
 public:
  // Any thread; the registry then belongs to the thread running `executor`'s
  // tasks. An inline executor (runs the task at once) works too.
  FakeRegistry(std::shared_ptr<FakeZooKeeper> zookeeper, RegistryOptions options,
               Executor executor);
  // Calls Stop(). Owner thread, or after the owner thread stopped running tasks.
  ~FakeRegistry() override;

  FakeRegistry(const FakeRegistry&) = delete;
  FakeRegistry& operator=(const FakeRegistry&) = delete;

  // See Registry. Owner thread. No callback runs after Stop().
  void Start(Listener listener) override;
  void Register(const NodeInfo& self,
                std::function<void(bool ok, const std::string& error)> done) override;
  void Unregister(std::function<void()> done) override;
  void Stop() override;
  std::vector<NodeInfo> members() const override;
  bool registered() const override;
  SessionState state() const override;

  // The current session (0 before the first one): what FakeZooKeeper's
  // session controls take. Any thread.
  int64_t session_id() const { return session_id_.load(); }

 private:
  friend class FakeZooKeeper;

  // Reconciles with the store: session, own znode, members. Owner thread.
  void Sync();
  void SyncOnce();
  void TryCreate();
  void DeliverMembers();
  void SetState(SessionState state);
  void FinishRegister(bool ok, const std::string& error);
  void FinishUnregister();
  void PostCallback(std::function<void()> callback);

  const std::shared_ptr<FakeZooKeeper> zk_;
  const RegistryOptions options_;
  const std::string nodes_path_;
  const std::shared_ptr<FakeZooKeeper::Client> client_;
  Listener listener_;
  bool started_ = false;
  bool stopped_ = false;
  bool in_sync_ = false;
  bool sync_again_ = false;

  std::atomic<int64_t> session_id_{0};
  SessionState state_ = SessionState::kConnecting;

  std::optional<NodeInfo> self_;
  std::string self_path_;
  bool want_registered_ = false;
  bool registered_ = false;
  int32_t self_version_ = 0;
  int64_t stale_owner_logged_ = -1;
  std::function<void(bool, const std::string&)> register_done_;
  bool unregistering_ = false;
  std::function<void()> unregister_done_;

  std::vector<NodeInfo> members_;
  bool members_delivered_ = false;
  std::set<std::string> warned_;  // "name\0data" of undecodable members already logged
};

}  // namespace zmesh::zk

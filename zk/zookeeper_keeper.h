#pragma once

// Keeper over the multi-threaded ZooKeeper C client: the C-callback bridge.
//
// Threads: the C client runs an IO thread and a completion thread per handle.
// Every watcher and completion runs on the completion thread, except a few
// ZCLOSING completions that run inside zookeeper_close() on the owner thread.
// The C callbacks here only copy their arguments and post them to the
// Executor; the Watcher and every `done` run there, on the owner thread, and
// only while this Keeper exists. Nothing the owner thread owns is touched from
// ZooKeeper's threads. The rest of the contract is Keeper's (zk/keeper.h).

#include <memory>
#include <optional>
#include <string>

#include "zk/keeper.h"
#include "zk/registry.h"

typedef struct _zhandle zhandle_t;

namespace zmesh::zk {

class ZooKeeperKeeper final : public Keeper {
 public:
  // zookeeper_init; nullptr (logged with errno) when it failed at once.
  // `executor` runs tasks in the order they were posted. Owner thread.
  static std::unique_ptr<ZooKeeperKeeper> Open(const std::string& connect,
                                               int session_timeout_ms, Executor executor,
                                               Watcher watcher);
  // zookeeper_close: joins the C client's threads; blocks for at most a few
  // seconds. Never from inside a ZooKeeper callback. Owner thread.
  ~ZooKeeperKeeper() override;

  ZooKeeperKeeper(const ZooKeeperKeeper&) = delete;
  ZooKeeperKeeper& operator=(const ZooKeeperKeeper&) = delete;

  // See Keeper. Owner thread.
  std::optional<ZooKeeperSession> session() const override;
  int negotiated_timeout_ms() const override { return negotiated_timeout_ms_; }
  KeeperRc AddAuth(const std::string& scheme, const std::string& credentials,
                   Done done) override;
  KeeperRc Sync(const std::string& path, Done done) override;
  KeeperRc Create(const std::string& path, const std::string& data, KeeperAcl acl,
                  CreateMode mode, StatDone done) override;
  KeeperRc Delete(const std::string& path, int32_t version, Done done) override;
  KeeperRc GetData(const std::string& path, bool watch, DataDone done) override;
  KeeperRc GetChildren(const std::string& path, bool watch, ChildrenDone done) override;
  KeeperRc Exists(const std::string& path, bool watch, StatDone done) override;

 private:
  struct OwnerSide;
  struct Context;
  struct Op;
  struct Result;
  struct Callbacks;

  explicit ZooKeeperKeeper(std::unique_ptr<Context> context);
  // Copies the session id, password and timeout after a CONNECTED. Owner thread.
  void RefreshSession();
  // Registers `op` so that its completion finds it, then calls `issue`.
  template <typename Issue>
  KeeperRc Send(const char* what, const std::string& path, std::shared_ptr<Op> op, Issue issue);

  std::unique_ptr<Context> context_;
  zhandle_t* zh_ = nullptr;
  int64_t session_id_ = 0;
  std::string session_password_;
  int negotiated_timeout_ms_ = 0;
};

// Opens ZooKeeperKeepers on `connect` that deliver through `executor`.
KeeperFactory ZooKeeperKeeperFactory(std::string connect, int session_timeout_ms,
                                     Executor executor);

}  // namespace zmesh::zk

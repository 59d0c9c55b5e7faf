#include "zk/zookeeper_keeper.h"

#include <glog/logging.h>
#include <zookeeper/zookeeper.h>

#include <cerrno>
#include <chrono>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "zk/zookeeper_logging.h"

namespace zmesh::zk {
namespace {

const ACL_vector* AclOf(KeeperAcl acl) {
  static ACL digest[2] = {{ZOO_PERM_ALL, ZOO_AUTH_IDS}, {ZOO_PERM_READ, ZOO_ANYONE_ID_UNSAFE}};
  static ACL_vector digest_vector = {2, digest};
  return acl == KeeperAcl::kDigest ? &digest_vector : &ZOO_OPEN_ACL_UNSAFE;
}

std::optional<ZnodeStat> StatOf(const ::Stat* stat) {
  if (stat == nullptr) return std::nullopt;
  return ZnodeStat{stat->version, stat->ephemeralOwner};
}

}  // namespace

// What the owner thread's tasks look at: cleared by the destructor, so a task
// posted before it runs as a no-op after it. Owner thread only.
struct ZooKeeperKeeper::OwnerSide {
  bool alive = true;
  ZooKeeperKeeper* keeper = nullptr;
  Watcher watcher;
};

// The C client's context pointer for this handle's watchers and completions.
// It outlives every callback: deleted only after zookeeper_close() returned,
// when the C client's threads have been joined.
struct ZooKeeperKeeper::Context {
  Executor executor;
  std::shared_ptr<OwnerSide> owner;
  // Requests in flight, owned here rather than by their completion: the C
  // client does not run every queued completion when a handle is closed.
  std::mutex mu;
  std::unordered_map<const void*, std::shared_ptr<Op>> ops;

  void Post(std::function<void()> fn) {
    executor([owner = owner, fn = std::move(fn)] {
      if (owner->alive) fn();
    });
  }
};

// One request; exactly one of the completions is set.
struct ZooKeeperKeeper::Op {
  Context* context = nullptr;
  bool abandoned = false;  // not sent after all; guarded by context->mu
  Done done;
  StatDone stat_done;
  DataDone data_done;
  ChildrenDone children_done;
};

// A completion's arguments, copied off the completion thread.
struct ZooKeeperKeeper::Result {
  KeeperRc rc = KeeperRc::kOk;
  std::optional<ZnodeStat> stat;
  std::optional<std::string> data;
  std::vector<std::string> children;
};

// The C callbacks: copy, post, nothing else.
struct ZooKeeperKeeper::Callbacks {
  static void SessionWatcher(zhandle_t*, int type, int state, const char*, void* ctx) {
    if (type != ZOO_SESSION_EVENT) return;
    std::optional<KeeperState> mapped;
    if (state == ZOO_CONNECTED_STATE || state == ZOO_READONLY_STATE) {
      mapped = KeeperState::kConnected;
    } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
      mapped = KeeperState::kConnecting;
    } else if (state == ZOO_EXPIRED_SESSION_STATE) {
      mapped = KeeperState::kExpired;
    } else if (state == ZOO_AUTH_FAILED_STATE) {
      mapped = KeeperState::kAuthFailed;
    }
    if (!mapped) return;
    auto* context = static_cast<Context*>(ctx);
    context->Post([owner = context->owner, state = *mapped] {
      if (state == KeeperState::kConnected) owner->keeper->RefreshSession();
      if (owner->watcher.on_session) owner->watcher.on_session(state);
    });
  }

  static void PathWatcher(zhandle_t*, int type, int, const char* path, void* ctx) {
    // Session events reach every armed path watcher too (zk_hashtable.c
    // collectWatchers); the session watcher handles them and this watch
    // stays armed.
    KeeperEvent event;
    if (type == ZOO_CREATED_EVENT) {
      event = KeeperEvent::kCreated;
    } else if (type == ZOO_DELETED_EVENT) {
      event = KeeperEvent::kDeleted;
    } else if (type == ZOO_CHANGED_EVENT) {
      event = KeeperEvent::kChanged;
    } else if (type == ZOO_CHILD_EVENT) {
      event = KeeperEvent::kChildren;
    } else {
      return;
    }
    auto* context = static_cast<Context*>(ctx);
    context->Post([owner = context->owner, event,
                   path = std::string(path != nullptr ? path : "")] {
      if (owner->watcher.on_event) owner->watcher.on_event(event, path);
    });
  }

  static void Finish(const void* data, Result result) {
    Context* context = static_cast<const Op*>(data)->context;  // alive: the op is in context->ops
    std::shared_ptr<Op> op;
    {
      std::lock_guard<std::mutex> lock(context->mu);
      auto it = context->ops.find(data);
      if (it == context->ops.end()) return;
      op = std::move(it->second);
      context->ops.erase(it);
      if (op->abandoned) return;
    }
    context->Post([op = std::move(op), result = std::move(result)] {
      if (op->done) op->done(result.rc);
      if (op->stat_done) op->stat_done(result.rc, result.stat);
      if (op->data_done) op->data_done(result.rc, result.data, result.stat);
      if (op->children_done) op->children_done(result.rc, result.children);
    });
  }

  static void VoidDone(int rc, const void* data) {
    Result result;
    result.rc = static_cast<KeeperRc>(rc);
    Finish(data, std::move(result));
  }

  static void StringDone(int rc, const char*, const void* data) { VoidDone(rc, data); }

  static void StatDone(int rc, const ::Stat* stat, const void* data) {
    Result result;
    result.rc = static_cast<KeeperRc>(rc);
    if (rc == ZOK) result.stat = StatOf(stat);
    Finish(data, std::move(result));
  }

  static void StringStatDone(int rc, const char*, const ::Stat* stat, const void* data) {
    StatDone(rc, stat, data);
  }

  static void DataDone(int rc, const char* value, int value_len, const ::Stat* stat,
                       const void* data) {
    Result result;
    result.rc = static_cast<KeeperRc>(rc);
    if (rc == ZOK) {
      result.data = (value != nullptr && value_len > 0) ? std::string(value, value_len) : "";
      result.stat = StatOf(stat);
    }
    Finish(data, std::move(result));
  }

  static void ChildrenDone(int rc, const String_vector* strings, const ::Stat*,
                           const void* data) {
    Result result;
    result.rc = static_cast<KeeperRc>(rc);
    if (rc == ZOK && strings != nullptr) {
      result.children.reserve(strings->count);
      for (int i = 0; i < strings->count; ++i) result.children.emplace_back(strings->data[i]);
    }
    Finish(data, std::move(result));
  }
};

std::unique_ptr<ZooKeeperKeeper> ZooKeeperKeeper::Open(const std::string& connect,
                                                       int session_timeout_ms,
                                                       Executor executor, Watcher watcher) {
  InitZooKeeperLogging();
  auto context = std::make_unique<Context>();
  context->executor = std::move(executor);
  context->owner = std::make_shared<OwnerSide>();
  context->owner->watcher = std::move(watcher);
  errno = 0;
  zhandle_t* zh = zookeeper_init2(connect.c_str(), &Callbacks::SessionWatcher,
                                  session_timeout_ms, /*clientid=*/nullptr, context.get(),
                                  ZOO_NO_LOG_CLIENTENV, &ZooKeeperLogToGlog);
  if (zh == nullptr) {
    PLOG(ERROR) << "zookeeper_init(" << connect << ") failed";
    return nullptr;
  }
  std::unique_ptr<ZooKeeperKeeper> keeper(new ZooKeeperKeeper(std::move(context)));
  keeper->zh_ = zh;
  return keeper;
}

ZooKeeperKeeper::ZooKeeperKeeper(std::unique_ptr<Context> context)
    : context_(std::move(context)) {
  context_->owner->keeper = this;
}

ZooKeeperKeeper::~ZooKeeperKeeper() {
  context_->owner->alive = false;
  const auto start = std::chrono::steady_clock::now();
  const int rc = zookeeper_close(zh_);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  if (rc != ZOK) LOG(WARNING) << "zookeeper_close(session " << SessionIdHex(session_id_) << "): " << zerror(rc);
  VLOG(1) << "closed ZooKeeper handle of session " << SessionIdHex(session_id_) << " in " << ms << " ms";
  // context_ goes now: the C client's threads are joined.
}

void ZooKeeperKeeper::RefreshSession() {
  const clientid_t* id = zoo_client_id(zh_);
  session_id_ = id->client_id;
  session_password_.assign(id->passwd, sizeof(id->passwd));
  negotiated_timeout_ms_ = zoo_recv_timeout(zh_);
}

std::optional<ZooKeeperSession> ZooKeeperKeeper::session() const {
  if (session_id_ == 0) return std::nullopt;
  return ZooKeeperSession{session_id_, session_password_};
}

template <typename Issue>
KeeperRc ZooKeeperKeeper::Send(const char* what, const std::string& path, std::shared_ptr<Op> op,
                               Issue issue) {
  op->context = context_.get();
  const void* key = op.get();
  {
    std::lock_guard<std::mutex> lock(context_->mu);
    context_->ops.emplace(key, op);
  }
  const int rc = issue(key);
  if (rc != ZOK) {
    // No completion may run now. The op stays in ops until the handle is
    // closed: the C client may have queued its completion before failing.
    std::lock_guard<std::mutex> lock(context_->mu);
    op->abandoned = true;
    LOG(WARNING) << what << "(" << path << ") failed: " << zerror(rc);
  }
  return static_cast<KeeperRc>(rc);
}

KeeperRc ZooKeeperKeeper::AddAuth(const std::string& scheme, const std::string& credentials,
                                  Done done) {
  auto op = std::make_shared<Op>();
  op->done = std::move(done);
  return Send("zoo_add_auth", scheme, std::move(op), [&](const void* key) {
    return zoo_add_auth(zh_, scheme.c_str(), credentials.data(),
                        static_cast<int>(credentials.size()), &Callbacks::VoidDone, key);
  });
}

KeeperRc ZooKeeperKeeper::Sync(const std::string& path, Done done) {
  auto op = std::make_shared<Op>();
  op->done = std::move(done);
  return Send("zoo_async", path, std::move(op), [&](const void* key) {
    return zoo_async(zh_, path.c_str(), &Callbacks::StringDone, key);
  });
}

KeeperRc ZooKeeperKeeper::Create(const std::string& path, const std::string& data,
                                 KeeperAcl acl, CreateMode mode, StatDone done) {
  auto op = std::make_shared<Op>();
  op->stat_done = std::move(done);
  const int flags = mode == CreateMode::kEphemeral ? ZOO_EPHEMERAL : ZOO_PERSISTENT;
  return Send("zoo_acreate2", path, std::move(op), [&](const void* key) {
    // No data at all (not an empty buffer) for a persistent parent.
    const char* bytes = data.empty() && mode == CreateMode::kPersistent ? nullptr : data.data();
    const int len = bytes == nullptr ? -1 : static_cast<int>(data.size());
    return zoo_acreate2(zh_, path.c_str(), bytes, len, AclOf(acl), flags,
                        &Callbacks::StringStatDone, key);
  });
}

KeeperRc ZooKeeperKeeper::Delete(const std::string& path, int32_t version, Done done) {
  auto op = std::make_shared<Op>();
  op->done = std::move(done);
  return Send("zoo_adelete", path, std::move(op), [&](const void* key) {
    return zoo_adelete(zh_, path.c_str(), version, &Callbacks::VoidDone, key);
  });
}

KeeperRc ZooKeeperKeeper::GetData(const std::string& path, bool watch, DataDone done) {
  auto op = std::make_shared<Op>();
  op->data_done = std::move(done);
  return Send("zoo_awget", path, std::move(op), [&](const void* key) {
    // Every watch uses the same (function, context): ZooKeeper then fires a
    // path's watch once, however often it was set (ZOOKEEPER-50).
    return zoo_awget(zh_, path.c_str(), watch ? &Callbacks::PathWatcher : nullptr,
                     watch ? context_.get() : nullptr, &Callbacks::DataDone, key);
  });
}

KeeperRc ZooKeeperKeeper::GetChildren(const std::string& path, bool watch, ChildrenDone done) {
  auto op = std::make_shared<Op>();
  op->children_done = std::move(done);
  return Send("zoo_awget_children2", path, std::move(op), [&](const void* key) {
    return zoo_awget_children2(zh_, path.c_str(), watch ? &Callbacks::PathWatcher : nullptr,
                               watch ? context_.get() : nullptr, &Callbacks::ChildrenDone, key);
  });
}

KeeperRc ZooKeeperKeeper::Exists(const std::string& path, bool watch, StatDone done) {
  auto op = std::make_shared<Op>();
  op->stat_done = std::move(done);
  return Send("zoo_awexists", path, std::move(op), [&](const void* key) {
    return zoo_awexists(zh_, path.c_str(), watch ? &Callbacks::PathWatcher : nullptr,
                        watch ? context_.get() : nullptr, &Callbacks::StatDone, key);
  });
}

KeeperFactory ZooKeeperKeeperFactory(std::string connect, int session_timeout_ms,
                                     Executor executor) {
  return [connect = std::move(connect), session_timeout_ms,
          executor = std::move(executor)](Keeper::Watcher watcher) -> std::unique_ptr<Keeper> {
    return ZooKeeperKeeper::Open(connect, session_timeout_ms, executor, std::move(watcher));
  };
}

}  // namespace zmesh::zk

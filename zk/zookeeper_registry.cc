#include "zk/zookeeper_registry.h"

#include <glog/logging.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "zk/zookeeper_logging.h"

namespace zmesh::zk {
namespace {

// After zookeeper_init fails (bad connect string, out of fds) or the server
// rejected our credentials: try again later rather than spin.
constexpr std::chrono::milliseconds kReopenDelay{1000};
constexpr std::chrono::milliseconds kAuthFailedReopenDelay{5000};

std::string Hex(int64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, static_cast<uint64_t>(id));
  return buf;
}

const char* StateName(SessionState state) {
  switch (state) {
    case SessionState::kConnecting: return "CONNECTING";
    case SessionState::kConnected: return "CONNECTED";
    case SessionState::kSuspended: return "SUSPENDED";
    case SessionState::kExpired: return "EXPIRED";
  }
  return "?";
}

std::string Describe(const NodeInfo& node) {
  return "id=" + node.id + " client_url=" + node.client_url + " peer_url=" + node.peer_url +
         " version=" + node.version;
}

std::string Truncated(const std::string& data) {
  constexpr size_t kMax = 160;
  return data.size() <= kMax ? data : data.substr(0, kMax) + "...";
}

// The request may or may not have been applied; the session is still there.
bool IsConnectionLoss(int rc) {
  return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZSESSIONMOVED;
}

// The handle is dead or closing; session recovery takes over.
bool IsSessionGone(int rc) {
  return rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE || rc == ZCLOSING || rc == ZAUTHFAILED;
}

std::string NormalizeRoot(std::string root) {
  while (!root.empty() && root.back() == '/') root.pop_back();
  if (!root.empty() && root.front() != '/') root.insert(root.begin(), '/');
  return root;
}

bool ValidNodeName(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id != "zookeeper" &&
         id.find('/') == std::string::npos && id.find('\0') == std::string::npos;
}

}  // namespace

enum class ZooKeeperRegistry::OpKind {
  kAddAuth,
  kSync,
  kCreateParent,
  kCreateSelf,
  kInspectSelf,
  kStealDelete,
  kDeleteSelf,
  kGetChildren,
  kGetChild,
  kWatchNodesDir,
};

// What the ZooKeeper threads may touch: the executor, and whether the registry
// is still alive, which is only read on the owner thread inside a posted task.
struct ZooKeeperRegistry::Bridge {
  explicit Bridge(Executor e) : executor(std::move(e)) {}
  const Executor executor;
  ZooKeeperRegistry* registry = nullptr;  // owner thread only; cleared by ~ZooKeeperRegistry
};

// The context pointer of one zhandle's watchers. It outlives every callback of
// that handle: it is deleted only after zookeeper_close() returned, when the
// C client's IO and completion threads have been joined.
struct ZooKeeperRegistry::HandleContext {
  HandleContext(std::shared_ptr<Bridge> b, uint64_t g) : bridge(std::move(b)), generation(g) {}
  const std::shared_ptr<Bridge> bridge;
  const uint64_t generation;
  // Operations in flight, owned here rather than by their completion: the C
  // client does not run every queued completion when a handle is closed.
  std::mutex mu;
  std::unordered_map<const void*, std::unique_ptr<OpContext>> ops;
};

struct ZooKeeperRegistry::OpContext {
  HandleContext* handle;
  OpKind kind;
  std::string path;
};

struct ZooKeeperRegistry::Handle {
  zhandle_t* zh = nullptr;
  int64_t session_id = 0;  // 0 until this handle's first CONNECTED
  std::unique_ptr<HandleContext> context;
};

// A completion's arguments, copied off the completion thread.
struct ZooKeeperRegistry::OpResult {
  OpKind kind = OpKind::kSync;
  std::string path;
  int rc = ZOK;
  std::vector<std::string> children;
  std::optional<std::string> data;
  std::optional<::Stat> stat;
};

// The C callbacks. They run on ZooKeeper's completion thread (or, for a few
// ZCLOSING completions, inside zookeeper_close on the owner thread), copy what
// they got and post it to the owner thread. Nothing else.
struct ZooKeeperRegistry::Callbacks {
  static void Post(const std::shared_ptr<Bridge>& bridge,
                   std::function<void(ZooKeeperRegistry&)> fn) {
    bridge->executor([bridge, fn = std::move(fn)] {
      if (bridge->registry != nullptr) fn(*bridge->registry);
    });
  }

  static void SessionWatcher(zhandle_t*, int type, int state, const char*, void* ctx) {
    if (type != ZOO_SESSION_EVENT) return;
    auto* handle = static_cast<HandleContext*>(ctx);
    Post(handle->bridge, [generation = handle->generation, state](ZooKeeperRegistry& r) {
      r.OnSessionEvent(generation, state);
    });
  }

  static void PathWatcher(zhandle_t*, int type, int, const char* path, void* ctx) {
    // Session events reach every armed path watcher too (zk_hashtable.c
    // collectWatchers); the global watcher handles them and this watch stays armed.
    if (type == ZOO_SESSION_EVENT || type == ZOO_NOTWATCHING_EVENT) return;
    auto* handle = static_cast<HandleContext*>(ctx);
    Post(handle->bridge, [generation = handle->generation, type,
                          path = std::string(path != nullptr ? path : "")](ZooKeeperRegistry& r) {
      r.OnPathEvent(generation, type, path);
    });
  }

  static void Finish(const void* data, OpResult result) {
    auto* key = static_cast<const OpContext*>(data);
    HandleContext* handle = key->handle;  // valid: the op is still in handle->ops
    std::unique_ptr<OpContext> op;
    {
      std::lock_guard<std::mutex> lock(handle->mu);
      auto it = handle->ops.find(data);
      if (it == handle->ops.end()) return;
      op = std::move(it->second);
      handle->ops.erase(it);
    }
    result.kind = op->kind;
    result.path = std::move(op->path);
    Post(handle->bridge, [generation = handle->generation,
                          result = std::move(result)](ZooKeeperRegistry& r) {
      r.OnOpDone(generation, result);
    });
  }

  static void VoidDone(int rc, const void* data) {
    OpResult result;
    result.rc = rc;
    Finish(data, std::move(result));
  }

  static void StringDone(int rc, const char*, const void* data) { VoidDone(rc, data); }

  static void StatDone(int rc, const ::Stat* stat, const void* data) {
    OpResult result;
    result.rc = rc;
    if (rc == ZOK && stat != nullptr) result.stat = *stat;
    Finish(data, std::move(result));
  }

  static void StringStatDone(int rc, const char*, const ::Stat* stat, const void* data) {
    StatDone(rc, stat, data);
  }

  static void DataDone(int rc, const char* value, int value_len, const ::Stat* stat,
                       const void* data) {
    OpResult result;
    result.rc = rc;
    if (rc == ZOK) {
      result.data = (value != nullptr && value_len > 0) ? std::string(value, value_len) : "";
      if (stat != nullptr) result.stat = *stat;
    }
    Finish(data, std::move(result));
  }

  static void ChildrenDone(int rc, const String_vector* strings, const ::Stat*, const void* data) {
    OpResult result;
    result.rc = rc;
    if (rc == ZOK && strings != nullptr) {
      result.children.reserve(strings->count);
      for (int i = 0; i < strings->count; ++i) result.children.emplace_back(strings->data[i]);
    }
    Finish(data, std::move(result));
  }
};

namespace {

// {ALL, auth:""} + {READ, world:anyone}: mesh nodes (same credentials) may do
// everything, anybody may read the member list (ZOOKEEPER.md "Digest ACLs").
const ACL_vector* DigestAcl() {
  static ACL acl[2] = {{ZOO_PERM_ALL, ZOO_AUTH_IDS}, {ZOO_PERM_READ, ZOO_ANYONE_ID_UNSAFE}};
  static ACL_vector vector = {2, acl};
  return &vector;
}

}  // namespace

ZooKeeperRegistry::ZooKeeperRegistry(RegistryOptions options, Executor executor)
    : options_(std::move(options)),
      nodes_path_(NormalizeRoot(options_.root) + "/nodes"),
      bridge_(std::make_shared<Bridge>(std::move(executor))) {
  bridge_->registry = this;
}

ZooKeeperRegistry::~ZooKeeperRegistry() {
  Stop();
  bridge_->registry = nullptr;
}

bool ZooKeeperRegistry::InOwnerThread() const {
  return !started_ || std::this_thread::get_id() == owner_thread_;
}

std::chrono::milliseconds ZooKeeperRegistry::SessionTimeout() const {
  int ms = negotiated_timeout_ms_ > 0 ? negotiated_timeout_ms_ : options_.session_timeout_ms;
  return std::chrono::milliseconds(std::max(ms, 1));
}

void ZooKeeperRegistry::Start(Listener listener) {
  if (started_ || stopped_) {
    LOG(ERROR) << "ZooKeeperRegistry::Start called twice or after Stop; ignored";
    return;
  }
  started_ = true;
  owner_thread_ = std::this_thread::get_id();
  listener_ = std::move(listener);
  LOG(INFO) << "ZooKeeper registry: connect=" << options_.connect << " nodes=" << nodes_path_
            << " session_timeout_ms=" << options_.session_timeout_ms
            << (options_.credentials.empty() ? " open ACLs" : " digest ACLs");
  OpenHandle();
}

void ZooKeeperRegistry::Register(const NodeInfo& self,
                                 std::function<void(bool ok, const std::string& error)> done) {
  DCHECK(InOwnerThread()) << "ZooKeeperRegistry used off its owner thread";
  if (stopped_) return;
  if (want_registered_ || registered_ || unregistering_) {
    PostCallback([done = std::move(done)] { done(false, "already registered"); });
    return;
  }
  if (!ValidNodeName(self.id)) {
    PostCallback([done = std::move(done), id = self.id] {
      done(false, "invalid node id '" + id + "' (must be a single znode name)");
    });
    return;
  }
  self_ = self;
  self_path_ = nodes_path_ + "/" + self.id;
  want_registered_ = true;
  register_done_ = std::move(done);
  stale_owner_logged_ = -1;
  Resync();
}

void ZooKeeperRegistry::Unregister(std::function<void()> done) {
  DCHECK(InOwnerThread()) << "ZooKeeperRegistry used off its owner thread";
  if (stopped_) return;
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
  timer_.Schedule(SessionTimeout(), [bridge = bridge_, epoch] {
    Callbacks::Post(bridge, [epoch](ZooKeeperRegistry& r) { r.OnUnregisterTimeout(epoch); });
  });
  if (registered_) LOG(INFO) << "unregistering: deleting " << self_path_;
  Resync();  // issues the delete, or finishes at once when there is nothing to delete
}

void ZooKeeperRegistry::Stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.Stop();
  const bool had_znode = registered_;
  // Closing the session deletes our ephemeral znode at once, so peers see us
  // leave now rather than a session timeout later.
  CloseHandle();
  ++generation_;
  connected_ = false;
  registered_ = false;
  register_done_ = nullptr;
  unregister_done_ = nullptr;
  listener_ = {};
  if (started_) {
    LOG(INFO) << "ZooKeeper registry stopped"
              << (had_znode ? "; " + self_path_ + " went with the session" : "");
  }
}

std::vector<NodeInfo> ZooKeeperRegistry::members() const { return members_; }
bool ZooKeeperRegistry::registered() const { return registered_; }
SessionState ZooKeeperRegistry::state() const { return state_; }

std::optional<ZooKeeperSession> ZooKeeperRegistry::session() const {
  if (session_id_ == 0) return std::nullopt;
  return ZooKeeperSession{session_id_, session_password_};
}

// ---------------------------------------------------------------------------
// Handles and sessions.

void ZooKeeperRegistry::OpenHandle() {
  DCHECK(!handle_);
  InitZooKeeperLogging();
  ++generation_;
  ResetSessionState();
  auto context = std::make_unique<HandleContext>(bridge_, generation_);
  errno = 0;
  zhandle_t* zh = zookeeper_init2(options_.connect.c_str(), &Callbacks::SessionWatcher,
                                  options_.session_timeout_ms, /*clientid=*/nullptr,
                                  context.get(), ZOO_NO_LOG_CLIENTENV, &ZooKeeperLogToGlog);
  if (zh == nullptr) {
    PLOG(ERROR) << "zookeeper_init(" << options_.connect << ") failed; retrying in "
                << kReopenDelay.count() << " ms";
    const uint64_t generation = generation_;
    timer_.Schedule(kReopenDelay, [bridge = bridge_, generation] {
      Callbacks::Post(bridge, [generation](ZooKeeperRegistry& r) { r.OnReopenTimer(generation); });
    });
    return;
  }
  handle_ = std::make_unique<Handle>();
  handle_->zh = zh;
  handle_->context = std::move(context);
  // Before the connection is up: the C client sends the credentials first
  // thing on every (re)connect of this handle.
  if (!options_.credentials.empty()) IssueAddAuth();
}

void ZooKeeperRegistry::CloseHandle() {
  if (!handle_) return;
  std::unique_ptr<Handle> handle = std::move(handle_);
  const auto start = std::chrono::steady_clock::now();
  const int rc = zookeeper_close(handle->zh);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  if (rc != ZOK) {
    LOG(WARNING) << "zookeeper_close(session " << Hex(handle->session_id) << "): " << zerror(rc);
  }
  VLOG(1) << "closed ZooKeeper handle of session " << Hex(handle->session_id) << " in " << ms
          << " ms";
  // `handle` (and its HandleContext) go now: the C client's threads are joined.
}

void ZooKeeperRegistry::ResetSessionState() {
  connected_ = false;
  session_ready_ = false;
  sync_in_flight_ = false;
  ++disconnect_epoch_;
  parents_needed_ = false;
  parents_in_flight_ = 0;
  parents_error_ = ZOK;
  parents_last_rc_ = ZOK;
  parents_failed_ = false;
  registered_ = false;
  create_in_flight_ = false;
  inspect_in_flight_ = false;
  steal_in_flight_ = false;
  waiting_for_stale_ = false;
  delete_in_flight_ = false;
  children_in_flight_ = false;
  children_stale_ = true;
  children_known_ = false;
  nodes_dir_watch_in_flight_ = false;
  // Keep what we know about members (reported while we recover) but read it
  // again on the new handle, which also re-arms the data watches.
  for (auto& [name, child] : cache_) {
    child.fresh = false;
    child.in_flight = false;
  }
}

void ZooKeeperRegistry::HandleSessionLost(const std::string& reason,
                                          std::chrono::milliseconds reopen_delay) {
  LOG(WARNING) << "ZooKeeper session " << Hex(session_id_) << " lost (" << reason
               << "); creating a new session"
               << (want_registered_ ? " and re-registering " + self_path_ : "")
               << "; keeping the last known " << members_.size() << " members meanwhile";
  SetState(SessionState::kExpired);
  CloseHandle();
  ResetSessionState();
  // Our znode went with the old session (or goes when ZooKeeper notices).
  if (unregistering_) FinishUnregister();
  ++generation_;
  if (reopen_delay.count() == 0) {
    OpenHandle();
    return;
  }
  const uint64_t generation = generation_;
  timer_.Schedule(reopen_delay, [bridge = bridge_, generation] {
    Callbacks::Post(bridge, [generation](ZooKeeperRegistry& r) { r.OnReopenTimer(generation); });
  });
}

void ZooKeeperRegistry::OnReopenTimer(uint64_t generation) {
  DCHECK(InOwnerThread());
  if (stopped_ || generation != generation_ || handle_) return;
  OpenHandle();
}

void ZooKeeperRegistry::OnSessionEvent(uint64_t generation, int zk_state) {
  DCHECK(InOwnerThread()) << "ZooKeeper event delivered off the owner thread (check the Executor)";
  if (stopped_ || generation != generation_ || !handle_) return;
  if (zk_state == ZOO_CONNECTED_STATE || zk_state == ZOO_READONLY_STATE) {
    const clientid_t* id = zoo_client_id(handle_->zh);
    negotiated_timeout_ms_ = zoo_recv_timeout(handle_->zh);
    connected_ = true;
    ++disconnect_epoch_;  // cancels the TN12 timer
    if (handle_->session_id == 0 || handle_->session_id != id->client_id) {
      const int64_t previous = session_id_;
      handle_->session_id = id->client_id;
      session_id_ = id->client_id;
      session_password_.assign(id->passwd, sizeof(id->passwd));
      session_ready_ = false;
      LOG(INFO) << "ZooKeeper session " << Hex(session_id_) << " established, timeout "
                << negotiated_timeout_ms_ << " ms"
                << (previous != 0 && previous != session_id_ ? " (replaces " + Hex(previous) + ")"
                                                             : "");
    } else {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - suspended_since_).count();
      LOG(INFO) << "reconnected to ZooKeeper after " << ms << " ms; session "
                << Hex(session_id_) << " kept";
    }
    SetState(SessionState::kConnected);
    Resync();
  } else if (zk_state == ZOO_CONNECTING_STATE || zk_state == ZOO_ASSOCIATING_STATE) {
    if (!connected_) return;
    connected_ = false;
    suspended_since_ = std::chrono::steady_clock::now();
    const uint64_t epoch = ++disconnect_epoch_;
    const std::chrono::milliseconds timeout = SessionTimeout();
    LOG(WARNING) << "lost the connection to ZooKeeper (session " << Hex(session_id_)
                 << "); keeping the last known " << members_.size()
                 << " members; the session counts as lost after " << timeout.count()
                 << " ms without a connection";
    SetState(SessionState::kSuspended);
    // Curator TN12: only the server can expire a session, and it cannot tell
    // a client it cannot reach. After T without a connection, assume it did.
    timer_.Schedule(timeout, [bridge = bridge_, generation, epoch] {
      Callbacks::Post(bridge, [generation, epoch](ZooKeeperRegistry& r) {
        r.OnDisconnectTimeout(generation, epoch);
      });
    });
  } else if (zk_state == ZOO_EXPIRED_SESSION_STATE) {
    HandleSessionLost("expired by ZooKeeper", std::chrono::milliseconds(0));
  } else if (zk_state == ZOO_AUTH_FAILED_STATE) {
    LOG(ERROR) << "ZooKeeper rejected our credentials (AUTH_FAILED)";
    HandleSessionLost("authentication failed", kAuthFailedReopenDelay);
  }
}

void ZooKeeperRegistry::OnDisconnectTimeout(uint64_t generation, uint64_t epoch) {
  DCHECK(InOwnerThread());
  if (stopped_ || generation != generation_ || epoch != disconnect_epoch_ || connected_) return;
  HandleSessionLost("no connection for longer than the session timeout of " +
                        std::to_string(SessionTimeout().count()) + " ms",
                    std::chrono::milliseconds(0));
}

// ---------------------------------------------------------------------------
// Issuing operations.

ZooKeeperRegistry::OpContext* ZooKeeperRegistry::NewOp(OpKind kind, std::string path) {
  HandleContext* context = handle_->context.get();
  auto op = std::make_unique<OpContext>(OpContext{context, kind, std::move(path)});
  OpContext* raw = op.get();
  std::lock_guard<std::mutex> lock(context->mu);
  context->ops.emplace(raw, std::move(op));
  return raw;
}

bool ZooKeeperRegistry::CheckIssued(const char* what, const std::string& path, int rc) {
  if (rc == ZOK) return true;
  // No completion will run. The op stays in HandleContext::ops (freed with
  // the handle): the C client may have queued its completion before failing.
  LOG(WARNING) << what << "(" << path << ") failed: " << zerror(rc);
  return false;
}

void ZooKeeperRegistry::Resync() {
  if (stopped_) return;
  MaybeFinishUnregister();
  if (!handle_ || !connected_) return;
  if (!session_ready_) {
    if (!sync_in_flight_) IssueSync();
    return;
  }
  if (parents_needed_) {
    if (parents_in_flight_ == 0) IssueCreateParents();
    return;
  }
  // Our own znode first: a children read issued after it already lists it.
  if (want_registered_ && !registered_ && !create_in_flight_ && !inspect_in_flight_ &&
      !steal_in_flight_ && !waiting_for_stale_) {
    IssueCreateSelf();
  }
  if (unregistering_ && registered_ && !delete_in_flight_) IssueDeleteSelf();
  if (children_stale_ && !children_in_flight_) IssueGetChildren();
  if (children_known_) {
    for (auto& [name, child] : cache_) {
      if (!child.fresh && !child.in_flight) IssueGetChild(name);
    }
  }
}

void ZooKeeperRegistry::IssueAddAuth() {
  OpContext* op = NewOp(OpKind::kAddAuth, "");
  const std::string& cred = options_.credentials;
  const int rc = zoo_add_auth(handle_->zh, "digest", cred.data(), static_cast<int>(cred.size()),
                              &Callbacks::VoidDone, op);
  CheckIssued("zoo_add_auth", "digest", rc);
}

void ZooKeeperRegistry::IssueSync() {
  // One round trip after zoo_add_auth before the first write, so the server
  // has processed our credentials (ZOOKEEPER.md "Digest ACLs").
  OpContext* op = NewOp(OpKind::kSync, "/");
  sync_in_flight_ = true;
  if (!CheckIssued("zoo_async", "/", zoo_async(handle_->zh, "/", &Callbacks::StringDone, op))) {
    sync_in_flight_ = false;
  }
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
  parents_error_ = ZOK;
  parents_last_rc_ = ZOK;
  const ACL_vector* acl = options_.credentials.empty() ? &ZOO_OPEN_ACL_UNSAFE : DigestAcl();
  for (const std::string& path : paths) {
    OpContext* op = NewOp(OpKind::kCreateParent, path);
    const int rc = zoo_acreate(handle_->zh, path.c_str(), nullptr, -1, acl, ZOO_PERSISTENT,
                               &Callbacks::StringDone, op);
    if (!CheckIssued("zoo_acreate", path, rc)) break;
    ++parents_in_flight_;
  }
}

void ZooKeeperRegistry::IssueCreateSelf() {
  const std::string data = EncodeNodeInfo(*self_);
  OpContext* op = NewOp(OpKind::kCreateSelf, self_path_);
  const ACL_vector* acl = options_.credentials.empty() ? &ZOO_OPEN_ACL_UNSAFE : DigestAcl();
  create_in_flight_ = true;
  const int rc = zoo_acreate2(handle_->zh, self_path_.c_str(), data.data(),
                              static_cast<int>(data.size()), acl, ZOO_EPHEMERAL,
                              &Callbacks::StringStatDone, op);
  if (!CheckIssued("zoo_acreate2", self_path_, rc)) create_in_flight_ = false;
}

void ZooKeeperRegistry::IssueInspectSelf() {
  // With a watch: if the znode is a stale one we wait for, its deletion
  // arrives as a DELETED event on PathWatcher.
  OpContext* op = NewOp(OpKind::kInspectSelf, self_path_);
  inspect_in_flight_ = true;
  const int rc = zoo_awget(handle_->zh, self_path_.c_str(), &Callbacks::PathWatcher,
                           handle_->context.get(), &Callbacks::DataDone, op);
  if (!CheckIssued("zoo_awget", self_path_, rc)) inspect_in_flight_ = false;
}

void ZooKeeperRegistry::IssueStealDelete(int32_t version) {
  // By version, never -1: if the znode changed hands meanwhile, we lose.
  OpContext* op = NewOp(OpKind::kStealDelete, self_path_);
  steal_in_flight_ = true;
  const int rc = zoo_adelete(handle_->zh, self_path_.c_str(), version, &Callbacks::VoidDone, op);
  if (!CheckIssued("zoo_adelete", self_path_, rc)) steal_in_flight_ = false;
}

void ZooKeeperRegistry::IssueDeleteSelf() {
  OpContext* op = NewOp(OpKind::kDeleteSelf, self_path_);
  delete_in_flight_ = true;
  const int rc =
      zoo_adelete(handle_->zh, self_path_.c_str(), self_version_, &Callbacks::VoidDone, op);
  if (!CheckIssued("zoo_adelete", self_path_, rc)) delete_in_flight_ = false;
}

void ZooKeeperRegistry::IssueGetChildren() {
  // Returns the list and (re-)arms the children watch in one call. Watches
  // with the same (function, context) are registered once (ZOOKEEPER-50).
  OpContext* op = NewOp(OpKind::kGetChildren, nodes_path_);
  children_in_flight_ = true;
  children_stale_ = false;
  const int rc = zoo_awget_children2(handle_->zh, nodes_path_.c_str(), &Callbacks::PathWatcher,
                                     handle_->context.get(), &Callbacks::ChildrenDone, op);
  if (!CheckIssued("zoo_awget_children2", nodes_path_, rc)) {
    children_in_flight_ = false;
    children_stale_ = true;
  }
}

void ZooKeeperRegistry::IssueGetChild(const std::string& name) {
  // With a data watch, so a member that is deleted and re-created between
  // two list reads (a quick restart) is still read again.
  const std::string path = nodes_path_ + "/" + name;
  OpContext* op = NewOp(OpKind::kGetChild, path);
  Child& child = cache_[name];
  child.in_flight = true;
  const int rc = zoo_awget(handle_->zh, path.c_str(), &Callbacks::PathWatcher,
                           handle_->context.get(), &Callbacks::DataDone, op);
  if (!CheckIssued("zoo_awget", path, rc)) child.in_flight = false;
}

void ZooKeeperRegistry::IssueWatchNodesDir() {
  if (nodes_dir_watch_in_flight_) return;
  OpContext* op = NewOp(OpKind::kWatchNodesDir, nodes_path_);
  nodes_dir_watch_in_flight_ = true;
  const int rc = zoo_awexists(handle_->zh, nodes_path_.c_str(), &Callbacks::PathWatcher,
                              handle_->context.get(), &Callbacks::StatDone, op);
  if (!CheckIssued("zoo_awexists", nodes_path_, rc)) nodes_dir_watch_in_flight_ = false;
}

// ---------------------------------------------------------------------------
// Results.

void ZooKeeperRegistry::OnOpDone(uint64_t generation, const OpResult& r) {
  DCHECK(InOwnerThread()) << "ZooKeeper completion delivered off the owner thread (check the Executor)";
  if (stopped_ || generation != generation_ || !handle_) return;
  switch (r.kind) {
    case OpKind::kAddAuth:
      if (r.rc != ZOK) LOG(ERROR) << "zoo_add_auth(digest) failed: " << zerror(r.rc);
      break;
    case OpKind::kSync: OnSyncDone(r); break;
    case OpKind::kCreateParent: OnParentCreated(r); break;
    case OpKind::kCreateSelf: OnSelfCreated(r); break;
    case OpKind::kInspectSelf: OnSelfInspected(r); break;
    case OpKind::kStealDelete: OnStaleDeleted(r); break;
    case OpKind::kDeleteSelf: OnSelfDeleted(r); break;
    case OpKind::kGetChildren: OnChildren(r); break;
    case OpKind::kGetChild: OnChildData(r); break;
    case OpKind::kWatchNodesDir: OnNodesDirExists(r); break;
  }
}

void ZooKeeperRegistry::OnSyncDone(const OpResult& r) {
  sync_in_flight_ = false;
  if (IsConnectionLoss(r.rc)) return Resync();  // again after the reconnect
  if (IsSessionGone(r.rc)) return;
  if (r.rc != ZOK) LOG(WARNING) << "sync after connect: " << zerror(r.rc);
  session_ready_ = true;
  Resync();
}

void ZooKeeperRegistry::OnParentCreated(const OpResult& r) {
  --parents_in_flight_;
  if (r.path == nodes_path_) {
    parents_last_rc_ = r.rc;
  } else if (r.rc != ZOK && r.rc != ZNODEEXISTS && parents_error_ == ZOK) {
    // Not fatal by itself: an existing ancestor that we may not write to
    // answers ZNOAUTH even though it exists.
    parents_error_ = r.rc;
  }
  if (parents_in_flight_ > 0) return;
  if (parents_last_rc_ == ZOK || parents_last_rc_ == ZNODEEXISTS) {
    if (parents_last_rc_ == ZOK) LOG(INFO) << "created " << nodes_path_;
    parents_needed_ = false;
    parents_failed_ = false;
    children_stale_ = true;
    return Resync();
  }
  const int err = parents_last_rc_ == ZNONODE && parents_error_ != ZOK ? parents_error_
                                                                        : parents_last_rc_;
  if (IsConnectionLoss(err)) return Resync();  // parents_needed_ stays: again after reconnect
  if (IsSessionGone(err)) return;
  LOG(ERROR) << "cannot create " << nodes_path_ << ": " << zerror(err)
             << (err == ZNOAUTH ? " (wrong or missing credentials?)" : "");
  parents_needed_ = false;
  parents_failed_ = true;
  if (want_registered_) {
    want_registered_ = false;
    FinishRegister(false, "cannot create " + nodes_path_ + ": " + zerror(err));
  }
  // Members: wait until somebody who may creates the directory.
  IssueWatchNodesDir();
  MaybeFinishUnregister();
}

void ZooKeeperRegistry::OnSelfCreated(const OpResult& r) {
  create_in_flight_ = false;
  if (r.path != self_path_) return Resync();
  if (r.rc == ZOK) {
    registered_ = true;
    self_version_ = r.stat ? r.stat->version : 0;
    stale_owner_logged_ = -1;
    LOG(INFO) << "registered " << self_path_ << " (session " << Hex(session_id_)
              << "): " << Describe(*self_);
    if (want_registered_) FinishRegister(true, "");
    return Resync();  // deletes it again if Unregister came meanwhile
  }
  if (r.rc == ZNODEEXISTS) return IssueInspectSelf();
  if (r.rc == ZNONODE) {
    parents_needed_ = true;
    return Resync();
  }
  // The create may have been applied: the retry then finds ZNODEEXISTS with
  // our own session as the owner.
  if (IsConnectionLoss(r.rc)) return Resync();
  if (IsSessionGone(r.rc)) return;
  LOG(ERROR) << "cannot create " << self_path_ << ": " << zerror(r.rc);
  if (want_registered_) {
    want_registered_ = false;
    FinishRegister(false, "cannot create " + self_path_ + ": " + zerror(r.rc));
  }
  MaybeFinishUnregister();
}

void ZooKeeperRegistry::OnSelfInspected(const OpResult& r) {
  inspect_in_flight_ = false;
  if (r.path != self_path_) return Resync();
  if (r.rc == ZNONODE || IsConnectionLoss(r.rc)) return Resync();  // create again
  if (IsSessionGone(r.rc)) return;
  if (r.rc != ZOK || !r.stat || !r.data) {
    LOG(ERROR) << "cannot read " << self_path_ << ": " << zerror(r.rc);
    if (want_registered_) {
      want_registered_ = false;
      FinishRegister(false, "cannot read " + self_path_ + ": " + zerror(r.rc));
    }
    return MaybeFinishUnregister();
  }
  const int64_t owner = r.stat->ephemeralOwner;
  if (owner == session_id_) {
    registered_ = true;
    self_version_ = r.stat->version;
    LOG(INFO) << self_path_ << " already exists and is ours (session " << Hex(session_id_)
              << "; a create retried after a connection loss)";
    if (want_registered_) FinishRegister(true, "");
    return Resync();
  }
  if (!want_registered_) return MaybeFinishUnregister();
  const std::optional<NodeInfo> theirs = DecodeNodeInfo(*r.data);
  if (options_.steal_stale_znode && owner != 0 && theirs && theirs->peer_url == self_->peer_url) {
    // It names the peer address we have just bound, so its owner is dead.
    LOG(WARNING) << self_path_ << " is left over from our previous process (session "
                 << Hex(owner) << ", peer_url " << theirs->peer_url << "); deleting version "
                 << r.stat->version;
    return IssueStealDelete(r.stat->version);
  }
  waiting_for_stale_ = true;
  if (stale_owner_logged_ != owner) {
    stale_owner_logged_ = owner;
    if (owner == 0) {
      LOG(ERROR) << self_path_ << " exists as a persistent znode; waiting until it is deleted";
    } else {
      LOG(WARNING) << self_path_ << " exists, owned by session " << Hex(owner)
                   << (theirs ? " with peer_url " + theirs->peer_url : std::string())
                   << "; waiting for it to go away (at most a session timeout once its owner "
                      "is dead)";
    }
  }
  // The watch set by zoo_awget reports the deletion (OnPathEvent).
}

void ZooKeeperRegistry::OnStaleDeleted(const OpResult& r) {
  steal_in_flight_ = false;
  if (r.rc == ZOK || r.rc == ZNONODE) {
    LOG(INFO) << "deleted stale " << self_path_;
    return Resync();
  }
  // ZBADVERSION: it changed hands; look again.
  if (r.rc == ZBADVERSION || IsConnectionLoss(r.rc)) return Resync();
  if (IsSessionGone(r.rc)) return;
  LOG(ERROR) << "cannot delete stale " << self_path_ << ": " << zerror(r.rc)
             << "; waiting for it to expire instead";
  waiting_for_stale_ = true;  // the inspect's watch is still armed
}

void ZooKeeperRegistry::OnSelfDeleted(const OpResult& r) {
  delete_in_flight_ = false;
  if (r.rc == ZOK || r.rc == ZNONODE || r.rc == ZBADVERSION) {
    registered_ = false;
    LOG(INFO) << (r.rc == ZOK ? "unregistered: deleted " : "unregistered: already gone: ")
              << self_path_;
    return Resync();
  }
  if (IsConnectionLoss(r.rc)) return Resync();
  if (IsSessionGone(r.rc)) return;
  LOG(ERROR) << "cannot delete " << self_path_ << ": " << zerror(r.rc)
             << "; it goes when the session closes";
  FinishUnregister();
}

void ZooKeeperRegistry::OnChildren(const OpResult& r) {
  children_in_flight_ = false;
  if (r.rc == ZOK) {
    children_known_ = true;
    children_ = r.children;
    std::sort(children_.begin(), children_.end());
    const std::set<std::string> names(children_.begin(), children_.end());
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = names.count(it->first) ? std::next(it) : cache_.erase(it);
    }
    for (const std::string& name : children_) cache_.try_emplace(name);
    Resync();  // reads the new members' data
    return MaybeDeliverMembers();
  }
  if (r.rc == ZNONODE) {
    // No <root>/nodes (yet): no members.
    children_known_ = true;
    children_.clear();
    cache_.clear();
    if (parents_failed_) {
      IssueWatchNodesDir();
    } else {
      parents_needed_ = true;
      children_stale_ = true;
    }
    MaybeDeliverMembers();
    return Resync();
  }
  if (IsConnectionLoss(r.rc)) {
    children_stale_ = true;
    return Resync();
  }
  if (IsSessionGone(r.rc)) return;
  LOG(ERROR) << "cannot list " << nodes_path_ << ": " << zerror(r.rc);
}

void ZooKeeperRegistry::OnChildData(const OpResult& r) {
  const std::string name = r.path.substr(nodes_path_.size() + 1);
  auto it = cache_.find(name);
  if (it == cache_.end()) return MaybeDeliverMembers();
  Child& child = it->second;
  child.in_flight = false;
  if (r.rc == ZOK) {
    child.fresh = true;
    std::optional<NodeInfo> info = DecodeNodeInfo(r.data ? *r.data : "");
    if (!info) {
      if (!child.warned) {
        LOG(WARNING) << "skipping member " << r.path
                     << ": data is not a node description: " << Truncated(r.data.value_or(""));
      }
      child.warned = true;
      child.info.reset();
    } else {
      if (info->id != name && !child.warned) {
        LOG(WARNING) << r.path << " describes node id " << info->id;
      }
      child.info = std::move(info);
    }
  } else if (r.rc == ZNONODE) {
    cache_.erase(it);
    children_stale_ = true;
    Resync();
  } else if (IsConnectionLoss(r.rc)) {
    Resync();
  } else if (!IsSessionGone(r.rc)) {
    LOG(WARNING) << "cannot read " << r.path << ": " << zerror(r.rc);
    child.fresh = true;  // until it changes
  }
  MaybeDeliverMembers();
}

void ZooKeeperRegistry::OnNodesDirExists(const OpResult& r) {
  nodes_dir_watch_in_flight_ = false;
  if (r.rc == ZOK) {
    children_stale_ = true;
    return Resync();
  }
  if (IsConnectionLoss(r.rc)) {
    children_stale_ = true;  // the read after reconnect sets this watch again
    return Resync();
  }
  // ZNONODE: the watch is armed; CREATED arrives in OnPathEvent.
}

void ZooKeeperRegistry::OnPathEvent(uint64_t generation, int type, const std::string& path) {
  DCHECK(InOwnerThread()) << "ZooKeeper event delivered off the owner thread (check the Executor)";
  if (stopped_ || generation != generation_ || !handle_) return;
  if (path == nodes_path_) {
    if (type == ZOO_DELETED_EVENT) LOG(WARNING) << nodes_path_ << " was deleted";
    children_stale_ = true;
  } else if (path.size() > nodes_path_.size() + 1 &&
             path.compare(0, nodes_path_.size(), nodes_path_) == 0 &&
             path[nodes_path_.size()] == '/') {
    const std::string name = path.substr(nodes_path_.size() + 1);
    auto it = cache_.find(name);
    if (type == ZOO_DELETED_EVENT) {
      if (it != cache_.end()) cache_.erase(it);
      children_stale_ = true;
    } else if (type == ZOO_CHANGED_EVENT && it != cache_.end()) {
      it->second.fresh = false;
    }
    if (path == self_path_ && type == ZOO_CHANGED_EVENT && waiting_for_stale_) {
      // The one-shot watch we waited on is used up: look again, which
      // re-arms it (create -> ZNODEEXISTS -> inspect).
      waiting_for_stale_ = false;
    }
    if (path == self_path_ && type == ZOO_DELETED_EVENT) {
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
  Resync();
  MaybeDeliverMembers();
}

// ---------------------------------------------------------------------------
// Reporting.

void ZooKeeperRegistry::MaybeDeliverMembers() {
  if (stopped_ || !children_known_ || children_in_flight_) return;
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
  if (listener_.on_members) {
    PostCallback([callback = listener_.on_members, members = members_] { callback(members); });
  }
}

void ZooKeeperRegistry::SetState(SessionState state) {
  if (state == state_) return;
  LOG(INFO) << "ZooKeeper session state " << StateName(state_) << " -> " << StateName(state)
            << " (session " << Hex(session_id_) << ")";
  state_ = state;
  if (listener_.on_session) {
    PostCallback([callback = listener_.on_session, state] { callback(state); });
  }
}

void ZooKeeperRegistry::FinishRegister(bool ok, const std::string& error) {
  if (!register_done_) return;
  auto done = std::move(register_done_);
  register_done_ = nullptr;
  PostCallback([done = std::move(done), ok, error] { done(ok, error); });
}

void ZooKeeperRegistry::MaybeFinishUnregister() {
  if (unregistering_ && !registered_ && !create_in_flight_ && !inspect_in_flight_ &&
      !steal_in_flight_ && !delete_in_flight_) {
    FinishUnregister();
  }
}

void ZooKeeperRegistry::FinishUnregister() {
  unregistering_ = false;
  ++unregister_epoch_;
  auto done = std::move(unregister_done_);
  unregister_done_ = nullptr;
  if (done) PostCallback(std::move(done));
}

void ZooKeeperRegistry::OnUnregisterTimeout(uint64_t epoch) {
  DCHECK(InOwnerThread());
  if (stopped_ || !unregistering_ || epoch != unregister_epoch_) return;
  LOG(WARNING) << "ZooKeeper did not confirm the delete of " << self_path_ << " within "
               << SessionTimeout().count()
               << " ms; going on, and deleting it once reconnected (or it goes with the session)";
  // The caller's graceful leave must not hang on ZooKeeper; the delete itself
  // stays wanted (unregistering_) until the znode is gone.
  auto done = std::move(unregister_done_);
  unregister_done_ = nullptr;
  if (done) PostCallback(std::move(done));
}

void ZooKeeperRegistry::PostCallback(std::function<void()> callback) {
  Callbacks::Post(bridge_, [callback = std::move(callback)](ZooKeeperRegistry& r) {
    if (!r.stopped_) callback();
  });
}

std::unique_ptr<Registry> NewZooKeeperRegistry(RegistryOptions options, Executor executor) {
  return std::make_unique<ZooKeeperRegistry>(std::move(options), std::move(executor));
}

}  // namespace zmesh::zk

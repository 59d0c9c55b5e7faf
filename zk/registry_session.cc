#include "zk/registry_session.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

namespace zmesh::zk {
namespace {

// After zookeeper_init failed (bad connect string, out of fds) or the server
// rejected our credentials: try again later rather than spin.
constexpr std::chrono::milliseconds kReopenDelay{1000};
constexpr std::chrono::milliseconds kAuthFailedReopenDelay{5000};

const char* StateName(SessionState state) {
  switch (state) {
    case SessionState::kConnecting: return "CONNECTING";
    case SessionState::kConnected: return "CONNECTED";
    case SessionState::kSuspended: return "SUSPENDED";
    case SessionState::kExpired: return "EXPIRED";
  }
  return "?";
}

}  // namespace

RegistrySession::RegistrySession(const RegistryOptions& options, KeeperFactory factory,
                                 Scheduler& scheduler, const OwnerThread& owner, Hooks hooks)
    : options_(options),
      factory_(std::move(factory)),
      scheduler_(scheduler),
      owner_(owner),
      hooks_(std::move(hooks)) {}

std::optional<ZooKeeperSession> RegistrySession::id() const {
  if (session_id_ == 0) return std::nullopt;
  return ZooKeeperSession{session_id_, session_password_};
}

std::chrono::milliseconds RegistrySession::Timeout() const {
  const int ms = negotiated_timeout_ms_ > 0 ? negotiated_timeout_ms_ : options_.session_timeout_ms;
  return std::chrono::milliseconds(std::max(ms, 1));
}

void RegistrySession::Open() {
  owner_.Check("RegistrySession::Open");
  DCHECK(!keeper_);
  if (closed_) return;
  ++generation_;
  Reset();
  keeper_ = factory_(Keeper::Watcher{
      [this](KeeperState state) { OnKeeperState(state); },
      [this](KeeperEvent event, const std::string& path) { hooks_.on_event(event, path); }});
  if (!keeper_) {
    LOG(ERROR) << "cannot open a ZooKeeper handle for " << options_.connect << "; retrying in "
               << kReopenDelay.count() << " ms";
    scheduler_.RunAfter(kReopenDelay, [this, generation = generation_] { OnReopenTimer(generation); });
    return;
  }
  // Before the connection is up: the C client sends the credentials first
  // thing on every (re)connect of this handle.
  if (!options_.credentials.empty()) {
    keeper_->AddAuth("digest", options_.credentials, [](KeeperRc rc) {
      if (rc != KeeperRc::kOk) LOG(ERROR) << "zoo_add_auth(digest) failed: " << KeeperError(rc);
    });
  }
}

void RegistrySession::Close() {
  closed_ = true;
  CloseKeeper();
  ++generation_;
  connected_ = false;
}

void RegistrySession::CloseKeeper() { keeper_.reset(); }

void RegistrySession::Reset() {
  connected_ = false;
  ready_ = false;
  sync_in_flight_ = false;
  ++disconnect_epoch_;
  keeper_session_id_ = 0;
  if (hooks_.on_reset) hooks_.on_reset();
}

void RegistrySession::MakeReady() {
  owner_.Check("RegistrySession::MakeReady");
  if (!connected() || ready_ || sync_in_flight_) return;
  sync_in_flight_ = true;
  if (keeper_->Sync("/", [this](KeeperRc rc) { OnSyncDone(rc); }) != KeeperRc::kOk) {
    sync_in_flight_ = false;
  }
}

void RegistrySession::OnSyncDone(KeeperRc rc) {
  owner_.Check("RegistrySession::OnSyncDone");
  sync_in_flight_ = false;
  if (IsConnectionLoss(rc)) return hooks_.on_progress();  // again after the reconnect
  if (IsSessionGone(rc)) return;
  if (rc != KeeperRc::kOk) LOG(WARNING) << "sync after connect: " << KeeperError(rc);
  ready_ = true;
  hooks_.on_progress();
}

void RegistrySession::OnKeeperState(KeeperState state) {
  owner_.Check("RegistrySession::OnKeeperState");
  if (closed_) return;
  switch (state) {
    case KeeperState::kConnected: return OnConnected();
    case KeeperState::kConnecting: return OnConnecting();
    case KeeperState::kExpired: return Lose("expired by ZooKeeper", std::chrono::milliseconds(0));
    case KeeperState::kAuthFailed:
      LOG(ERROR) << "ZooKeeper rejected our credentials (AUTH_FAILED)";
      return Lose("authentication failed", kAuthFailedReopenDelay);
  }
}

void RegistrySession::OnConnected() {
  negotiated_timeout_ms_ = keeper_->negotiated_timeout_ms();
  connected_ = true;
  ++disconnect_epoch_;  // cancels the TN12 timer
  const std::optional<ZooKeeperSession> session = keeper_->session();
  const int64_t id = session ? session->id : 0;
  if (keeper_session_id_ == 0 || keeper_session_id_ != id) {
    const int64_t previous = session_id_;
    keeper_session_id_ = id;
    session_id_ = id;
    session_password_ = session ? session->password : std::string();
    ready_ = false;
    LOG(INFO) << "ZooKeeper session " << SessionIdHex(session_id_) << " established, timeout "
              << negotiated_timeout_ms_ << " ms"
              << (previous != 0 && previous != session_id_
                      ? " (replaces " + SessionIdHex(previous) + ")"
                      : "");
  } else {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - suspended_since_).count();
    LOG(INFO) << "reconnected to ZooKeeper after " << ms << " ms; session "
              << SessionIdHex(session_id_) << " kept";
  }
  SetState(SessionState::kConnected);
  hooks_.on_progress();
}

void RegistrySession::OnConnecting() {
  if (!connected_) return;
  connected_ = false;
  suspended_since_ = std::chrono::steady_clock::now();
  const uint64_t epoch = ++disconnect_epoch_;
  const std::chrono::milliseconds timeout = Timeout();
  LOG(WARNING) << "lost the connection to ZooKeeper (session " << SessionIdHex(session_id_)
               << "); the session counts as lost after " << timeout.count()
               << " ms without a connection";
  SetState(SessionState::kSuspended);
  // Curator TN12: only the server can expire a session, and it cannot tell
  // a client it cannot reach. After T without a connection, assume it did.
  scheduler_.RunAfter(timeout, [this, generation = generation_, epoch] {
    OnDisconnectTimeout(generation, epoch);
  });
}

void RegistrySession::OnDisconnectTimeout(uint64_t generation, uint64_t epoch) {
  owner_.Check("RegistrySession::OnDisconnectTimeout");
  if (closed_ || generation != generation_ || epoch != disconnect_epoch_ || connected_) return;
  Lose("no connection for longer than the session timeout of " +
           std::to_string(Timeout().count()) + " ms",
       std::chrono::milliseconds(0));
}

void RegistrySession::OnReopenTimer(uint64_t generation) {
  owner_.Check("RegistrySession::OnReopenTimer");
  if (closed_ || generation != generation_ || keeper_) return;
  Open();
}

void RegistrySession::Lose(const std::string& reason, std::chrono::milliseconds reopen_delay) {
  LOG(WARNING) << "ZooKeeper session " << SessionIdHex(session_id_) << " lost (" << reason
               << "); creating a new session";
  SetState(SessionState::kExpired);
  // Our znode went with the old session (or goes when ZooKeeper notices).
  CloseKeeper();
  Reset();
  if (hooks_.on_lost) hooks_.on_lost(reason);
  ++generation_;
  if (reopen_delay.count() == 0) return Open();
  scheduler_.RunAfter(reopen_delay, [this, generation = generation_] { OnReopenTimer(generation); });
}

void RegistrySession::SetState(SessionState state) {
  if (state == state_) return;
  LOG(INFO) << "ZooKeeper session state " << StateName(state_) << " -> " << StateName(state)
            << " (session " << SessionIdHex(session_id_) << ")";
  state_ = state;
  if (hooks_.on_state) hooks_.on_state(state);
}

}  // namespace zmesh::zk

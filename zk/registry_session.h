#pragma once

// The registry's ZooKeeper session (SPEC §3 "ZooKeeper faults", ZOOKEEPER.md):
// one Keeper at a time, replaced when the session is lost.
// - Connection loss: kSuspended; the handle reconnects by itself and keeps
//   the session. Members are not this class's business: they stay.
// - Expiry said by ZooKeeper, or no connection for longer than the session
//   timeout (Curator TN12: ZooKeeper may have expired the session without
//   being able to tell us): kExpired; close the handle, open a new one, add
//   the credentials again.
// - On every new session, one round trip after the credentials before the
//   first write, so the server applies them (ZOOKEEPER.md "Digest ACLs").
//
// Threading: owner thread only (the thread running the registry's Executor),
// DCHECKed. Hooks run synchronously, inside these methods or inside the
// Keeper's callbacks; they must not destroy the session.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "zk/keeper.h"
#include "zk/owner_thread.h"
#include "zk/registry.h"
#include "zk/scheduler.h"

namespace zmesh::zk {

class RegistrySession {
 public:
  struct Hooks {
    std::function<void(SessionState)> on_state;
    // A handle is about to be opened (or was closed): forget what was asked
    // of the old one; it answers no more.
    std::function<void()> on_reset;
    // The session was lost (after on_state(kExpired) and on_reset), before
    // the new one is opened.
    std::function<void(const std::string& reason)> on_lost;
    // Connected, or ready for writes: there may be work to issue.
    std::function<void()> on_progress;
    // A path watch fired.
    std::function<void(KeeperEvent, const std::string& path)> on_event;
  };

  RegistrySession(const RegistryOptions& options, KeeperFactory factory, Scheduler& scheduler,
                  const OwnerThread& owner, Hooks hooks);

  // Opens the first handle. Owner thread.
  void Open();
  // Closes the handle (our ephemeral znodes go at once); nothing is reopened.
  // Owner thread, or any thread once the owner runs no more of its tasks.
  void Close();

  // The current handle; nullptr between a lost session and the next one.
  Keeper* keeper() const { return keeper_.get(); }
  // The handle is connected (no CONNECTING since its last CONNECTED).
  bool connected() const { return keeper_ && connected_; }
  // Connected, and the credentials round trip of this session is done.
  bool ready() const { return connected() && ready_; }
  // Sends that round trip unless it is in flight. Owner thread; connected().
  void MakeReady();

  SessionState state() const { return state_; }
  // The last session ZooKeeper established, even if the handle is gone now.
  std::optional<ZooKeeperSession> id() const;
  int64_t session_id() const { return session_id_; }
  int negotiated_timeout_ms() const { return negotiated_timeout_ms_; }
  // The negotiated timeout, or the requested one before the first session.
  std::chrono::milliseconds Timeout() const;

 private:
  void OnKeeperState(KeeperState state);
  void OnConnected();
  void OnConnecting();
  void OnSyncDone(KeeperRc rc);
  void OnDisconnectTimeout(uint64_t generation, uint64_t epoch);
  void OnReopenTimer(uint64_t generation);
  void Lose(const std::string& reason, std::chrono::milliseconds reopen_delay);
  void CloseKeeper();
  void Reset();
  void SetState(SessionState state);

  const RegistryOptions& options_;
  const KeeperFactory factory_;
  Scheduler& scheduler_;
  const OwnerThread& owner_;
  const Hooks hooks_;

  std::unique_ptr<Keeper> keeper_;
  // Counts handles; timers of an older handle are ignored.
  uint64_t generation_ = 0;
  bool closed_ = false;
  SessionState state_ = SessionState::kConnecting;
  int64_t session_id_ = 0;
  std::string session_password_;
  int negotiated_timeout_ms_ = 0;
  int64_t keeper_session_id_ = 0;  // this handle's session; 0 until its first CONNECTED
  bool connected_ = false;
  bool ready_ = false;
  bool sync_in_flight_ = false;
  // Counts connects and disconnects; a TN12 timer of an earlier one is void.
  uint64_t disconnect_epoch_ = 0;
  std::chrono::steady_clock::time_point suspended_since_;
};

}  // namespace zmesh::zk

#pragma once

// An in-memory stand-in for a ZooKeeper ensemble, shared by several
// FakeRegistry instances (one per simulated node), so that the mesh and the
// client library's failover logic can be unit-tested without a JVM. Like
// ClickHouse's TestKeeper: the same semantics where they matter to a Registry
// user (ephemeral znodes, sessions, expiry, connection loss, stale znodes),
// none of ZooKeeper's wire protocol.
//
// Thread-safe: every public method may be called from any thread. Registries
// are told about changes through their own Executor, never synchronously from
// inside a FakeZooKeeper call, so a test may hold its own locks while calling.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "zk/registry.h"

namespace zmesh::zk {

class FakeRegistry;

class FakeZooKeeper {
 public:
  struct Znode {
    std::string data;
    int64_t ephemeral_owner = 0;  // session id; 0 = persistent
    int32_t version = 0;
  };

  FakeZooKeeper() = default;
  FakeZooKeeper(const FakeZooKeeper&) = delete;
  FakeZooKeeper& operator=(const FakeZooKeeper&) = delete;

  // --- Inspection and manipulation. Every change is seen by the registries
  // as ZooKeeper watches would report it.
  std::optional<Znode> Get(const std::string& path) const;
  // Names of the direct children of `path`, sorted.
  std::vector<std::string> GetChildren(const std::string& path) const;
  // Creates or overwrites a persistent znode (parents are implicit).
  void Put(const std::string& path, const std::string& data);
  // Deletes a znode whoever owns it; false if there was none.
  bool Delete(const std::string& path);

  // Creates `path` as an ephemeral znode of a fresh session that no registry
  // holds, as left behind by a process that was killed with SIGKILL. It stays
  // until KillSession(returned id), like ZooKeeper keeps it for a session
  // timeout.
  int64_t InjectStaleZnode(const std::string& path, const std::string& data);

  // --- Sessions.
  // Expires a session as ZooKeeper would: its ephemeral znodes go at once. The
  // registry holding it sees kExpired as soon as it is connected (at once, or
  // after Reconnect), then opens a new session and registers again.
  void KillSession(int64_t session_id);
  // Cuts the connection of the registry holding `session_id`: it goes
  // kSuspended and keeps its last member list. The session stays alive, as a
  // real one does until the session timeout (call KillSession for that).
  void Disconnect(int64_t session_id);
  // Restores it: kConnected with the same session, or kExpired then a new
  // session if it was killed meanwhile.
  void Reconnect(int64_t session_id);
  // ZooKeeper down / back up for every registry, including ones started later.
  void DisconnectAll();
  void ReconnectAll();
  bool SessionAlive(int64_t session_id) const;

 private:
  friend class FakeRegistry;

  // One per FakeRegistry; lets the store poke it through its Executor.
  struct Client {
    explicit Client(Executor e) : executor(std::move(e)) {}
    const Executor executor;
    FakeRegistry* registry = nullptr;  // owner thread only; cleared when it dies
    std::atomic<bool> poke_pending{false};
    bool reachable = true;  // guarded by FakeZooKeeper::mu_
  };
  struct Session {
    bool alive = true;
    std::weak_ptr<Client> client;
  };
  enum class CreateStatus { kOk, kExists, kNotConnected, kSessionGone };
  struct CreateResult {
    CreateStatus status = CreateStatus::kOk;
    Znode existing;     // for kExists
    int32_t version = 0;  // for kOk
  };
  struct View {
    bool connected = false;
    bool session_alive = false;
  };

  // For FakeRegistry. Any thread.
  void AddClient(const std::shared_ptr<Client>& client);
  void RemoveClient(const std::shared_ptr<Client>& client);
  View GetView(const std::shared_ptr<Client>& client, int64_t session_id) const;
  // 0 when the client is not connected.
  int64_t OpenSession(const std::shared_ptr<Client>& client);
  void CloseSession(int64_t session_id);
  CreateResult CreateEphemeral(const std::shared_ptr<Client>& client, int64_t session_id,
                               const std::string& path, const std::string& data);
  // Deletes `path` if its version matches; true if it is gone afterwards.
  bool DeleteVersion(const std::string& path, int32_t version);
  // (name, data) of every child of `path`.
  std::vector<std::pair<std::string, std::string>> ListChildren(const std::string& path) const;

  bool ConnectedLocked(const Client& client) const;
  void ExpireLocked(int64_t session_id);
  // Snapshot of the clients to poke; poke them after unlocking.
  std::vector<std::shared_ptr<Client>> ClientsLocked() const;
  static void Poke(const std::vector<std::shared_ptr<Client>>& clients);

  mutable std::mutex mu_;
  std::map<std::string, Znode> nodes_;
  std::map<int64_t, Session> sessions_;
  std::vector<std::weak_ptr<Client>> clients_;
  int64_t next_session_id_ = 0x1000;
  bool all_down_ = false;
};

}  // namespace zmesh::zk

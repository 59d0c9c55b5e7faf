#pragma once

// The part of ZooKeeper the registry uses, as an interface (ClickHouse's
// IKeeper): one handle, i.e. one session that the client library may
// reconnect many times, with the asynchronous calls the registry makes.
// ZooKeeperKeeper implements it over the C client; zk/testing/fake_keeper.h
// in memory, so the registry's state machine can be unit-tested with injected
// faults.
//
// Thread contract, for every implementation: a Keeper belongs to one owner
// thread, the thread that runs its Executor's tasks. Every method is called
// there. Every completion and watch event is delivered as a task of its own
// through the Executor (never inside a Keeper call, never on a thread of
// ZooKeeper's), in the order the Keeper learnt of them. Once the Keeper is
// destroyed, none is delivered any more, even one already posted.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::zk {

// Result codes with the C client's values (ZOK, ZNONODE, ...), so that logs
// and error strings read the same whichever Keeper produced them. Codes not
// listed may still occur; they keep their C client value.
enum class KeeperRc : int {
  kOk = 0,
  kSystemError = -1,
  kConnectionLoss = -4,
  kMarshallingError = -5,
  kOperationTimeout = -7,
  kBadArguments = -8,
  kInvalidState = -9,
  kApiError = -100,
  kNoNode = -101,
  kNoAuth = -102,
  kBadVersion = -103,
  kNodeExists = -110,
  kSessionExpired = -112,
  kAuthFailed = -115,
  kClosing = -116,
  kSessionMoved = -118,
};

// zerror()'s text for `rc` ("not authenticated", ...).
std::string KeeperError(KeeperRc rc);
// "0x1234abcd", as ZooKeeper's own logs show session ids.
std::string SessionIdHex(int64_t id);

// The request may or may not have been applied; the session is still there.
bool IsConnectionLoss(KeeperRc rc);
// The handle is dead or closing; session recovery takes over.
bool IsSessionGone(KeeperRc rc);

// What the handle's session watcher reports. The C client's ASSOCIATING is
// kConnecting, READONLY is kConnected.
enum class KeeperState { kConnecting, kConnected, kExpired, kAuthFailed };

// What fires a one-shot watch. Session events never reach a path watch.
enum class KeeperEvent { kCreated, kDeleted, kChanged, kChildren };

struct ZnodeStat {
  int32_t version = 0;
  int64_t ephemeral_owner = 0;  // session id; 0 for a persistent znode
};

// A ZooKeeper session, as needed to attach a second handle to it (tests force
// an expiry that way, ZOOKEEPER.md Part 2 (b)).
struct ZooKeeperSession {
  int64_t id = 0;
  std::string password;  // the 16 raw bytes of clientid_t::passwd
};

// kOpen: world may do everything. kDigest: {ALL, auth:""} + {READ,
// world:anyone}: sessions with our credentials may do everything, anybody may
// read the member list (ZOOKEEPER.md "Digest ACLs").
enum class KeeperAcl { kOpen, kDigest };
enum class CreateMode { kPersistent, kEphemeral };

class Keeper {
 public:
  struct Watcher {
    // Session state changes of this handle.
    std::function<void(KeeperState)> on_session;
    // A watch set by GetData/GetChildren/Exists with watch=true fired.
    std::function<void(KeeperEvent, const std::string& path)> on_event;
  };
  using Done = std::function<void(KeeperRc)>;
  using StatDone = std::function<void(KeeperRc, const std::optional<ZnodeStat>&)>;
  using DataDone = std::function<void(KeeperRc, const std::optional<std::string>& data,
                                      const std::optional<ZnodeStat>&)>;
  using ChildrenDone = std::function<void(KeeperRc, const std::vector<std::string>&)>;

  // Closes the handle; its session (and our ephemeral znodes) end at once.
  // May block for a few seconds (zookeeper_close). Owner thread.
  virtual ~Keeper() = default;

  // The session, once the handle was connected; nullopt before. Owner thread.
  virtual std::optional<ZooKeeperSession> session() const = 0;
  // The negotiated session timeout; 0 before the first connect. Owner thread.
  virtual int negotiated_timeout_ms() const = 0;

  // Every request below: owner thread. kOk means it was queued, and `done`
  // then runs exactly once (unless the Keeper is destroyed first). Any other
  // result means it was not sent, and `done` never runs.
  virtual KeeperRc AddAuth(const std::string& scheme, const std::string& credentials,
                           Done done) = 0;
  // A round trip: completes after everything sent before it.
  virtual KeeperRc Sync(const std::string& path, Done done) = 0;
  // The stat of the new znode on kOk.
  virtual KeeperRc Create(const std::string& path, const std::string& data, KeeperAcl acl,
                          CreateMode mode, StatDone done) = 0;
  // Only if the znode's version is `version` (callers never pass -1).
  virtual KeeperRc Delete(const std::string& path, int32_t version, Done done) = 0;
  // Data and stat on kOk. With `watch`, a data watch (kChanged, kDeleted);
  // as in ZooKeeper it is only set when the znode exists.
  virtual KeeperRc GetData(const std::string& path, bool watch, DataDone done) = 0;
  // The children's names (unsorted) on kOk; with `watch`, a children watch.
  virtual KeeperRc GetChildren(const std::string& path, bool watch, ChildrenDone done) = 0;
  // With `watch`, set whether or not the znode exists (fires kCreated too).
  virtual KeeperRc Exists(const std::string& path, bool watch, StatDone done) = 0;
};

// Opens a new handle (a new session) reporting to `watcher`; nullptr when that
// failed at once (bad connect string, out of file descriptors). Owner thread.
using KeeperFactory = std::function<std::unique_ptr<Keeper>(Keeper::Watcher watcher)>;

}  // namespace zmesh::zk

#include "zk/keeper.h"

#include <zookeeper/zookeeper.h>

#include <cinttypes>
#include <cstdio>

namespace zmesh::zk {

static_assert(static_cast<int>(KeeperRc::kOk) == ZOK);
static_assert(static_cast<int>(KeeperRc::kSystemError) == ZSYSTEMERROR);
static_assert(static_cast<int>(KeeperRc::kConnectionLoss) == ZCONNECTIONLOSS);
static_assert(static_cast<int>(KeeperRc::kMarshallingError) == ZMARSHALLINGERROR);
static_assert(static_cast<int>(KeeperRc::kOperationTimeout) == ZOPERATIONTIMEOUT);
static_assert(static_cast<int>(KeeperRc::kBadArguments) == ZBADARGUMENTS);
static_assert(static_cast<int>(KeeperRc::kInvalidState) == ZINVALIDSTATE);
static_assert(static_cast<int>(KeeperRc::kApiError) == ZAPIERROR);
static_assert(static_cast<int>(KeeperRc::kNoNode) == ZNONODE);
static_assert(static_cast<int>(KeeperRc::kNoAuth) == ZNOAUTH);
static_assert(static_cast<int>(KeeperRc::kBadVersion) == ZBADVERSION);
static_assert(static_cast<int>(KeeperRc::kNodeExists) == ZNODEEXISTS);
static_assert(static_cast<int>(KeeperRc::kSessionExpired) == ZSESSIONEXPIRED);
static_assert(static_cast<int>(KeeperRc::kAuthFailed) == ZAUTHFAILED);
static_assert(static_cast<int>(KeeperRc::kClosing) == ZCLOSING);
static_assert(static_cast<int>(KeeperRc::kSessionMoved) == ZSESSIONMOVED);

std::string KeeperError(KeeperRc rc) { return zerror(static_cast<int>(rc)); }

std::string SessionIdHex(int64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, static_cast<uint64_t>(id));
  return buf;
}

bool IsConnectionLoss(KeeperRc rc) {
  return rc == KeeperRc::kConnectionLoss || rc == KeeperRc::kOperationTimeout ||
         rc == KeeperRc::kSessionMoved;
}

bool IsSessionGone(KeeperRc rc) {
  return rc == KeeperRc::kSessionExpired || rc == KeeperRc::kInvalidState ||
         rc == KeeperRc::kClosing || rc == KeeperRc::kAuthFailed;
}

}  // namespace zmesh::zk

#include "zk/zookeeper_logging.h"

#include <glog/logging.h>
#include <zookeeper/zookeeper.h>

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace zmesh::zk {
namespace {

std::once_flag g_level_once;

ZooLogLevel ToZoo(ZooKeeperLogLevel level) {
  switch (level) {
    case ZooKeeperLogLevel::kError: return ZOO_LOG_LEVEL_ERROR;
    case ZooKeeperLogLevel::kWarn: return ZOO_LOG_LEVEL_WARN;
    case ZooKeeperLogLevel::kInfo: return ZOO_LOG_LEVEL_INFO;
    case ZooKeeperLogLevel::kDebug: return ZOO_LOG_LEVEL_DEBUG;
  }
  return ZOO_LOG_LEVEL_WARN;
}

// Substrings of the ERROR lines the C client prints on every failed connect
// attempt or dropped connection: expected whenever a ZooKeeper server restarts.
bool IsRoutineError(std::string_view text) {
  static constexpr std::array<std::string_view, 9> kRoutine = {
      "zk retcode=", "errno=",  "onnect",   "imed out", "timeout",
      "xpired",      "Socket [", "EOF",     "session",
  };
  for (std::string_view needle : kRoutine) {
    if (text.find(needle) != std::string_view::npos) return true;
  }
  return false;
}

// While ZooKeeper is down the C client retries every few tens of ms and logs
// two lines per attempt and handle. One line per call site every few seconds,
// with a count of what was dropped, says the same.
class Throttle {
 public:
  // True if a line from `site` may be logged now; *suppressed is the number
  // of lines dropped since the last one.
  bool Allow(std::string_view site, int* suppressed) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    Entry& entry = entries_[std::string(site)];
    if (entry.logged && now - entry.last < kInterval) {
      ++entry.suppressed;
      return false;
    }
    *suppressed = entry.suppressed;
    entry = Entry{true, now, 0};
    return true;
  }

 private:
  static constexpr std::chrono::seconds kInterval{5};
  struct Entry {
    bool logged = false;
    std::chrono::steady_clock::time_point last;
    int suppressed = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // bounded: one per call site
};

Throttle& RoutineThrottle() {
  static Throttle* throttle = new Throttle();  // never destroyed: ZK threads may log at exit
  return *throttle;
}

}  // namespace

void SetZooKeeperLogLevel(ZooKeeperLogLevel level) {
  // Consume the once-flag so InitZooKeeperLogging() won't override the caller.
  std::call_once(g_level_once, [] {});
  zoo_set_debug_level(ToZoo(level));
}

void InitZooKeeperLogging() {
  std::call_once(g_level_once, [] { zoo_set_debug_level(ZOO_LOG_LEVEL_WARN); });
}

void ZooKeeperLogToGlog(const char* message) {
  if (message == nullptr) return;
  // Format (zk_log.c): "<time>:<pid>(0x<tid>):ZOO_<LEVEL>@<func>@<line>: <text>".
  // glog adds its own time and thread, so keep "<func>@<line>: <text>".
  std::string_view line(message);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  struct Level {
    std::string_view tag;
    int rank;  // 0 error, 1 warn, 2 info, 3 debug
  };
  static constexpr std::array<Level, 4> kLevels = {{
      {"ZOO_ERROR@", 0}, {"ZOO_WARN@", 1}, {"ZOO_INFO@", 2}, {"ZOO_DEBUG@", 3}}};
  int rank = 1;
  for (const Level& level : kLevels) {
    size_t pos = line.find(level.tag);
    if (pos != std::string_view::npos) {
      rank = level.rank;
      line.remove_prefix(pos + level.tag.size());
      break;
    }
  }
  if (rank == 0 && !IsRoutineError(line)) {
    LOG(ERROR) << "zookeeper: " << line;
    return;
  }
  if (rank <= 1) {
    // "<func>@<line>" identifies the call site.
    const std::string_view site = line.substr(0, line.find(':'));
    int suppressed = 0;
    if (!RoutineThrottle().Allow(site, &suppressed)) return;
    if (suppressed > 0) {
      LOG(WARNING) << "zookeeper: " << line << " (" << suppressed << " similar suppressed)";
    } else {
      LOG(WARNING) << "zookeeper: " << line;
    }
    return;
  }
  if (rank == 2) {
    LOG(INFO) << "zookeeper: " << line;
  } else {
    VLOG(1) << "zookeeper: " << line;
  }
}

}  // namespace zmesh::zk

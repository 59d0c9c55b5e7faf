#include "server/monitor/format.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace zmesh::server::monitor {

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Rfc3339(int64_t unix_ms) {
  const time_t secs = static_cast<time_t>(unix_ms / 1000);
  const int millis = static_cast<int>(unix_ms % 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  return buf;
}

std::string UptimeString(int64_t duration_ms) {
  const int64_t secs = duration_ms > 0 ? duration_ms / 1000 : 0;
  const int64_t mins = secs / 60, hours = mins / 60, days = hours / 24, years = days / 365;
  char buf[96];
  if (years > 0) {
    std::snprintf(buf, sizeof buf, "%lldy%lldd%lldh%lldm%llds", static_cast<long long>(years),
                  static_cast<long long>(days % 365), static_cast<long long>(hours % 24),
                  static_cast<long long>(mins % 60), static_cast<long long>(secs % 60));
  } else if (days > 0) {
    std::snprintf(buf, sizeof buf, "%lldd%lldh%lldm%llds", static_cast<long long>(days),
                  static_cast<long long>(hours % 24), static_cast<long long>(mins % 60),
                  static_cast<long long>(secs % 60));
  } else if (hours > 0) {
    std::snprintf(buf, sizeof buf, "%lldh%lldm%llds", static_cast<long long>(hours), static_cast<long long>(mins % 60),
                  static_cast<long long>(secs % 60));
  } else if (mins > 0) {
    std::snprintf(buf, sizeof buf, "%lldm%llds", static_cast<long long>(mins), static_cast<long long>(secs % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(secs));
  }
  return buf;
}

std::string DumpJson(const nlohmann::json& j) {
  return j.dump(2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace zmesh::server::monitor

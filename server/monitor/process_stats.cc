#include "server/monitor/process_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace zmesh::server::monitor {
namespace {

// "VmRSS:     1234 kB" -> bytes.
int64_t StatusKb(const std::string& status, const char* field) {
  const size_t at = status.find(field);
  if (at == std::string::npos) return 0;
  return std::strtoll(status.c_str() + at + std::strlen(field), nullptr, 10) * 1024;
}

double CpuSecondsFromStat() {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may contain spaces and parentheses: the
  // fields after it start after the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // Fields 3..13 precede utime (14) and stime (15).
  for (int i = 3; i <= 15 && (fields >> field); ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  const long ticks = sysconf(_SC_CLK_TCK);
  return ticks > 0 ? static_cast<double>(utime + stime) / static_cast<double>(ticks) : 0;
}

int64_t CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  int64_t n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n > 0 ? n - 1 : 0;  // not counting the directory being read
}

}  // namespace

ProcessStats ReadProcessStats() {
  ProcessStats s;
  std::ifstream in("/proc/self/status");
  const std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  s.resident_bytes = StatusKb(status, "VmRSS:");
  s.virtual_bytes = StatusKb(status, "VmSize:");
  s.cpu_seconds = CpuSecondsFromStat();
  s.open_fds = CountOpenFds();
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) s.max_fds = static_cast<int64_t>(lim.rlim_cur);
  return s;
}

double CpuMeter::Percent(double cpu_seconds, int64_t now_ms, int64_t process_start_ms) {
  const int64_t since_ms = last_ms_ > 0 ? last_ms_ : process_start_ms;
  const double since_cpu = last_ms_ > 0 ? last_cpu_seconds_ : 0;
  // Two scrapes in the same few milliseconds would divide noise by nothing:
  // keep the previous figure until a meaningful interval has passed.
  if (now_ms - since_ms < 100) return last_percent_;
  last_percent_ = 100.0 * (cpu_seconds - since_cpu) / (static_cast<double>(now_ms - since_ms) / 1000.0);
  if (last_percent_ < 0) last_percent_ = 0;
  last_cpu_seconds_ = cpu_seconds;
  last_ms_ = now_ms;
  return last_percent_;
}

}  // namespace zmesh::server::monitor

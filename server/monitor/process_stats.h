#pragma once

// What the kernel says about this process (/proc/self), for /varz "mem" and
// "cpu" and the process_* metrics Prometheus client libraries export.
//
// Threading: ReadProcessStats is a pure read of /proc; any thread. CpuMeter
// keeps the previous sample and is used on one thread (the main loop).

#include <cstdint>

namespace zmesh::server::monitor {

struct ProcessStats {
  int64_t resident_bytes = 0;  // VmRSS
  int64_t virtual_bytes = 0;   // VmSize
  double cpu_seconds = 0;      // user + system since the process started
  int64_t open_fds = 0;
  int64_t max_fds = 0;         // RLIMIT_NOFILE soft limit
};

// Zero fields where /proc could not be read (never fails).
ProcessStats ReadProcessStats();

// CPU use in percent of one core (nats-server's "cpu": 150 means one and a
// half cores), averaged since the previous call, or since start-up on the
// first call.
class CpuMeter {
 public:
  double Percent(double cpu_seconds, int64_t now_ms, int64_t process_start_ms);

 private:
  double last_cpu_seconds_ = 0;
  int64_t last_ms_ = 0;
  double last_percent_ = 0;
};

}  // namespace zmesh::server::monitor

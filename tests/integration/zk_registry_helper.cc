// A mesh node's registry in a process of its own, for zk_registry_test: it
// registers and then waits to be killed. SIGKILL leaves its ephemeral znode to
// ZooKeeper's session timeout, exactly like a crashed zmesh-server; SIGTERM
// stops it cleanly.
//
// usage: zk_registry_helper CONNECT ROOT ID CLIENT_URL PEER_URL SESSION_TIMEOUT_MS
// Prints "registered session=0x..." once its znode exists.

#include <glog/logging.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "zk/zookeeper_registry.h"

#if defined(__SANITIZE_THREAD__)
// Races in third-party code that TSan reports in every run; ours stay checked.
// - vsprintf on top: the (stripped) ZooKeeper C client sprintf()s endpoint
//   names into a static buffer when two handles log at once (garbled log text
//   at worst). Matched on the top frame only: a module-wide suppression would
//   also hide races in our callbacks, which run on ZooKeeper's threads, and
//   called_from_lib would hide the library's mutexes. We never use sprintf.
// - tzset_internal: glog computes the GMT offset with mktime(), which takes
//   glibc's internal tzset lock that TSan cannot see.
extern "C" const char* __tsan_default_suppressions() {
  return "race_top:vsprintf\n"
         "race:tzset_internal\n";
}
#endif

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: %s CONNECT ROOT ID CLIENT_URL PEER_URL SESSION_TIMEOUT_MS\n", argv[0]);
    return 2;
  }
  // Die with the test that started us, even if it crashed before killing us:
  // an orphan would keep its znode alive forever.
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 1;
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);

  // The main thread is the registry's owner thread.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  zmesh::zk::Executor executor = [&](std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu);
    tasks.push_back(std::move(task));
    cv.notify_one();
  };

  zmesh::zk::RegistryOptions options;
  options.connect = argv[1];
  options.root = argv[2];
  options.session_timeout_ms = std::stoi(argv[6]);
  zmesh::zk::ZooKeeperRegistry registry(options, executor);
  registry.Start({});
  zmesh::zk::NodeInfo self{argv[3], argv[4], argv[5], "helper", 1};
  registry.Register(self, [&](bool ok, const std::string& error) {
    const auto session = registry.session();
    std::printf("%s session=0x%" PRIx64 " %s\n", ok ? "registered" : "failed",
                static_cast<uint64_t>(session ? session->id : 0), error.c_str());
    std::fflush(stdout);
  });

  std::unique_lock<std::mutex> lock(mu);
  while (!g_stop) {
    cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !tasks.empty(); });
    while (!tasks.empty()) {
      std::function<void()> task = std::move(tasks.front());
      tasks.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
  lock.unlock();
  registry.Stop();
  return 0;
}

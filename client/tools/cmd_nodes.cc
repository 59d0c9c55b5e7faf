// zmesh nodes: the live nodes registered in ZooKeeper, one line each:
// "<id> <client_url>".

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iostream>
#include <mutex>

#include "client/discovery.h"
#include "client/node_cache.h"
#include "client/tools/cli_common.h"
#include "client/tools/commands.h"

namespace zmesh::cli {

int RunNodes(int argc, char** argv) {
  ConnFlags conn;
  bool cached = false;
  int64_t timeout_ms = 5000;
  FlagSet flags("nodes");
  AddConnFlags(&flags, &conn);
  flags.Bool("cached", &cached, "print the node cache file instead of asking ZooKeeper");
  flags.Int("timeout_ms", &timeout_ms, "how long to wait for ZooKeeper");
  const std::string synopsis = "zmesh nodes --zk=HOST:PORT [--zk_root=/zmesh/NAME]";
  std::vector<std::string> args;
  int code = 0;
  if (!ParseOrUsage(&flags, argc, argv, synopsis, 0, 0, &args, &code)) return code;
  std::string error;
  if (conn.zk.empty()) {
    std::cerr << "zmesh nodes: --zk is required (the node list lives in ZooKeeper)\n";
    return 2;
  }
  const std::string cache_path =
      conn.node_cache.empty() ? client::DefaultNodeCachePath(conn.zk, conn.zk_root) : conn.node_cache;
  if (cached) {
    auto nodes = client::ReadNodeCache(cache_path, &error);
    if (!nodes) {
      std::cerr << "zmesh nodes: " << error << "\n";
      return 1;
    }
    for (const auto& n : *nodes) std::cout << n.id << " " << n.client_url << "\n";
    return 0;
  }

  // The registry delivers callbacks through an executor; this thread runs them.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  zk::Executor executor = [&](std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu);
      tasks.push_back(std::move(task));
    }
    cv.notify_one();
  };
  zk::RegistryOptions ro;
  ro.connect = conn.zk;
  ro.root = conn.zk_root;
  ro.session_timeout_ms = 4000;
  std::unique_ptr<zk::Registry> registry = client::DefaultRegistryFactory()(ro, executor);
  if (registry == nullptr) {
    std::cerr << "zmesh nodes: this build has no ZooKeeper support\n";
    return 1;
  }
  bool have = false;
  std::vector<zk::NodeInfo> members;
  zk::Registry::Listener listener;
  listener.on_members = [&](const std::vector<zk::NodeInfo>& m) {
    members = m;
    have = true;
  };
  listener.on_session = [](zk::SessionState) {};
  registry->Start(std::move(listener));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!have) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_until(lock, deadline, [&] { return !tasks.empty(); })) break;
      task = std::move(tasks.front());
      tasks.pop_front();
    }
    task();
  }
  registry->Stop();
  if (!have) {
    std::cerr << "zmesh nodes: no answer from ZooKeeper at " << conn.zk << " within " << timeout_ms
              << " ms (try --cached)\n";
    return 1;
  }
  std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  std::vector<client::CachedNode> nodes;
  for (const zk::NodeInfo& m : members) {
    std::cout << m.id << " " << m.client_url << "\n";
    nodes.push_back({m.id, m.client_url});
  }
  if (!nodes.empty() && conn.node_cache != "none") {
    client::WriteNodeCache(cache_path, conn.zk, conn.zk_root, nodes);  // best effort
  }
  return 0;
}

}  // namespace zmesh::cli

#pragma once

// Where the client learns which nodes exist. The I/O thread owns a Discovery
// and feeds what it reports into the ServerPool; the failover logic is
// unit-tested with a fake registry behind the same interface.
//
// RegistryDiscovery reads <root>/nodes through zk::Registry (it never
// registers) and keeps the node cache file (node_cache.h): the cached list is
// reported first, at Start, so the client can connect while ZooKeeper is
// unreachable; every list ZooKeeper reports afterwards replaces it and is
// written back to the file, on a writer thread (node_cache_writer.h).
//
// Thread safety: I/O thread only; callbacks run on the I/O thread.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zmesh/status.h>

#include "client/node_cache.h"
#include "client/node_cache_writer.h"
#include "zk/registry.h"

namespace zmesh::client {

class Discovery {
 public:
  // Client URLs of all nodes, and where the list came from ("cache",
  // "zookeeper"), for logs and events. Runs on the I/O thread.
  using NodesCallback = std::function<void(const std::vector<std::string>& client_urls, std::string_view source)>;

  virtual ~Discovery() = default;
  virtual void Start(NodesCallback on_nodes) = 0;
  // Stops reporting; may block for a bounded time (closing a ZooKeeper session).
  virtual void Stop() = 0;
};

using RegistryFactory =
    std::function<std::unique_ptr<zk::Registry>(zk::RegistryOptions options, zk::Executor executor)>;

// zk::NewZooKeeperRegistry when the library was built with ZooKeeper
// support, else a factory that returns nullptr.
RegistryFactory DefaultRegistryFactory();

class RegistryDiscovery : public Discovery {
 public:
  // `cache_path` empty = no cache file. `executor` runs tasks on the I/O thread.
  RegistryDiscovery(zk::RegistryOptions options, std::string cache_path, zk::Executor executor,
                    RegistryFactory factory);
  ~RegistryDiscovery() override;

  void Start(NodesCallback on_nodes) override;
  void Stop() override;

  // The last error (cache unreadable or unwritable, no ZooKeeper support),
  // for logs.
  Status last_error() const;

 private:
  void OnMembers(const std::vector<zk::NodeInfo>& members);

  zk::RegistryOptions options_;
  std::string cache_path_;
  zk::Executor executor_;
  RegistryFactory factory_;
  NodesCallback on_nodes_;
  std::unique_ptr<zk::Registry> registry_;
  std::vector<CachedNode> written_;  // what the cache file holds or is about to (from us)
  std::unique_ptr<NodeCacheWriter> writer_;  // null without a cache file
  Status last_error_;
};

}  // namespace zmesh::client

#include "client/discovery.h"

namespace zmesh::client {

RegistryFactory DefaultRegistryFactory() {
#ifdef ZMESH_CLIENT_WITH_ZK
  return [](zk::RegistryOptions options, zk::Executor executor) {
    return zk::NewZooKeeperRegistry(std::move(options), std::move(executor));
  };
#else
  return [](zk::RegistryOptions, zk::Executor) { return std::unique_ptr<zk::Registry>(); };
#endif
}

RegistryDiscovery::RegistryDiscovery(zk::RegistryOptions options, std::string cache_path, zk::Executor executor,
                                     RegistryFactory factory)
    : options_(std::move(options)),
      cache_path_(std::move(cache_path)),
      executor_(std::move(executor)),
      factory_(std::move(factory)) {
  if (!cache_path_.empty()) writer_ = std::make_unique<NodeCacheWriter>(cache_path_, options_.connect, options_.root);
}

Status RegistryDiscovery::last_error() const {
  if (writer_ != nullptr) {
    if (Status st = writer_->last_error(); !st.ok()) return st;
  }
  return last_error_;
}

RegistryDiscovery::~RegistryDiscovery() { Stop(); }

void RegistryDiscovery::Start(NodesCallback on_nodes) {
  on_nodes_ = std::move(on_nodes);
  if (!cache_path_.empty()) {
    std::string error;
    if (auto cached = ReadNodeCache(cache_path_, &error)) {
      written_ = *cached;
      std::vector<std::string> urls;
      for (const CachedNode& n : *cached) urls.push_back(n.client_url);
      if (!urls.empty()) on_nodes_(urls, "cache");
    } else {
      last_error_ = Status(StatusCode::kIoError, error);
    }
  }
  registry_ = factory_ ? factory_(options_, executor_) : nullptr;
  if (registry_ == nullptr) {
    last_error_ = Status(StatusCode::kInvalidArgument, "this build has no ZooKeeper support");
    return;
  }
  zk::Registry::Listener listener;
  listener.on_members = [this](const std::vector<zk::NodeInfo>& members) { OnMembers(members); };
  listener.on_session = [](zk::SessionState) {};
  registry_->Start(std::move(listener));
}

void RegistryDiscovery::Stop() {
  if (registry_ == nullptr) return;
  registry_->Stop();
  registry_.reset();
}

void RegistryDiscovery::OnMembers(const std::vector<zk::NodeInfo>& members) {
  std::vector<CachedNode> nodes;
  std::vector<std::string> urls;
  for (const zk::NodeInfo& m : members) {
    if (m.client_url.empty()) continue;
    nodes.push_back(CachedNode{m.id, m.client_url});
    urls.push_back(m.client_url);
  }
  // An empty list is never written: a cache is only useful when it names
  // somewhere to go, and ZooKeeper reports empty lists during mesh restarts.
  if (writer_ != nullptr && !nodes.empty() && nodes != written_) {
    written_ = nodes;
    writer_->Submit(std::move(nodes));
  }
  if (on_nodes_) on_nodes_(urls, "zookeeper");
}

}  // namespace zmesh::client

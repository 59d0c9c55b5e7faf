#include "zk/testing/fake_zookeeper.h"

#include <algorithm>

#include "zk/testing/fake_registry.h"

namespace zmesh::zk {
std::optional<FakeZooKeeper::Znode> FakeZooKeeper::Get(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(path);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> FakeZooKeeper::GetChildren(const std::string& path) const {
  std::vector<std::string> names;
  for (auto& [name, data] : ListChildren(path)) names.push_back(name);
  return names;
}

std::vector<std::pair<std::string, std::string>> FakeZooKeeper::ListChildren(
    const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, std::string>> children;
  const std::string prefix = path == "/" ? "/" : path + "/";
  for (auto it = nodes_.lower_bound(prefix);
       it != nodes_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    const std::string rest = it->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) {
      children.emplace_back(rest, it->second.data);
    }
  }
  return children;  // std::map order: sorted by name
}

void FakeZooKeeper::Put(const std::string& path, const std::string& data) {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = nodes_.try_emplace(path);
    if (!inserted) ++it->second.version;
    it->second.data = data;
    it->second.ephemeral_owner = 0;
    clients = ClientsLocked();
  }
  Poke(clients);
}

bool FakeZooKeeper::Delete(const std::string& path) {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (nodes_.erase(path) == 0) return false;
    clients = ClientsLocked();
  }
  Poke(clients);
  return true;
}

int64_t FakeZooKeeper::InjectStaleZnode(const std::string& path, const std::string& data) {
  std::vector<std::shared_ptr<Client>> clients;
  int64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_session_id_++;
    sessions_[id] = Session{};
    nodes_[path] = Znode{data, id, 0};
    clients = ClientsLocked();
  }
  Poke(clients);
  return id;
}

void FakeZooKeeper::KillSession(int64_t session_id) {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ExpireLocked(session_id);
    clients = ClientsLocked();
  }
  Poke(clients);
}

void FakeZooKeeper::Disconnect(int64_t session_id) {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    if (auto client = it->second.client.lock()) {
      client->reachable = false;
      clients.push_back(client);
    }
  }
  Poke(clients);
}

void FakeZooKeeper::Reconnect(int64_t session_id) {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    if (auto client = it->second.client.lock()) {
      client->reachable = true;
      clients.push_back(client);
    }
  }
  Poke(clients);
}

void FakeZooKeeper::DisconnectAll() {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all_down_ = true;
    clients = ClientsLocked();
  }
  Poke(clients);
}

void FakeZooKeeper::ReconnectAll() {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all_down_ = false;
    clients = ClientsLocked();
    for (auto& client : clients) client->reachable = true;
  }
  Poke(clients);
}

bool FakeZooKeeper::SessionAlive(int64_t session_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session_id);
  return it != sessions_.end() && it->second.alive;
}

void FakeZooKeeper::AddClient(const std::shared_ptr<Client>& client) {
  std::lock_guard<std::mutex> lock(mu_);
  clients_.push_back(client);
}

void FakeZooKeeper::RemoveClient(const std::shared_ptr<Client>& client) {
  std::lock_guard<std::mutex> lock(mu_);
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(),
                                [&](const std::weak_ptr<Client>& c) {
                                  auto locked = c.lock();
                                  return !locked || locked == client;
                                }),
                 clients_.end());
}

FakeZooKeeper::View FakeZooKeeper::GetView(const std::shared_ptr<Client>& client,
                                           int64_t session_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  View view;
  view.connected = ConnectedLocked(*client);
  auto it = sessions_.find(session_id);
  view.session_alive = it != sessions_.end() && it->second.alive;
  return view;
}

int64_t FakeZooKeeper::OpenSession(const std::shared_ptr<Client>& client) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ConnectedLocked(*client)) return 0;
  const int64_t id = next_session_id_++;
  sessions_[id] = Session{true, client};
  return id;
}

void FakeZooKeeper::CloseSession(int64_t session_id) { KillSession(session_id); }

FakeZooKeeper::CreateResult FakeZooKeeper::CreateEphemeral(const std::shared_ptr<Client>& client,
                                                           int64_t session_id,
                                                           const std::string& path,
                                                           const std::string& data) {
  std::vector<std::shared_ptr<Client>> clients;
  CreateResult result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto session = sessions_.find(session_id);
    if (!ConnectedLocked(*client)) {
      result.status = CreateStatus::kNotConnected;
    } else if (session == sessions_.end() || !session->second.alive) {
      result.status = CreateStatus::kSessionGone;
    } else if (auto it = nodes_.find(path); it != nodes_.end()) {
      result.status = CreateStatus::kExists;
      result.existing = it->second;
    } else {
      nodes_[path] = Znode{data, session_id, 0};
      result.version = 0;
      clients = ClientsLocked();
    }
  }
  Poke(clients);
  return result;
}

bool FakeZooKeeper::DeleteVersion(const std::string& path, int32_t version) {
  std::vector<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(path);
    if (it == nodes_.end()) return true;
    if (it->second.version != version) return false;
    nodes_.erase(it);
    clients = ClientsLocked();
  }
  Poke(clients);
  return true;
}

bool FakeZooKeeper::ConnectedLocked(const Client& client) const {
  return !all_down_ && client.reachable;
}

void FakeZooKeeper::ExpireLocked(int64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || !it->second.alive) return;
  it->second.alive = false;
  for (auto node = nodes_.begin(); node != nodes_.end();) {
    node = node->second.ephemeral_owner == session_id ? nodes_.erase(node) : std::next(node);
  }
}

std::vector<std::shared_ptr<FakeZooKeeper::Client>> FakeZooKeeper::ClientsLocked() const {
  std::vector<std::shared_ptr<Client>> clients;
  for (const auto& weak : clients_) {
    if (auto client = weak.lock()) clients.push_back(std::move(client));
  }
  return clients;
}

void FakeZooKeeper::Poke(const std::vector<std::shared_ptr<Client>>& clients) {
  for (const auto& client : clients) {
    // Coalesced: one pending Sync per registry is enough, it reads everything.
    if (client->poke_pending.exchange(true)) continue;
    client->executor([client] {
      client->poke_pending = false;
      if (client->registry != nullptr) client->registry->Sync();
    });
  }
}

}  // namespace zmesh::zk

// The Session's view of the mesh: nodes from ZooKeeper (discovery) and from
// INFO connect_urls, the known-servers list the application reads, and what
// an INFO asks of us (lame duck, move_to). I/O thread only, like the rest of
// the Session (client/session.h).

#include "client/client_state.h"
#include "client/server_url.h"
#include "client/session.h"

namespace zmesh::client {

void Session::StartDiscovery() {
  AssertInIoThread();
  if (options_.zk_connect.empty()) return;
  zk::Executor executor = [outbox = outbox_](std::function<void()> task) { outbox->Post(std::move(task)); };
  if (hooks_.discovery_factory) {
    discovery_ = hooks_.discovery_factory(executor);
  } else {
    zk::RegistryOptions ro;
    ro.connect = options_.zk_connect;
    ro.root = options_.zk_root;
    ro.session_timeout_ms = static_cast<int>(options_.zk_session_timeout.count());
    std::string cache;
    if (options_.use_node_cache) {
      cache = options_.node_cache_file.empty() ? DefaultNodeCachePath(options_.zk_connect, options_.zk_root)
                                               : options_.node_cache_file;
    }
    discovery_ = std::make_unique<RegistryDiscovery>(
        ro, cache, executor, hooks_.registry_factory ? hooks_.registry_factory : DefaultRegistryFactory());
  }
  discovery_settled_ = false;
  discovery_->Start([this](const std::vector<std::string>& urls, std::string_view source) { OnNodes(urls, source); });
}

void Session::OnNodes(const std::vector<std::string>& urls, std::string_view source) {
  AssertInIoThread();
  std::vector<ServerUrl> parsed;
  for (const std::string& u : urls) {
    if (auto url = ParseServerUrl(u)) parsed.push_back(*url);
  }
  if (source != "cache") discovery_settled_ = true;
  if (pool_.Update(ServerPool::kDiscovered, parsed)) {
    PublishKnownServers();
    dispatcher_->Emit(EventType::kServersChanged, std::string(source), Status());
  }
  if (conn_ == nullptr) TryNext();  // a new node may be worth trying now
}

void Session::UpdateAnnounced(const std::vector<std::string>& urls) {
  AssertInIoThread();
  std::vector<ServerUrl> parsed;
  for (const std::string& u : urls) {
    if (auto url = ParseServerUrl(u)) {
      // connect_urls carry no credentials or scheme: inherit TLS from the
      // node we are on (a mesh is TLS throughout or not at all).
      if (conn_ != nullptr) url->tls = conn_->url().tls;
      parsed.push_back(*url);
    }
  }
  if (pool_.Update(ServerPool::kAnnounced, parsed)) {
    PublishKnownServers();
    dispatcher_->Emit(EventType::kServersChanged, "connect_urls", Status());
  }
}

void Session::PublishKnownServers() {
  AssertInIoThread();
  std::vector<std::string> known;
  for (const ServerUrl& s : pool_.servers()) known.push_back(s.ToString());
  state_->SetKnownServers(std::move(known));
}

void Session::HandleServerInfo(const proto::Info& info) {
  AssertInIoThread();
  state_->server_max_payload.store(info.max_payload);
  if (info.connect_urls) UpdateAnnounced(*info.connect_urls);
  if (info.lame_duck && conn_ != nullptr && conn_ready_) {
    if (move_ != nullptr) {  // already moving away: now for lame duck mode
      if (move_->reason() == Move::Reason::kLameDuck) return;
      move_->set_reason(Move::Reason::kLameDuck);
      pool_.Leave(conn_->url().key(), Clock::now(), options_.lame_duck_hold);
      dispatcher_->Emit(EventType::kLameDuck, conn_->url().ToString(), Status());
      return;
    }
    dispatcher_->Emit(EventType::kLameDuck, conn_->url().ToString(), Status());
    if (StartLameDuckMove()) return;
    DropConnection(Status(StatusCode::kDisconnected, conn_->url().key() + ": node entered lame duck mode"), true);
    return;
  }
  // The node asks us to move for balance; a planned move or nothing.
  if (!info.move_to.empty() && conn_ != nullptr && conn_ready_) {
    if (auto target = ParseServerUrl(info.move_to)) RequestMove(*target);
  }
}

}  // namespace zmesh::client

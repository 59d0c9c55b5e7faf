#include "server/server.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "auth/authenticator.h"
#include "server/client_connection.h"
#include "server/io_worker.h"
#include "server/server_context.h"
#include "server/version.h"

namespace zmesh::server {
namespace {

// The housekeeping sweep runs a few times per shortest timeout, within bounds.
std::chrono::milliseconds SweepTick(const Options& o) {
  const int64_t shortest = std::min({o.auth_timeout_ms, o.ping_interval_ms, o.write_deadline_ms});
  return std::chrono::milliseconds(std::clamp<int64_t>(shortest / 4, 5, 1000));
}

}  // namespace

std::string NewServerId() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::random_device rd;
  std::string id = "N";
  for (int i = 0; i < 55; ++i) id += kAlphabet[rd() % 32];
  return id;
}

Server::Server(Options options) : options_(std::move(options)) {}

Server::~Server() {
  for (event* ev : signal_events_) event_free(ev);
}

bool Server::Start(std::string* error) {
  InfoStatic info;
  info.server_id = NewServerId();
  info.server_name = options_.server_name;
  info.version = kNatsProtocolVersion;
  info.zmesh_version = kZmeshVersion;
  info.host = options_.listen.host;
  info.auth_required = !options_.users_file.empty();
  info.max_payload = options_.max_payload;
  std::string node_id = options_.node_id;
  if (node_id.empty()) node_id = "node-" + info.server_id.substr(1, 8);
  if (info.server_name.empty()) info.server_name = node_id;
  ctx_ = std::make_unique<ServerContext>(options_, std::move(info));
  ctx_->node_id = node_id;

  if (!options_.users_file.empty()) {
    auth::Authenticator::Options ao;
    ao.users_file = options_.users_file;
    auto authenticator = auth::Authenticator::Create(ao);
    if (!authenticator.ok()) {
      *error = std::string(authenticator.status().message());
      return false;
    }
    ctx_->authenticator = std::move(*authenticator);
  }

  client_listener_ = std::make_unique<Listener>(&main_loop_, [this](int fd, const PeerAddress& peer) { OnAccept(fd, peer); });
  if (!client_listener_->Listen(options_.listen, error)) return false;
  ctx_->info.set_port(client_listener_->bound().port);

  for (int i = 0; i < options_.threads; ++i) {
    workers_.push_back(std::make_unique<IoWorker>(i, &ctx_->index));
    workers_.back()->Start(SweepTick(options_));
  }
  InstallSignalHandlers();
  if (!options_.ports_file.empty() && !WritePortsFile(error)) return false;
  LOG(INFO) << "zmesh-server " << kZmeshVersion << " node " << ctx_->node_id << " listening for clients on "
            << client_listener_->bound().ToString() << " with " << workers_.size() << " I/O threads"
            << (ctx_->authenticator ? ", authentication required" : "");
  return true;
}

bool Server::WritePortsFile(std::string* error) const {
  nlohmann::json j;
  j["client"] = client_listener_->bound().ToString();
  const std::string tmp = options_.ports_file + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump() << "\n";
    if (!out) {
      *error = "cannot write " + tmp;
      return false;
    }
  }
  if (std::rename(tmp.c_str(), options_.ports_file.c_str()) != 0) {
    *error = "cannot rename " + tmp;
    return false;
  }
  return true;
}

void Server::OnAccept(int fd, const PeerAddress& peer) {
  IoWorker* worker = workers_[next_worker_++ % workers_.size()].get();
  const uint64_t cid = ctx_->next_client_id.fetch_add(1, std::memory_order_relaxed);
  const bool over_limit = ctx_->client_count.fetch_add(1, std::memory_order_relaxed) >= options_.max_connections;
  ctx_->total_connections.fetch_add(1, std::memory_order_relaxed);
  ServerContext* ctx = ctx_.get();
  worker->loop()->QueueInLoop([ctx, worker, fd, cid, peer, over_limit] {
    auto* conn = new ClientConnection(ctx, worker, fd, cid, peer.ip, peer.port);
    conn->Start();
    if (over_limit) {
      LOG(WARNING) << "cid=" << cid << " " << peer.ip << ":" << peer.port << " refused: maximum connections ("
                   << ctx->options.max_connections << ") reached";
      conn->RejectMaxConnections();
    }
    conn->Unref();  // the worker holds it while open
  });
}

void Server::InstallSignalHandlers() {
  std::signal(SIGPIPE, SIG_IGN);
  auto add = [this](int sig, event_callback_fn fn) {
    event* ev = evsignal_new(main_loop_.base(), sig, fn, this);
    event_add(ev, nullptr);
    signal_events_.push_back(ev);
  };
  add(SIGHUP, [](evutil_socket_t, short, void* arg) { static_cast<Server*>(arg)->ReloadUsers(); });
  auto stop = [](evutil_socket_t sig, short, void* arg) {
    LOG(INFO) << "signal " << sig << ": shutting down";
    static_cast<Server*>(arg)->Shutdown();
  };
  add(SIGTERM, stop);
  add(SIGINT, stop);
}

void Server::ReloadUsers() {
  if (!ctx_->authenticator) {
    LOG(INFO) << "SIGHUP: no --users_file, nothing to reload";
    return;
  }
  absl::Status st = ctx_->authenticator->Reload();
  if (st.ok()) {
    LOG(INFO) << "SIGHUP: reloaded users from " << options_.users_file << " (" << ctx_->authenticator->table()->size()
              << " users); existing connections keep their session";
  } else {
    LOG(ERROR) << "SIGHUP: keeping the previous users: " << st.message();
  }
}

void Server::Run() {
  main_loop_.Run();
  client_listener_->Close();
  for (auto& w : workers_) w->Stop();
  if (ctx_->authenticator) ctx_->authenticator->Shutdown();
  LOG(INFO) << "node " << ctx_->node_id << " stopped";
}

void Server::Shutdown() { main_loop_.Quit(); }

}  // namespace zmesh::server

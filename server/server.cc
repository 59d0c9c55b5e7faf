#include "server/server.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <random>
#include <sstream>

#include "auth/authenticator.h"
#include "auth/peer_keys.h"
#include "auth/peer_tls.h"
#include "server/client_connection.h"
#include "server/flags.h"
#include "server/io_worker.h"
#include "server/mesh/mesh.h"
#include "server/monitor/http_monitor.h"
#include "zk/registry.h"
#include "server/server_context.h"
#include "server/version.h"

namespace zmesh::server {
namespace {

// The housekeeping sweep runs a few times per shortest timeout, within bounds.
std::chrono::milliseconds SweepTick(const Options& o) {
  const int64_t shortest = std::min({o.auth_timeout_ms, o.ping_interval_ms, o.write_deadline_ms});
  return std::chrono::milliseconds(std::clamp<int64_t>(shortest / 4, 5, 1000));
}

bool IsWildcardHost(const std::string& host) { return host.empty() || host == "0.0.0.0" || host == "::"; }

// The first non-loopback IPv4 address of this host (SPEC §7 --advertise).
std::string FirstNonLoopbackAddress() {
  ifaddrs* list = nullptr;
  std::string found = "127.0.0.1";
  if (getifaddrs(&list) != 0) return found;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    found = buf;
    break;
  }
  freeifaddrs(list);
  return found;
}

std::string AdvertisedHost(const Options& o, const std::string& listen_host) {
  if (!o.advertise.empty()) return o.advertise;
  return IsWildcardHost(listen_host) ? FirstNonLoopbackAddress() : listen_host;
}

bool ReadTrimmedFile(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read " + path;
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  while (!out->empty() && (out->back() == '\n' || out->back() == '\r' || out->back() == ' ')) out->pop_back();
  return true;
}

uint64_t RandomU64() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
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
  info.tls_required = !options_.tls_cert.empty();
  info.tls_verify = options_.tls_verify_clients;
  info.max_payload = options_.max_payload;
  info.move = !options_.zk.empty();
  ServerContext::Init init;
  init.node_id = options_.node_id;
  if (init.node_id.empty()) init.node_id = "node-" + info.server_id.substr(1, 8);
  if (info.server_name.empty()) info.server_name = init.node_id;
  init.info = std::move(info);

  if (!options_.tls_cert.empty()) {
    auto tls = auth::TlsContexts::Create({options_.tls_cert, options_.tls_key, options_.tls_ca},
                                         options_.tls_verify_clients);
    if (!tls.ok()) {
      *error = std::string(tls.status().message());
      return false;
    }
    init.tls = std::move(*tls);
  }
  if (!options_.users_file.empty()) {
    auth::Authenticator::Options ao;
    ao.users_file = options_.users_file;
    ao.max_in_flight_per_source = static_cast<size_t>(options_.max_logins_in_flight_per_ip);
    auto authenticator = auth::Authenticator::Create(ao);
    if (!authenticator.ok()) {
      *error = std::string(authenticator.status().message());
      return false;
    }
    init.authenticator = std::move(*authenticator);
  }
  // Membership changes re-send INFO (connect_urls); in lame duck the one
  // INFO with ldm is enough, clients would otherwise report lame duck twice.
  init.broadcast_info = [this] {
    if (!lame_duck_) BroadcastInfo();
  };
  ctx_ = std::make_unique<ServerContext>(options_, std::move(init));

  // Bound now (its port goes into the znode), accepting only once ready.
  client_listener_ = std::make_unique<Listener>(&main_loop_, [this](int fd, const PeerAddress& peer) { OnAccept(fd, peer); });
  if (!client_listener_->Listen(options_.listen, error, /*accept_now=*/false)) return false;
  ctx_->info.set_port(client_listener_->bound().port);

  for (int i = 0; i < options_.threads; ++i) {
    workers_.push_back(std::make_unique<IoWorker>(i, &ctx_->index));
    workers_.back()->Start(SweepTick(options_));
  }
  InstallSignalHandlers();
  if (!options_.http_listen.empty() && !StartMonitor(error)) return false;
  if (!options_.zk.empty()) return StartMesh(error);
  BecomeReady();
  return client_listener_->accepting();
}

bool Server::StartMesh(std::string* error) {
  mesh::MeshOptions mo;
  mo.node_id = ctx_->node_id;
  mo.incarnation = RandomU64();
  if (options_.insecure_peers) {
    LOG(WARNING) << "*** --insecure_peers: peer links are plain text without authentication. Anyone who can reach "
                    "the peer port " << options_.peer_listen.ToString()
                 << " can join this mesh, read every message and inject any. Demos on loopback only. ***";
    if (!options_.cluster_secret_file.empty()) LOG(WARNING) << "--insecure_peers: --cluster_secret_file is not used";
  } else if (options_.peer_tls) {
    auto tls = auth::PeerTlsContexts::CreateCertificates(options_.peer_tls_cert, options_.peer_tls_key,
                                                          options_.peer_tls_ca);
    if (!tls.ok()) {
      *error = std::string(tls.status().message());
      return false;
    }
    peer_tls_ = std::move(*tls);
    mo.certificate_mode = true;
    if (!options_.tls_ca.empty() && options_.tls_ca == options_.peer_tls_ca) {
      LOG(WARNING) << "--peer_tls_ca is also --tls_ca: every client certificate that CA signed for a node id "
                      "could join the mesh; use a CA of its own for peers";
    }
  } else {
    auto ring = auth::PeerKeyring::Load(options_.cluster_secret_file);
    if (!ring.ok()) {
      *error = std::string(ring.status().message());
      return false;
    }
    peer_keys_ = std::make_unique<auth::PeerKeys>(std::move(*ring));
    auto tls = auth::PeerTlsContexts::CreatePsk();
    if (!tls.ok()) {
      *error = std::string(tls.status().message());
      return false;
    }
    peer_tls_ = std::move(*tls);
    mo.peer_keys = peer_keys_.get();
  }
  mo.peer_tls = peer_tls_.get();
  mo.testing_relink_ms = options_.testing_peer_relink_ms;
  mo.client_url = "nats://" + AdvertisedHost(options_, options_.listen.host) + ":" +
                  std::to_string(client_listener_->bound().port);
  mo.version = kZmeshVersion;
  mo.peer_listen = options_.peer_listen;
  mo.peer_host = AdvertisedHost(options_, options_.peer_listen.host);
  mo.ping_interval_ms = options_.ping_interval_ms;
  mo.max_pings_out = options_.max_pings_out;
  mo.write_deadline_ms = options_.write_deadline_ms;
  mo.handshake_timeout_ms = std::max<int64_t>(2 * options_.auth_timeout_ms, 1000);
  mo.join_timeout_ms = options_.join_timeout_ms;
  mo.join_grace_ms = options_.join_grace_ms;
  mo.anti_entropy_interval_ms = options_.anti_entropy_interval_ms;
  mo.interest_barrier_timeout_ms = options_.interest_barrier_timeout_ms;
  mo.move_timeout_ms = options_.move_timeout_ms;
  mo.rebalance = options_.rebalance;
  mo.rebalance_moves_per_s = options_.rebalance_moves_per_s;
  mo.peer_max_pending_bytes = options_.peer_max_pending_bytes;
  // 64 KiB beyond the payload and the control lines: room for the queue
  // names of one MSG frame (proto::peer::kMaxQueueListBytes).
  mo.max_frame_bytes = static_cast<size_t>(options_.max_payload) + 4 * options_.max_control_line + 64 * 1024;
  mo.name_bounds = options_.name_bounds;

  zk::RegistryOptions ro;
  ro.connect = options_.zk;
  ro.root = options_.zk_root;
  ro.session_timeout_ms = options_.zk_session_timeout_ms;
  // A znode left by our previous process names the peer address we just
  // bound: that proves it is ours, so it may be replaced without waiting for
  // the old session to expire (ZOOKEEPER.md). With an ephemeral port the
  // address differs and the registry waits instead.
  ro.steal_stale_znode = true;
  if (!options_.zk_credentials_file.empty() && !ReadTrimmedFile(options_.zk_credentials_file, &ro.credentials, error)) {
    return false;
  }
  EventLoop* main = &main_loop_;
  zk::Executor on_main = [main](std::function<void()> task) { main->QueueInLoop(std::move(task)); };
  auto registry = registry_factory_ ? registry_factory_(ro, std::move(on_main))
                                    : zk::NewZooKeeperRegistry(ro, std::move(on_main));

  std::vector<IoWorker*> workers;
  for (auto& w : workers_) workers.push_back(w.get());
  mesh_ = std::make_unique<mesh::Mesh>(ctx_.get(), mo, &main_loop_, std::move(workers), std::move(registry));
  return mesh_->Start([this] { BecomeReady(); }, error);
}

bool Server::StartMonitor(std::string* error) {
  HostPort address;
  if (!ParseHostPort(options_.http_listen, &address)) {
    *error = "invalid --http_listen: " + options_.http_listen;
    return false;
  }
  monitor::MonitorSources sources;
  sources.ctx = ctx_.get();
  sources.main_loop = &main_loop_;
  for (auto& w : workers_) sources.workers.push_back(w.get());
  sources.mesh = [this] { return mesh_.get(); };
  sources.serving = [this] { return client_listener_->accepting(); };
  monitor_ = std::make_unique<monitor::HttpMonitor>(std::move(sources));
  return monitor_->Start(address, error);
}

void Server::BecomeReady() {
  main_loop_.AssertInLoopThread();
  std::string error;
  if (!client_listener_->StartAccepting(&error)) {
    LOG(ERROR) << "cannot open the client port: " << error;
    Shutdown();
    return;
  }
  if (!options_.ports_file.empty() && !WritePortsFile(&error)) LOG(ERROR) << error;
  LOG(INFO) << "zmesh-server " << kZmeshVersion << " node " << ctx_->node_id << " listening for clients on "
            << client_listener_->bound().ToString() << " with " << workers_.size() << " I/O threads"
            << (ctx_->authenticator ? ", authentication required" : "")
            << (mesh_ ? ", peers on " + mesh_->peer_address().ToString() : ", standalone");
}

void Server::BroadcastInfo() {
  main_loop_.AssertInLoopThread();
  const std::string line = ctx_->info.Broadcast();
  for (auto& w : workers_) {
    IoWorker* worker = w.get();
    worker->loop()->QueueInLoop([worker, line] {
      worker->ForEachConnection([&line](Connection* c) {
        if (c->kind() == SubscriberEndpoint::Kind::kClient) static_cast<ClientConnection*>(c)->SendInfo(line);
      });
    });
  }
}

bool Server::WritePortsFile(std::string* error) const {
  nlohmann::json j;
  j["client"] = client_listener_->bound().ToString();
  if (mesh_) j["peer"] = mesh_->peer_address().ToString();
  if (monitor_) j["http"] = monitor_->bound().ToString();
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
  main_loop_.AssertInLoopThread();
  IoWorker* worker = workers_[next_worker_++ % workers_.size()].get();
  const uint64_t cid = ctx_->next_client_id.fetch_add(1, std::memory_order_relaxed);
  const bool over_limit = ctx_->client_count.fetch_add(1, std::memory_order_relaxed) >= options_.max_connections;
  ctx_->total_connections.fetch_add(1, std::memory_order_relaxed);
  ServerContext* ctx = ctx_.get();
  // Standalone, or the mesh (which the client port waits for, so it is set by now).
  InterestObserver* interest = mesh_ ? mesh_->interest() : nullptr;
  MoveCoordinator* moves = mesh_ ? mesh_->moves() : nullptr;
  worker->loop()->QueueInLoop([ctx, interest, moves, worker, fd, cid, peer, over_limit] {
    auto* conn = new ClientConnection(ctx, interest, moves, worker, fd, cid, peer.ip, peer.port);
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
  add(SIGHUP, [](evutil_socket_t, short, void* arg) { static_cast<Server*>(arg)->Reload(); });
  // The first SIGTERM/SIGINT starts a graceful leave; a second one stops now.
  auto stop = [](evutil_socket_t sig, short, void* arg) {
    auto* server = static_cast<Server*>(arg);
    if (server->lame_duck_) {
      LOG(INFO) << "signal " << sig << " during lame duck: stopping now";
      server->Shutdown();
    } else {
      LOG(INFO) << "signal " << sig << ": leaving gracefully (lame duck)";
      server->EnterLameDuck();
    }
  };
  add(SIGTERM, stop);
  add(SIGINT, stop);
}

void Server::Reload() {
  main_loop_.AssertInLoopThread();
  if (const std::string changed = ReloadLogFlags(); !changed.empty()) {
    LOG(INFO) << "SIGHUP: log level now " << changed;
  }
  ReloadUsers();
  ReloadClusterSecret();
}

void Server::ReloadClusterSecret() {
  main_loop_.AssertInLoopThread();
  if (!peer_keys_) return;
  auto ring = auth::PeerKeyring::Load(options_.cluster_secret_file);
  if (!ring.ok()) {
    LOG(ERROR) << "SIGHUP: keeping the previous cluster secret: " << ring.status().message();
    return;
  }
  const size_t secrets = (*ring)->size();
  peer_keys_->Set(std::move(*ring));
  LOG(INFO) << "SIGHUP: reloaded the cluster secret from " << options_.cluster_secret_file << " (" << secrets
            << (secrets == 1 ? " secret" : " secrets: dialling with the first, accepting both")
            << "); links already up keep their keys";
}

void Server::ReloadUsers() {
  main_loop_.AssertInLoopThread();
  if (!ctx_->authenticator) {
    LOG(INFO) << "SIGHUP: no --users_file, nothing to reload";
    return;
  }
  absl::Status st = ctx_->authenticator->Reload();
  if (st.ok()) {
    std::shared_ptr<const auth::UsersTable> table = ctx_->authenticator->table();
    LOG(INFO) << "SIGHUP: reloaded users from " << options_.users_file << " (" << table->size() << " users)";
    for (auto& w : workers_) {
      IoWorker* worker = w.get();
      worker->loop()->QueueInLoop([worker, table] {
        worker->ForEachConnection([&table](Connection* c) {
          if (c->kind() == SubscriberEndpoint::Kind::kClient) static_cast<ClientConnection*>(c)->OnUsersReloaded(*table);
        });
      });
    }
  } else {
    LOG(ERROR) << "SIGHUP: keeping the previous users: " << st.message();
  }
}

void Server::Run() {
  main_loop_.Run();
  if (monitor_) monitor_->Stop();
  client_listener_->Close();
  if (mesh_) mesh_->Stop();
  for (auto& w : workers_) w->Stop();
  if (ctx_->authenticator) ctx_->authenticator->Shutdown();
  LOG(INFO) << "node " << ctx_->node_id << " stopped";
}

void Server::Shutdown() { main_loop_.Quit(); }

void Server::EnterLameDuck() {
  main_loop_.AssertInLoopThread();
  if (lame_duck_) return;
  lame_duck_ = true;
  LOG(INFO) << "lame duck: deleting our znode; then refusing new clients and moving " << ctx_->client_count.load()
            << " client(s) over " << options_.lame_duck_duration_ms << " ms after a grace of "
            << options_.lame_duck_grace_ms << " ms";
  if (!mesh_) {
    StopAcceptingForLameDuck();
    return;
  }
  // The znode goes first (SPEC §3): the client port closes only once
  // ZooKeeper confirmed the delete, or gave up within the registry's bound.
  mesh_->Leave(options_.lame_duck_grace_ms + options_.lame_duck_duration_ms + kDrainBoundMs, [this] {
    LOG(INFO) << "lame duck: znode deleted; peers see this node leave";
    StopAcceptingForLameDuck();
  });
}

void Server::StopAcceptingForLameDuck() {
  main_loop_.AssertInLoopThread();
  client_listener_->Close();
  ctx_->info.set_lame_duck(true);
  BroadcastInfo();
  lame_duck_started_ms_ = MonotonicMs();
  lame_duck_timer_ = main_loop_.RunEvery(std::chrono::milliseconds(kLameDuckStepMs), [this] { LameDuckStep(); });
}

void Server::LameDuckStep() {
  main_loop_.AssertInLoopThread();
  const int64_t elapsed = MonotonicMs() - lame_duck_started_ms_;
  const int64_t grace = options_.lame_duck_grace_ms, duration = options_.lame_duck_duration_ms;
  const int remaining = ctx_->client_count.load(std::memory_order_relaxed);
  if (remaining == 0) {  // nobody left to move: no reason to wait out the grace
    LOG(INFO) << "lame duck: every client has left; stopping";
    Shutdown();
    return;
  }
  if (elapsed >= grace + duration + kDrainBoundMs) {
    LOG(WARNING) << "lame duck: " << remaining << " client(s) still open after the drain bound; stopping";
    Shutdown();
    return;
  }
  if (elapsed < grace) return;
  // Close the clients evenly over the duration, so that they do not all
  // reconnect to the other nodes at once: by time t after the grace,
  // ceil(total * t / duration) of them have been asked to leave.
  if (lame_duck_total_ < 0) lame_duck_total_ = remaining;
  const int64_t into = elapsed - grace;
  const int64_t target = into >= duration ? lame_duck_total_
                                           : (lame_duck_total_ * into + duration - 1) / std::max<int64_t>(duration, 1);
  int64_t quota = into >= duration ? std::numeric_limits<int>::max() : target - lame_duck_closed_;
  if (quota <= 0) return;
  lame_duck_closed_ += quota;
  // Share the quota among the workers: base each, and one more for the first `extra`.
  const int64_t workers = static_cast<int64_t>(workers_.size());
  for (int64_t i = 0; i < workers; ++i) {
    const int64_t share = quota / workers + ((i + lame_duck_rotation_) % workers < quota % workers ? 1 : 0);
    if (share == 0) continue;
    IoWorker* worker = workers_[static_cast<size_t>(i)].get();
    const bool last_step = into >= duration;
    mesh::Mesh* mesh = mesh_.get();
    worker->loop()->QueueInLoop([worker, share, last_step, mesh] {
      std::vector<RefPtr<Connection>> leaving;
      worker->ForEachConnection([&leaving, share, last_step](Connection* c) {
        const int64_t closed = static_cast<int64_t>(leaving.size());
        if (closed >= share || c->kind() != SubscriberEndpoint::Kind::kClient || c->closing() || c->leaving()) {
          return;
        }
        // Cutting a move short would lose what the old end still owes; it
        // ends within --move_timeout_ms anyway, and the drain bound stands.
        if (c->in_planned_move()) return;
        // A client that moves by itself started when it read the lame-duck
        // INFO; closing it before it sends MOVE (its new connection still
        // handshaking, under load) would turn a lossless move into a
        // failover. It gets the whole duration.
        if (!last_step && c->moves_when_asked()) return;
        c->StopReadingToLeave();
        leaving.emplace_back(c);
      });
      if (leaving.empty()) return;
      auto close = [worker, leaving] {
        worker->loop()->QueueInLoop([leaving] {
          for (const RefPtr<Connection>& c : leaving) {
            if (!c->closing()) c->Close(CloseReason::kLameDuck, /*flush=*/true);
          }
        });
      };
      // A client that reconnects to another node publishes there next: what
      // it published here must have reached every peer first, or a
      // subscriber may see its messages out of order.
      if (mesh != nullptr) {
        mesh->AwaitForwarded(std::move(close));
      } else {
        close();
      }
    });
  }
  ++lame_duck_rotation_;
}

}  // namespace zmesh::server

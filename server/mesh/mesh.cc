#include "server/mesh/mesh.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <limits>

#include "proto/peer_protocol.h"
#include "auth/peer_keys.h"
#include "auth/peer_tls.h"
#include "server/io_worker.h"
#include "server/mesh/peer_link.h"
#include "server/mesh/peer_node.h"
#include "server/mesh/rebalancer.h"
#include "server/server_context.h"

namespace zmesh::server::mesh {

Mesh::Mesh(ServerContext* ctx, MeshOptions options, EventLoop* main_loop, std::vector<IoWorker*> workers,
           std::unique_ptr<zk::Registry> registry)
    : ctx_(ctx),
      options_(std::move(options)),
      main_loop_(main_loop),
      workers_(std::move(workers)),
      registry_(std::move(registry)),
      moves_([this](uint64_t token) { main_loop_->QueueInLoop([this, token] { Cut(token, /*initiate=*/true); }); }),
      router_sink_(&ctx->router),
      link_context_{&options_, &interest_, this, &router_sink_, &moves_},
      listener_(main_loop, [this](int fd, const PeerAddress& from) { Accept(fd, from); }),
      connector_(main_loop, options_.peer_listen.host, options_.dial_timeout_ms) {}

Mesh::~Mesh() = default;

void Mesh::RouterSink::OnPeerMessage(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                                     bool to_plain) {
  router_->PublishFromPeer(worker, msg, queues, to_plain);
}

bool Mesh::Start(std::function<void()> ready, std::string* error) {
  ready_ = std::move(ready);
  if (!listener_.Listen(options_.peer_listen, error)) return false;
  options_.peer_url = options_.peer_host + ":" + std::to_string(listener_.bound().port);
  const int64_t tick = std::clamp<int64_t>(std::min(options_.ping_interval_ms, options_.dial_grace_ms) / 4, 10, 250);
  tick_ = main_loop_->RunEvery(std::chrono::milliseconds(tick), [this] { Tick(); });
  zk::Registry::Listener l;
  l.on_members = [this](const std::vector<zk::NodeInfo>& m) { HandleMembers(m); };
  l.on_session = [this](zk::SessionState s) { HandleSession(s); };
  registry_->Start(std::move(l));
  LOG(INFO) << "mesh " << options_.node_id << ": listening for peers on " << listener_.bound().ToString()
            << "; waiting for ZooKeeper membership";
  return true;
}

void Mesh::Leave(int64_t drain_ms, std::function<void()> done) {
  main_loop_->AssertInLoopThread();
  phase_ = Phase::kLeaving;
  std::string frame;
  proto::peer::EncodeLeaving({static_cast<uint64_t>(std::max<int64_t>(drain_ms, 0))}, &frame);
  for (auto& [id, p] : peers_) {
    if (p.active) p.active->SendFrame(frame);
  }
  registry_->Unregister(std::move(done));
}

void Mesh::OnPeerLeaving(PeerLink* link, uint64_t drain_ms) {
  RefPtr<PeerLink> ref(link);
  main_loop_->QueueInLoop([this, ref, drain_ms] {
    auto it = peers_.find(ref->peer_node_id());
    if (it == peers_.end()) return;
    // A leaving node still serves its remaining clients; its link carries
    // their traffic until it closes it (bounded by what it announced).
    const int64_t bound = static_cast<int64_t>(std::min<uint64_t>(drain_ms, 24ull * 3600 * 1000));
    it->second.leaving_until_ms = MonotonicMs() + bound + options_.handshake_timeout_ms;
    LOG(INFO) << "mesh " << options_.node_id << ": node " << it->first << " is leaving; keeping its link for up to " << bound << " ms";
  });
}

void Mesh::Stop() {
  main_loop_->AssertInLoopThread();
  tick_.reset();
  listener_.Close();
  registry_->Stop();
}

IoWorker* Mesh::NextWorker() { return workers_[next_worker_++ % workers_.size()]; }

void Mesh::BackOff(Peer& p) {
  main_loop_->AssertInLoopThread();
  p.next_dial_ms = MonotonicMs() + p.backoff.Failed();
}

void Mesh::HandleSession(zk::SessionState state) {
  main_loop_->AssertInLoopThread();
  zk_suspended_ = state == zk::SessionState::kSuspended || state == zk::SessionState::kExpired;
  if (zk_suspended_) {
    LOG(WARNING) << "mesh " << options_.node_id << ": ZooKeeper session " << (state == zk::SessionState::kExpired ? "expired" : "suspended")
                 << "; forwarding continues with the last known membership (" << members_.size() << " nodes)";
  } else if (state == zk::SessionState::kConnected) {
    LOG(INFO) << "mesh " << options_.node_id << ": ZooKeeper session connected";
  }
}

void Mesh::HandleMembers(const std::vector<zk::NodeInfo>& members) {
  main_loop_->AssertInLoopThread();
  const int64_t now = MonotonicMs();
  members_ = members;
  have_members_ = true;
  for (auto& [id, p] : peers_) p.member = false;
  for (const zk::NodeInfo& m : members) {
    if (m.id == options_.node_id) continue;
    Peer& p = peers_[m.id];
    if (!p.member && p.first_seen_ms == 0) {
      LOG(INFO) << "mesh " << options_.node_id << ": node " << m.id << " is live (client " << m.client_url << ", peer " << m.peer_url << ")";
    }
    p.info = m;
    if (p.active) p.active->set_takes_move_frames(m.moves, m.queue_switch);
    p.member = true;
    p.unregistered_since_ms = 0;
    p.leaving_until_ms = 0;
    if (p.first_seen_ms == 0) p.first_seen_ms = now;
  }
  for (auto it = peers_.begin(); it != peers_.end();) {
    Peer& p = it->second;
    if (!p.member && p.first_seen_ms != 0 && p.info.id == it->first) {
      LOG(INFO) << "mesh " << options_.node_id << ": node " << it->first << " left (its znode is gone)";
      p.first_seen_ms = 0;
    }
    if (!p.member && !p.active && p.retiring.empty() && !p.dialing) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
  UpdateConnectUrls();
  if (phase_ == Phase::kStarting) {
    phase_ = Phase::kJoining;
    join_started_ms_ = now;
    size_t others = 0;
    for (auto& [id, p] : peers_) {
      if (!p.member) continue;
      ++others;
      p.next_dial_ms = 0;
      Dial(id, p);
    }
    LOG(INFO) << "mesh " << options_.node_id << ": joining: linking to " << others << " live node(s) before registering";
  }
  Tick();
}

void Mesh::Dial(const std::string& node_id, Peer& peer, bool again) {
  main_loop_->AssertInLoopThread();
  if (peer.dialing || (peer.active && !again) || peer.info.peer_url.empty()) return;
  std::string error;
  if (!connector_.Dial(
          peer.info.peer_url,
          [this, node_id](int fd, const std::string& err) { DialFinished(node_id, fd, err); }, &error)) {
    DialFinished(node_id, -1, error);
    return;
  }
  peer.dialing = true;
}

void Mesh::DialFinished(const std::string& node_id, int fd, const std::string& error) {
  main_loop_->AssertInLoopThread();
  auto it = peers_.find(node_id);
  if (it == peers_.end() || phase_ == Phase::kLeaving) {
    if (fd >= 0) ::close(fd);
    return;
  }
  Peer& p = it->second;
  if (fd < 0) {
    p.dialing = false;
    BackOff(p);
    LOG_EVERY_N(WARNING, 10) << "mesh " << options_.node_id << ": cannot reach node " << node_id << " at " << p.info.peer_url << ": " << error
                             << "; retrying in " << p.backoff.base_ms() << " ms";
    return;
  }
  // Still dialling until the handshake ends one way or the other; the next
  // tick must not dial again meanwhile.
  const uint64_t dial_id = p.dial_id = next_dial_id_++;
  StartLink(NextWorker(), fd, ctx_->next_client_id.fetch_add(1, std::memory_order_relaxed), p.info.peer_url,
            /*outbound=*/true, node_id, p.member ? p.info.incarnation : 0, dial_id);
}

void Mesh::StartLink(IoWorker* worker, int fd, uint64_t id, std::string remote, bool outbound, std::string node_id,
                     uint64_t incarnation, uint64_t dial_id) {
  // The keyring in force now; the link keeps it even if a reload replaces it.
  std::shared_ptr<const auth::PeerKeyring> keys;
  if (options_.peer_keys != nullptr) keys = options_.peer_keys->Get();
  worker->loop()->QueueInLoop([this, worker, fd, id, remote = std::move(remote), outbound, node_id = std::move(node_id),
                               incarnation, dial_id, keys = std::move(keys)]() mutable {
    auto* link = new PeerLink(link_context_, worker, fd, id, remote,
                              outbound ? PeerLink::Direction::kOutbound : PeerLink::Direction::kInbound, node_id,
                              incarnation, dial_id);
    if (options_.peer_tls != nullptr) {
      link->UseTls(outbound ? options_.peer_tls->client() : options_.peer_tls->server(), !outbound, std::move(keys));
    }
    link->Start();
    link->Unref();
  });
}

void Mesh::RefuseLink(const RefPtr<PeerLink>& link, const std::string& reason) {
  link->loop()->QueueInLoop([link, reason] { link->Refuse(reason); });
}

void Mesh::Accept(int fd, const PeerAddress& from) {
  main_loop_->AssertInLoopThread();
  if (phase_ == Phase::kLeaving) {
    ::close(fd);
    return;
  }
  StartLink(NextWorker(), fd, ctx_->next_client_id.fetch_add(1, std::memory_order_relaxed),
            from.ip + ":" + std::to_string(from.port), /*outbound=*/false, "", 0, 0);
}

void Mesh::OnLinkAuthenticated(PeerLink* link) {
  RefPtr<PeerLink> ref(link);
  main_loop_->QueueInLoop([this, ref] { HandleAuthenticated(ref); });
}

void Mesh::OnLinkSynced(PeerLink* link) {
  RefPtr<PeerLink> ref(link);
  main_loop_->QueueInLoop([this, ref] { HandleSynced(ref); });
}

void Mesh::OnLinkClosed(PeerLink* link) {
  RefPtr<PeerLink> ref(link);
  main_loop_->QueueInLoop([this, ref] { HandleClosed(ref); });
}

bool Mesh::Preferred(const PeerLink* candidate, const PeerLink* current) const {
  const std::string& peer = candidate->peer_node_id();
  const std::string& lower = std::min(options_.node_id, peer);
  auto dialled_by_lower = [&](const PeerLink* l) {
    return (l->direction() == PeerLink::Direction::kOutbound ? options_.node_id : peer) == lower;
  };
  const bool a = dialled_by_lower(candidate), b = dialled_by_lower(current);
  if (a != b) return a;
  // Same dialler twice: it gave up on the older link, which is likely half-open.
  return candidate->id() > current->id();
}

void Mesh::HandleAuthenticated(RefPtr<PeerLink> link) {
  main_loop_->AssertInLoopThread();
  if (phase_ == Phase::kLeaving) {
    link->loop()->QueueInLoop([link] { link->Retire(); });
    return;
  }
  const std::string& id = link->peer_node_id();
  Peer& p = peers_[id];
  if (link->dial_id() != 0 && link->dial_id() == p.dial_id) p.dialing = false;
  // The znode owns the node id (SPEC §3). While the process it names is
  // linked, another process with the same id is refused; it never displaces
  // the live node's link.
  const uint64_t owner = p.member ? p.info.incarnation : 0;
  if (owner != 0 && link->peer_incarnation() != owner && p.active && p.node && p.node->incarnation() == owner) {
    LOG(WARNING) << "mesh " << options_.node_id << ": refused link " << link->id() << " from " << link->remote_address()
                 << ": it claims node id " << id << " as incarnation " << link->peer_incarnation()
                 << ", but that id belongs to the live incarnation " << owner << " (its znode); two processes share --node_id";
    RefuseLink(link, "node id " + id + " belongs to a live process (incarnation " + std::to_string(owner) +
                         ") registered in ZooKeeper; another process is using the same --node_id");
    return;
  }
  if (p.node && p.node->incarnation() != link->peer_incarnation()) {
    // The node restarted: whatever link we had goes to its previous process.
    LOG(INFO) << "mesh " << options_.node_id << ": node " << id << " restarted (new incarnation); replacing its link";
    if (p.active) {
      RefPtr<PeerLink> old = p.active;
      old->loop()->QueueInLoop([old] { old->Close(CloseReason::kPeerLeft, false); });
    }
    p.active = RefPtr<PeerLink>();
    p.node = RefPtr<PeerNode>();
    p.synced = false;
  }
  if (!p.node) {
    auto* node = new PeerNode(&ctx_->index, id, link->peer_incarnation());
    p.node = RefPtr<PeerNode>(node);
    node->Unref();
  }
  if (p.active && !Preferred(link.get(), p.active.get())) {
    LOG(INFO) << "mesh " << options_.node_id << ": duplicate link " << link->id() << " to node " << id << " closed; keeping link "
              << p.active->id();
    link->loop()->QueueInLoop([link] { link->Close(CloseReason::kDuplicatePeer, false); });
    return;
  }
  if (p.active) {
    LOG(INFO) << "mesh " << options_.node_id << ": link " << link->id() << " to node " << id << " replaces link " << p.active->id()
              << " (one link per pair: the one dialled by the smaller node id)";
    p.retiring.push_back(p.active);
  }
  link->set_takes_move_frames(p.info.id.empty() || p.info.moves, p.info.id.empty() || p.info.queue_switch);
  p.active = link;
  p.load_sent = -1;
  p.synced = false;
  p.backoff.Reset();
  if (!p.member && p.unregistered_since_ms == 0) p.unregistered_since_ms = MonotonicMs();
  LOG(INFO) << "mesh " << options_.node_id << ": link " << link->id() << " up with node " << id << " ("
            << (link->direction() == PeerLink::Direction::kOutbound ? "dialled" : "accepted") << ", "
            << link->remote_address() << ")";
  RefPtr<PeerNode> node = p.node;
  link->loop()->QueueInLoop([link, node] { link->Activate(node); });
}

void Mesh::HandleSynced(RefPtr<PeerLink> link) {
  main_loop_->AssertInLoopThread();
  auto it = peers_.find(link->peer_node_id());
  if (it == peers_.end() || it->second.active.get() != link.get()) return;
  it->second.synced = true;
  VLOG(1) << "mesh " << options_.node_id << ": node " << it->first << " interest synced (" << it->second.node->interest_count() << " entries)";
  if (phase_ == Phase::kJoining) MaybeFinishJoin(false);
}

void Mesh::HandleClosed(RefPtr<PeerLink> link) {
  main_loop_->AssertInLoopThread();
  auto it = peers_.find(link->node_key());
  if (it == peers_.end()) return;
  Peer& p = it->second;
  if (link->dial_id() != 0 && link->dial_id() == p.dial_id) p.dialing = false;
  auto& r = p.retiring;
  r.erase(std::remove_if(r.begin(), r.end(), [&](const RefPtr<PeerLink>& l) { return l.get() == link.get(); }), r.end());
  const bool was_active = p.active.get() == link.get();
  if (was_active) {
    p.active = RefPtr<PeerLink>();
    p.synced = false;
    moves_.OriginGone(it->first);  // nothing more comes from it: no move waits for its cut
  }
  // Back off after losing the link, and after a dial that never got as far
  // as an authenticated link (TLS or authentication refused, wrong node).
  if (was_active || (link->direction() == PeerLink::Direction::kOutbound && !p.active)) {
    BackOff(p);
  }
  if (!p.member && !p.active && p.retiring.empty() && !p.dialing) peers_.erase(it);
}

void Mesh::MaybeFinishJoin(bool timed_out) {
  main_loop_->AssertInLoopThread();
  if (phase_ != Phase::kJoining) return;
  std::vector<std::string> missing;
  for (auto& [id, p] : peers_) {
    if (p.member && !p.synced) missing.push_back(id);
  }
  if (!missing.empty() && !timed_out) return;
  for (const std::string& id : missing) {
    LOG(WARNING) << "mesh " << options_.node_id << ": joining without node " << id << ": no synced link within " << options_.join_timeout_ms
                 << " ms; it is dialled again in the background, and its subscribers are unreachable from here "
                    "until then";
  }
  phase_ = Phase::kRegistering;
  zk::NodeInfo self;
  self.id = options_.node_id;
  self.client_url = options_.client_url;
  self.peer_url = options_.peer_url;
  self.version = options_.version;
  self.started_ms = ctx_->started_unix_ms;
  self.moves = true;
  self.queue_switch = true;
  self.incarnation = options_.incarnation;
  registry_->Register(self, [this](bool ok, const std::string& error) {
    if (!ok) {
      LOG(ERROR) << "mesh " << options_.node_id << ": cannot register in ZooKeeper: " << error << "; retrying";
      phase_ = Phase::kJoining;
      join_started_ms_ = MonotonicMs() - options_.join_timeout_ms;  // re-register on the next tick
      return;
    }
    if (phase_ != Phase::kRegistering) return;
    phase_ = Phase::kReady;
    LOG(INFO) << "mesh " << options_.node_id << ": node " << options_.node_id << " registered; serving clients";
    if (ready_) ready_();
  });
}

void Mesh::Tick() {
  main_loop_->AssertInLoopThread();
  const int64_t now = MonotonicMs();
  if (const int expired = moves_.Expire(now, options_.move_timeout_ms); expired > 0) {
    ctx_->moves.timed_out.fetch_add(static_cast<uint64_t>(expired), std::memory_order_relaxed);
  }
  FlushPendingMarks(now);
  if (now - last_load_ms_ >= 1000) {
    last_load_ms_ = now;
    ShareLoadAndRebalance();
  }
  if (!have_members_) {
    LOG_EVERY_N(INFO, 200) << "mesh " << options_.node_id << ": still waiting for ZooKeeper membership";
    return;
  }
  for (auto& [id, p] : peers_) {
    if (p.member && !p.active && !p.dialing && now >= p.next_dial_ms && phase_ != Phase::kLeaving) {
      // A settled node lets the smaller id dial first, so that simultaneous
      // dials (and duplicate links) are rare; a joining node dials everyone.
      const bool wait_for_them = phase_ == Phase::kReady && options_.node_id > id &&
                                 now - p.first_seen_ms < options_.dial_grace_ms;
      if (!wait_for_them) Dial(id, p);
    }
    if (options_.testing_relink_ms > 0 && p.active && p.synced && !p.dialing && options_.node_id < id &&
        phase_ == Phase::kReady) {
      if (p.last_relink_ms == 0) p.last_relink_ms = now;
      if (now - p.last_relink_ms >= options_.testing_relink_ms) {
        p.last_relink_ms = now;
        Dial(id, p, /*again=*/true);
      }
    }
    // A link to a process that the node's znode does not name: a restarted
    // node is given the join grace to take its znode over; anything else
    // (a second process with the same id) is closed.
    const bool foreign = p.active && p.node && p.member && p.info.incarnation != 0 &&
                         p.node->incarnation() != p.info.incarnation;
    if (!foreign) {
      p.foreign_since_ms = 0;
    } else if (p.foreign_since_ms == 0) {
      p.foreign_since_ms = now;
    } else if (now - p.foreign_since_ms >= options_.join_grace_ms) {
      LOG(WARNING) << "mesh " << options_.node_id << ": node " << id << "'s znode names incarnation " << p.info.incarnation
                   << ", but its link leads to incarnation " << p.node->incarnation() << " after " << options_.join_grace_ms
                   << " ms; closing the link";
      RefuseLink(p.active, "node id " + id + " belongs to incarnation " + std::to_string(p.info.incarnation) + " (its znode)");
      p.foreign_since_ms = now;  // the close arrives through HandleClosed
    }
    if (p.active && !p.member) {
      if (now < p.leaving_until_ms) {
        p.unregistered_since_ms = 0;  // draining on purpose; the link itself tells when it is over
      } else if (p.leaving_until_ms != 0) {
        LOG(INFO) << "mesh " << options_.node_id << ": node " << id << " is still linked after its announced drain; closing its link";
        RefPtr<PeerLink> l = p.active;
        l->loop()->QueueInLoop([l] { l->Close(CloseReason::kPeerLeft, false); });
        p.leaving_until_ms = 0;
      } else if (zk_suspended_) {
        p.unregistered_since_ms = 0;  // ZooKeeper is down: trust the links, not stale membership
      } else if (p.unregistered_since_ms == 0) {
        p.unregistered_since_ms = now;
      } else if (now - p.unregistered_since_ms >= options_.join_grace_ms) {
        LOG(INFO) << "mesh " << options_.node_id << ": node " << id << " has no znode after " << options_.join_grace_ms
                  << " ms; closing its link";
        RefPtr<PeerLink> l = p.active;
        l->loop()->QueueInLoop([l] { l->Close(CloseReason::kPeerLeft, false); });
        p.unregistered_since_ms = now;  // the close arrives through HandleClosed
      }
    }
  }
  if (phase_ == Phase::kJoining) MaybeFinishJoin(now - join_started_ms_ >= options_.join_timeout_ms);
  for (const RefPtr<PeerLink>& l : interest_.barrier().Overdue(now, options_.interest_barrier_timeout_ms)) {
    LOG(WARNING) << l->Describe() << ": has not applied this node's interest change within "
                 << options_.interest_barrier_timeout_ms
                 << " ms (--interest_barrier_timeout_ms) while a client waits for it; resetting the link (it re-syncs)";
    l->RequestClose(CloseReason::kPeerResync);
  }
  if (now - last_anti_entropy_ms_ >= options_.anti_entropy_interval_ms) {
    last_anti_entropy_ms_ = now;
    for (auto& [id, p] : peers_) {
      if (p.active && p.synced) interest_.SendDigest(p.active.get());
    }
  }
  SnapshotStatus();
}

void Mesh::SnapshotStatus() {
  main_loop_->AssertInLoopThread();
  std::vector<PeerStatus> status;
  bool healthy = phase_ == Phase::kReady && registry_->registered();
  for (auto& [id, p] : peers_) {
    PeerStatus s;
    s.node_id = id;
    s.peer_url = p.info.peer_url;
    s.client_url = p.info.client_url;
    s.member = p.member;
    s.security = options_.peer_tls == nullptr ? "plaintext"
                 : options_.certificate_mode  ? "tls1.3-certificates"
                                              : "tls1.3-psk";
    s.linked = static_cast<bool>(p.active);
    s.synced = p.synced;
    if (p.active) {
      s.outbound = p.active->direction() == PeerLink::Direction::kOutbound;
      s.link_id = p.active->id();
      s.rtt_ms = p.active->rtt_ms();
      s.pending_bytes = p.active->out().pending_bytes();
      s.in_msgs = p.active->in_msgs();
      s.out_msgs = p.active->out().out_msgs();
    }
    if (p.node) s.interest = p.node->interest_count();
    if (p.active) {
      s.interest_acked = interest_.barrier().acked(p.active.get());
      const uint64_t latest = interest_.seq();
      s.interest_lag = latest > s.interest_acked ? latest - s.interest_acked : 0;
    }
    if (p.member && !(s.linked && s.synced)) healthy = false;
    status.push_back(std::move(s));
  }
  std::lock_guard<std::mutex> lock(status_mu_);
  status_ = std::move(status);
  healthy_ = healthy;
}

std::vector<PeerStatus> Mesh::Status() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

bool Mesh::Healthy() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return healthy_;
}

}  // namespace zmesh::server::mesh

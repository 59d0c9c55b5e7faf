// The Mesh's part in planned client moves and connection balance
// (docs/design-lossless-moves.md, issue 12): this node's cuts, the peers'
// client counts, the rebalancer's orders, and connect_urls by load.
#include <glog/logging.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <random>

#include "proto/peer_protocol.h"
#include "server/forward_gate.h"
#include "server/mesh/mesh.h"
#include "server/mesh/peer_link.h"
#include "server/mesh/peer_node.h"
#include "server/mesh/rebalancer.h"
#include "server/server_context.h"

namespace zmesh::server::mesh {

void Mesh::OnMoveCut(PeerLink* link, uint64_t token, const std::vector<proto::peer::Applied>& applied) {
  // A peer sending CUTs faster than the main loop takes them queues no more
  // than this: beyond it a CUT is dropped (its move, if real, times out).
  if (queued_cuts_.fetch_add(1, std::memory_order_relaxed) >= kMaxQueuedCuts) {
    queued_cuts_.fetch_sub(1, std::memory_order_relaxed);
    LOG_EVERY_N(WARNING, 1000) << "mesh " << options_.node_id << ": " << kMaxQueuedCuts
                               << " CUTs wait for the main loop; dropping one from " << link->peer_node_id();
    return;
  }
  PendingMark mark{link->peer_node_id(), token, {}, 0};
  // A mesh is far smaller; what a peer lists beyond it is not waited for.
  const size_t listed = std::min(applied.size(), kMaxCutNodes);
  for (size_t i = 0; i < listed; ++i) mark.applied.emplace_back(std::string(applied[i].node_id), applied[i].seq);
  main_loop_->QueueInLoop([this, mark = std::move(mark)]() mutable {
    queued_cuts_.fetch_sub(1, std::memory_order_relaxed);
    Cut(mark.token, /*initiate=*/false);
    // The link thread had delivered everything the peer forwarded before
    // its CUT when it posted this: say so, after our own CUT on the link.
    // The peer's old end waits for it before MOVED, so a publisher that
    // moves never overtakes its own earlier messages.
    std::erase_if(mark.applied, [&](const auto& node) { return !Behind(node.first, node.second, mark.peer); });
    if (mark.applied.empty() || pending_marks_.size() >= kMaxPendingMarks) {
      SendMark(mark.peer, mark.token);
      return;
    }
    mark.until_ms = MonotonicMs() + options_.move_timeout_ms;
    pending_marks_.push_back(std::move(mark));
  });
}

bool Mesh::Behind(const std::string& id, uint64_t seq, const std::string& sender) const {
  main_loop_->AssertInLoopThread();
  if (id == options_.node_id || id == sender) return false;  // ours; the sender's came before its CUT
  auto it = peers_.find(id);
  // A node we have no link to sends us nothing more to wait for.
  if (it == peers_.end() || !it->second.node || !it->second.active) return false;
  return it->second.node->applied_seq() < seq;
}

bool Mesh::CaughtUp(const PendingMark& mark) const {
  return std::none_of(mark.applied.begin(), mark.applied.end(),
                      [&](const auto& node) { return Behind(node.first, node.second, mark.peer); });
}

void Mesh::SendMark(const std::string& peer, uint64_t token) {
  main_loop_->AssertInLoopThread();
  auto it = peers_.find(peer);
  if (it == peers_.end() || !it->second.node) return;
  std::string frame;
  proto::peer::EncodeMoveFrame(proto::peer::FrameType::kMark, token, &frame);
  it->second.node->SendOnLink(frame);
}

void Mesh::FlushPendingMarks(int64_t now) {
  main_loop_->AssertInLoopThread();
  std::erase_if(pending_marks_, [&](const PendingMark& mark) {
    const bool late = now >= mark.until_ms;
    if (!late && !CaughtUp(mark)) return false;
    if (late) {
      LOG(WARNING) << "mesh " << options_.node_id << ": move " << std::hex << mark.token << std::dec
                   << ": answering " << mark.peer << "'s CUT without having applied the interest it had";
    }
    SendMark(mark.peer, mark.token);
    return true;
  });
}

void Mesh::Cut(uint64_t token, bool initiate) {
  main_loop_->AssertInLoopThread();
  // Every node cuts once per move, and its cut is itself a CUT: a node the
  // old node has no link to yet (a joiner) hears of the move from the
  // others and cuts too, so the new node, which may be linked to it, does
  // not wait for it in vain.
  const int64_t now = MonotonicMs();
  while (!cuts_made_.empty() && (now - cuts_made_.front().second > 2 * options_.move_timeout_ms ||
                                 cuts_made_.size() > kMaxRememberedCuts)) {
    cut_tokens_.erase(cuts_made_.front().first);
    cuts_made_.pop_front();
  }
  if (!cut_tokens_.insert(token).second) return;
  cuts_made_.emplace_back(token, now);
  std::string frame, causal;
  proto::peer::EncodeMoveFrame(proto::peer::FrameType::kCut, token, &frame);
  std::vector<std::string> marked;
  {
    ForwardGateCut cut(&ctx_->forward_gate);
    // What we have applied of every node's interest, read inside the cut:
    // every pick we made before it saw no more than this.
    std::vector<proto::peer::Applied> applied;
    for (auto& [id, p] : peers_) {
      if (p.node && p.node->applied_seq() > 0) applied.push_back({id, p.node->applied_seq()});
    }
    proto::peer::EncodeCut(token, applied, &causal);
    for (auto& [id, p] : peers_) {
      // A node whose znode lacks "moves" would reset the link on an unknown
      // frame; it is not waited for either (its messages are as lossy as
      // before). A joiner not registered yet is marked: it is most likely
      // the node the client is moving to, and the peers' ZooKeeper watches
      // may lag its registration.
      if (!p.node || (!p.info.id.empty() && !p.info.moves)) continue;
      const bool takes_causal = p.active && p.active->takes_queue_switch();
      if (p.node->SendOnLink(takes_causal ? causal : frame)) marked.push_back(id);
    }
    moves_.CutMade(token, marked);  // marks our own publishes, inside the cut
  }
  VLOG(1) << "mesh " << options_.node_id << ": cut for move " << std::hex << token << std::dec << " sent to "
          << marked.size() << " peer(s)" << (initiate ? " (our client moves)" : "");
}

void Mesh::AwaitForwarded(std::function<void()> done) {
  thread_local std::mt19937_64 random(std::random_device{}());
  // An old end with no connection: it filters nothing, and completes when
  // every peer linked at the cut has read it.
  auto filter = std::make_shared<MoveFilter>(MoveFilter::Side::kOutgoing, random() | 1, MonotonicMs());
  MoveTable* table = &moves_;
  const MoveFilter* key = filter.get();
  moves_.MoveOut(std::move(filter), [table, key, done = std::move(done)] {
    done();
    table->Forget(key);
  });
}

void Mesh::OnPeerLoad(PeerLink* link, uint64_t clients) {
  RefPtr<PeerLink> ref(link);
  main_loop_->QueueInLoop([this, ref, clients] {
    auto it = peers_.find(ref->peer_node_id());
    if (it == peers_.end()) return;
    it->second.load = static_cast<int64_t>(std::min<uint64_t>(clients, 1ull << 40));
    it->second.load_asked = 0;  // whoever of them arrived is in the count
  });
}

void Mesh::ShareLoadAndRebalance() {
  main_loop_->AssertInLoopThread();
  const int64_t own = std::max<int64_t>(ctx_->client_count.load(std::memory_order_relaxed), 0);
  const int64_t now = MonotonicMs();
  std::string frame;
  std::vector<NodeLoad> loads;
  for (auto& [id, p] : peers_) {
    if (!p.info.moves || !p.active) continue;
    if (p.load_sent != own || now - p.load_sent_ms >= kLoadRefreshMs) {
      if (frame.empty()) proto::peer::EncodeLoad(static_cast<uint64_t>(own), &frame);
      p.active->SendFrame(frame);
      p.load_sent = own;
      p.load_sent_ms = now;
    }
    if (p.member && p.synced && p.load >= 0 && p.leaving_until_ms == 0) {
      loads.push_back({id, p.info.client_url, p.load + (now < p.load_asked_until_ms ? p.load_asked : 0)});
    }
  }
  if (!options_.rebalance || phase_ != Phase::kReady) {
    ctx_->rebalance.Set(0, {});
    return;
  }
  const RebalancePlan plan = PlanRebalance(options_.node_id, own, loads, options_.rebalance_moves_per_s);
  ctx_->rebalance.Set(plan.moves, plan.target_url);
  if (plan.moves > 0) {
    // Count them as arrived (kAskedMovesMs), so the next round does not
    // send the same room twice.
    Peer& target = peers_[plan.target_id];
    if (now >= target.load_asked_until_ms) target.load_asked = 0;
    target.load_asked += plan.moves;
    target.load_asked_until_ms = now + kAskedMovesMs;
    LOG(INFO) << "mesh " << options_.node_id << ": " << own << " clients here, above the mesh average; asking "
              << plan.moves << " to move to node " << plan.target_id;
  }
}

void Mesh::UpdateConnectUrls() {
  main_loop_->AssertInLoopThread();
  // Least loaded first (as last heard; unknown last), then by URL: a client
  // that takes the list in order (nats.go's NoRandomize, zmesh clients
  // choosing among equals) lands where there is room. Standard clients are
  // never moved for balance; this is all they get. Re-sent on membership
  // changes only, not on every load change.
  const int64_t own = ctx_->client_count.load(std::memory_order_relaxed);
  std::vector<std::pair<int64_t, std::string>> ranked;
  for (const zk::NodeInfo& m : members_) {
    std::string url = m.client_url;
    if (const size_t scheme = url.find("://"); scheme != std::string::npos) url = url.substr(scheme + 3);
    int64_t load = std::numeric_limits<int64_t>::max();
    if (m.id == options_.node_id) {
      load = own;
    } else if (auto it = peers_.find(m.id); it != peers_.end() && it->second.load >= 0) {
      load = it->second.load;
    }
    ranked.emplace_back(load, std::move(url));
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> urls;
  for (auto& [load, url] : ranked) urls.push_back(std::move(url));
  if (urls == ctx_->info.connect_urls()) return;
  ctx_->info.set_connect_urls(std::move(urls));
  if (ctx_->broadcast_info) ctx_->broadcast_info();
}

}  // namespace zmesh::server::mesh

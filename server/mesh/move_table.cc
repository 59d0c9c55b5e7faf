#include "server/mesh/move_table.h"

#include <glog/logging.h>

#include <utility>
#include <vector>

#include "server/event_loop.h"

namespace zmesh::server::mesh {

void MoveTable::MoveOut(std::shared_ptr<MoveFilter> filter, std::function<void()> cuts_done) {
  const uint64_t token = filter->token();
  {
    std::lock_guard<std::mutex> lock(mu_);
    moves_.emplace(token, Entry{std::move(filter), std::move(cuts_done)});
  }
  cut_(token);
}

void MoveTable::MoveIn(std::shared_ptr<MoveFilter> filter) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t token = filter->token();
  moves_.emplace(token, Entry{std::move(filter), nullptr});
}

void MoveTable::Forget(const MoveFilter* filter) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [begin, end] = moves_.equal_range(filter->token());
  for (auto it = begin; it != end; ++it) {
    if (it->second.filter.get() == filter) {
      moves_.erase(it);
      return;
    }
  }
}

void MoveTable::Mark(uint64_t token, std::string_view origin) {
  Apply(&token, [origin](MoveFilter& f) { return f.Mark(origin); });
}

void MoveTable::Acknowledged(uint64_t token, std::string_view origin) {
  Apply(&token, [origin](MoveFilter& f) { return f.Acknowledge(origin); });
}

void MoveTable::CutMade(uint64_t token, const std::vector<std::string>& peers) {
  Apply(&token, [&peers](MoveFilter& f) {
    const bool by_self = f.Mark("");
    return f.Expect(peers) || by_self;
  });
  SettleSwitched(&token);
}

void MoveTable::OriginGone(std::string_view origin) {
  Apply(nullptr, [origin](MoveFilter& f) { return f.OriginGone(origin); });
  SettleSwitched(nullptr);
}

void MoveTable::Settle(Latent& latent, const QueueKey& key) {
  const auto& [token, subject, queue] = key;
  if (latent.node) {
    // Every message we forward to the node after this frame was picked with
    // its member counted; each publisher's earlier ones were not (its later
    // picks cannot go to the old end's member: its release is applied).
    latent.node->ReleaseLatent(subject, queue);
    latent.node->SendQueueSwitch(token, subject, queue);
  }
  if (latent.local && !QueueSwitched(token, "", subject, queue)) latent.local->SettleIfLatent();
}

MoveFilter* MoveTable::FilterLocked(uint64_t token, MoveFilter::Side side) const {
  auto [begin, end] = moves_.equal_range(token);
  for (auto it = begin; it != end; ++it) {
    if (it->second.filter->side() == side) return it->second.filter.get();
  }
  return nullptr;
}

bool MoveTable::QueueSwitched(uint64_t token, std::string_view origin, std::string_view subject,
                              std::string_view queue) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Only for a member of ours that moves: what a peer sends grows nothing.
    auto [begin, end] = switching_.equal_range(QueueKey(token, std::string(subject), std::string(queue)));
    if (begin == end) return false;
    bool latent = false, released = false;
    for (auto it = begin; it != end; ++it) {
      latent |= it->second.member->move_state() == Subscription::MoveState::kLatent;
      released |= it->second.member->move_state() == Subscription::MoveState::kReleased;
    }
    if (MoveFilter* in = latent ? FilterLocked(token, MoveFilter::Side::kIncoming) : nullptr) {
      in->QueueSwitch(origin, subject, queue);
    }
    if (MoveFilter* out = released ? FilterLocked(token, MoveFilter::Side::kOutgoing) : nullptr) {
      out->QueueSwitch(origin, subject, queue);
    }
  }
  SettleSwitched(&token);
  return true;
}

void MoveTable::SettleSwitched(const uint64_t* token) {
  std::vector<RefPtr<Subscription>> settled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = token ? switching_.lower_bound(QueueKey(*token, std::string(), std::string())) : switching_.begin();
    while (it != switching_.end() && (!token || std::get<0>(it->first) == *token)) {
      const auto& [move, subject, queue] = it->first;
      Subscription* member = it->second.member.get();
      const Subscription::MoveState state = member->move_state();
      if (state == Subscription::MoveState::kReleased && !member->closed()) {
        ++it;  // the old end's: until its connection is gone
        continue;
      }
      const MoveFilter* filter = FilterLocked(move, MoveFilter::Side::kIncoming);
      // No filter: the connection is gone or moves on; nothing to wait for.
      if (state == Subscription::MoveState::kLatent && !member->closed() && filter != nullptr &&
          !filter->QueueSwitchComplete(subject, queue)) {
        ++it;
        continue;
      }
      if (state == Subscription::MoveState::kLatent) {
        VLOG(1) << "move " << std::hex << move << std::dec << ": queue member " << subject << " " << queue
                << (filter ? " settled: every node switched to it" : " settled: its connection has no move now");
      }
      settled.push_back(std::move(it->second.member));
      it = switching_.erase(it);
    }
  }
  for (auto& member : settled) member->SettleIfLatent();
}

void MoveTable::QueueLatent(uint64_t token, RefPtr<PeerNode> node, std::string_view subject, std::string_view queue,
                            int64_t now_ms) {
  QueueKey key(token, std::string(subject), std::string(queue));
  Latent latent{std::move(node), RefPtr<Subscription>(), now_ms};
  if (Hold(key, latent)) return;
  Settle(latent, key);
}

bool MoveTable::Hold(QueueKey& key, Latent& latent) {
  std::lock_guard<std::mutex> lock(mu_);
  auto early = released_early_.find(key);
  if (early != released_early_.end()) {
    released_early_.erase(early);
    return false;
  }
  // Bounded whatever peers send: beyond it a member counts at once (its
  // order across the move is then as without latent members).
  if (latent_.size() >= kMaxQueueEntries) return false;
  latent_.emplace(std::move(key), std::move(latent));
  return true;
}

void MoveTable::QueueReleased(uint64_t token, std::string_view subject, std::string_view queue, int64_t now_ms) {
  QueueKey key(token, std::string(subject), std::string(queue));
  Latent latent;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = latent_.find(key);
    if (it == latent_.end()) {
      if (released_early_.size() < kMaxQueueEntries) released_early_.emplace(std::move(key), now_ms);
      return;
    }
    latent = std::move(it->second);
    latent_.erase(it);
  }
  Settle(latent, key);
}

void MoveTable::TrackSwitches(const QueueKey& key, Subscription* member) {
  std::lock_guard<std::mutex> lock(mu_);
  // Bounded like the other tables: beyond it a member's turn is this
  // node's alone (settled, or released), as without switches.
  if (switching_.size() < kMaxQueueEntries) {
    switching_.emplace(key, SwitchingMember{RefPtr<Subscription>(member), MonotonicMs()});
  }
}

void MoveTable::QueueMemberLatent(uint64_t token, Subscription* member) {
  member->set_move_state(Subscription::MoveState::kLatent);
  QueueKey key(token, member->subject(), member->queue());
  TrackSwitches(key, member);
  Latent latent{RefPtr<PeerNode>(), RefPtr<Subscription>(member), MonotonicMs()};
  if (Hold(key, latent)) return;
  Settle(latent, key);
}

void MoveTable::QueueMemberReleased(uint64_t token, Subscription* member) {
  member->set_move_state(Subscription::MoveState::kReleased);
  TrackSwitches(QueueKey(token, member->subject(), member->queue()), member);
  QueueReleased(token, member->subject(), member->queue(), MonotonicMs());
}

size_t MoveTable::latent_queue_members() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latent_.size();
}

size_t MoveTable::switching_queue_members() const {
  std::lock_guard<std::mutex> lock(mu_);
  return switching_.size();
}

size_t MoveTable::early_queue_releases() const {
  std::lock_guard<std::mutex> lock(mu_);
  return released_early_.size();
}

int MoveTable::Expire(int64_t now_ms, int64_t timeout_ms) {
  // A latent member whose old end never released it here (the old node
  // died, or this node holds none of its members) takes part from now on.
  std::vector<std::pair<Latent, QueueKey>> stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = latent_.begin(); it != latent_.end();) {
      if (now_ms - it->second.since_ms < timeout_ms) {
        ++it;
        continue;
      }
      stale.emplace_back(std::move(it->second), it->first);
      it = latent_.erase(it);
    }
    for (auto it = released_early_.begin(); it != released_early_.end();) {
      it = now_ms - it->second < timeout_ms ? std::next(it) : released_early_.erase(it);
    }
  }
  for (auto& [latent, key] : stale) Settle(latent, key);
  // A node that never switched (its release or our member's latent change
  // never reached it): a new end's member takes its turn for everyone from
  // now on (an old end's has finished by now, or its move was given up).
  std::vector<RefPtr<Subscription>> waited;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = switching_.begin(); it != switching_.end();) {
      if (now_ms - it->second.since_ms < timeout_ms) {
        ++it;
        continue;
      }
      waited.push_back(std::move(it->second.member));
      it = switching_.erase(it);
    }
  }
  for (auto& member : waited) member->SettleIfLatent();
  int expired = 0;
  Apply(nullptr, [now_ms, timeout_ms, &expired](MoveFilter& f) {
    if (now_ms - f.started_ms() < timeout_ms || f.complete()) return false;
    const bool reported = f.Finish();
    if (reported) {
      LOG(WARNING) << "move " << std::hex << f.token() << std::dec << ": not every node cut within " << timeout_ms
                   << " ms; " << (f.side() == MoveFilter::Side::kIncoming ? "delivering everything" : "finishing");
    }
    expired += reported ? 1 : 0;
    return reported;
  });
  return expired;
}

size_t MoveTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return moves_.size();
}

void MoveTable::Apply(const uint64_t* token, const std::function<bool(MoveFilter&)>& step) {
  std::vector<std::function<void()>> completed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto begin = token ? moves_.lower_bound(*token) : moves_.begin();
    auto end = token ? moves_.upper_bound(*token) : moves_.end();
    for (auto it = begin; it != end; ++it) {
      if (step(*it->second.filter) && it->second.done) completed.push_back(it->second.done);
    }
  }
  for (auto& done : completed) done();
}

}  // namespace zmesh::server::mesh

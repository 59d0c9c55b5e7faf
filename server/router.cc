#include "server/router.h"

#include <absl/container/inlined_vector.h>

#include <algorithm>
#include <random>
#include <string>

#include "proto/msg_framing.h"
#include "proto/peer_protocol.h"
#include "server/connection.h"
#include "server/io_worker.h"
#include "server/subject_index.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

// xoshiro128+ per thread: group member choice needs speed, not secrecy.
class FastRandom {
 public:
  FastRandom() {
    std::random_device rd;
    for (auto& s : s_) s = (static_cast<uint64_t>(rd()) << 32) | rd();
  }
  uint64_t Next() {
    const uint64_t s0 = s_[0];
    uint64_t s1 = s_[1];
    const uint64_t result = s0 + s1;
    s1 ^= s0;
    s_[0] = ((s0 << 55) | (s0 >> 9)) ^ s1 ^ (s1 << 14);
    s_[1] = (s1 << 36) | (s1 >> 28);
    return result;
  }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias is negligible for
  // member counts far below 2^32).
  uint64_t Below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64); }

 private:
  uint64_t s_[2];
};
thread_local FastRandom t_random;

// One local subscriber: the endpoint applies its own limits and framing.
bool Deliver(IoWorker* worker, Subscription* sub, proto::MsgFrame& frame, const Message& msg,
             DeliveryEndpoint* source) {
  if (sub->closed()) return false;
  return sub->owner()->delivery()->Deliver(worker, sub, frame, msg, source);
}

// The peers one message goes to: each once, with the queue groups it was
// chosen for (SPEC §3: forwarded to each peer with matching interest, once).
class PeerTargets {
 public:
  void AddPlain(Subscription* sub) { Find(sub); }
  void AddQueue(Subscription* sub) { Find(sub)->queues.push_back(sub->queue()); }

  bool Forward(const Message& msg, DeliveryEndpoint* source) {
    bool any = false;
    for (Target& t : targets_) {
      RefPtr<Connection> busy_link;
      any |= t.node->Forward(msg, t.queues.data(), t.queues.size(), &busy_link);
      if (busy_link) source->PushBackOn(busy_link.get());
    }
    return any;
  }

 private:
  struct Target {
    PeerForwarder* node;
    std::vector<std::string_view> queues;  // allocates only when a group is forwarded
  };
  Target* Find(Subscription* sub) {
    PeerForwarder* node = sub->owner()->forwarder();
    for (Target& t : targets_) {
      if (t.node == node) return &t;
    }
    targets_.push_back(Target{node, {}});
    return &targets_.back();
  }
  absl::InlinedVector<Target, 4> targets_;
};

// Whether `sub` takes a queue message from `origin` in its turn: settled,
// or a moving client's member that `origin`'s pick counted.
bool InTurn(const Subscription* sub, std::string_view origin) {
  return sub->settled() || (!sub->remote() && sub->owner()->delivery()->TakesQueueTurn(*sub, origin));
}

// Offers the message from `origin` to members[start], members[start + 1],
// ... (wrapping) until `take(sub)` accepts it. A moving client's member that
// is not in its turn is offered only after every other one declined, so
// each node's picks go to a moving client's old member before its new one
// and never back. True if someone took it.
template <typename Take>
bool TryInTurn(Subscription* const* members, size_t n, size_t start, std::string_view origin, Take take) {
  absl::InlinedVector<Subscription*, 2> deferred;
  for (size_t k = 0; k < n; ++k) {
    Subscription* sub = members[(start + k) % n];
    if (!InTurn(sub, origin)) {
      deferred.push_back(sub);
    } else if (take(sub)) {
      return true;
    }
  }
  for (Subscription* sub : deferred) {
    if (take(sub)) return true;
  }
  return false;
}

// Picks a member of `group` by weight (uniform over all members in the mesh:
// a remote entry stands for its node's members) and hands the message over.
// If the pick cannot take it (gone, our own with echo off, a slow consumer),
// the next member in order does, as nats-server does. Returns true if
// someone got it. `eligible(sub)` filters; `take(sub)` delivers.
template <typename Eligible, typename Take>
bool PickGroupMember(const MatchResult::Group& group, std::string_view origin, Eligible eligible, Take take) {
  if (group.total_weight == 0) return false;
  const uint64_t x = t_random.Below(group.total_weight);
  const size_t start = static_cast<size_t>(
      std::upper_bound(group.cumulative_weight.begin(), group.cumulative_weight.end(), x) -
      group.cumulative_weight.begin());
  return TryInTurn(group.members.data(), group.members.size(), start, origin,
                   [&](Subscription* sub) { return eligible(sub) && take(sub); });
}

// May `sub` take a message from `source`? Its own subscriptions only with echo.
bool Eligible(const Subscription* sub, const DeliveryEndpoint* source, bool echo) {
  if (sub->closed()) return false;
  return echo || sub->remote() || sub->owner()->delivery() != source;
}

// A message a peer chose this node for in `group`: only our own members take
// it. If the member the sender counted on has gone, another local one does;
// with none left it is dropped here rather than sent to a third node. The
// pick is uniform over the local members that are not closed.
void DeliverToLocalMember(IoWorker* worker, const MatchResult::Group& group, proto::MsgFrame& frame,
                          const Message& msg) {
  const size_t n = group.local_count;  // members[0, n) are local
  if (n == 0) return;
  size_t start = t_random.Below(n);
  if (group.members[start]->closed()) {
    // Rare (a member left since the match): pick again among the open ones
    // only, so the choice stays uniform over them.
    size_t open = 0;
    for (size_t i = 0; i < n; ++i) open += !group.members[i]->closed();
    if (open == 0) return;
    size_t k = t_random.Below(open);  // the k-th open member
    for (start = 0;; ++start) {
      if (group.members[start]->closed()) continue;
      if (k == 0) break;
      --k;
    }
  }
  TryInTurn(group.members.data(), n, start, msg.origin,
            [&](Subscription* sub) { return !sub->closed() && Deliver(worker, sub, frame, msg, nullptr); });
}

}  // namespace

bool Router::PublishFromClient(IoWorker* worker, DeliveryEndpoint* source, bool echo, const Message& msg) const {
  const MatchResult* result = worker->match_cache().Lookup(msg.subject);
  proto::MsgFrame frame(msg.subject, msg.reply, msg.payload, msg.header_size);
  PeerTargets peers;
  bool delivered = false;
  // A subject or reply that peers would refuse (a non-pedantic client may
  // publish one) stays on this node instead of resetting links.
  const bool to_peers = proto::peer::IsForwardable(msg.subject, msg.reply);

  for (Subscription* sub : result->plain) {
    if (!Eligible(sub, source, echo) || (sub->remote() && !to_peers)) continue;
    if (sub->remote()) {
      peers.AddPlain(sub);
    } else {
      delivered |= Deliver(worker, sub, frame, msg, source);
    }
  }
  for (const MatchResult::Group& group : result->groups) {
    delivered |= PickGroupMember(
        group, msg.origin,
        [source, echo, to_peers](Subscription* sub) {
          return Eligible(sub, source, echo) && (to_peers || !sub->remote());
        },
        [&](Subscription* sub) {
          if (!sub->remote()) return Deliver(worker, sub, frame, msg, source);
          peers.AddQueue(sub);
          return true;
        });
  }
  delivered |= peers.Forward(msg, source);
  return delivered;
}

void Router::PublishFromPeer(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                             bool to_plain) const {
  const MatchResult* result = worker->match_cache().Lookup(msg.subject);
  proto::MsgFrame frame(msg.subject, msg.reply, msg.payload, msg.header_size);
  for (Subscription* sub : result->plain) {
    if (to_plain && !sub->remote() && !sub->closed()) Deliver(worker, sub, frame, msg, nullptr);
  }
  if (queues.empty() || result->groups.empty()) return;
  // Each listed group by hash, and each at most once however often the frame
  // names it (marks per group position, cleared before delivering).
  thread_local std::vector<bool> t_listed;
  if (t_listed.size() < result->groups.size()) t_listed.resize(result->groups.size());
  absl::InlinedVector<const MatchResult::Group*, 8> chosen;
  for (std::string_view name : queues) {
    const MatchResult::Group* group = result->FindGroup(name);
    if (group == nullptr) continue;
    const size_t at = static_cast<size_t>(group - result->groups.data());
    if (t_listed[at]) continue;
    t_listed[at] = true;
    chosen.push_back(group);
  }
  for (const MatchResult::Group* group : chosen) t_listed[static_cast<size_t>(group - result->groups.data())] = false;
  for (const MatchResult::Group* group : chosen) DeliverToLocalMember(worker, *group, frame, msg);
}

}  // namespace zmesh::server

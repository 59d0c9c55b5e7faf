#pragma once

// The node's planned moves in progress (docs/design-lossless-moves.md): the
// filters of its client connections that are the old or new end of a move,
// by token, and the marks that complete them.
//
// A cut is the Mesh's job (it knows the links); the table asks for one
// through `cut` (which posts to the main thread) and hears back through
// Expect. Marks come from the links, on their threads, in stream order.
//
// It also pairs the queue members of moving clients, which are never
// filtered (each message goes to one member only): the new end's member,
// announced latent (QUEUE_MOVE LATENT), stays out of this node's picks
// until the old end's member is gone here (QUEUE_MOVE RELEASE). So at
// every node all picks of the old member come before all picks of the new
// one, and the client, handing over the old stream first, keeps each
// publisher's order. A node picks a node, not a member, so it tells both
// ends where in its stream it stopped counting the old member and began
// counting the new one (QUEUE_SWITCH); each end gives its member a node's
// messages in its turn only on the counted side of that point, and the new
// end settles its member once every node has switched.
//
// Threading: any thread; one mutex. Completion callbacks run outside it,
// on the thread whose call completed the move.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "server/mesh/peer_node.h"
#include "server/move_coordinator.h"

namespace zmesh::server::mesh {

class MoveTable final : public MoveCoordinator {
 public:
  // `cut(token)`: make this node's cut for `token` (any thread; the mesh
  // posts it to its loop).
  explicit MoveTable(std::function<void(uint64_t token)> cut) : cut_(std::move(cut)) {}

  // MoveCoordinator.
  void MoveOut(std::shared_ptr<MoveFilter> filter, std::function<void()> cuts_done) override;
  void MoveIn(std::shared_ptr<MoveFilter> filter) override;
  void Forget(const MoveFilter* filter) override;

  // A peer's CUT for `token` (its link's thread): `origin` has cut.
  void Mark(uint64_t token, std::string_view origin);
  // A peer's MARK for `token`: it has read this node's CUT, so it has
  // delivered everything this node forwarded before it.
  void Acknowledged(uint64_t token, std::string_view origin);
  // This node cut for `token` (main thread, right after the cut): marks
  // this node and names the peers the cut went to.
  void CutMade(uint64_t token, const std::vector<std::string>& peers);
  // A peer's link is gone: nothing more comes from it, and nothing is
  // waited for from it, in every move.
  void OriginGone(std::string_view origin);
  // `node` has applied a latent queue member of (subject, queue) for
  // `token` (its link's thread): the old end's release, or the move's
  // timeout, makes it take part in picks.
  void QueueLatent(uint64_t token, RefPtr<PeerNode> node, std::string_view subject, std::string_view queue,
                   int64_t now_ms);
  // The old end's member of (subject, queue) for `token` is gone here.
  void QueueReleased(uint64_t token, std::string_view subject, std::string_view queue, int64_t now_ms);
  // `origin`'s picks count our new end's latent member of (subject,
  // queue) for `token`, and no longer our old end's released one, from
  // this point of its stream on (its QUEUE_SWITCH, on its link's thread;
  // "" is this node). False if no such member of ours is moving here.
  bool QueueSwitched(uint64_t token, std::string_view origin, std::string_view subject, std::string_view queue);
  // MoveCoordinator, for this node's own members.
  void QueueMemberLatent(uint64_t token, Subscription* member) override;
  void QueueMemberReleased(uint64_t token, Subscription* member) override;
  // Moves older than `timeout_ms` stop waiting (the mesh's tick), and so
  // do latent queue members; returns how many moves did now.
  int Expire(int64_t now_ms, int64_t timeout_ms);

  size_t size() const;
  size_t latent_queue_members() const;
  // Our moving clients' members whose turn still depends on some node's
  // switch.
  size_t switching_queue_members() const;
  size_t early_queue_releases() const;

 private:
  struct Entry {
    std::shared_ptr<MoveFilter> filter;
    std::function<void()> done;  // outgoing: the old connection finishes
  };
  // Runs `step` on every entry (all, or those of `token`) and then, outside
  // the lock, the callbacks of those it completed.
  void Apply(const uint64_t* token, const std::function<bool(MoveFilter&)>& step);

  const std::function<void(uint64_t)> cut_;
  mutable std::mutex mu_;
  std::multimap<uint64_t, Entry> moves_;
  // Queue members by (token, subject, queue): latent ones, with the node
  // that holds them, and releases that came first (their latent member is
  // on its way on another link).
  using QueueKey = std::tuple<uint64_t, std::string, std::string>;
  struct Latent {
    RefPtr<PeerNode> node;  // a peer's member, or
    RefPtr<Subscription> local;  // one of our clients'
    int64_t since_ms = 0;
  };
  // The latent member counts here from now on: a peer's in our picks (and
  // we tell the peer where, QUEUE_SWITCH), ours in our own.
  void Settle(Latent& latent, const QueueKey& key);
  // Settles our new ends' members (of `token`, or all) that every node has
  // switched to, or whose connection has no move any more.
  void SettleSwitched(const uint64_t* token);
  // Our `side` end's filter for `token`; under mu_.
  MoveFilter* FilterLocked(uint64_t token, MoveFilter::Side side) const;
  // Keeps `latent` until its release; false when it must settle now (its
  // release came first, or the table is full).
  bool Hold(QueueKey& key, Latent& latent);
  static constexpr size_t kMaxQueueEntries = 65536;
  std::multimap<QueueKey, Latent> latent_;
  std::multimap<QueueKey, int64_t> released_early_;
  // Our moving clients' queue members whose turn depends on each node's
  // switch (MoveFilter::QueueSwitch): a new end's latent member until every
  // node has switched to it, an old end's released member until its
  // connection is gone. Bounded; an entry leaves after the move's timeout.
  struct SwitchingMember {
    RefPtr<Subscription> member;
    int64_t since_ms = 0;
  };
  void TrackSwitches(const QueueKey& key, Subscription* member);
  std::multimap<QueueKey, SwitchingMember> switching_;
};

}  // namespace zmesh::server::mesh

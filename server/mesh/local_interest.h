#pragma once

// This node's own client interest, aggregated for the mesh (SPEC §3): per
// subject the number of plain subscriptions, per (subject, queue group) the
// number of members. Peers hear of a plain subject when it goes 0 -> 1 and
// 1 -> 0, and of every change of a group's member count, as INTEREST frames
// with absolute counts. Interest learned from peers never enters this table,
// so it is never re-announced.
//
// Every attached link receives a full snapshot (SYNC_BEGIN, INTEREST...,
// SYNC_END with the digest) and, after it, every change, in the order the
// changes were made: the table, the snapshot and the broadcast share one
// lock, so a change is either in a link's snapshot or sent after it.
//
// Each announced change gets the next sequence number; a snapshot carries
// the latest one. Peers acknowledge what they applied, and the barrier
// (interest_barrier.h) tells a client's PING when every peer has.
//
// Threading: all methods are safe from any thread (workers call the observer
// methods as clients subscribe; the mesh attaches links).

#include <absl/container/flat_hash_map.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/interest_observer.h"
#include "server/mesh/interest_barrier.h"
#include "server/mesh/interest_digest.h"

namespace zmesh::server::mesh {

class PeerLink;

class LocalInterest : public InterestObserver {
 public:
  LocalInterest() = default;
  ~LocalInterest() override;

  uint64_t OnLocalSubscribe(const Subscription& sub) override;
  uint64_t OnLocalUnsubscribe(const Subscription& sub) override;
  bool AwaitPeers(uint64_t seq, std::function<void()> done) override;

  // Sends a full snapshot on `link` and every later change; stops sending
  // changes to `replaced` (the link it supersedes), if any.
  void Attach(PeerLink* link, PeerLink* replaced);
  void Detach(PeerLink* link);
  // A fresh snapshot on an attached link (the peer asked with RESYNC).
  void SendSnapshot(PeerLink* link);
  // The digest of what was announced so far, as a DIGEST frame on `link`.
  void SendDigest(PeerLink* link);

  InterestDigest digest() const;
  size_t size() const;
  // The sequence number of the latest change (what a full snapshot covers).
  uint64_t seq() const;
  InterestBarrier& barrier() { return barrier_; }

 private:
  using Key = std::pair<std::string, std::string>;  // subject, queue

  uint64_t Change(const Subscription& sub, int delta);
  void SnapshotLocked(PeerLink* link);
  void SendLocked(PeerLink* link, const std::string& frame);

  mutable std::mutex mu_;
  absl::flat_hash_map<Key, uint32_t> counts_;  // local subscriptions per key
  InterestDigest digest_;                      // over the counts as announced
  std::vector<PeerLink*> links_;               // attached; each holds a reference
  uint64_t seq_ = 0;                           // of the latest change announced
  InterestBarrier barrier_;
};

// What peers are told for `count` local subscriptions: plain interest is
// only present or absent.
inline uint32_t AnnouncedCount(bool queue, uint32_t count) { return queue ? count : (count > 0 ? 1 : 0); }

}  // namespace zmesh::server::mesh

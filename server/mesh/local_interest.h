#pragma once

// This node's own client interest, aggregated for the mesh (SPEC §3): per
// subject the number of plain subscriptions, per (subject, queue group) the
// number of members. Peers hear of a plain subject when it goes 0 -> 1 and
// 1 -> 0, and of every change of a group's member count, as INTEREST frames
// with absolute counts. Interest learned from peers never enters this table,
// so it is never re-announced.
//
// Every attached link receives a full snapshot (SYNC_BEGIN, INTEREST...,
// SYNC_END with the digest) and every change, in the order the changes were
// made. A snapshot streams: the link asks for the next batch when its socket
// has taken the previous one (ContinueSnapshot), so a snapshot of any size
// never counts against the link's pending limit and messages flow between
// its batches. Changes are sent on every attached link at once, also during
// its snapshot. That is safe because INTEREST counts are absolute and the
// table is ordered: each batch sends the current count of the next keys
// after the last one sent, under the same lock as the changes. So the last
// frame a peer gets for a key is always its current count, and every key
// that exists at SYNC_END was either reached by the snapshot or changed
// (and sent) after SYNC_BEGIN. The digest in SYNC_END then describes
// exactly what the peer holds.
//
// Each announced change gets the next sequence number; a snapshot carries
// the latest one. Peers acknowledge what they applied, and the barrier
// (interest_barrier.h) tells a client's PING when every peer has.
//
// Threading: all methods are safe from any thread (workers call the observer
// methods as clients subscribe; the mesh attaches links). Lock order:
// server/lock_order.h.

#include <absl/container/btree_map.h>

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

  uint64_t OnLocalSubscribe(const Subscription& sub, uint64_t move_token = 0) override;
  uint64_t OnLocalUnsubscribe(const Subscription& sub, uint64_t move_token = 0) override;
  bool AwaitPeers(uint64_t seq, std::function<void()> done) override;

  // Starts a snapshot on `link` (SYNC_BEGIN) and sends it every later
  // change; stops sending changes to `replaced` (the link it supersedes), if
  // any. The link then calls ContinueSnapshot until it returns true.
  void Attach(PeerLink* link, PeerLink* replaced);
  void Detach(PeerLink* link);
  // Starts a fresh snapshot on an attached link (the peer asked with RESYNC),
  // abandoning one in progress.
  void BeginSnapshot(PeerLink* link);
  // Sends about `max_bytes` more of `link`'s snapshot; true once SYNC_END
  // went out (or there is no snapshot in progress on it).
  bool ContinueSnapshot(PeerLink* link, size_t max_bytes);
  // The digest of what was announced so far, as a DIGEST frame on `link`.
  void SendDigest(PeerLink* link);

  InterestDigest digest() const;
  size_t size() const;
  // The sequence number of the latest change (what a full snapshot covers).
  uint64_t seq() const;
  InterestBarrier& barrier() { return barrier_; }

 private:
  using Key = std::pair<std::string, std::string>;  // subject, queue

  struct Attached {
    PeerLink* link = nullptr;  // holds a reference
    bool streaming = false;  // a snapshot is in progress
    bool sent_any = false;   // it has sent keys up to `last`
    Key last;
  };

  uint64_t Change(const Subscription& sub, int delta, uint64_t move_token);
  std::vector<Attached>::iterator FindLocked(const PeerLink* link);
  // Stops sending to the link and drops its reference.
  void DetachLocked(std::vector<Attached>::iterator it);
  void BeginSnapshotLocked(Attached& a);

  mutable std::mutex mu_;
  // Ordered, so that a snapshot can resume after the last key it sent
  // whatever was inserted or erased meanwhile.
  absl::btree_map<Key, uint32_t> counts_;  // local subscriptions per key
  InterestDigest digest_;                  // over the counts as announced
  std::vector<Attached> links_;
  uint64_t seq_ = 0;                           // of the latest change announced
  InterestBarrier barrier_;
};

// What peers are told for `count` local subscriptions: plain interest is
// only present or absent.
inline uint32_t AnnouncedCount(bool queue, uint32_t count) { return queue ? count : (count > 0 ? 1 : 0); }

}  // namespace zmesh::server::mesh

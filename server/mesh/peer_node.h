#pragma once

// A remote mesh node as seen from here: the interest it announced (kept in
// the subject index as remote subscriptions owned by this node, a queue
// entry weighted by its member count) and the one link messages to it take.
// Interest belongs to the node, not to a link, so replacing a duplicate link
// does not make the node deaf; losing the node's only link drops it.
//
// Threading: any thread may Forward (publishers); interest changes come from
// the worker of the node's active link; links are swapped by the worker of
// the link that becomes active and dropped by the worker of a closing one.
//
// Two locks, so that a burst of interest updates (each edits the subject
// index) never stalls a publisher forwarding to this node:
// * link_mu_ guards only the link pointer; Forward takes nothing else.
// * interest_mu_ guards the interest table, its digest and epoch.
// The link pointer changes (SwapLink, DropLinkIf) only while both are held,
// so whoever holds either one reads a stable link_. The interest methods
// therefore check "from the active link" under interest_mu_ alone, and the
// link stays the same until they are done: interest is applied only from the
// active link, and DropLinkIf clears the interest with no frame of the
// dropped link applied after it.
// Where both sit in the lock order: server/lock_order.h.

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "proto/peer_protocol.h"
#include "server/connection.h"
#include "server/mesh/interest_digest.h"
#include "server/message.h"
#include "server/subscriber_endpoint.h"

namespace zmesh::server {
class SubjectIndex;
class Subscription;
}  // namespace zmesh::server

namespace zmesh::server::mesh {

class PeerLink;

class PeerNode : public SubscriberEndpoint, public PeerForwarder {
 public:
  PeerNode(SubjectIndex* index, std::string node_id, uint64_t incarnation);

  const std::string& node_id() const { return node_id_; }
  std::string_view remote_node_id() const override { return node_id_; }
  uint64_t incarnation() const { return incarnation_; }

  // Sends `msg` to the node once, naming the queue groups it was chosen for.
  // Any thread. False when there is no link or the link cannot take it (the
  // link is then reset). *busy_link is set when the link is behind and the
  // publishing client should pause (see IoWorker::StallProducer).
  // The router's PeerForwarder.
  bool Forward(const Message& msg, const std::string_view* queues, size_t queue_count,
               RefPtr<Connection>* busy_link) override;

  // Any thread: appends `frame` to the active link in the order of
  // forwarded messages (a cut's CUT frame). False without a link.
  bool SendOnLink(std::string_view frame);
  // Any thread: QUEUE_SWITCH for the node's queue member of (subject,
  // queue) in move `token`, in the order of forwarded messages, if the
  // link's peer takes it: our picks count its new member from here on (it
  // is the new end), or no longer count its old one (the old end).
  bool SendQueueSwitch(uint64_t token, std::string_view subject, std::string_view queue);

  // Makes `link` the active link; returns the one it replaces. Any thread.
  RefPtr<PeerLink> SwapLink(PeerLink* link);
  // If `link` is active: clears it and the node's interest; true if it was.
  bool DropLinkIf(PeerLink* link);
  bool IsActive(const PeerLink* link) const;
  RefPtr<PeerLink> link() const;

  // Interest frames, applied only when they come from the active link
  // (a retiring duplicate may still carry stale ones). `latent` (+1): the
  // change adds a moving client's queue member that stays out of picks
  // until its old end releases it (QUEUE_MOVE LATENT; see ReleaseLatent).
  // False when `from` is not the active link (nothing applied).
  bool ApplyInterest(const PeerLink* from, const proto::peer::Interest& interest, int latent = 0);
  // A latent member of (subject, queue) takes part in picks from now on
  // (its old end's member is gone, or the move timed out). May come before
  // the latent change it undoes (another link's thread): counts go below 0.
  void ReleaseLatent(const std::string& subject, const std::string& queue);
  void BeginSync(const PeerLink* from);
  // Ends a snapshot: drops what it did not mention. True when the resulting
  // digest equals the one announced.
  bool EndSync(const PeerLink* from, const proto::peer::Digest& announced);
  bool DigestMatches(const proto::peer::Digest& announced) const;

  size_t interest_count() const;
  InterestDigest digest() const;

  // The highest of the node's interest sequence numbers applied here, from
  // its changes and snapshots on its active link: its changes come in
  // sequence order, so every one up to it is applied. Any thread.
  uint64_t applied_seq() const { return applied_seq_.load(std::memory_order_acquire); }
  void NoteApplied(uint64_t seq) {
    uint64_t seen = applied_seq_.load(std::memory_order_relaxed);
    while (seen < seq && !applied_seq_.compare_exchange_weak(seen, seq, std::memory_order_acq_rel)) {
    }
  }

 protected:
  ~PeerNode() override;

 private:
  using Key = std::pair<std::string, std::string>;  // subject, queue
  struct Entry {
    Subscription* sub = nullptr;
    uint32_t count = 0;
    uint32_t epoch = 0;  // the snapshot that last mentioned it
  };

  void ClearInterestLocked();
  void RemoveLocked(Entry& entry, const Key& key);
  // Takes the entry's subscription (if any) out of the index.
  void UnindexLocked(Entry& entry);
  // Puts `entry` in the index with its weight: the member count less the
  // latent members (none: no index entry). False if the index refused the
  // subject.
  bool ReweighLocked(Entry& entry, const Key& key);

  SubjectIndex* const index_;
  const std::string node_id_;
  const uint64_t incarnation_;
  mutable std::mutex interest_mu_;  // first in the lock order
  mutable std::mutex link_mu_;
  PeerLink* link_ = nullptr;  // holds a reference; written under both locks
  absl::flat_hash_map<Key, Entry> interest_;  // interest_mu_
  absl::flat_hash_map<Key, int32_t> latent_;  // interest_mu_: latent members per group
  InterestDigest digest_;                      // interest_mu_
  uint32_t epoch_ = 0;                         // interest_mu_
  std::atomic<uint64_t> applied_seq_{0};
};

}  // namespace zmesh::server::mesh

#include "server/mesh/local_interest.h"

#include <algorithm>

#include <glog/logging.h>

#include "proto/peer_protocol.h"
#include "server/event_loop.h"
#include "server/mesh/peer_link.h"
#include "server/subscription.h"

namespace zmesh::server::mesh {

namespace peer = proto::peer;

LocalInterest::~LocalInterest() {
  for (PeerLink* l : links_) l->Unref();
}

uint64_t LocalInterest::OnLocalSubscribe(const Subscription& sub) { return Change(sub, +1); }
uint64_t LocalInterest::OnLocalUnsubscribe(const Subscription& sub) { return Change(sub, -1); }

bool LocalInterest::AwaitPeers(uint64_t seq, std::function<void()> done) {
  return barrier_.Wait(seq, MonotonicMs(), std::move(done));
}

uint64_t LocalInterest::seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seq_;
}

uint64_t LocalInterest::Change(const Subscription& sub, int delta) {
  const bool queue = sub.is_queue();
  // Peers refuse what fails this (and reset the link); the client port
  // already refuses such subscriptions, so this only guards the invariant.
  if (!peer::IsAnnounceable(sub.subject(), sub.queue())) {
    LOG_EVERY_N(WARNING, 100) << "not announcing interest in an invalid subject or queue name to peers";
    return 0;
  }
  Key key(sub.subject(), sub.queue());
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(key);
  const uint32_t before = it == counts_.end() ? 0 : it->second;
  // Nothing to announce still needs the last announcement to have arrived
  // (another client's SUB of the same subject may be in flight): seq_.
  if (delta < 0 && before == 0) return seq_;  // never announced (e.g. refused); nothing to undo
  const uint32_t after = before + delta;
  if (after == 0) {
    counts_.erase(it);
  } else if (it == counts_.end()) {
    counts_.emplace(key, after);
  } else {
    it->second = after;
  }
  const uint32_t was = AnnouncedCount(queue, before), now = AnnouncedCount(queue, after);
  if (was == now) return seq_;
  if (was > 0) digest_.Remove(key.first, key.second, was);
  if (now > 0) digest_.Add(key.first, key.second, now);
  ++seq_;
  barrier_.OnChange(seq_, MonotonicMs());
  std::string frame;
  peer::EncodeInterest({key.first, key.second, now, seq_}, &frame);
  for (PeerLink* link : links_) SendLocked(link, frame);
  return seq_;
}

void LocalInterest::SendLocked(PeerLink* link, const std::string& frame) { link->SendFrame(frame); }

void LocalInterest::SnapshotLocked(PeerLink* link) {
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frames);
  // Batches keep each append bounded while the whole snapshot stays under the lock.
  constexpr size_t kBatchBytes = 256 * 1024;
  for (const auto& [key, count] : counts_) {
    peer::EncodeInterest({key.first, key.second, AnnouncedCount(!key.second.empty(), count), seq_}, &frames);
    if (frames.size() >= kBatchBytes) {
      SendLocked(link, frames);
      frames.clear();
    }
  }
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {digest_.hash, digest_.entries, seq_}, &frames);
  SendLocked(link, frames);
}

void LocalInterest::Attach(PeerLink* link, PeerLink* replaced) {
  std::lock_guard<std::mutex> lock(mu_);
  if (replaced != nullptr) {
    auto it = std::find(links_.begin(), links_.end(), replaced);
    if (it != links_.end()) {
      barrier_.RemoveLink(*it);
      (*it)->Unref();
      links_.erase(it);
    }
  }
  if (std::find(links_.begin(), links_.end(), link) == links_.end()) {
    link->Ref();
    links_.push_back(link);
    barrier_.AddLink(link);
  }
  SnapshotLocked(link);
}

void LocalInterest::Detach(PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find(links_.begin(), links_.end(), link);
  if (it == links_.end()) return;
  barrier_.RemoveLink(*it);
  (*it)->Unref();
  links_.erase(it);
}

void LocalInterest::SendSnapshot(PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(links_.begin(), links_.end(), link) != links_.end()) SnapshotLocked(link);
}

void LocalInterest::SendDigest(PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(links_.begin(), links_.end(), link) == links_.end()) return;
  std::string frame;
  peer::EncodeDigest(peer::FrameType::kDigest, {digest_.hash, digest_.entries}, &frame);
  SendLocked(link, frame);
}

InterestDigest LocalInterest::digest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return digest_;
}

size_t LocalInterest::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_.size();
}

}  // namespace zmesh::server::mesh

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
  for (Attached& a : links_) a.link->Unref();
}

uint64_t LocalInterest::OnLocalSubscribe(const Subscription& sub, uint64_t move_token) {
  return Change(sub, +1, move_token);
}
uint64_t LocalInterest::OnLocalUnsubscribe(const Subscription& sub, uint64_t move_token) {
  return Change(sub, -1, move_token);
}

bool LocalInterest::AwaitPeers(uint64_t seq, std::function<void()> done) {
  return barrier_.Wait(seq, MonotonicMs(), std::move(done));
}

uint64_t LocalInterest::seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seq_;
}

uint64_t LocalInterest::Change(const Subscription& sub, int delta, uint64_t move_token) {
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
  if (move_token == 0 || !queue) {
    for (Attached& a : links_) a.link->SendFrame(frame);
    return seq_;
  }
  // A moving client's queue member: the same change, tagged with its move
  // (server/mesh/move_table.h), for every peer that takes it.
  std::string tagged;
  peer::EncodeQueueMove({key.first, key.second, now, seq_}, move_token,
                        delta > 0 ? peer::QueueMoveKind::kLatent : peer::QueueMoveKind::kRelease, &tagged);
  for (Attached& a : links_) a.link->SendFrame(a.link->takes_move_frames() ? tagged : frame);
  return seq_;
}

std::vector<LocalInterest::Attached>::iterator LocalInterest::FindLocked(const PeerLink* link) {
  return std::find_if(links_.begin(), links_.end(), [link](const Attached& a) { return a.link == link; });
}

void LocalInterest::DetachLocked(std::vector<Attached>::iterator it) {
  barrier_.RemoveLink(it->link);
  it->link->Unref();
  links_.erase(it);
}

void LocalInterest::BeginSnapshotLocked(Attached& a) {
  a.streaming = true;
  a.sent_any = false;
  a.last = Key();
  barrier_.SetStreaming(a.link, true, MonotonicMs());
  std::string frame;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frame);
  a.link->SendFrame(frame);
}

bool LocalInterest::ContinueSnapshot(PeerLink* link, size_t max_bytes) {
  thread_local std::string frames;
  frames.clear();
  std::lock_guard<std::mutex> lock(mu_);
  auto found = FindLocked(link);
  if (found == links_.end() || !found->streaming) return true;
  Attached* a = &*found;
  auto it = a->sent_any ? counts_.upper_bound(a->last) : counts_.begin();
  for (; it != counts_.end() && frames.size() < max_bytes; ++it) {
    const auto& [key, count] = *it;
    peer::EncodeInterest({key.first, key.second, AnnouncedCount(!key.second.empty(), count), seq_}, &frames);
    a->last = key;
    a->sent_any = true;
  }
  const bool done = it == counts_.end();
  if (done) {
    peer::EncodeDigest(peer::FrameType::kSyncEnd, {digest_.hash, digest_.entries, seq_}, &frames);
    a->streaming = false;
    a->last = Key();
    barrier_.SetStreaming(link, false, MonotonicMs());
  }
  link->SendFrame(frames);
  if (frames.capacity() > 4 * max_bytes) std::string().swap(frames);
  return done;
}

void LocalInterest::Attach(PeerLink* link, PeerLink* replaced) {
  std::lock_guard<std::mutex> lock(mu_);
  if (replaced != nullptr) {
    if (auto it = FindLocked(replaced); it != links_.end()) DetachLocked(it);
  }
  auto it = FindLocked(link);
  if (it == links_.end()) {
    link->Ref();
    barrier_.AddLink(link);
    links_.emplace_back().link = link;
    it = links_.end() - 1;
  }
  BeginSnapshotLocked(*it);
}

void LocalInterest::Detach(PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = FindLocked(link); it != links_.end()) DetachLocked(it);
}

void LocalInterest::BeginSnapshot(PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = FindLocked(link); it != links_.end()) BeginSnapshotLocked(*it);
}

void LocalInterest::SendDigest(PeerLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = FindLocked(link);
  // Mid-snapshot the peer holds only part of the set: a digest would look
  // like divergence. SYNC_END carries one.
  if (it == links_.end() || it->streaming) return;
  std::string frame;
  peer::EncodeDigest(peer::FrameType::kDigest, {digest_.hash, digest_.entries}, &frame);
  link->SendFrame(frame);
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

#include "server/mesh/peer_node.h"

#include <absl/container/inlined_vector.h>
#include <glog/logging.h>

#include <vector>

#include "server/mesh/peer_link.h"
#include "server/subject_index.h"
#include "server/subscription.h"

namespace zmesh::server::mesh {

PeerNode::PeerNode(SubjectIndex* index, std::string node_id, uint64_t incarnation)
    : SubscriberEndpoint(Kind::kPeer), index_(index), node_id_(std::move(node_id)), incarnation_(incarnation) {
  BindForwarder(this);
}

PeerNode::~PeerNode() {
  // Remote subscriptions hold references on this node, so by now none is
  // left in the index; only a link reference may remain.
  if (link_ != nullptr) link_->Unref();
}

bool PeerNode::Forward(const Message& msg, const std::string_view* queues, size_t queue_count,
                       RefPtr<Connection>* busy_link) {
  // One MSG, then as many MSG_QUEUES as the remaining groups need, so that no
  // frame exceeds what the receiver accepts however many groups chose it
  // (docs/peer-protocol.md, Messages). Each group is listed in exactly one
  // frame; only the first reaches the receiver's plain subscribers.
  thread_local std::string headers;
  thread_local std::vector<size_t> ends;  // where each frame's header ends in `headers`
  if (headers.capacity() > (1u << 20)) std::string().swap(headers);  // a rare huge fan-out
  headers.clear();
  ends.clear();
  proto::peer::EncodeMsgHeaders(msg.subject, msg.reply, static_cast<int32_t>(msg.header_size), queues, queue_count,
                                msg.payload.size(), &headers, &ends);
  absl::InlinedVector<std::string_view, 2> pieces;
  size_t begin = 0;
  for (size_t end : ends) {
    pieces.push_back(std::string_view(headers).substr(begin, end - begin));
    pieces.push_back(msg.payload);
    begin = end;
  }
  std::lock_guard<std::mutex> lock(link_mu_);  // never interest_mu_: see the header
  if (link_ == nullptr) return false;
  size_t pending = 0;
  // One append: the frames of one message stay together and count as one message.
  if (!link_->Enqueue(pieces.data(), pieces.size(), msg.payload.size(), true, CloseReason::kPeerResync, &pending)) {
    return false;
  }
  if (link_->WantsBackpressure(pending)) *busy_link = RefPtr<Connection>(link_);
  return true;
}

bool PeerNode::SendOnLink(std::string_view frame) {
  std::lock_guard<std::mutex> lock(link_mu_);
  return link_ != nullptr && link_->Enqueue(&frame, 1, 0, false, CloseReason::kPeerResync);
}

bool PeerNode::SendQueueSwitch(uint64_t token, std::string_view subject, std::string_view queue) {
  std::string frame;
  proto::peer::EncodeQueueSwitch(token, subject, queue, &frame);
  std::string_view bytes(frame);
  std::lock_guard<std::mutex> lock(link_mu_);
  return link_ != nullptr && link_->takes_queue_switch() &&
         link_->Enqueue(&bytes, 1, 0, false, CloseReason::kPeerResync);
}

RefPtr<PeerLink> PeerNode::SwapLink(PeerLink* link) {
  std::lock_guard<std::mutex> interest_lock(interest_mu_);
  std::lock_guard<std::mutex> link_lock(link_mu_);
  PeerLink* old = link_;
  link->Ref();
  link_ = link;
  RefPtr<PeerLink> out(old);
  if (old != nullptr) old->Unref();  // RefPtr took its own
  return out;
}

bool PeerNode::DropLinkIf(PeerLink* link) {
  std::lock_guard<std::mutex> interest_lock(interest_mu_);
  {
    std::lock_guard<std::mutex> link_lock(link_mu_);
    if (link_ != link) return false;
    link_ = nullptr;
  }
  link->Unref();  // the caller holds its own reference
  ClearInterestLocked();  // publishers no longer see the link meanwhile
  return true;
}

bool PeerNode::IsActive(const PeerLink* link) const {
  std::lock_guard<std::mutex> lock(link_mu_);
  return link_ == link;
}

RefPtr<PeerLink> PeerNode::link() const {
  std::lock_guard<std::mutex> lock(link_mu_);
  return RefPtr<PeerLink>(link_);
}

void PeerNode::RemoveLocked(Entry& e, const Key& key) {
  digest_.Remove(key.first, key.second, e.count);
  UnindexLocked(e);
}

void PeerNode::UnindexLocked(Entry& e) {
  if (e.sub == nullptr) return;
  e.sub->set_closed();
  index_->Remove(e.sub);
  e.sub->Unref();
  e.sub = nullptr;
}

bool PeerNode::ReweighLocked(Entry& e, const Key& key) {
  uint32_t weight = 1;
  if (!key.second.empty()) {
    auto l = latent_.find(key);
    const uint32_t hidden = l == latent_.end() || l->second <= 0 ? 0 : static_cast<uint32_t>(l->second);
    weight = e.count > hidden ? e.count - hidden : 0;
  }
  if (e.sub != nullptr && weight == e.sub->weight()) return true;
  UnindexLocked(e);  // a new weight means a new entry in the index
  if (weight == 0) return true;
  auto* sub = new Subscription(this, key.first, key.second, std::string(), /*remote=*/true, weight);
  if (!index_->Insert(sub)) {  // a peer announcing an invalid subject: ignore it, loudly
    LOG(WARNING) << "peer " << node_id_ << " announced invalid subject '" << key.first << "'";
    sub->Unref();
    return false;
  }
  e.sub = sub;
  return true;
}

bool PeerNode::ApplyInterest(const PeerLink* from, const proto::peer::Interest& in, int latent) {
  std::lock_guard<std::mutex> lock(interest_mu_);
  if (from != link_) return false;
  Key key(std::string(in.subject), std::string(in.queue));
  if (latent != 0 && !key.second.empty()) {
    if ((latent_[key] += latent) == 0) latent_.erase(key);
  }
  auto it = interest_.find(key);
  if (it == interest_.end()) {
    if (in.count == 0) return true;
    it = interest_.emplace(key, Entry{}).first;
  } else {
    it->second.epoch = epoch_;
    if (it->second.count == in.count && latent == 0) return true;
    if (in.count == 0) {
      RemoveLocked(it->second, key);
      interest_.erase(it);
      return true;
    }
    digest_.Remove(key.first, key.second, it->second.count);
  }
  Entry& e = it->second;
  e.count = in.count;
  e.epoch = epoch_;
  if (!ReweighLocked(e, key)) {
    interest_.erase(it);
    return true;
  }
  digest_.Add(key.first, key.second, in.count);
  return true;
}

void PeerNode::ReleaseLatent(const std::string& subject, const std::string& queue) {
  std::lock_guard<std::mutex> lock(interest_mu_);
  Key key(subject, queue);
  if (--latent_[key] == 0) latent_.erase(key);
  if (auto it = interest_.find(key); it != interest_.end() && !ReweighLocked(it->second, key)) {
    RemoveLocked(it->second, key);
    interest_.erase(it);
  }
}

void PeerNode::BeginSync(const PeerLink* from) {
  std::lock_guard<std::mutex> lock(interest_mu_);
  if (from == link_) ++epoch_;
}

bool PeerNode::EndSync(const PeerLink* from, const proto::peer::Digest& announced) {
  std::lock_guard<std::mutex> lock(interest_mu_);
  if (from != link_) return true;
  std::vector<Key> stale;
  for (auto& [key, e] : interest_) {
    if (e.epoch != epoch_) stale.push_back(key);
  }
  for (const Key& key : stale) {
    auto it = interest_.find(key);
    RemoveLocked(it->second, key);
    interest_.erase(it);
  }
  return digest_.hash == announced.digest && digest_.entries == announced.entries;
}

bool PeerNode::DigestMatches(const proto::peer::Digest& announced) const {
  std::lock_guard<std::mutex> lock(interest_mu_);
  return digest_.hash == announced.digest && digest_.entries == announced.entries;
}

void PeerNode::ClearInterestLocked() {
  for (auto& [key, e] : interest_) RemoveLocked(e, key);
  interest_.clear();
  latent_.clear();  // a move in progress times out instead (MoveTable::Expire)
}

size_t PeerNode::interest_count() const {
  std::lock_guard<std::mutex> lock(interest_mu_);
  return interest_.size();
}

InterestDigest PeerNode::digest() const {
  std::lock_guard<std::mutex> lock(interest_mu_);
  return digest_;
}

}  // namespace zmesh::server::mesh

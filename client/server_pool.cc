#include "client/server_pool.h"

#include <algorithm>

namespace zmesh::client {

ServerPool::ServerPool(Policy policy, uint64_t seed) : policy_(policy), rng_(seed) {
  policy_.jitter = std::clamp(policy_.jitter, 0.0, 1.0);
}

ServerPool::Entry* ServerPool::Find(const std::string& key) {
  for (Entry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

const ServerPool::Entry* ServerPool::Find(const std::string& key) const {
  return const_cast<ServerPool*>(this)->Find(key);
}

bool ServerPool::Update(Source source, const std::vector<ServerUrl>& servers) {
  bool changed = false;
  std::vector<std::string> listed_before;
  for (Entry& e : entries_) {
    if ((e.sources & source) != 0) listed_before.push_back(e.key);
    e.sources &= static_cast<uint8_t>(~source);
  }
  for (const ServerUrl& url : servers) {
    const std::string key = url.key();
    Entry* e = Find(key);
    if (e == nullptr) {
      entries_.push_back(Entry{url, key, 0, 0, {}, {}, false, false});
      e = &entries_.back();
      changed = true;
    } else if (source == kStatic || (e->sources & kStatic) == 0) {
      // The user's spelling (scheme, credentials) wins over discovered ones.
      if (e->url.user.empty() || source == kStatic) e->url = url;
    }
    // A node that left (lame duck) and that the mesh lists again has come
    // back (restarted, upgraded): no reason to keep away from it any longer.
    if (e->left && source != kStatic && std::find(listed_before.begin(), listed_before.end(), key) == listed_before.end()) {
      e->left = false;
      e->failures = 0;
      e->eligible_at = TimePoint{};
    }
    e->sources |= source;
  }
  // A node no source lists any more is forgotten, unless we are on it now:
  // its failure history still matters when that connection ends.
  const size_t before = entries_.size();
  std::erase_if(entries_, [](const Entry& e) { return e.sources == 0 && !e.connected; });
  return changed || entries_.size() != before;
}

ServerPool::Duration ServerPool::BaseBackoff(uint32_t failures) const {
  if (failures == 0) return Duration(0);
  const uint32_t shift = std::min<uint32_t>(failures - 1, 30);
  const auto initial = policy_.backoff_initial.count();
  const auto max = policy_.backoff_max.count();
  if (initial <= 0) return Duration(0);
  if (initial > (max >> shift)) return policy_.backoff_max;
  return Duration(initial << shift);
}

ServerPool::Duration ServerPool::Jittered(Duration d) {
  if (d.count() <= 0 || policy_.jitter <= 0) return d;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double factor = 1.0 - policy_.jitter * u(rng_);
  return Duration(static_cast<Duration::rep>(static_cast<double>(d.count()) * factor));
}

void ServerPool::Fail(Entry* e, TimePoint now) {
  e->eligible_at = now + Jittered(BaseBackoff(e->failures));
  last_failed_ = e->key;
}

std::optional<ServerPool::Pick> ServerPool::Next(TimePoint now) {
  if (entries_.empty()) return std::nullopt;
  std::vector<const Entry*> candidates;
  candidates.reserve(entries_.size());
  const Entry* last = nullptr;
  TimePoint others_first = TimePoint::max();
  for (const Entry& e : entries_) {
    if (entries_.size() > 1 && e.key == last_failed_) {
      last = &e;
      continue;
    }
    candidates.push_back(&e);
    others_first = std::min(others_first, e.eligible_at);
  }
  // The node that failed last is skipped, unless every other node is held
  // out more than twice as long as it (a lame duck node, a node far into
  // its backoff): then waiting out its own backoff is not "straight back".
  if (last != nullptr && others_first > now && last->eligible_at < others_first &&
      others_first - now > 2 * (last->eligible_at > now ? last->eligible_at - now : Duration(0))) {
    candidates = {last};
  }
  std::vector<const Entry*> eligible;
  for (const Entry* e : candidates) {
    if (e->eligible_at <= now) eligible.push_back(e);
  }
  if (eligible.empty()) {
    TimePoint first = TimePoint::max();
    for (const Entry* e : candidates) first = std::min(first, e->eligible_at);
    for (const Entry* e : candidates) {
      if (e->eligible_at == first) eligible.push_back(e);
    }
  }
  std::uniform_int_distribution<size_t> pick(0, eligible.size() - 1);
  const Entry* chosen = eligible[pick(rng_)];
  const Duration delay = chosen->eligible_at > now ? chosen->eligible_at - now : Duration(0);
  return Pick{chosen->url, delay};
}

void ServerPool::OnAttemptFailed(const std::string& key, TimePoint now) {
  Entry* e = Find(key);
  if (e == nullptr) {
    last_failed_ = key;
    return;
  }
  e->connected = false;
  ++e->failures;
  Fail(e, now);
}

void ServerPool::OnConnected(const std::string& key, TimePoint now) {
  Entry* e = Find(key);
  if (e == nullptr) return;
  e->connected = true;
  e->connected_at = now;
}

void ServerPool::OnConnectionLost(const std::string& key, TimePoint now) {
  Entry* e = Find(key);
  if (e == nullptr) {
    last_failed_ = key;
    return;
  }
  const bool stable = e->connected && now - e->connected_at >= policy_.stable_after;
  e->connected = false;
  e->failures = stable ? 1 : e->failures + 1;
  Fail(e, now);
  if (e->sources == 0) {
    const std::string gone = e->key;
    std::erase_if(entries_, [&](const Entry& x) { return x.key == gone; });
  }
}

void ServerPool::OnDisconnected(const std::string& key) {
  Entry* e = Find(key);
  if (e == nullptr) return;
  e->connected = false;
  if (e->sources == 0) {
    std::erase_if(entries_, [&](const Entry& x) { return x.key == key; });
  }
}

void ServerPool::Leave(const std::string& key, TimePoint now, Duration hold) {
  Entry* e = Find(key);
  last_failed_ = key;
  if (e == nullptr) return;
  e->connected = false;
  e->left = true;
  e->failures = std::max<uint32_t>(e->failures, 1);
  e->eligible_at = now + std::max(hold, BaseBackoff(e->failures));
  if (e->sources == 0) {
    std::erase_if(entries_, [&](const Entry& x) { return x.key == key; });
  }
}

std::vector<ServerUrl> ServerPool::servers() const {
  std::vector<ServerUrl> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(e.url);
  return out;
}

uint32_t ServerPool::failures(const std::string& key) const {
  const Entry* e = Find(key);
  return e == nullptr ? 0 : e->failures;
}

}  // namespace zmesh::client

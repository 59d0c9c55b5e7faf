#include "server/match_cache.h"

#include <algorithm>

#include "proto/subject.h"
#include "server/absl_string_view.h"

namespace zmesh::server {
namespace {

// The literal tokens of `pattern` before its first wildcard, with their
// separators ("a.b.*" -> "a.b."): a subject without this prefix cannot match,
// which a memcmp tells faster than a token walk.
std::string_view LiteralPrefix(std::string_view pattern) {
  size_t start = 0;
  while (start < pattern.size()) {
    size_t dot = pattern.find(proto::kTokenSeparator, start);
    if (dot == std::string_view::npos) dot = pattern.size();
    const std::string_view token = pattern.substr(start, dot - start);
    if (token == "*" || token == ">") break;
    start = dot + 1;
  }
  return pattern.substr(0, std::min(start, pattern.size()));
}

}  // namespace

void MatchCache::Clear(uint64_t generation) {
  if (!entries_.empty()) ++full_clears_;
  entries_.clear();
  last_result_ = nullptr;
  generation_ = generation;
}

void MatchCache::ApplyChanges(uint64_t generation) {
  last_result_ = nullptr;
  uint64_t now = 0;
  if (entries_.empty() || !index_->ChangesSince(generation_, &changes_, &now)) {
    // `generation` was read before any match this cache will store, so each
    // later entry is at least as new as it.
    Clear(generation);
    return;
  }
  // A changed subscription can alter only the results of the subjects its own
  // subject matches: a literal one names its single entry.
  wildcard_changes_.clear();
  for (const std::string& subject : changes_) {
    if (proto::HasWildcard(subject)) {
      wildcard_changes_.push_back({subject, LiteralPrefix(subject)});
    } else if (auto it = entries_.find(subject); it != entries_.end()) {
      entries_.erase(it);
    }
  }
  if (!wildcard_changes_.empty()) {
    if (wildcard_changes_.size() * entries_.size() > kMaxCatchUpChecks) {
      Clear(now);
      return;
    }
    for (auto it = entries_.begin(); it != entries_.end();) {
      bool affected = false;
      const std::string_view subject = it->first;
      for (const WildcardChange& change : wildcard_changes_) {
        if (subject.starts_with(change.prefix) && proto::SubjectMatches(change.pattern, subject)) {
          affected = true;
          break;
        }
      }
      if (affected) {
        entries_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  generation_ = now;
}

const MatchResult* MatchCache::Lookup(std::string_view subject) {
  const uint64_t generation = index_->generation();
  if (generation != generation_) ApplyChanges(generation);
  if (last_result_ != nullptr && subject == last_subject_) return last_result_;
  if (auto it = entries_.find(AbslView(subject)); it != entries_.end()) {
    last_subject_.assign(subject.data(), subject.size());
    return last_result_ = it->second.get();
  }

  std::unique_ptr<MatchResult> result = index_->Match(subject);
  ++misses_;
  if (entries_.size() >= max_entries_) {
    // Evict an arbitrary quarter: cheap, and a hot subject comes back at once.
    size_t drop = max_entries_ / 4 + 1;
    for (auto it = entries_.begin(); it != entries_.end() && drop > 0; --drop) entries_.erase(it++);
    last_result_ = nullptr;
  }
  // The result is at least as new as generation_: a change racing with the
  // match moves the index past it, and the next lookup applies that change.
  last_subject_.assign(subject.data(), subject.size());
  return last_result_ = entries_.emplace(std::string(subject), std::move(result)).first->second.get();
}

void MatchCache::CatchUp() {
  const uint64_t generation = index_->generation();
  if (generation != generation_) ApplyChanges(generation);
}

}  // namespace zmesh::server

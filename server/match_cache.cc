#include "server/match_cache.h"

#include "server/absl_string_view.h"

namespace zmesh::server {

const MatchResult* MatchCache::Lookup(std::string_view subject) {
  const uint64_t generation = index_->generation();
  if (generation != generation_) {
    entries_.clear();
    last_result_ = nullptr;
    generation_ = generation;
  }
  if (last_result_ != nullptr && subject == last_subject_) return last_result_;
  if (auto it = entries_.find(AbslView(subject)); it != entries_.end()) {
    last_subject_.assign(subject.data(), subject.size());
    return last_result_ = it->second.get();
  }

  std::unique_ptr<MatchResult> result = index_->Match(subject);
  if (entries_.size() >= max_entries_) {
    // Evict an arbitrary quarter: cheap, and a hot subject comes back at once.
    size_t drop = max_entries_ / 4 + 1;
    for (auto it = entries_.begin(); it != entries_.end() && drop > 0; --drop) entries_.erase(it++);
    last_result_ = nullptr;
  }
  // The result is at least as new as `generation`: a change racing with the
  // match bumps the generation again and clears this entry on the next lookup.
  last_subject_.assign(subject.data(), subject.size());
  return last_result_ = entries_.emplace(std::string(subject), std::move(result)).first->second.get();
}

void MatchCache::PurgeIfStale() {
  if (index_->generation() != generation_) {
    entries_.clear();
    last_result_ = nullptr;
  }
}

}  // namespace zmesh::server

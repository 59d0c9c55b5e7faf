#pragma once

// A bounded per-loop cache of SubjectIndex::Match results keyed by literal
// subject. Any change to the index bumps its generation, which empties the
// cache at the next lookup, so an entry is never older than the index.
//
// Threading: owned by one loop; used only on that loop's thread.

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "server/subject_index.h"

namespace zmesh::server {

class MatchCache {
 public:
  explicit MatchCache(const SubjectIndex* index, size_t max_entries = 4096)
      : index_(index), max_entries_(max_entries) {}

  // The subscriptions matching `subject`. The pointer stays valid until the
  // next call to Lookup or Purge on this cache.
  const MatchResult* Lookup(std::string_view subject);

  // Drops everything if the index changed; lets idle loops release
  // references to removed subscriptions.
  void PurgeIfStale();

  size_t size() const { return entries_.size(); }

 private:
  const SubjectIndex* index_;
  const size_t max_entries_;
  uint64_t generation_ = 0;
  absl::flat_hash_map<std::string, std::unique_ptr<MatchResult>> entries_;
  // The last subject looked up: a stream of messages on one subject skips
  // the hash. Points into entries_, so cleared with it.
  std::string last_subject_;
  const MatchResult* last_result_ = nullptr;
};

}  // namespace zmesh::server

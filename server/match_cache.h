#pragma once

// A bounded per-loop cache of SubjectIndex::Match results keyed by literal
// subject. A change to the index drops only the entries whose subject the
// changed subscription matches (nats-server updates its sublist cache the same
// way), so unrelated SUB/UNSUB churn elsewhere in the mesh leaves hot subjects
// cached. An entry is never older than the index: when the index's change log
// no longer reaches back to this cache's generation, everything is dropped.
//
// Threading: owned by one loop; used only on that loop's thread. The index is
// shared: a lookup reads its generation (one atomic load) and takes its
// reader lock only to catch up after a change or to match a new subject.

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/subject_index.h"

namespace zmesh::server {

class MatchCache {
 public:
  // Wildcard changes are checked against every entry on catch-up; beyond
  // this many checks, dropping everything is cheaper.
  static constexpr size_t kMaxCatchUpChecks = 64 * 1024;

  explicit MatchCache(const SubjectIndex* index, size_t max_entries = 4096)
      : index_(index), max_entries_(max_entries) {}

  // The subscriptions matching `subject`. The pointer stays valid until the
  // next call to Lookup or CatchUp on this cache.
  const MatchResult* Lookup(std::string_view subject);

  // Applies the index's changes since the last lookup; lets idle loops
  // release references to removed subscriptions.
  void CatchUp();

  size_t size() const { return entries_.size(); }
  // Lookups answered by SubjectIndex::Match (a miss), and how often the cache
  // had to drop everything. For tests, benchmarks and monitoring.
  uint64_t misses() const { return misses_; }
  uint64_t full_clears() const { return full_clears_; }

 private:
  // Brings the cache from generation_ to the index's `generation` or later.
  void ApplyChanges(uint64_t generation);
  void Clear(uint64_t generation);

  const SubjectIndex* index_;
  const size_t max_entries_;
  uint64_t generation_ = 0;
  absl::flat_hash_map<std::string, std::unique_ptr<MatchResult>> entries_;
  // The last subject looked up: a stream of messages on one subject skips
  // the hash. Points into entries_, so reset whenever an entry is dropped.
  std::string last_subject_;
  const MatchResult* last_result_ = nullptr;
  std::vector<std::string> changes_;  // scratch for ApplyChanges
  struct WildcardChange {
    std::string_view pattern;  // views changes_
    std::string_view prefix;   // its literal tokens before the first wildcard
  };
  std::vector<WildcardChange> wildcard_changes_;
  uint64_t misses_ = 0;
  uint64_t full_clears_ = 0;
};

}  // namespace zmesh::server

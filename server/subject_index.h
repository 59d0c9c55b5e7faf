#pragma once

// The node's subject index: a trie of tokens with '*' and '>' children, plain
// and queue subscriptions in each node (nats-server's sublist). Local client
// subscriptions and remote interest learned from peers live side by side.
// Queue members are kept by group name in each node, so a match builds its
// groups with one hash probe per group, however many groups a subject has.
//
// Threading: one index per server, shared by every loop. Insert/Remove take a
// writer lock, bump generation() and log the changed subject in a bounded
// ring; Match and ChangesSince take a reader lock. Each loop keeps its own
// MatchCache keyed by subject and validated against generation(), so the
// per-message path usually takes no lock at all, and a change drops only the
// cached subjects it matches.

#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>
#include <absl/strings/string_view.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "server/subscription.h"

namespace zmesh::server {

// The subscriptions matching one literal subject. Holds a reference on each,
// so it stays safe to use after they are removed (check closed()).
struct MatchResult {
  struct Group {
    std::string_view name;  // a member's queue(); alive while referenced
    // This node's clients first (members[0, local_count)), then remote
    // entries; the order is otherwise arbitrary.
    absl::InlinedVector<Subscription*, 1> members;
    absl::InlinedVector<uint64_t, 1> cumulative_weight;  // for a weighted uniform pick
    uint64_t total_weight = 0;
    uint32_t local_count = 0;
  };

  MatchResult() = default;
  ~MatchResult();
  MatchResult(const MatchResult&) = delete;
  MatchResult& operator=(const MatchResult&) = delete;

  bool empty() const { return plain.empty() && groups.empty(); }

  // The group named `name`, or nullptr: one hash probe.
  const Group* FindGroup(std::string_view name) const;

  std::vector<Subscription*> plain;
  std::vector<Group> groups;
  // Group name -> position in `groups`; keys view Group::name.
  absl::flat_hash_map<absl::string_view, uint32_t> group_index;
};

class SubjectIndex {
 public:
  // Changes remembered for MatchCache::CatchUp; a cache further behind than
  // this starts over.
  static constexpr size_t kDefaultChangeLogSize = 1024;
  // Longer subjects are not copied into the change log (it stays small); a
  // cache catching up over one starts over.
  static constexpr size_t kMaxLoggedSubject = 512;

  explicit SubjectIndex(size_t change_log_size = kDefaultChangeLogSize);
  ~SubjectIndex();
  SubjectIndex(const SubjectIndex&) = delete;
  SubjectIndex& operator=(const SubjectIndex&) = delete;

  // Adds `sub` (its subject must be a valid subject) and takes a reference.
  // Returns false, changing nothing, when the subject is invalid. Any thread.
  bool Insert(Subscription* sub);
  // Removes `sub` and drops the index's reference. Any thread.
  void Remove(Subscription* sub);

  // All subscriptions matching the literal `subject`. Any thread.
  std::unique_ptr<MatchResult> Match(std::string_view subject) const;

  // Changes whenever the set of subscriptions changes (+1 per change). Any thread.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  size_t size() const { return count_.load(std::memory_order_relaxed); }

  // The subjects (patterns) of the changes after generation `since`, oldest
  // first, into *subjects, and the generation they bring the caller to into
  // *now. False when the log no longer covers them all: the caller must
  // assume every subject changed. Any thread.
  bool ChangesSince(uint64_t since, std::vector<std::string>* subjects, uint64_t* now) const;

  // Calls fn(sub) for every subscription, under the reader lock (monitoring).
  template <typename Fn>
  void ForEach(Fn&& fn) const;
  // Like ForEach, but stops as soon as fn(sub) returns false, so a caller
  // that wants only the first N entries holds the reader lock for N entries.
  template <typename Fn>
  void ForEachWhile(Fn&& fn) const;

 private:
  struct Level;
  // Members of one queue group in one trie node; the key views members[0]'s
  // queue(), so the entry is re-keyed when that member leaves.
  using QueueMembers = absl::InlinedVector<Subscription*, 1>;
  struct Node {
    std::unique_ptr<Level> next;
    absl::InlinedVector<Subscription*, 1> plain;
    absl::flat_hash_map<absl::string_view, QueueMembers> queues;  // by group name
    bool empty() const { return plain.empty() && queues.empty() && next == nullptr; }
  };
  struct Level {
    absl::flat_hash_map<std::string, std::unique_ptr<Node>> literals;
    std::unique_ptr<Node> pwc;  // '*'
    std::unique_ptr<Node> fwc;  // '>'
    bool empty() const { return literals.empty() && pwc == nullptr && fwc == nullptr; }
  };
  struct Change {
    uint64_t generation = 0;
    bool logged = false;  // false: the subject was too long to copy
    std::string subject;
  };

  static void Collect(const Level* level, const std::string_view* tokens, size_t count, size_t i, MatchResult* out);
  static void AddNode(const Node* node, MatchResult* out);
  static void FinishGroups(MatchResult* out);
  static bool EraseQueueMember(Node* node, Subscription* sub);
  // Removes `sub` below `level` at token i, pruning empty nodes. True if found.
  static bool RemoveFrom(Level* level, const std::string_view* tokens, size_t count, size_t i, Subscription* sub);
  // Calls fn(sub) until it returns false; false if it did.
  template <typename Fn>
  static bool Walk(const Level* level, Fn& fn);
  // Bumps the generation and logs `subject`; under the writer lock.
  void RecordChange(const std::string& subject);

  mutable std::shared_mutex mu_;
  Level root_;
  std::atomic<uint64_t> generation_{1};
  std::atomic<size_t> count_{0};
  std::vector<Change> changes_;  // ring: generation g in slot g % size
};

template <typename Fn>
bool SubjectIndex::Walk(const Level* level, Fn& fn) {
  auto visit = [&fn](const Node* n) {
    if (n == nullptr) return true;
    for (Subscription* s : n->plain) {
      if (!fn(s)) return false;
    }
    for (const auto& [name, members] : n->queues) {
      for (Subscription* s : members) {
        if (!fn(s)) return false;
      }
    }
    return n->next == nullptr || Walk(n->next.get(), fn);
  };
  for (const auto& [token, node] : level->literals) {
    if (!visit(node.get())) return false;
  }
  return visit(level->pwc.get()) && visit(level->fwc.get());
}

template <typename Fn>
void SubjectIndex::ForEach(Fn&& fn) const {
  auto all = [&fn](Subscription* s) {
    fn(s);
    return true;
  };
  std::shared_lock lock(mu_);
  Walk(&root_, all);
}

template <typename Fn>
void SubjectIndex::ForEachWhile(Fn&& fn) const {
  std::shared_lock lock(mu_);
  Walk(&root_, fn);
}

}  // namespace zmesh::server

#pragma once

// The node's subject index: a trie of tokens with '*' and '>' children, plain
// and queue subscriptions in each node (nats-server's sublist). Local client
// subscriptions and remote interest learned from peers live side by side.
//
// Threading: one index per server, shared by every loop. Insert/Remove take a
// writer lock and bump generation(); Match takes a reader lock. Each loop keeps
// its own MatchCache keyed by subject and validated against generation(), so
// the per-message path usually takes no lock at all.

#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>

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
    std::string_view name;                  // a member's queue(); alive while referenced
    std::vector<Subscription*> members;
    std::vector<uint64_t> cumulative_weight;  // for a weighted uniform pick
    uint64_t total_weight = 0;
  };

  MatchResult() = default;
  ~MatchResult();
  MatchResult(const MatchResult&) = delete;
  MatchResult& operator=(const MatchResult&) = delete;

  bool empty() const { return plain.empty() && groups.empty(); }

  std::vector<Subscription*> plain;
  std::vector<Group> groups;
};

class SubjectIndex {
 public:
  SubjectIndex();
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

  // Changes whenever the set of subscriptions changes. Any thread.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  size_t size() const { return count_.load(std::memory_order_relaxed); }

  // Calls fn(sub) for every subscription, under the reader lock (monitoring).
  template <typename Fn>
  void ForEach(Fn&& fn) const;

 private:
  struct Level;
  struct Node {
    std::unique_ptr<Level> next;
    absl::InlinedVector<Subscription*, 1> plain;
    std::vector<Subscription*> queue;  // all queue members; grouped at match time
    bool empty() const { return plain.empty() && queue.empty() && next == nullptr; }
  };
  struct Level {
    absl::flat_hash_map<std::string, std::unique_ptr<Node>> literals;
    std::unique_ptr<Node> pwc;  // '*'
    std::unique_ptr<Node> fwc;  // '>'
    bool empty() const { return literals.empty() && pwc == nullptr && fwc == nullptr; }
  };

  static void Collect(const Level* level, const std::string_view* tokens, size_t count, size_t i, MatchResult* out);
  static void AddNode(const Node* node, MatchResult* out);
  // Removes `sub` below `level` at token i, pruning empty nodes. True if found.
  static bool RemoveFrom(Level* level, const std::string_view* tokens, size_t count, size_t i, Subscription* sub);
  template <typename Fn>
  static void Walk(const Level* level, Fn& fn);

  mutable std::shared_mutex mu_;
  Level root_;
  std::atomic<uint64_t> generation_{1};
  std::atomic<size_t> count_{0};
};

template <typename Fn>
void SubjectIndex::Walk(const Level* level, Fn& fn) {
  auto visit = [&fn](const Node* n) {
    if (n == nullptr) return;
    for (Subscription* s : n->plain) fn(s);
    for (Subscription* s : n->queue) fn(s);
    if (n->next) Walk(n->next.get(), fn);
  };
  for (const auto& [token, node] : level->literals) visit(node.get());
  visit(level->pwc.get());
  visit(level->fwc.get());
}

template <typename Fn>
void SubjectIndex::ForEach(Fn&& fn) const {
  std::shared_lock lock(mu_);
  Walk(&root_, fn);
}

}  // namespace zmesh::server

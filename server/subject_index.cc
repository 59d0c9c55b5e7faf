#include "server/subject_index.h"

#include <algorithm>
#include <mutex>

#include "proto/subject.h"
#include "server/absl_string_view.h"

namespace zmesh::server {
namespace {

// Subjects deeper than this are still valid; they just tokenise on the heap.
constexpr size_t kInlineTokens = 16;
using Tokens = absl::InlinedVector<std::string_view, kInlineTokens>;

Tokens Tokenize(std::string_view subject) {
  Tokens tokens;
  proto::TokenIterator it(subject);
  std::string_view t;
  while (it.Next(&t)) tokens.push_back(t);
  return tokens;
}

}  // namespace

MatchResult::~MatchResult() {
  for (Subscription* s : plain) s->Unref();
  for (Group& g : groups) {
    for (Subscription* s : g.members) s->Unref();
  }
}

const MatchResult::Group* MatchResult::FindGroup(std::string_view name) const {
  auto it = group_index.find(AbslView(name));
  return it == group_index.end() ? nullptr : &groups[it->second];
}

SubjectIndex::SubjectIndex(size_t change_log_size) : changes_(std::max<size_t>(change_log_size, 1)) {}

SubjectIndex::~SubjectIndex() {
  std::vector<Subscription*> all;
  ForEach([&all](Subscription* s) { all.push_back(s); });
  for (Subscription* s : all) s->Unref();
}

void SubjectIndex::RecordChange(const std::string& subject) {
  const uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
  Change& c = changes_[generation % changes_.size()];
  c.generation = generation;
  c.logged = subject.size() <= kMaxLoggedSubject;
  if (c.logged) {
    c.subject.assign(subject);
  } else {
    c.subject.clear();
  }
  generation_.store(generation, std::memory_order_release);
}

bool SubjectIndex::ChangesSince(uint64_t since, std::vector<std::string>* subjects, uint64_t* now) const {
  subjects->clear();
  std::shared_lock lock(mu_);
  const uint64_t current = generation_.load(std::memory_order_relaxed);  // stable under the lock
  *now = current;
  if (since == 0 || since > current || current - since > changes_.size()) return false;
  for (uint64_t g = since + 1; g <= current; ++g) {
    const Change& c = changes_[g % changes_.size()];
    if (c.generation != g || !c.logged) return false;
    subjects->push_back(c.subject);
  }
  return true;
}

bool SubjectIndex::Insert(Subscription* sub) {
  if (!proto::IsValidSubject(sub->subject())) return false;
  const Tokens tokens = Tokenize(sub->subject());
  std::unique_lock lock(mu_);
  Level* level = &root_;
  Node* node = nullptr;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string_view t = tokens[i];
    std::unique_ptr<Node>* slot;
    if (t == "*") {
      slot = &level->pwc;
    } else if (t == ">") {
      slot = &level->fwc;
    } else {
      slot = &level->literals[std::string(t)];
    }
    if (*slot == nullptr) *slot = std::make_unique<Node>();
    node = slot->get();
    if (i + 1 < tokens.size()) {
      if (node->next == nullptr) node->next = std::make_unique<Level>();
      level = node->next.get();
    }
  }
  sub->Ref();
  if (sub->is_queue()) {
    QueueMembers& members = node->queues[AbslView(sub->queue())];  // a new key views sub's queue()
    sub->index_slot = static_cast<uint32_t>(members.size());
    members.push_back(sub);
  } else {
    sub->index_slot = static_cast<uint32_t>(node->plain.size());
    node->plain.push_back(sub);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  RecordChange(sub->subject());
  return true;
}

namespace {

// Swap-removes `sub` from `vec` at its index_slot. False if it is not there.
template <typename Vec>
bool EraseAtSlot(Vec& vec, Subscription* sub) {
  const uint32_t at = sub->index_slot;
  if (at >= vec.size() || vec[at] != sub) return false;
  vec[at] = vec.back();
  vec[at]->index_slot = at;
  vec.pop_back();
  return true;
}

}  // namespace

bool SubjectIndex::EraseQueueMember(Node* node, Subscription* sub) {
  auto it = node->queues.find(AbslView(sub->queue()));
  if (it == node->queues.end() || !EraseAtSlot(it->second, sub)) return false;
  if (it->second.empty()) {
    node->queues.erase(it);
  } else if (it->first.data() == sub->queue().data()) {
    // The key viewed the leaving member's queue(): re-key by one that stays.
    QueueMembers rest = std::move(it->second);
    node->queues.erase(it);
    const absl::string_view key = AbslView(rest[0]->queue());
    node->queues.emplace(key, std::move(rest));
  }
  return true;
}

bool SubjectIndex::RemoveFrom(Level* level, const std::string_view* tokens, size_t count, size_t i,
                              Subscription* sub) {
  std::string_view t = tokens[i];
  std::unique_ptr<Node>* slot;
  decltype(level->literals)::iterator lit;
  if (t == "*") {
    slot = &level->pwc;
  } else if (t == ">") {
    slot = &level->fwc;
  } else {
    lit = level->literals.find(AbslView(t));
    if (lit == level->literals.end()) return false;
    slot = &lit->second;
  }
  Node* node = slot->get();
  if (node == nullptr) return false;

  bool found = false;
  if (i + 1 == count) {
    found = sub->is_queue() ? EraseQueueMember(node, sub) : EraseAtSlot(node->plain, sub);
  } else if (node->next) {
    found = RemoveFrom(node->next.get(), tokens, count, i + 1, sub);
    if (found && node->next->empty()) node->next.reset();
  }
  if (found && node->empty()) {
    if (t == "*" || t == ">") {
      slot->reset();
    } else {
      level->literals.erase(lit);
    }
  }
  return found;
}

void SubjectIndex::Remove(Subscription* sub) {
  const Tokens tokens = Tokenize(sub->subject());
  bool found;
  {
    std::unique_lock lock(mu_);
    found = !tokens.empty() && RemoveFrom(&root_, tokens.data(), tokens.size(), 0, sub);
    if (found) {
      count_.fetch_sub(1, std::memory_order_relaxed);
      RecordChange(sub->subject());
    }
  }
  if (found) sub->Unref();
}

void SubjectIndex::AddNode(const Node* node, MatchResult* out) {
  for (Subscription* s : node->plain) {
    s->Ref();
    out->plain.push_back(s);
  }
  if (node->queues.empty()) return;
  if (out->groups.empty()) {
    out->groups.reserve(node->queues.size());
    out->group_index.reserve(node->queues.size());
  }
  for (const auto& [name, members] : node->queues) {
    // `name` views members[0]'s queue(), which this result references.
    auto [it, added] = out->group_index.try_emplace(name, static_cast<uint32_t>(out->groups.size()));
    if (added) out->groups.emplace_back().name = std::string_view(name.data(), name.size());
    MatchResult::Group& group = out->groups[it->second];
    for (Subscription* s : members) {
      s->Ref();
      group.members.push_back(s);
    }
  }
}

void SubjectIndex::FinishGroups(MatchResult* out) {
  for (MatchResult::Group& g : out->groups) {
    const auto remote_begin =
        std::partition(g.members.begin(), g.members.end(), [](const Subscription* s) { return !s->remote(); });
    g.local_count = static_cast<uint32_t>(remote_begin - g.members.begin());
    g.cumulative_weight.reserve(g.members.size());
    for (const Subscription* s : g.members) {
      g.total_weight += s->weight();
      g.cumulative_weight.push_back(g.total_weight);
    }
  }
}

void SubjectIndex::Collect(const Level* level, const std::string_view* tokens, size_t count, size_t i,
                           MatchResult* out) {
  for (; level != nullptr; ++i) {
    const bool last = i + 1 == count;
    if (level->fwc) AddNode(level->fwc.get(), out);  // '>' takes this and all later tokens
    if (level->pwc) {
      if (last) {
        AddNode(level->pwc.get(), out);
      } else if (level->pwc->next) {
        Collect(level->pwc->next.get(), tokens, count, i + 1, out);
      }
    }
    auto it = level->literals.find(AbslView(tokens[i]));
    if (it == level->literals.end()) return;
    const Node* node = it->second.get();
    if (last) {
      AddNode(node, out);
      return;
    }
    level = node->next.get();
  }
}

std::unique_ptr<MatchResult> SubjectIndex::Match(std::string_view subject) const {
  auto result = std::make_unique<MatchResult>();
  const Tokens tokens = Tokenize(subject);
  // Like nats-server, a subject with an empty token ("a..b", ".a", "a.")
  // reaches nobody, even '>' subscribers.
  if (tokens.empty() || std::any_of(tokens.begin(), tokens.end(), [](std::string_view t) { return t.empty(); })) {
    return result;
  }
  {
    std::shared_lock lock(mu_);
    Collect(&root_, tokens.data(), tokens.size(), 0, result.get());
  }
  FinishGroups(result.get());  // members are referenced and their fields immutable: no lock needed
  return result;
}

}  // namespace zmesh::server

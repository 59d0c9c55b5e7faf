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

SubjectIndex::SubjectIndex() = default;

SubjectIndex::~SubjectIndex() {
  std::vector<Subscription*> all;
  ForEach([&all](Subscription* s) { all.push_back(s); });
  for (Subscription* s : all) s->Unref();
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
    sub->index_slot = static_cast<uint32_t>(node->queue.size());
    node->queue.push_back(sub);
  } else {
    sub->index_slot = static_cast<uint32_t>(node->plain.size());
    node->plain.push_back(sub);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
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
    auto erase = [sub](auto& vec) {
      const uint32_t at = sub->index_slot;
      if (at >= vec.size() || vec[at] != sub) return false;
      vec[at] = vec.back();
      vec[at]->index_slot = at;
      vec.pop_back();
      return true;
    };
    found = sub->is_queue() ? erase(node->queue) : erase(node->plain);
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
      generation_.fetch_add(1, std::memory_order_release);
    }
  }
  if (found) sub->Unref();
}

void SubjectIndex::AddNode(const Node* node, MatchResult* out) {
  for (Subscription* s : node->plain) {
    s->Ref();
    out->plain.push_back(s);
  }
  for (Subscription* s : node->queue) {
    s->Ref();
    auto it = std::find_if(out->groups.begin(), out->groups.end(),
                           [s](const MatchResult::Group& g) { return g.name == s->queue(); });
    if (it == out->groups.end()) {
      out->groups.emplace_back();
      it = out->groups.end() - 1;
      it->name = s->queue();
    }
    it->members.push_back(s);
    it->total_weight += s->weight();
    it->cumulative_weight.push_back(it->total_weight);
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
  std::shared_lock lock(mu_);
  Collect(&root_, tokens.data(), tokens.size(), 0, result.get());
  return result;
}

}  // namespace zmesh::server

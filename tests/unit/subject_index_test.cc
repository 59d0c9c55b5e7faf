// The subject index against a naive matcher (proto::SubjectMatches over every
// subscription), on hand-picked cases and on random subjects, with inserts
// and removals interleaved; plus the per-loop match cache.
#include "server/subject_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "proto/subject.h"
#include "server/match_cache.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

class FakeEndpoint : public SubscriberEndpoint {
 public:
  FakeEndpoint() : SubscriberEndpoint(Kind::kClient) {}
};

class SubjectIndexTest : public ::testing::Test {
 protected:
  ~SubjectIndexTest() override {
    for (auto& [sid, sub] : subs_) {
      index_.Remove(sub);
      sub->Unref();
    }
    endpoint_->Unref();
  }

  Subscription* Add(const std::string& subject, const std::string& queue = "") {
    const std::string sid = std::to_string(next_sid_++);
    auto* s = new Subscription(endpoint_, subject, queue, sid, false);
    if (!index_.Insert(s)) {
      s->Unref();
      return nullptr;
    }
    subs_[sid] = s;
    return s;
  }

  void Drop(Subscription* s) {
    index_.Remove(s);
    subs_.erase(s->sid());
    s->Unref();
  }

  // sids of every subscription a message on `subject` reaches, per the index.
  std::multiset<std::string> IndexSids(const std::string& subject) {
    std::multiset<std::string> out;
    auto r = index_.Match(subject);
    for (Subscription* s : r->plain) out.insert(s->sid());
    for (auto& g : r->groups) {
      for (Subscription* s : g.members) {
        EXPECT_EQ(s->queue(), g.name);
        out.insert(s->sid());
      }
    }
    return out;
  }

  std::multiset<std::string> NaiveSids(const std::string& subject) {
    std::multiset<std::string> out;
    for (auto& [sid, s] : subs_) {
      if (proto::SubjectMatches(s->subject(), subject)) out.insert(sid);
    }
    return out;
  }

  FakeEndpoint* endpoint_ = new FakeEndpoint;
  SubjectIndex index_;
  std::map<std::string, Subscription*> subs_;
  int next_sid_ = 1;
};

TEST_F(SubjectIndexTest, LiteralAndWildcards) {
  Add("foo.bar");
  Add("foo.*");
  Add("foo.>");
  Add("*.bar");
  Add(">");
  Add("foo.bar.baz");
  for (const char* subject : {"foo.bar", "foo.baz", "foo.bar.baz", "foo", "x.bar", "a.b.c.d"}) {
    EXPECT_EQ(IndexSids(subject), NaiveSids(subject)) << subject;
  }
  EXPECT_EQ(IndexSids("foo.bar").size(), 5u);  // foo.bar foo.* foo.> *.bar >
  EXPECT_EQ(IndexSids("foo").size(), 1u);      // only >
}

TEST_F(SubjectIndexTest, InvalidSubjectsAreRefused) {
  for (const char* bad : {"", "foo..bar", ".foo", "foo.", "foo.>.bar", "a b"}) {
    EXPECT_EQ(Add(bad), nullptr) << bad;
  }
  EXPECT_EQ(index_.size(), 0u);
}

TEST_F(SubjectIndexTest, QueueGroupsAreGroupedByName) {
  Add("work.*", "g1");
  Add("work.a", "g1");
  Add("work.>", "g2");
  Add("work.a");
  auto r = index_.Match("work.a");
  EXPECT_EQ(r->plain.size(), 1u);
  ASSERT_EQ(r->groups.size(), 2u);
  for (auto& g : r->groups) {
    EXPECT_EQ(g.total_weight, g.members.size());
    EXPECT_EQ(g.cumulative_weight.back(), g.total_weight);
    EXPECT_EQ(g.members.size(), g.name == "g1" ? 2u : 1u);
  }
}

TEST_F(SubjectIndexTest, RemovalPrunesAndGenerationMoves) {
  const uint64_t g0 = index_.generation();
  Subscription* a = Add("a.b.c");
  Subscription* b = Add("a.b.*");
  EXPECT_GT(index_.generation(), g0);
  Drop(a);
  EXPECT_EQ(IndexSids("a.b.c").size(), 1u);
  Drop(b);
  EXPECT_TRUE(IndexSids("a.b.c").empty());
  EXPECT_EQ(index_.size(), 0u);
}

TEST_F(SubjectIndexTest, ForEachWhileStopsWhenAsked) {
  for (int i = 0; i < 50; ++i) Add("w." + std::to_string(i % 7) + "." + std::to_string(i));
  Add("q.x", "g");
  size_t all = 0;
  index_.ForEach([&all](const Subscription*) { ++all; });
  EXPECT_EQ(all, 51u);
  size_t visited = 0;
  index_.ForEachWhile([&visited](const Subscription*) { return ++visited < 10; });
  EXPECT_EQ(visited, 10u);  // the 10th returned false: nothing after it
  visited = 0;
  index_.ForEachWhile([&visited](const Subscription*) { return ++visited < 1000; });
  EXPECT_EQ(visited, 51u);
}

TEST_F(SubjectIndexTest, ResultOutlivesRemoval) {
  Subscription* a = Add("x.y");
  auto r = index_.Match("x.y");
  a->set_closed();
  Drop(a);
  ASSERT_EQ(r->plain.size(), 1u);
  EXPECT_TRUE(r->plain[0]->closed());  // still readable: the result holds a reference
}

TEST_F(SubjectIndexTest, RandomizedAgainstNaiveMatcher) {
  std::mt19937 rng(12345);
  const std::vector<std::string> alphabet = {"a", "b", "c", "foo", "bar"};
  auto token = [&](bool allow_wild) -> std::string {
    if (allow_wild) {
      int r = rng() % 10;
      if (r == 0) return "*";
    }
    return alphabet[rng() % alphabet.size()];
  };
  auto subject = [&](bool wild) {
    const int n = 1 + rng() % 4;
    std::string s;
    for (int i = 0; i < n; ++i) {
      if (i) s += '.';
      if (wild && i == n - 1 && rng() % 6 == 0) {
        s += '>';
      } else {
        s += token(wild);
      }
    }
    return s;
  };
  for (int round = 0; round < 3000; ++round) {
    const int action = rng() % 10;
    if (action < 5 || subs_.empty()) {
      const std::string q = rng() % 4 == 0 ? "q" + std::to_string(rng() % 2) : "";
      ASSERT_NE(Add(subject(true), q), nullptr);
    } else if (action < 7) {
      auto it = subs_.begin();
      std::advance(it, rng() % subs_.size());
      Drop(it->second);
    } else {
      const std::string s = subject(false);
      ASSERT_EQ(IndexSids(s), NaiveSids(s)) << "subject " << s << " round " << round;
    }
  }
  EXPECT_EQ(index_.size(), subs_.size());
}

TEST_F(SubjectIndexTest, MatchCacheDropsChangedEntriesAndStaysBounded) {
  MatchCache cache(&index_, 4);
  Add("c.d");
  EXPECT_EQ(cache.Lookup("c.d")->plain.size(), 1u);
  EXPECT_EQ(cache.size(), 1u);
  Subscription* more = Add("c.*");
  EXPECT_EQ(cache.Lookup("c.d")->plain.size(), 2u);  // the change invalidated the entry
  Drop(more);
  EXPECT_EQ(cache.Lookup("c.d")->plain.size(), 1u);
  for (int i = 0; i < 20; ++i) cache.Lookup("c.d" + std::to_string(i));
  EXPECT_LE(cache.size(), 4u);  // bounded
  Subscription* late = Add("c.d0");
  cache.CatchUp();  // an idle loop lets go of what changed...
  EXPECT_EQ(cache.Lookup("c.d0")->plain.size(), 1u);
  const size_t before = cache.size();
  late->set_closed();
  Drop(late);
  cache.CatchUp();
  EXPECT_EQ(cache.size(), before - 1);  // ...and of nothing else
}

// Members are kept by group in each trie node: a group spread over several
// nodes (a literal and a wildcard) is still one group of the result, local
// members first, weighted by what each entry stands for.
TEST_F(SubjectIndexTest, GroupsMergeAcrossNodesLocalFirst) {
  FakeEndpoint* peer = new FakeEndpoint;
  std::vector<Subscription*> remote;
  for (const char* subject : {"jobs.a", "jobs.*"}) {
    auto* r = new Subscription(peer, subject, "workers", "r" + std::to_string(remote.size()), true, 3);
    ASSERT_TRUE(index_.Insert(r));
    remote.push_back(r);
  }
  Add("jobs.>", "workers");
  Add("jobs.a", "workers");
  Add("jobs.a", "other");
  auto r = index_.Match("jobs.a");
  ASSERT_EQ(r->groups.size(), 2u);
  const MatchResult::Group* g = r->FindGroup("workers");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->name, "workers");
  ASSERT_EQ(g->members.size(), 4u);
  EXPECT_EQ(g->local_count, 2u);
  for (size_t i = 0; i < g->members.size(); ++i) EXPECT_EQ(g->members[i]->remote(), i >= g->local_count) << i;
  EXPECT_EQ(g->total_weight, 2u + 3u + 3u);
  ASSERT_EQ(g->cumulative_weight.size(), 4u);
  EXPECT_EQ(g->cumulative_weight.back(), g->total_weight);
  ASSERT_NE(r->FindGroup("other"), nullptr);
  EXPECT_EQ(r->FindGroup("other")->members.size(), 1u);
  EXPECT_EQ(r->FindGroup("nobody"), nullptr);
  for (Subscription* s : remote) {
    index_.Remove(s);
    s->Unref();
  }
  peer->Unref();
  EXPECT_EQ(index_.Match("jobs.a")->FindGroup("workers")->members.size(), 2u);
}

// The group's key in a trie node views one member's queue name; that member
// leaving (and being freed) must leave the group intact and findable.
TEST_F(SubjectIndexTest, GroupSurvivesTheMemberItsNameCameFrom) {
  std::vector<Subscription*> members;
  for (int i = 0; i < 5; ++i) members.push_back(Add("q.x", std::string("grp")));
  for (int i = 0; i < 4; ++i) {
    Drop(members[i]);  // freed: the only reference was ours and the index's
    auto r = index_.Match("q.x");
    const MatchResult::Group* g = r->FindGroup("grp");
    ASSERT_NE(g, nullptr) << i;
    EXPECT_EQ(g->members.size(), static_cast<size_t>(4 - i));
    for (Subscription* s : g->members) EXPECT_EQ(s->queue(), "grp");
  }
  Drop(members[4]);
  EXPECT_TRUE(index_.Match("q.x")->empty());
  EXPECT_EQ(index_.size(), 0u);
}

// 50,000 groups on one subject (issue 10): one match builds them all and each
// is found by name, without the quadratic grouping that took seconds here.
TEST_F(SubjectIndexTest, FiftyThousandGroupsOnOneSubject) {
  constexpr int kGroups = 50000;
  for (int i = 0; i < kGroups; ++i) ASSERT_NE(Add("orders.new", "group-" + std::to_string(i)), nullptr);
  Add("orders.*", "group-7");
  const auto start = std::chrono::steady_clock::now();
  auto r = index_.Match("orders.new");
  ASSERT_EQ(r->groups.size(), static_cast<size_t>(kGroups));
  size_t members = 0;
  for (int i = 0; i < kGroups; ++i) {
    const MatchResult::Group* g = r->FindGroup("group-" + std::to_string(i));
    ASSERT_NE(g, nullptr) << i;
    ASSERT_EQ(g->name, "group-" + std::to_string(i));
    members += g->members.size();
  }
  EXPECT_EQ(members, static_cast<size_t>(kGroups) + 1);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Linear work is tens of milliseconds, under ASan too; the old grouping
  // did ~10^9 string compares.
  EXPECT_LT(seconds, 3.0);
}

TEST_F(SubjectIndexTest, ChangeLogNamesEachChangedSubject) {
  const uint64_t g0 = index_.generation();
  Subscription* a = Add("log.a");
  Add("log.*", "q");
  Drop(a);
  std::vector<std::string> subjects;
  uint64_t now = 0;
  ASSERT_TRUE(index_.ChangesSince(g0, &subjects, &now));
  EXPECT_EQ(now, g0 + 3);
  EXPECT_EQ(subjects, (std::vector<std::string>{"log.a", "log.*", "log.a"}));
  ASSERT_TRUE(index_.ChangesSince(now, &subjects, &now));
  EXPECT_TRUE(subjects.empty());
  EXPECT_FALSE(index_.ChangesSince(0, &subjects, &now));  // never synced
  Add("bad..subject");                                    // refused: no change
  EXPECT_EQ(index_.generation(), now);
}

}  // namespace
}  // namespace zmesh::server

// The per-loop match cache over a shared SubjectIndex: a change drops only the
// entries it can affect (issue 10, item 5), a cache that fell behind the
// index's change log starts over, and every answer equals a fresh match, also
// while another thread changes the index.
#include "server/match_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/subject_index.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

class FakeEndpoint : public SubscriberEndpoint {
 public:
  FakeEndpoint() : SubscriberEndpoint(Kind::kClient) {}
};

// sids a result reaches, plain and queue members alike.
std::multiset<std::string> Sids(const MatchResult& r) {
  std::multiset<std::string> out;
  for (const Subscription* s : r.plain) out.insert(s->sid());
  for (const MatchResult::Group& g : r.groups) {
    for (const Subscription* s : g.members) out.insert(s->sid());
  }
  return out;
}

class MatchCacheTest : public ::testing::Test {
 protected:
  explicit MatchCacheTest(size_t change_log_size = SubjectIndex::kDefaultChangeLogSize)
      : index_(change_log_size), cache_(&index_) {}
  ~MatchCacheTest() override {
    while (!subs_.empty()) Drop(subs_.begin()->second);
    endpoint_->Unref();
  }

  Subscription* Add(const std::string& subject, const std::string& queue = "") {
    const std::string sid = std::to_string(next_sid_++);
    auto* s = new Subscription(endpoint_, subject, queue, sid, false);
    EXPECT_TRUE(index_.Insert(s)) << subject;
    subs_[sid] = s;
    return s;
  }
  void Drop(Subscription* s) {
    s->set_closed();
    index_.Remove(s);
    subs_.erase(s->sid());
    s->Unref();
  }

  FakeEndpoint* endpoint_ = new FakeEndpoint;
  SubjectIndex index_;
  MatchCache cache_;
  std::map<std::string, Subscription*> subs_;
  int next_sid_ = 1;
};

TEST_F(MatchCacheTest, UnrelatedChangesKeepTheEntry) {
  Add("orders.new");
  Add("orders.*", "workers");
  const MatchResult* first = cache_.Lookup("orders.new");
  EXPECT_EQ(Sids(*first).size(), 2u);
  cache_.Lookup("quotes.new");  // a second entry, so the next lookup takes the hash path
  ASSERT_EQ(cache_.misses(), 2u);

  // Literal and wildcard churn that cannot reach orders.new.
  Subscription* inbox = Add("_INBOX.abc.1");
  Add("_INBOX.def.*");
  Add("orders.new.extra");
  Add("orders.*.x", "workers");
  Add("*.old");
  Drop(inbox);
  EXPECT_EQ(cache_.Lookup("orders.new"), first);  // the same object: not matched again
  EXPECT_EQ(cache_.misses(), 2u);
  EXPECT_EQ(cache_.full_clears(), 0u);
  EXPECT_EQ(cache_.size(), 2u);
}

TEST_F(MatchCacheTest, RelatedChangesAreSeen) {
  Add("a.b");
  cache_.Lookup("x.y");
  EXPECT_EQ(Sids(*cache_.Lookup("a.b")).size(), 1u);
  for (const char* pattern : {"a.b", "a.*", "*.b", "a.>", ">", "*.*"}) {
    const uint64_t misses = cache_.misses();
    Subscription* s = Add(pattern);
    EXPECT_EQ(Sids(*cache_.Lookup("a.b")).size(), 2u) << "SUB " << pattern;
    EXPECT_EQ(cache_.misses(), misses + 1) << pattern;
    Drop(s);
    EXPECT_EQ(Sids(*cache_.Lookup("a.b")).size(), 1u) << "UNSUB " << pattern;
  }
  // A queue member joining a group the entry already has.
  Add("a.*", "g");
  EXPECT_EQ(cache_.Lookup("a.b")->FindGroup("g")->members.size(), 1u);
  Add("a.b", "g");
  EXPECT_EQ(cache_.Lookup("a.b")->FindGroup("g")->members.size(), 2u);
  EXPECT_EQ(cache_.full_clears(), 0u);
}

class SmallLogMatchCacheTest : public MatchCacheTest {
 protected:
  SmallLogMatchCacheTest() : MatchCacheTest(8) {}
};

TEST_F(SmallLogMatchCacheTest, FallingBehindTheLogStartsOver) {
  Add("hot");
  const MatchResult* hot = cache_.Lookup("hot");
  for (int i = 0; i < 8; ++i) Add("cold." + std::to_string(i));  // exactly the log's size: still covered
  EXPECT_EQ(cache_.Lookup("hot"), hot);
  EXPECT_EQ(cache_.misses(), 1u);
  for (int i = 0; i < 9; ++i) Add("colder." + std::to_string(i));  // one more than it keeps
  EXPECT_EQ(Sids(*cache_.Lookup("hot")).size(), 1u);
  EXPECT_EQ(cache_.misses(), 2u);
  EXPECT_EQ(cache_.full_clears(), 1u);
}

TEST_F(MatchCacheTest, TooLongToLogStartsOver) {
  Add("hot");
  cache_.Lookup("hot");
  Add("long." + std::string(SubjectIndex::kMaxLoggedSubject, 'x'));
  cache_.Lookup("hot");
  EXPECT_EQ(cache_.full_clears(), 1u);
  EXPECT_EQ(cache_.misses(), 2u);
}

TEST_F(MatchCacheTest, IdleCatchUpReleasesRemovedSubscriptions) {
  Subscription* gone = Add("gone.x");
  Add("kept.x");
  cache_.Lookup("gone.x");
  cache_.Lookup("kept.x");
  Drop(gone);
  cache_.CatchUp();
  EXPECT_EQ(cache_.size(), 1u);
  EXPECT_EQ(cache_.full_clears(), 0u);
}

// Random SUB/UNSUB of literal and wildcard subjects, plain and queue, with
// cached lookups in between: every cached answer equals a fresh match.
TEST_F(MatchCacheTest, RandomizedAgainstFreshMatch) {
  std::mt19937 rng(7);
  const std::vector<std::string> tokens = {"a", "b", "c"};
  auto subject = [&](bool wild) {
    std::string s;
    const int n = 1 + rng() % 3;
    for (int i = 0; i < n; ++i) {
      if (i) s += '.';
      const int r = rng() % 8;
      if (wild && r == 0) {
        s += '*';
      } else if (wild && r == 1 && i == n - 1) {
        s += '>';
      } else {
        s += tokens[rng() % tokens.size()];
      }
    }
    return s;
  };
  for (int round = 0; round < 4000; ++round) {
    const int action = rng() % 10;
    if (action < 3 || subs_.empty()) {
      Add(subject(true), rng() % 3 == 0 ? "q" + std::to_string(rng() % 2) : "");
    } else if (action < 5) {
      auto it = subs_.begin();
      std::advance(it, rng() % subs_.size());
      Drop(it->second);
    } else {
      const std::string s = subject(false);
      ASSERT_EQ(Sids(*cache_.Lookup(s)), Sids(*index_.Match(s))) << s << " round " << round;
    }
  }
  EXPECT_EQ(cache_.full_clears(), 0u);
}

// Another thread churns unrelated subjects while this one looks up a hot
// subject: each answer is right, and the entry is matched again only when
// the cache fell behind the whole log.
TEST_F(MatchCacheTest, ConcurrentUnrelatedChurn) {
  Add("hot.subject");
  std::atomic<bool> done{false};
  std::thread churn([this, &done] {
    FakeEndpoint* other = new FakeEndpoint;
    for (int i = 0; i < 20000; ++i) {
      auto* s = new Subscription(other, "_INBOX.churn." + std::to_string(i), "", "c", false);
      index_.Insert(s);
      index_.Remove(s);
      s->Unref();
    }
    other->Unref();
    done.store(true);
  });
  uint64_t lookups = 0;
  while (!done.load() || lookups < 1000) {
    const MatchResult* r = cache_.Lookup("hot.subject");
    ASSERT_EQ(r->plain.size(), 1u);
    cache_.Lookup("hot.other");
    ++lookups;
  }
  churn.join();
  // Two subjects, each matched once plus at most once per full clear.
  EXPECT_LE(cache_.misses(), 2 + 2 * cache_.full_clears());
  EXPECT_LT(cache_.full_clears(), lookups / 10) << lookups << " lookups";
}

// The cache holds at most max_entries subjects however many are looked up;
// an evicted subject is matched again, correctly.
TEST_F(MatchCacheTest, StaysWithinMaxEntries) {
  Add("s.*");
  Add("s.7");
  MatchCache small(&index_, /*max_entries=*/8);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) {
      const std::string subject = "s." + std::to_string(i);
      const MatchResult* r = small.Lookup(subject);
      ASSERT_EQ(Sids(*r).size(), i == 7 ? 2u : 1u) << subject;
      ASSERT_LE(small.size(), 8u);
    }
  }
  // Each later round finds at most 8 of its 100 subjects still cached.
  EXPECT_GE(small.misses(), 100u + 2 * 92u);
  // A subject looked up over and over stays cached.
  const uint64_t before = small.misses();
  for (int i = 0; i < 10; ++i) small.Lookup("s.7");
  EXPECT_LE(small.misses(), before + 1);
}

}  // namespace
}  // namespace zmesh::server

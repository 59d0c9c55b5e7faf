// The subject index against a naive matcher (proto::SubjectMatches over every
// subscription), on hand-picked cases and on random subjects, with inserts
// and removals interleaved; plus the per-loop match cache.
#include "server/subject_index.h"

#include <gtest/gtest.h>

#include <algorithm>
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

TEST_F(SubjectIndexTest, MatchCacheFollowsGeneration) {
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
  Add("z");
  cache.PurgeIfStale();
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace zmesh::server

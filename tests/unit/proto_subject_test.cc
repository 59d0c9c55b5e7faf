#include "proto/subject.h"

#include "proto/name_bounds.h"

#include <gtest/gtest.h>

namespace zmesh::proto {
namespace {

TEST(SubjectTest, Validity) {
  for (const char* ok : {"foo", "foo.bar", "foo.*", "foo.>", "*", ">", "*.*.>", "a*.b>", "_INBOX.abc.1", "foo.*.bar"}) {
    EXPECT_TRUE(IsValidSubject(ok)) << ok;
  }
  for (const char* bad : {"", ".", "foo.", ".foo", "foo..bar", "foo.>.bar", ">.foo", "foo bar", "foo\tbar", "foo.\r"}) {
    EXPECT_FALSE(IsValidSubject(bad)) << bad;
  }
}

TEST(SubjectTest, LiteralSubjects) {
  EXPECT_TRUE(IsValidLiteralSubject("foo.bar"));
  EXPECT_TRUE(IsValidLiteralSubject("foo.b*r"));  // '*' inside a token is a literal
  EXPECT_FALSE(IsValidLiteralSubject("foo.*"));
  EXPECT_FALSE(IsValidLiteralSubject("foo.>"));
  EXPECT_FALSE(IsValidLiteralSubject("foo..bar"));
}

TEST(SubjectTest, Matching) {
  EXPECT_TRUE(SubjectMatches("foo.bar", "foo.bar"));
  EXPECT_FALSE(SubjectMatches("foo.bar", "foo.baz"));
  EXPECT_TRUE(SubjectMatches("foo.*", "foo.bar"));
  EXPECT_FALSE(SubjectMatches("foo.*", "foo.bar.baz"));
  EXPECT_FALSE(SubjectMatches("foo.*", "foo"));
  EXPECT_TRUE(SubjectMatches("foo.>", "foo.bar.baz"));
  EXPECT_FALSE(SubjectMatches("foo.>", "foo"));
  EXPECT_TRUE(SubjectMatches(">", "a"));
  EXPECT_TRUE(SubjectMatches("*.b.>", "a.b.c.d"));
  EXPECT_FALSE(SubjectMatches("*.b.>", "a.c.c"));
}

TEST(SubjectTest, Subset) {
  EXPECT_TRUE(SubjectIsSubsetOf("foo.bar", "foo.*"));
  EXPECT_TRUE(SubjectIsSubsetOf("foo.*", "foo.>"));
  EXPECT_TRUE(SubjectIsSubsetOf("foo.*.baz", "foo.>"));
  EXPECT_FALSE(SubjectIsSubsetOf("foo.>", "foo.*"));
  EXPECT_FALSE(SubjectIsSubsetOf("foo.*", "foo.bar"));
  EXPECT_TRUE(SubjectIsSubsetOf("foo.>", ">"));
}

TEST(SubjectTest, TokenIterator) {
  TokenIterator it("a..b.");
  std::string_view t;
  std::vector<std::string> tokens;
  while (it.Next(&t)) tokens.emplace_back(t);
  EXPECT_EQ(tokens, (std::vector<std::string>{"a", "", "b", ""}));
}

}  // namespace
TEST(NameBoundsTest, SubscriptionsAndPublishesAreCheckedAlike) {
  const NameBounds b{10, 3, 4};
  EXPECT_EQ(CountTokens("a"), 1u);
  EXPECT_EQ(CountTokens("a.b.c"), 3u);
  EXPECT_EQ(CheckSubscription("a.b.c", "", b), BoundViolation::kNone);
  EXPECT_EQ(CheckSubscription("a.*.>", "q", b), BoundViolation::kNone);
  EXPECT_EQ(CheckSubscription("a.b.c.d", "", b), BoundViolation::kSubjectTokens);
  EXPECT_EQ(CheckSubscription("abcdefghijk", "", b), BoundViolation::kSubjectBytes);
  EXPECT_EQ(CheckSubscription("abcdefghij", "", b), BoundViolation::kNone);  // at the bound
  EXPECT_EQ(CheckSubscription("a", "queue", b), BoundViolation::kQueueBytes);
  EXPECT_EQ(CheckSubscription("a", "qqqq", b), BoundViolation::kNone);
  EXPECT_EQ(CheckPublish("a.b.c", "_INBOX.12", b), BoundViolation::kNone);
  EXPECT_EQ(CheckPublish("a.b.c.d", "", b), BoundViolation::kSubjectTokens);
  EXPECT_EQ(CheckPublish("abcdefghijk", "", b), BoundViolation::kSubjectBytes);
  EXPECT_EQ(CheckPublish("a", "_INBOX.1234", b), BoundViolation::kReplyBytes);
  EXPECT_EQ(ViolationText(BoundViolation::kSubjectBytes, b, false), "Invalid Subject: longer than 10 bytes");
  EXPECT_EQ(ViolationText(BoundViolation::kSubjectTokens, b, true), "Invalid Publish Subject: more than 3 tokens");
  EXPECT_EQ(ViolationText(BoundViolation::kQueueBytes, b, false), "Invalid Queue Name: longer than 4 bytes");
  // The defaults are the wire's limits.
  EXPECT_EQ(NameBounds().max_subject_bytes, kMaxWireStringBytes);
}

}  // namespace zmesh::proto

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "auth/go_quote.h"
#include "auth/permissions.h"

namespace zmesh::auth {
namespace {

using namespace std::string_literals;

// -Wmissing-field-initializers rejects designated initializers that skip fields.
PermissionLists Lists(std::vector<std::string> pub_allow, std::vector<std::string> pub_deny,
                      std::vector<std::string> sub_allow, std::vector<std::string> sub_deny) {
  PermissionLists lists;
  lists.pub_allow = std::move(pub_allow);
  lists.pub_deny = std::move(pub_deny);
  lists.sub_allow = std::move(sub_allow);
  lists.sub_deny = std::move(sub_deny);
  return lists;
}

TEST(PermissionsTest, DefaultAllowsEverything) {
  Permissions p;
  EXPECT_TRUE(p.unrestricted());
  EXPECT_TRUE(p.CanPublish("a.b"));
  EXPECT_TRUE(p.CanSubscribe(">"));
  EXPECT_FALSE(p.NeedsDeliveryFilter(">"));
  EXPECT_FALSE(p.DeniesDelivery("a.b"));
  EXPECT_TRUE(Permissions(PermissionLists{}).unrestricted());
}

TEST(PermissionsTest, PublishAllowAndDeny) {
  Permissions p(Lists({"a.>", "b.*"}, {"a.secret"}, {}, {}));
  EXPECT_FALSE(p.unrestricted());
  EXPECT_TRUE(p.CanPublish("a.x"));
  EXPECT_TRUE(p.CanPublish("a.x.y"));
  EXPECT_FALSE(p.CanPublish("a"));  // '>' needs at least one token
  EXPECT_FALSE(p.CanPublish("a.secret"));
  EXPECT_TRUE(p.CanPublish("a.secret.not"));
  EXPECT_TRUE(p.CanPublish("b.x"));
  EXPECT_FALSE(p.CanPublish("b.x.y"));
  EXPECT_FALSE(p.CanPublish("c"));
  // Publish lists do not restrict subscriptions.
  EXPECT_TRUE(p.CanSubscribe("c.>"));
}

TEST(PermissionsTest, DenyOnlyAllowsTheRest) {
  Permissions p(Lists({}, {"admin.>"}, {}, {"admin.>"}));
  EXPECT_TRUE(p.CanPublish("orders.new"));
  EXPECT_FALSE(p.CanPublish("admin.reset"));
  EXPECT_TRUE(p.CanSubscribe("orders.*"));
  EXPECT_FALSE(p.CanSubscribe("admin.x"));
  EXPECT_FALSE(p.CanSubscribe("admin.>"));
}

// The same lists and subscriptions were run against nats-server 2.9.10; the
// expectations are its answers.
TEST(PermissionsTest, WildcardSubscriptionsMatchLikeNatsServer) {
  Permissions p(Lists({}, {}, {"foo.*", "bar.>", "_INBOX.>"}, {"bar.secret", "bar.x.*"}));
  EXPECT_TRUE(p.CanSubscribe("foo.*"));
  EXPECT_TRUE(p.CanSubscribe("foo.>"));  // nats-server: allow '*' matches the token '>'
  EXPECT_TRUE(p.CanSubscribe("foo.x"));
  EXPECT_FALSE(p.CanSubscribe("foo.x.y"));
  EXPECT_TRUE(p.CanSubscribe("bar.*"));
  EXPECT_TRUE(p.CanSubscribe("bar.>"));
  EXPECT_FALSE(p.CanSubscribe("bar.secret"));
  EXPECT_FALSE(p.CanSubscribe("bar.x.*"));
  EXPECT_FALSE(p.CanSubscribe("bar.x.>"));  // deny '*' matches the token '>'
  EXPECT_TRUE(p.CanSubscribe("bar.*.y"));
  EXPECT_TRUE(p.CanSubscribe("foo.\"q\""));
  EXPECT_FALSE(p.CanSubscribe("*.x"));  // '*' is not the literal "foo"
  EXPECT_FALSE(p.CanSubscribe(">"));
  EXPECT_TRUE(p.CanSubscribe("_INBOX.abc.1"));
}

TEST(PermissionsTest, AllowFullWildcardCoversNarrowerWildcards) {
  Permissions p(Lists({}, {}, {"foo.>", "lit.bar"}, {}));
  EXPECT_TRUE(p.CanSubscribe("foo.*"));
  EXPECT_TRUE(p.CanSubscribe("foo.*.baz"));
  EXPECT_TRUE(p.CanSubscribe("foo.>"));
  EXPECT_FALSE(p.CanSubscribe("foo"));
  EXPECT_TRUE(p.CanSubscribe("lit.bar"));
  EXPECT_FALSE(p.CanSubscribe("lit.*"));  // would also receive lit.other
  EXPECT_FALSE(p.CanSubscribe("lit.>"));
}

TEST(PermissionsTest, DenyFilterForAllowedWildcardSubscriptions) {
  Permissions p(Lists({}, {}, {"bar.>", "foo.>"}, {"bar.secret", "bar.x.*", "*.private"}));
  // Allowed, but could receive denied subjects: filter each message.
  ASSERT_TRUE(p.CanSubscribe("bar.*"));
  EXPECT_TRUE(p.NeedsDeliveryFilter("bar.*"));
  ASSERT_TRUE(p.CanSubscribe("bar.>"));
  EXPECT_TRUE(p.NeedsDeliveryFilter("bar.>"));
  ASSERT_TRUE(p.CanSubscribe("foo.>"));
  EXPECT_TRUE(p.NeedsDeliveryFilter("foo.>"));  // foo.private
  // Nothing denied can match these.
  EXPECT_FALSE(p.NeedsDeliveryFilter("foo.public.*"));
  EXPECT_FALSE(p.NeedsDeliveryFilter("bar.y.*"));
  EXPECT_FALSE(p.NeedsDeliveryFilter("bar.ok"));  // literal: checked at SUB time

  EXPECT_TRUE(p.DeniesDelivery("bar.secret"));
  EXPECT_TRUE(p.DeniesDelivery("bar.x.y"));
  EXPECT_TRUE(p.DeniesDelivery("foo.private"));
  EXPECT_FALSE(p.DeniesDelivery("bar.public"));
  EXPECT_FALSE(p.DeniesDelivery("bar.x"));
  EXPECT_FALSE(p.DeniesDelivery("foo.private.not"));

  Permissions no_deny(Lists({}, {}, {"bar.>"}, {}));
  EXPECT_FALSE(no_deny.NeedsDeliveryFilter("bar.>"));
  EXPECT_FALSE(no_deny.DeniesDelivery("bar.secret"));
}

// Expected strings are nats-server 2.9.10's replies, captured byte for byte.
TEST(PermissionErrorTextTest, MatchesNatsServer) {
  EXPECT_EQ(PublishViolationText("foo.bar"), R"(Permissions Violation for Publish to "foo.bar")");
  EXPECT_EQ(SubscribeViolationText("foo.>"),
            R"(Permissions Violation for Subscription to "foo.>")");
  EXPECT_EQ(SubscribeViolationText("foo.>", "q"),
            R"(Permissions Violation for Subscription to "foo.>" using queue "q")");
  EXPECT_EQ(PublishViolationText("c.\"x\\"), R"(Permissions Violation for Publish to "c.\"x\\")");
  EXPECT_EQ(SubscribeViolationText("c.\"x\\", "q\x01"),
            R"(Permissions Violation for Subscription to "c.\"x\\" using queue "q\x01")");
}

TEST(GoQuoteTest, EscapesLikeGoStrconvQuote) {
  EXPECT_EQ(GoQuote(""), R"("")");
  EXPECT_EQ(GoQuote("plain.subject_1-*>"), R"("plain.subject_1-*>")");
  EXPECT_EQ(GoQuote("c.\xc3\xa9\x01\x7f"), "\"c.\xc3\xa9\\x01\\x7f\"");
  EXPECT_EQ(GoQuote("c.\xff\xc2\x80\xc2\xad"), R"("c.\xff\u0080\u00ad")");
  EXPECT_EQ(GoQuote("c.\xe2\x80\xa8\xef\xbb\xbf\xf0\x9f\x98\x80"),
            "\"c.\\u2028\\ufeff\xf0\x9f\x98\x80\"");
  EXPECT_EQ(GoQuote("c.\a\b\v\f\n\r\t"), R"("c.\a\b\v\f\n\r\t")");
  EXPECT_EQ(GoQuote("\0"s), R"("\x00")");
  // Overlong forms, surrogates and truncated sequences are invalid UTF-8: byte escapes.
  EXPECT_EQ(GoQuote("\xc0\xaf"), R"("\xc0\xaf")");
  EXPECT_EQ(GoQuote("\xed\xa0\x80"), R"("\xed\xa0\x80")");
  EXPECT_EQ(GoQuote("\xe2\x82"), R"("\xe2\x82")");
  EXPECT_EQ(GoQuote("\xf4\x90\x80\x80"), R"("\xf4\x90\x80\x80")");
  // Printable multi-byte characters stay; private-use planes need \U.
  EXPECT_EQ(GoQuote("\xe2\x82\xac"), "\"\xe2\x82\xac\"");
  EXPECT_EQ(GoQuote("\xf3\xb0\x80\x80"), R"("\U000f0000")");
}

}  // namespace
}  // namespace zmesh::auth

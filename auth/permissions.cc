#include "auth/permissions.h"

#include <algorithm>
#include <utility>

#include "auth/go_quote.h"
#include "proto/subject.h"

namespace zmesh::auth {
namespace {

bool AnyMatches(const std::vector<std::string>& patterns, std::string_view subject) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return proto::SubjectMatches(p, subject); });
}

// Could some literal subject match both patterns?
bool Intersects(std::string_view a, std::string_view b) {
  proto::TokenIterator ia(a), ib(b);
  std::string_view ta, tb;
  while (true) {
    bool more_a = ia.Next(&ta), more_b = ib.Next(&tb);
    if (!more_a || !more_b) return more_a == more_b;
    if (ta == ">" || tb == ">") return true;  // both have a token here, '>' takes the rest
    if (ta != "*" && tb != "*" && ta != tb) return false;
  }
}

// nats-server's canPublish/canSubscribe: sl.Match against the allow list,
// then the deny list (no queue-qualified entries).
bool Allowed(const std::vector<std::string>& allow, const std::vector<std::string>& deny,
             std::string_view subject) {
  if (!allow.empty() && !AnyMatches(allow, subject)) return false;
  return !AnyMatches(deny, subject);
}

}  // namespace

Permissions::Permissions(PermissionLists lists)
    : lists_(std::move(lists)),
      unrestricted_(lists_.pub_allow.empty() && lists_.pub_deny.empty() &&
                    lists_.sub_allow.empty() && lists_.sub_deny.empty()) {}

bool Permissions::CanPublish(std::string_view subject) const {
  return Allowed(lists_.pub_allow, lists_.pub_deny, subject);
}

bool Permissions::CanSubscribe(std::string_view subject) const {
  return Allowed(lists_.sub_allow, lists_.sub_deny, subject);
}

bool Permissions::NeedsDeliveryFilter(std::string_view subject) const {
  if (lists_.sub_deny.empty() || !proto::HasWildcard(subject)) return false;
  return std::any_of(lists_.sub_deny.begin(), lists_.sub_deny.end(),
                     [&](const std::string& d) { return Intersects(d, subject); });
}

bool Permissions::DeniesDelivery(std::string_view msg_subject) const {
  return AnyMatches(lists_.sub_deny, msg_subject);
}

std::string PublishViolationText(std::string_view subject) {
  return "Permissions Violation for Publish to " + GoQuote(subject);
}

std::string SubscribeViolationText(std::string_view subject, std::string_view queue) {
  std::string text = "Permissions Violation for Subscription to " + GoQuote(subject);
  if (!queue.empty()) text += " using queue " + GoQuote(queue);
  return text;
}

}  // namespace zmesh::auth

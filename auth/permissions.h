#pragma once

// Per-user publish/subscribe permissions with nats-server's semantics:
//  - an empty allow list allows everything; otherwise a subject must match
//    one of its patterns;
//  - a deny entry overrides any allow entry.
// Matching is nats-server's sublist Match: the checked subject's tokens are
// taken literally, so a subscription's own wildcards are matched like any
// token. Allow "foo.>" therefore permits SUB "foo.*", deny "foo.>" forbids it,
// and (as in nats-server) allow "foo.*" permits SUB "foo.>".
//
// An allowed wildcard subscription can still cover denied subjects (allow
// "foo.>", deny "foo.secret", SUB "foo.*"); nats-server then filters each
// message delivered to it against the deny list. NeedsDeliveryFilter() says
// when a subscription needs that, DeniesDelivery() is the per-message check.
//
// Immutable after construction: every method is const and thread safe, and
// one instance is shared (std::shared_ptr<const Permissions>) by all the
// connections of a user. Checks are linear in the number of patterns.

#include <string>
#include <string_view>
#include <vector>

namespace zmesh::auth {

// Subject patterns, each a valid subject (proto::IsValidSubject) that may
// contain wildcards. The users file parser validates them.
struct PermissionLists {
  std::vector<std::string> pub_allow;
  std::vector<std::string> pub_deny;
  std::vector<std::string> sub_allow;
  std::vector<std::string> sub_deny;
};

class Permissions {
 public:
  // Allows everything.
  Permissions() = default;
  // Requires every pattern to be a valid subject (an invalid deny pattern
  // would deny nothing).
  explicit Permissions(PermissionLists lists);

  // True when no list is set: the caller may skip all checks.
  bool unrestricted() const { return unrestricted_; }
  const PermissionLists& lists() const { return lists_; }

  // May this user publish to the literal `subject`?
  bool CanPublish(std::string_view subject) const;

  // May this user subscribe to `subject` (wildcards allowed)? A queue group
  // does not change the answer: queue-qualified permission entries are not
  // supported.
  bool CanSubscribe(std::string_view subject) const;

  // True when messages delivered to the allowed subscription `subject` must
  // be checked with DeniesDelivery: it has a wildcard and may match a
  // subject the deny list forbids. Evaluate once, at SUB time.
  bool NeedsDeliveryFilter(std::string_view subject) const;

  // True when a message on the literal `msg_subject` must not be delivered to
  // this user's wildcard subscriptions: it matches a sub_deny pattern.
  bool DeniesDelivery(std::string_view msg_subject) const;

 private:
  PermissionLists lists_;
  bool unrestricted_ = true;
};

// The texts nats-server sends after "-ERR '" for a refused PUB or SUB, byte
// for byte (subjects and queue quoted like Go's %q):
//   Permissions Violation for Publish to "foo.bar"
//   Permissions Violation for Subscription to "foo.>"
//   Permissions Violation for Subscription to "foo.>" using queue "q"
// An empty `queue` means a plain subscription. Thread safe.
std::string PublishViolationText(std::string_view subject);
std::string SubscribeViolationText(std::string_view subject, std::string_view queue = {});

}  // namespace zmesh::auth

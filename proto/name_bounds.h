#pragma once

// Bounds on the names a node accepts — subjects (bytes and tokens), reply
// subjects (bytes) and queue-group names (bytes) — from clients (SUB, PUB)
// and from peers (INTEREST, MSG) alike. They keep what one name costs in the
// subject index and in every peer's copy of it bounded, and keep every name
// within the peer wire format (u16 string lengths). Every node of a mesh
// should use the same bounds: a peer frame beyond them is a protocol error.
//
// Thread safety: a value type; the checks are pure functions.

#include <cstddef>
#include <string>
#include <string_view>

namespace zmesh::proto {

// The longest string the peer wire format carries (u16 length prefix).
inline constexpr size_t kMaxWireStringBytes = 65535;

struct NameBounds {
  size_t max_subject_bytes = kMaxWireStringBytes;   // subjects and reply subjects
  size_t max_subject_tokens = kMaxWireStringBytes;  // '.'-separated tokens of a subject
  size_t max_queue_bytes = kMaxWireStringBytes;     // queue-group names
};

// Number of '.'-separated tokens (1 for an empty or dot-less subject).
size_t CountTokens(std::string_view subject);

enum class BoundViolation : unsigned char { kNone, kSubjectBytes, kSubjectTokens, kReplyBytes, kQueueBytes };

// The first bound a subscription (subject, queue; queue empty for plain) or a
// publish (subject, reply) exceeds, kNone when within every bound.
BoundViolation CheckSubscription(std::string_view subject, std::string_view queue, const NameBounds& bounds);
BoundViolation CheckPublish(std::string_view subject, std::string_view reply, const NameBounds& bounds);

// The -ERR text for a violation, e.g. "Invalid Subject: longer than 1024
// bytes" (SUB) or "Invalid Publish Subject: more than 64 tokens" (PUB);
// also what peer-link logs say.
std::string ViolationText(BoundViolation violation, const NameBounds& bounds, bool publish);

}  // namespace zmesh::proto

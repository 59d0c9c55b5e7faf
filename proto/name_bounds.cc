#include "proto/name_bounds.h"

#include <algorithm>

namespace zmesh::proto {

size_t CountTokens(std::string_view subject) {
  return 1 + static_cast<size_t>(std::count(subject.begin(), subject.end(), '.'));
}

BoundViolation CheckSubscription(std::string_view subject, std::string_view queue, const NameBounds& b) {
  if (subject.size() > b.max_subject_bytes) return BoundViolation::kSubjectBytes;
  if (CountTokens(subject) > b.max_subject_tokens) return BoundViolation::kSubjectTokens;
  if (queue.size() > b.max_queue_bytes) return BoundViolation::kQueueBytes;
  return BoundViolation::kNone;
}

BoundViolation CheckPublish(std::string_view subject, std::string_view reply, const NameBounds& b) {
  if (subject.size() > b.max_subject_bytes) return BoundViolation::kSubjectBytes;
  if (CountTokens(subject) > b.max_subject_tokens) return BoundViolation::kSubjectTokens;
  if (reply.size() > b.max_subject_bytes) return BoundViolation::kReplyBytes;
  return BoundViolation::kNone;
}

std::string ViolationText(BoundViolation v, const NameBounds& b, bool publish) {
  const std::string subject = publish ? "Invalid Publish Subject: " : "Invalid Subject: ";
  switch (v) {
    case BoundViolation::kNone:
      return "";
    case BoundViolation::kSubjectBytes:
      return subject + "longer than " + std::to_string(b.max_subject_bytes) + " bytes";
    case BoundViolation::kSubjectTokens:
      return subject + "more than " + std::to_string(b.max_subject_tokens) + " tokens";
    case BoundViolation::kReplyBytes:
      return "Invalid Reply Subject: longer than " + std::to_string(b.max_subject_bytes) + " bytes";
    case BoundViolation::kQueueBytes:
      return "Invalid Queue Name: longer than " + std::to_string(b.max_queue_bytes) + " bytes";
  }
  return "";
}

}  // namespace zmesh::proto

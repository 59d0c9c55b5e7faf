#include "server/move_filter.h"

#include <algorithm>

#include "server/absl_string_view.h"

namespace zmesh::server {

bool MoveFilter::Accepts(std::string_view origin) const {
  std::lock_guard<std::mutex> lock(mu_);
  const bool marked = marked_.contains(AbslView(origin));
  const bool accepts = side_ == Side::kIncoming ? finished_ || marked : !finished_ && !marked;
  withheld_ += accepts ? 0 : 1;
  return accepts;
}

bool MoveFilter::Mark(std::string_view origin) {
  std::lock_guard<std::mutex> lock(mu_);
  marked_.emplace(std::string(origin));
  return ReportLocked();
}

bool MoveFilter::Acknowledge(std::string_view origin) {
  std::lock_guard<std::mutex> lock(mu_);
  acknowledged_.emplace(std::string(origin));
  return ReportLocked();
}

bool MoveFilter::OriginGone(std::string_view origin) {
  std::lock_guard<std::mutex> lock(mu_);
  marked_.emplace(std::string(origin));
  acknowledged_.emplace(std::string(origin));
  gone_.emplace(std::string(origin));
  return ReportLocked();
}

void MoveFilter::QueueSwitch(std::string_view origin, std::string_view subject, std::string_view queue) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_switched_[{std::string(subject), std::string(queue)}].emplace(std::string(origin));
}

bool MoveFilter::QueueSwitched(std::string_view origin, std::string_view subject, std::string_view queue) const {
  std::lock_guard<std::mutex> lock(mu_);
  return QueueSwitchedLocked(origin, subject, queue);
}

bool MoveFilter::QueueSwitchedLocked(std::string_view origin, std::string_view subject,
                                     std::string_view queue) const {
  if (gone_.contains(AbslView(origin))) return true;
  auto it = queue_switched_.find(std::make_pair(std::string(subject), std::string(queue)));
  return it != queue_switched_.end() && it->second.contains(AbslView(origin));
}

bool MoveFilter::QueueSwitchComplete(std::string_view subject, std::string_view queue) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!expecting_ || !QueueSwitchedLocked("", subject, queue)) return false;
  return std::all_of(expected_.begin(), expected_.end(), [&](const std::string& origin) {
    return QueueSwitchedLocked(origin, subject, queue);
  });
}

bool MoveFilter::Expect(std::vector<std::string> origins) {
  std::lock_guard<std::mutex> lock(mu_);
  expected_ = std::move(origins);
  expecting_ = true;
  return ReportLocked();
}

bool MoveFilter::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  finished_ = true;
  if (reported_) return false;
  reported_ = true;
  return true;
}

bool MoveFilter::complete() const {
  std::lock_guard<std::mutex> lock(mu_);
  return CompleteLocked();
}

bool MoveFilter::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

uint64_t MoveFilter::withheld() const {
  std::lock_guard<std::mutex> lock(mu_);
  return withheld_;
}

bool MoveFilter::CompleteLocked() const {
  if (!expecting_ || !marked_.contains(absl::string_view())) return false;
  const bool old_end = side_ == Side::kOutgoing;
  return std::all_of(expected_.begin(), expected_.end(), [this, old_end](const std::string& o) {
    return marked_.contains(o) && (!old_end || acknowledged_.contains(o));
  });
}

bool MoveFilter::ReportLocked() {
  if (reported_ || !CompleteLocked()) return false;
  reported_ = true;
  // A node that joined after the cut never marks: once every expected cut
  // is in, the new end takes everything.
  if (side_ == Side::kIncoming) finished_ = true;
  return true;
}

}  // namespace zmesh::server

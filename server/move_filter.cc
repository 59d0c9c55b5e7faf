#include "server/move_filter.h"

#include <algorithm>

#include "server/absl_string_view.h"

namespace zmesh::server {

bool MoveFilter::Accepts(std::string_view origin) const {
  std::lock_guard<std::mutex> lock(mu_);
  const bool marked = marked_.contains(AbslView(origin));
  if (side_ == Side::kIncoming) return finished_ || marked;
  return !finished_ && !marked;
}

bool MoveFilter::Mark(std::string_view origin) {
  std::lock_guard<std::mutex> lock(mu_);
  marked_.emplace(std::string(origin));
  return ReportLocked();
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

bool MoveFilter::CompleteLocked() const {
  if (!expecting_ || !marked_.contains(absl::string_view())) return false;
  return std::all_of(expected_.begin(), expected_.end(), [this](const std::string& o) { return marked_.contains(o); });
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

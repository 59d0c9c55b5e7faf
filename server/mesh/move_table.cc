#include "server/mesh/move_table.h"

#include <glog/logging.h>

namespace zmesh::server::mesh {

void MoveTable::MoveOut(std::shared_ptr<MoveFilter> filter, std::function<void()> cuts_done) {
  const uint64_t token = filter->token();
  {
    std::lock_guard<std::mutex> lock(mu_);
    moves_.emplace(token, Entry{std::move(filter), std::move(cuts_done)});
  }
  cut_(token);
}

void MoveTable::MoveIn(std::shared_ptr<MoveFilter> filter) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t token = filter->token();
  moves_.emplace(token, Entry{std::move(filter), nullptr});
}

void MoveTable::Forget(const MoveFilter* filter) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [begin, end] = moves_.equal_range(filter->token());
  for (auto it = begin; it != end; ++it) {
    if (it->second.filter.get() == filter) {
      moves_.erase(it);
      return;
    }
  }
}

void MoveTable::Mark(uint64_t token, std::string_view origin) {
  Apply(&token, [origin](MoveFilter& f) { return f.Mark(origin); });
}

void MoveTable::Acknowledged(uint64_t token, std::string_view origin) {
  Apply(&token, [origin](MoveFilter& f) { return f.Acknowledge(origin); });
}

void MoveTable::CutMade(uint64_t token, const std::vector<std::string>& peers) {
  Apply(&token, [&peers](MoveFilter& f) {
    const bool by_self = f.Mark("");
    return f.Expect(peers) || by_self;
  });
}

void MoveTable::OriginGone(std::string_view origin) {
  Apply(nullptr, [origin](MoveFilter& f) {
    const bool marked = f.Mark(origin);
    return f.Acknowledge(origin) || marked;
  });
}

int MoveTable::Expire(int64_t now_ms, int64_t timeout_ms) {
  int expired = 0;
  Apply(nullptr, [now_ms, timeout_ms, &expired](MoveFilter& f) {
    if (now_ms - f.started_ms() < timeout_ms || f.complete()) return false;
    const bool reported = f.Finish();
    if (reported) {
      LOG(WARNING) << "move " << std::hex << f.token() << std::dec << ": not every node cut within " << timeout_ms
                   << " ms; " << (f.side() == MoveFilter::Side::kIncoming ? "delivering everything" : "finishing");
    }
    expired += reported ? 1 : 0;
    return reported;
  });
  return expired;
}

size_t MoveTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return moves_.size();
}

void MoveTable::Apply(const uint64_t* token, const std::function<bool(MoveFilter&)>& step) {
  std::vector<std::function<void()>> completed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto begin = token ? moves_.lower_bound(*token) : moves_.begin();
    auto end = token ? moves_.upper_bound(*token) : moves_.end();
    for (auto it = begin; it != end; ++it) {
      if (step(*it->second.filter) && it->second.done) completed.push_back(it->second.done);
    }
  }
  for (auto& done : completed) done();
}

}  // namespace zmesh::server::mesh

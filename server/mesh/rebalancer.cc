#include "server/mesh/rebalancer.h"

#include <algorithm>
#include <cmath>

namespace zmesh::server::mesh {

RebalancePlan PlanRebalance(const std::string& own_id, int64_t own, const std::vector<NodeLoad>& peers,
                            int max_moves) {
  RebalancePlan plan;
  if (peers.empty() || max_moves <= 0) return plan;
  int64_t total = own;
  for (const NodeLoad& p : peers) total += std::max<int64_t>(p.clients, 0);
  const double average = static_cast<double>(total) / static_cast<double>(peers.size() + 1);
  const auto share = static_cast<int64_t>(std::ceil(average));
  const auto floor = static_cast<int64_t>(std::floor(average));
  // Within 10 % of the average a node keeps its clients. Rounding cannot
  // make two nodes trade clients back and forth: a node above ceil(average)
  // (plus the slack) sheds down to it, a node above floor(average) gives
  // only to a node below floor(average) (minus the slack), and no node is
  // filled beyond the level its giver keeps.
  const auto slack = static_cast<int64_t>(average * 0.1);
  const NodeLoad* target = &peers.front();
  for (const NodeLoad& p : peers) {
    if (p.clients < target->clients || (p.clients == target->clients && p.id < target->id)) target = &p;
  }
  const bool starved = target->clients < floor - slack;
  auto gives = [&](int64_t clients) { return clients > share + slack || (starved && clients > floor); };
  if (!gives(own)) return plan;
  const int64_t keep = own > share + slack ? share : floor;
  // Every giver sees the same least loaded target and the same givers: the
  // room is split among them exactly (the most loaded first, then by id),
  // so that together they do not overshoot.
  int64_t givers = 1, rank = 0;
  for (const NodeLoad& p : peers) {
    if (!gives(p.clients)) continue;
    ++givers;
    if (p.clients > own || (p.clients == own && p.id < own_id)) ++rank;
  }
  const int64_t room = keep - target->clients;
  const int64_t part = room / givers + (rank < room % givers ? 1 : 0);
  const int64_t moves = std::min({own - keep, part, static_cast<int64_t>(max_moves)});
  if (moves <= 0) return plan;
  plan.moves = static_cast<int>(moves);
  plan.target_id = target->id;
  plan.target_url = target->client_url;
  return plan;
}

}  // namespace zmesh::server::mesh

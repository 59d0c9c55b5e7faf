#include "server/mesh/rebalancer.h"

#include <algorithm>
#include <cmath>

namespace zmesh::server::mesh {

RebalancePlan PlanRebalance(int64_t own, const std::vector<NodeLoad>& peers, int max_moves) {
  RebalancePlan plan;
  if (peers.empty() || max_moves <= 0) return plan;
  int64_t total = own;
  for (const NodeLoad& p : peers) total += std::max<int64_t>(p.clients, 0);
  const double average = static_cast<double>(total) / static_cast<double>(peers.size() + 1);
  const auto share = static_cast<int64_t>(std::ceil(average));
  // Above ceil(average) plus 10 %: within it a node keeps its clients.
  // Rounding cannot make two nodes trade clients back and forth: a node
  // sheds only down to ceil(average), and fills another only up to
  // floor(average).
  const auto slack = static_cast<int64_t>(average * 0.1);
  if (own <= share + slack) return plan;
  const NodeLoad* target = &peers.front();
  for (const NodeLoad& p : peers) {
    if (p.clients < target->clients || (p.clients == target->clients && p.id < target->id)) target = &p;
  }
  const int64_t room = static_cast<int64_t>(std::floor(average)) - target->clients;
  const int64_t excess = own - share;
  const int64_t moves = std::min({excess, room, static_cast<int64_t>(max_moves)});
  if (moves <= 0) return plan;
  plan.moves = static_cast<int>(moves);
  plan.target_id = target->id;
  plan.target_url = target->client_url;
  return plan;
}

}  // namespace zmesh::server::mesh

#pragma once

// Connection balance across the mesh (issue 12 item 3): every node hears the
// others' client counts (LOAD frames) and decides on its own how many of its
// clients to move and where; no node coordinates the rest. A node above its
// fair share (ceil of the mesh average, plus 10 %) moves its excess, at most
// `max_moves` at a time, to the least loaded node, filling that node up to
// the share; nodes shedding at the same time split its room. Every node
// sheds only its own excess, so the nodes converge without agreeing on
// anything but the counts.
//
// Pure functions; no threads.

#include <cstdint>
#include <string>
#include <vector>

namespace zmesh::server::mesh {

struct NodeLoad {
  std::string id;
  std::string client_url;
  int64_t clients = 0;
};

struct RebalancePlan {
  int moves = 0;  // clients to ask to move now
  std::string target_id;
  std::string target_url;
};

// `own_id`, `own`: this node and its clients; `peers`: the others that take
// part (linked, able to take moves, their load known).
RebalancePlan PlanRebalance(const std::string& own_id, int64_t own, const std::vector<NodeLoad>& peers,
                            int max_moves);

}  // namespace zmesh::server::mesh

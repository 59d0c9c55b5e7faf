// How many clients a node asks to move, and where (server/mesh/rebalancer.h).

#include "server/mesh/rebalancer.h"

#include <gtest/gtest.h>

#include <vector>

namespace zmesh::server::mesh {
namespace {

TEST(RebalancerTest, AfterARollTheFirstRestartedNodesShedToTheEmptyOne) {
  // n1 restarted first and took everyone, n3 restarted last.
  const std::vector<NodeLoad> peers = {{"n2", "nats://n2:4222", 3}, {"n3", "nats://n3:4222", 0}};
  RebalancePlan plan = PlanRebalance(/*own=*/27, peers, /*max_moves=*/100);
  EXPECT_EQ(plan.target_id, "n3");
  EXPECT_EQ(plan.target_url, "nats://n3:4222");
  EXPECT_EQ(plan.moves, 10) << "average 10: n3 has room for 10";
  EXPECT_EQ(PlanRebalance(27, peers, 4).moves, 4) << "paced";
  // n2 is below the average too, but it sheds nothing.
  EXPECT_EQ(PlanRebalance(3, {{"n1", "u1", 27}, {"n3", "u3", 0}}, 100).moves, 0);
}

TEST(RebalancerTest, ABalancedMeshMovesNothing) {
  EXPECT_EQ(PlanRebalance(10, {{"n2", "u", 10}, {"n3", "u", 10}}, 100).moves, 0);
  EXPECT_EQ(PlanRebalance(11, {{"n2", "u", 10}, {"n3", "u", 9}}, 100).moves, 0) << "within the tolerance";
  EXPECT_EQ(PlanRebalance(101, {{"n2", "u", 100}, {"n3", "u", 99}}, 100).moves, 0) << "10 % tolerance";
  EXPECT_EQ(PlanRebalance(1, {{"n2", "u", 0}}, 100).moves, 0) << "one client cannot be split";
  EXPECT_EQ(PlanRebalance(5, {}, 100).moves, 0) << "alone";
}

TEST(RebalancerTest, ANewNodeIsFilledUpToTheAverage) {
  // Scale-out from 2 to 3 nodes with 30 clients.
  RebalancePlan a = PlanRebalance(15, {{"n2", "u2", 15}, {"n3", "u3", 0}}, 100);
  EXPECT_EQ(a.target_id, "n3");
  EXPECT_EQ(a.moves, 5);
  RebalancePlan b = PlanRebalance(15, {{"n1", "u1", 10}, {"n3", "u3", 5}}, 100);
  EXPECT_EQ(b.moves, 5) << "n2 fills n3 from 5 to 10 in the next round";
  EXPECT_EQ(PlanRebalance(10, {{"n2", "u2", 10}, {"n3", "u3", 10}}, 100).moves, 0);
}

}  // namespace
}  // namespace zmesh::server::mesh

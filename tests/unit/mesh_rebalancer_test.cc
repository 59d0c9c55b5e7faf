// How many clients a node asks to move, and where (server/mesh/rebalancer.h).

#include "server/mesh/rebalancer.h"

#include <gtest/gtest.h>

#include <vector>

namespace zmesh::server::mesh {
namespace {

TEST(RebalancerTest, AfterARollTheFirstRestartedNodesShedToTheEmptyOne) {
  // n1 restarted first and took everyone, n3 restarted last.
  const std::vector<NodeLoad> peers = {{"n2", "nats://n2:4222", 3}, {"n3", "nats://n3:4222", 0}};
  RebalancePlan plan = PlanRebalance("n1", /*own=*/27, peers, /*max_moves=*/100);
  EXPECT_EQ(plan.target_id, "n3");
  EXPECT_EQ(plan.target_url, "nats://n3:4222");
  EXPECT_EQ(plan.moves, 10) << "average 10: n3 has room for 10";
  EXPECT_EQ(PlanRebalance("n1", 27, peers, 4).moves, 4) << "paced";
  // n2 is below the average too, but it sheds nothing.
  EXPECT_EQ(PlanRebalance("n2", 3, {{"n1", "u1", 27}, {"n3", "u3", 0}}, 100).moves, 0);
}

TEST(RebalancerTest, ABalancedMeshMovesNothing) {
  EXPECT_EQ(PlanRebalance("n1", 10, {{"n2", "u", 10}, {"n3", "u", 10}}, 100).moves, 0);
  EXPECT_EQ(PlanRebalance("n1", 11, {{"n2", "u", 10}, {"n3", "u", 9}}, 100).moves, 0) << "within the tolerance";
  EXPECT_EQ(PlanRebalance("n1", 101, {{"n2", "u", 100}, {"n3", "u", 99}}, 100).moves, 0) << "10 % tolerance";
  EXPECT_EQ(PlanRebalance("n1", 1, {{"n2", "u", 0}}, 100).moves, 0) << "one client cannot be split";
  EXPECT_EQ(PlanRebalance("n1", 5, {}, 100).moves, 0) << "alone";
}

TEST(RebalancerTest, ANewNodeIsFilledUpToTheAverage) {
  // Scale-out from 2 to 3 nodes with 30 clients.
  RebalancePlan a = PlanRebalance("n1", 15, {{"n2", "u2", 15}, {"n3", "u3", 0}}, 100);
  EXPECT_EQ(a.target_id, "n3");
  EXPECT_EQ(a.moves, 5);
  RebalancePlan b = PlanRebalance("n2", 15, {{"n1", "u1", 10}, {"n3", "u3", 5}}, 100);
  EXPECT_EQ(b.moves, 5) << "n2 fills n3 from 5 to 10 in the next round";
}

TEST(RebalancerTest, NodesSheddingTogetherSplitTheRoom) {
  // Scale-out from 2 to 4 with 14 clients: both old nodes shed into n3.
  const RebalancePlan a = PlanRebalance("n1", 7, {{"n2", "u2", 7}, {"n3", "u3", 0}, {"n4", "u4", 0}}, 100);
  EXPECT_EQ(a.target_id, "n3");
  EXPECT_EQ(a.moves, 2) << "share 4: n3's room of 4 split between n1 and n2";
  // The last client above an even split moves to a node one below the share.
  EXPECT_EQ(PlanRebalance("n4", 5, {{"n1", "u1", 3}, {"n2", "u2", 3}, {"n3", "u3", 3}}, 100).moves, 1);
  EXPECT_EQ(PlanRebalance("n1", 4, {{"n1", "u1", 4}, {"n2", "u2", 3}, {"n3", "u3", 3}}, 100).moves, 0) << "at the share";
  // 14 over 4 nodes is 4, 4, 3, 3: a node at the share gives one to a node
  // below the floor, and then nothing moves back.
  const std::vector<NodeLoad> others = {{"n2", "u2", 4}, {"n3", "u3", 4}, {"n4", "u4", 2}};
  const RebalancePlan c = PlanRebalance("n1", 4, others, 100);
  EXPECT_EQ(c.target_id, "n4");
  EXPECT_EQ(c.moves, 1) << "n1 comes first among the three givers of a room of one";
  EXPECT_EQ(PlanRebalance("n2", 4, {{"n1", "u1", 4}, {"n3", "u3", 4}, {"n4", "u4", 2}}, 100).moves, 0)
      << "n2 and n3 leave the room to n1";
  EXPECT_EQ(PlanRebalance("n1", 3, {{"n2", "u2", 4}, {"n3", "u3", 4}, {"n4", "u4", 3}}, 100).moves, 0);
  EXPECT_EQ(PlanRebalance("n1", 4, {{"n2", "u2", 3}, {"n3", "u3", 4}, {"n4", "u4", 3}}, 100).moves, 0);
  EXPECT_EQ(PlanRebalance("n1", 10, {{"n2", "u2", 10}, {"n3", "u3", 10}}, 100).moves, 0);
}

}  // namespace
}  // namespace zmesh::server::mesh

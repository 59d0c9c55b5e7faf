// The bookkeeping of planned moves (docs/design-lossless-moves.md): which
// node's messages each end of a move delivers, and when a move's cuts are
// complete.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "server/event_loop.h"
#include "server/mesh/move_table.h"
#include "server/move_filter.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

using Side = MoveFilter::Side;

class FakeEndpoint : public SubscriberEndpoint {
 public:
  FakeEndpoint() : SubscriberEndpoint(Kind::kClient) {}
};

TEST(MoveFilterTest, TheNewEndTakesEachNodesMessagesFromItsCutOn) {
  MoveFilter f(Side::kIncoming, 7, 0);
  EXPECT_FALSE(f.Accepts("")) << "our own publishes before our cut belong to the old end";
  EXPECT_FALSE(f.Accepts("n1"));
  EXPECT_FALSE(f.Mark("n1")) << "incomplete: we have not cut yet";
  EXPECT_TRUE(f.Accepts("n1"));
  EXPECT_FALSE(f.Accepts("n3"));
  EXPECT_FALSE(f.Mark("")) << "our cut has not named its peers yet";
  EXPECT_FALSE(f.Expect({"n1", "n3"}));
  EXPECT_TRUE(f.Accepts(""));
  EXPECT_FALSE(f.complete());
  EXPECT_TRUE(f.Mark("n3")) << "the last expected cut completes the move";
  EXPECT_FALSE(f.Mark("n3")) << "completion is reported once";
  EXPECT_TRUE(f.Accepts("n9")) << "a node that joined after the cut never marks: complete takes everything";
}

TEST(MoveFilterTest, TheOldEndTakesEachNodesMessagesUntilItsCut) {
  MoveFilter f(Side::kOutgoing, 7, 0);
  EXPECT_TRUE(f.Accepts("n1"));
  f.Mark("n1");
  EXPECT_FALSE(f.Accepts("n1"));
  EXPECT_TRUE(f.Accepts(""));
  f.Mark("");
  EXPECT_FALSE(f.Accepts(""));
  EXPECT_TRUE(f.Accepts("n2"));
  EXPECT_FALSE(f.Expect({"n1"})) << "n1 has cut but has not said it read our CUT";
  EXPECT_FALSE(f.complete());
  EXPECT_TRUE(f.Acknowledge("n1")) << "every node linked at our cut has cut and has read ours";
  EXPECT_TRUE(f.Accepts("n2")) << "a joiner's messages still go out until the connection finishes";
  EXPECT_FALSE(f.Finish()) << "already reported";
  EXPECT_FALSE(f.Accepts("n2")) << "after MOVED nothing more";
}

TEST(MoveFilterTest, TheNewEndDoesNotWaitForAcknowledgements) {
  MoveFilter f(Side::kIncoming, 7, 0);
  f.Mark("");
  EXPECT_FALSE(f.Expect({"n1"}));
  EXPECT_TRUE(f.Mark("n1")) << "the new end needs only every node's cut";
  EXPECT_TRUE(f.finished());
}

TEST(MoveFilterTest, TheOldEndWaitsForEveryPeerToHaveReadItsCut) {
  // A client that publishes moves too: what it published through the old
  // node must be delivered everywhere before it publishes on the new one,
  // so the old end finishes only once every peer read its CUT, not merely
  // once every peer cut (a peer may cut on another node's CUT first).
  MoveFilter f(Side::kOutgoing, 7, 0);
  f.Mark("");
  EXPECT_FALSE(f.Expect({"n1", "n2"}));
  EXPECT_FALSE(f.Mark("n1"));
  EXPECT_FALSE(f.Mark("n2"));
  EXPECT_FALSE(f.Acknowledge("n2"));
  EXPECT_FALSE(f.complete());
  EXPECT_TRUE(f.Acknowledge("n1"));
  EXPECT_TRUE(f.complete());
}

TEST(MoveTableTest, AMoveOutCutsAndReportsOnceEveryPeerHasCut) {
  std::vector<uint64_t> cuts;
  mesh::MoveTable table([&cuts](uint64_t token) { cuts.push_back(token); });
  auto out = std::make_shared<MoveFilter>(Side::kOutgoing, 42, 0);
  int done = 0;
  table.MoveOut(out, [&done] { ++done; });
  EXPECT_EQ(cuts, std::vector<uint64_t>{42});
  table.CutMade(42, {"n2", "n3"});
  EXPECT_FALSE(out->Accepts("")) << "our own cut is marked with it";
  table.Mark(42, "n2");
  table.Mark(99, "n3");  // another move's mark
  EXPECT_EQ(done, 0);
  table.Acknowledged(42, "n2");
  EXPECT_EQ(done, 0);
  table.OriginGone("n3");  // its link dropped: nothing more comes from it, nothing is waited for
  EXPECT_EQ(done, 1);
  table.Mark(42, "n3");
  EXPECT_EQ(done, 1);
  table.Forget(out.get());
  EXPECT_EQ(table.size(), 0u);
}

// A moving client's queue members: the new end's latent until the old
// end's is released at this node, so this node's picks never go back to
// the old member after the new one.
TEST(MoveTableTest, ANewEndsQueueMemberIsLatentUntilTheOldEndsIsReleasedHere) {
  FakeEndpoint owner;
  mesh::MoveTable table([](uint64_t) {});
  auto* fresh = new Subscription(&owner, "jobs", "workers", "1", false);
  auto* old = new Subscription(&owner, "jobs", "workers", "1", false);
  table.QueueMemberLatent(7, fresh);
  EXPECT_FALSE(fresh->settled());
  EXPECT_EQ(table.latent_queue_members(), 1u);
  table.QueueReleased(8, "jobs", "workers", 0);  // another move
  table.QueueReleased(7, "other", "workers", 0);  // another group
  EXPECT_FALSE(fresh->settled());
  table.QueueMemberReleased(7, old);  // the old end's member, here
  EXPECT_EQ(old->move_state(), Subscription::MoveState::kReleased) << "the old member still takes new picks";
  EXPECT_TRUE(fresh->settled());
  EXPECT_EQ(table.latent_queue_members(), 0u);
  fresh->Unref();
  old->Unref();
}

TEST(MoveTableTest, AReleaseBeforeItsLatentMemberAndATimeoutSettleIt) {
  FakeEndpoint owner;
  mesh::MoveTable table([](uint64_t) {});
  auto* early = new Subscription(&owner, "jobs", "workers", "1", false);
  table.QueueReleased(7, "jobs", "workers", 0);
  table.QueueMemberLatent(7, early);
  EXPECT_TRUE(early->settled()) << "the release that came first was forgotten";
  auto* late = new Subscription(&owner, "jobs", "workers", "2", false);
  table.QueueMemberLatent(9, late);
  table.Expire(MonotonicMs() + 100000, 1000);
  EXPECT_TRUE(late->settled()) << "a latent member whose old end never released it stays out of picks";
  early->Unref();
  late->Unref();
}

// The new end records, per group, the nodes that count its member in their
// picks; its member takes its turn for a node's messages only from there on.
TEST(MoveFilterTest, TheNewEndsQueueMemberTakesEachNodesTurnFromItsSwitchOn) {
  MoveFilter f(Side::kIncoming, 7, 0);
  EXPECT_FALSE(f.QueueSwitched("n1", "jobs", "workers"));
  f.QueueSwitch("n1", "jobs", "workers");
  EXPECT_TRUE(f.QueueSwitched("n1", "jobs", "workers"));
  EXPECT_FALSE(f.QueueSwitched("n2", "jobs", "workers")) << "one node's switch let another's messages in";
  EXPECT_FALSE(f.QueueSwitched("n1", "jobs", "others")) << "one group's switch let another's messages in";
  EXPECT_FALSE(f.QueueSwitchComplete("jobs", "workers")) << "complete before this node cut";
  f.Expect({"n1", "n2"});
  EXPECT_FALSE(f.QueueSwitchComplete("jobs", "workers"));
  f.QueueSwitch("", "jobs", "workers");
  EXPECT_FALSE(f.QueueSwitchComplete("jobs", "workers")) << "complete without n2";
  f.OriginGone("n2");
  EXPECT_TRUE(f.QueueSwitched("n2", "jobs", "workers")) << "nothing more comes from a node whose link is gone";
  EXPECT_TRUE(f.QueueSwitchComplete("jobs", "workers"));
  EXPECT_FALSE(f.QueueSwitchComplete("jobs", "others"));
}

// The new end of move 7: its incoming filter, and the moving client's queue
// member of jobs/workers, latent in the table.
struct NewEndOfMove7 {
  NewEndOfMove7() {
    table.MoveIn(in);
    table.QueueMemberLatent(7, fresh);
  }
  ~NewEndOfMove7() { fresh->Unref(); }

  FakeEndpoint owner;
  mesh::MoveTable table{[](uint64_t) {}};
  std::shared_ptr<MoveFilter> in = std::make_shared<MoveFilter>(Side::kIncoming, 7, MonotonicMs());
  Subscription* fresh = new Subscription(&owner, "jobs", "workers", "1", false);
};

// At the new end a moving client's member waits for this node's release
// (origin "") and for the switch of every node this node cut to; until then
// it takes each node's turn only after that node's switch.
TEST(MoveTableTest, ANewEndsQueueMemberSettlesOnceEveryNodeHasSwitched) {
  NewEndOfMove7 end;
  mesh::MoveTable& table = end.table;
  Subscription* fresh = end.fresh;
  const std::shared_ptr<MoveFilter>& in = end.in;
  table.CutMade(7, {"n1", "n2"});
  EXPECT_FALSE(table.QueueSwitched(7, "n1", "jobs", "others")) << "a switch for a group with no member waiting";
  EXPECT_FALSE(table.QueueSwitched(8, "n1", "jobs", "workers")) << "a switch for another move";
  EXPECT_TRUE(table.QueueSwitched(7, "n1", "jobs", "workers"));
  EXPECT_TRUE(in->QueueSwitched("n1", "jobs", "workers"));
  EXPECT_FALSE(fresh->settled());
  table.QueueReleased(7, "jobs", "workers", 0);  // the old end's member is gone here
  EXPECT_TRUE(in->QueueSwitched("", "jobs", "workers")) << "this node's own picks did not switch";
  EXPECT_FALSE(fresh->settled()) << "settled before n2 switched";
  EXPECT_EQ(table.switching_queue_members(), 1u);
  table.QueueSwitched(7, "n2", "jobs", "workers");
  EXPECT_TRUE(fresh->settled());
  EXPECT_EQ(table.switching_queue_members(), 0u);
  EXPECT_FALSE(table.QueueSwitched(7, "n2", "jobs", "workers")) << "a settled member still waits";
}

// At the old end the released member's turn for a node's messages ends
// with that node's switch, recorded for as long as the member moves.
TEST(MoveTableTest, AnOldEndsReleasedMemberRecordsEachNodesSwitchAway) {
  FakeEndpoint owner;
  mesh::MoveTable table([](uint64_t) {});
  auto out = std::make_shared<MoveFilter>(Side::kOutgoing, 7, MonotonicMs());
  table.MoveOut(out, [] {});
  auto* old = new Subscription(&owner, "jobs", "workers", "1", false);
  EXPECT_FALSE(table.QueueSwitched(7, "n1", "jobs", "workers")) << "a switch for a member that does not move";
  table.QueueMemberReleased(7, old);
  EXPECT_TRUE(table.QueueSwitched(7, "n1", "jobs", "workers"));
  EXPECT_TRUE(out->QueueSwitched("n1", "jobs", "workers"));
  EXPECT_FALSE(out->QueueSwitched("n2", "jobs", "workers"));
  EXPECT_EQ(old->move_state(), Subscription::MoveState::kReleased);
  EXPECT_EQ(table.switching_queue_members(), 1u) << "the old member's turn stopped being tracked while it moves";
  old->set_closed();  // the old connection finished
  table.Expire(MonotonicMs() + 100000, 1000);
  EXPECT_EQ(table.switching_queue_members(), 0u);
  EXPECT_EQ(old->move_state(), Subscription::MoveState::kReleased);
  old->Unref();
}

TEST(MoveTableTest, ANodeThatNeverSwitchesIsWaitedForOnlyUntilTheMoveTimesOut) {
  NewEndOfMove7 end;
  mesh::MoveTable& table = end.table;
  Subscription* fresh = end.fresh;
  FakeEndpoint& owner = end.owner;
  table.CutMade(7, {"n1"});
  table.QueueReleased(7, "jobs", "workers", 0);
  EXPECT_FALSE(fresh->settled());
  table.Expire(MonotonicMs() + 100000, 1000);
  EXPECT_TRUE(fresh->settled());
  EXPECT_EQ(table.switching_queue_members(), 0u);
  // A member released meanwhile (its client moves on) stays released.
  auto* leaving = new Subscription(&owner, "jobs", "workers", "2", false);
  table.QueueMemberLatent(7, leaving);
  table.QueueMemberReleased(9, leaving);
  table.Expire(MonotonicMs() + 100000, 1000);
  EXPECT_EQ(leaving->move_state(), Subscription::MoveState::kReleased);
  leaving->Unref();
}

// A peer sending RELEASE frames for moves that do not exist (or LATENT ones
// that are never released) fills nothing beyond a bound.
TEST(MoveTableTest, QueueMoveFramesFromAFloodingPeerStayBounded) {
  FakeEndpoint owner;
  mesh::MoveTable table([](uint64_t) {});
  for (uint64_t t = 1; t <= 100000; ++t) table.QueueReleased(t, "jobs", "workers", 0);
  EXPECT_LE(table.early_queue_releases(), 65536u);
  std::vector<Subscription*> subs;
  for (uint64_t t = 200001; t <= 270000; ++t) {
    subs.push_back(new Subscription(&owner, "jobs", "workers", std::to_string(t), false));
    table.QueueMemberLatent(t, subs.back());
  }
  EXPECT_LE(table.latent_queue_members(), 65536u);
  EXPECT_TRUE(subs.back()->settled()) << "beyond the bound a member counts at once";
  table.Expire(MonotonicMs() + 100000, 1000);
  EXPECT_EQ(table.latent_queue_members(), 0u);
  EXPECT_EQ(table.early_queue_releases(), 0u);
  for (Subscription* s : subs) s->Unref();
}

TEST(MoveTableTest, AMoveThatTimesOutStopsWaiting) {
  mesh::MoveTable table([](uint64_t) {});
  auto in = std::make_shared<MoveFilter>(Side::kIncoming, 5, /*started_ms=*/1000);
  auto out = std::make_shared<MoveFilter>(Side::kOutgoing, 6, /*started_ms=*/1000);
  table.MoveIn(in);
  int done = 0;
  table.MoveOut(out, [&done] { ++done; });
  table.Expire(/*now_ms=*/1500, /*timeout_ms=*/1000);
  EXPECT_FALSE(in->Accepts("n1"));
  EXPECT_EQ(done, 0);
  table.Expire(2000, 1000);
  EXPECT_TRUE(in->Accepts("n1")) << "the new end delivers everything once it gives up waiting";
  EXPECT_EQ(done, 1) << "the old end finishes";
  table.Expire(3000, 1000);
  EXPECT_EQ(done, 1);
}

}  // namespace
}  // namespace zmesh::server

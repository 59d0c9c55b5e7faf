// Planned moves at the protocol level (issue 12 item 1;
// docs/design-lossless-moves.md), played by hand with raw connections the
// way zmesh::Client plays them: a second connection to the new node with
// CONNECT move_token, the same subscriptions (plain, wildcard, queue group)
// with the same sids and a PING through the interest barrier, then MOVE on
// the old connection, which ends with MOVED. Publishers on every node keep
// publishing throughout. The old connection's stream up to MOVED followed
// by the new connection's must hold every message exactly once and in each
// publisher's order; the queue group, with a second member elsewhere, must
// get each message exactly once.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/mesh_traffic.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class PlannedMoveTest : public MeshFixture {};

// What zmesh::Client hands the application: the old connection's stream,
// then the new one's.
::testing::AssertionResult HandedOverExactlyOnceInOrder(const Receipts& before, const Receipts& after,
                                                        const std::map<std::string, uint64_t>& published) {
  if (before.order_violations != 0) return ::testing::AssertionFailure() << "old stream: " << before.first_order_violation;
  if (after.order_violations != 0) return ::testing::AssertionFailure() << "new stream: " << after.first_order_violation;
  for (const auto& [publisher, count] : published) {
    const uint64_t last_before = before.last_seq.contains(publisher) ? before.last_seq.at(publisher) : 0;
    uint64_t first_after = 0;
    if (auto it = after.copies.find(publisher); it != after.copies.end()) {
      for (uint64_t seq = 1; seq < it->second.size() && first_after == 0; ++seq) {
        if (it->second[seq] > 0) first_after = seq;
      }
    }
    if (first_after != 0 && first_after <= last_before) {
      return ::testing::AssertionFailure() << publisher << ": the new node delivered seq " << first_after
                                           << " but the old one had delivered up to " << last_before;
    }
  }
  return ExactlyOnce(Merge({before, after}), published);
}

TEST_F(PlannedMoveTest, SubscriberMovesWithoutLossDuplicateOrReorder) {
  std::string error;
  for (int i = 0; i < 3; ++i) mesh_->Add({});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(mesh_->Start(i, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0, 1, 2}, seconds(20), &error)) << error;

  const std::string subject = "move.data";
  MeshClient old_conn("mover-old"), worker("worker");
  ASSERT_TRUE(old_conn.Connect(mesh_->client_port(0), &error)) << error;
  ASSERT_TRUE(worker.Connect(mesh_->client_port(2), &error)) << error;
  const int plain = old_conn.Sub(subject);
  const int wildcard = old_conn.Sub("move.*");
  const int queue = old_conn.Sub(subject, "workers");
  old_conn.SubProbe();
  const int worker_sid = worker.Sub(subject, "workers");
  worker.SubProbe();
  ASSERT_TRUE(old_conn.Flush() && worker.Flush());

  std::vector<std::unique_ptr<ContinuousPublisher>> pubs;
  std::vector<MeshClient*> pub_clients;
  for (int i = 0; i < 3; ++i) {
    pubs.push_back(std::make_unique<ContinuousPublisher>("pub" + std::to_string(i + 1), subject));
    ASSERT_TRUE(pubs.back()->Connect({"127.0.0.1", mesh_->client_port(i)}, &error)) << error;
    pub_clients.push_back(&pubs.back()->client());
  }
  ASSERT_TRUE(WaitInterest(pub_clients, {&old_conn, &worker}, seconds(10), &error)) << error;
  for (auto& p : pubs) p->Start();
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return old_conn.Sequenced(plain) >= 300; })) << "no traffic";

  // Make: the new end, same subscriptions and sids, through the barrier.
  const std::string token = "00c0ffee12345678";
  MeshClient new_conn("mover-new");
  new_conn.set_connect_extra(",\"move_token\":\"" + token + "\"");
  ASSERT_TRUE(new_conn.Connect(mesh_->client_port(1), &error)) << error;
  ASSERT_EQ(new_conn.Sub(subject), plain);
  ASSERT_EQ(new_conn.Sub("move.*"), wildcard);
  ASSERT_EQ(new_conn.Sub(subject, "workers"), queue);
  new_conn.SubProbe();
  ASSERT_TRUE(new_conn.Flush());

  // Cut, and wait for the old node to finish.
  ASSERT_TRUE(old_conn.SendRaw("MOVE " + token + "\r\n"));
  ASSERT_TRUE(WaitFor(seconds(15), [&] { return !old_conn.moved().empty(); }))
      << "no MOVED; errors: " << ::testing::PrintToString(old_conn.errors());
  EXPECT_EQ(old_conn.moved(), token);
  // Traffic keeps flowing to the new end.
  const uint64_t at_move = new_conn.Sequenced(plain);
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return new_conn.Sequenced(plain) >= at_move + 300; }));

  std::map<std::string, uint64_t> published;
  for (auto& p : pubs) published[p->name()] = p->Stop();
  ASSERT_TRUE(Fence(pub_clients, {&new_conn, &worker}, seconds(20), &error)) << error;
  EXPECT_EQ(old_conn.messages(), old_conn.messages_before_moved()) << "the old connection delivered after MOVED";
  for (int sid : {plain, wildcard}) {
    EXPECT_TRUE(HandedOverExactlyOnceInOrder(old_conn.Get(sid), new_conn.Get(sid), published)) << "sid " << sid;
  }
  EXPECT_TRUE(ExactlyOnce(Merge({old_conn.Get(queue), new_conn.Get(queue), worker.Get(worker_sid)}), published))
      << "queue group";
  EXPECT_TRUE(old_conn.errors().empty()) << ::testing::PrintToString(old_conn.errors());
  EXPECT_TRUE(new_conn.errors().empty()) << ::testing::PrintToString(new_conn.errors());
  std::cout << "[ move     ] old stream " << old_conn.Sequenced(plain) << ", new stream " << new_conn.Sequenced(plain)
            << " messages on the plain subscription\n";
}

// Nothing may follow MOVE on the old connection: a publish there would come
// after the node's cut, out of order with the client's publishes on the new
// node.
TEST_F(PlannedMoveTest, PublishAfterMoveIsRefusedAndBadTokensAreRejected) {
  std::string error;
  mesh_->Add({});
  ASSERT_TRUE(mesh_->Start(0, &error)) << error;
  ASSERT_TRUE(mesh_->WaitConverged({0}, seconds(20), &error)) << error;
  MeshClient bad_token("bad-token");
  bad_token.set_connect_extra(",\"move_token\":\"not-hex\"");
  EXPECT_FALSE(bad_token.Connect(mesh_->client_port(0), &error));
  EXPECT_TRUE(WaitFor(seconds(5), [&] {
    for (const std::string& e : bad_token.errors()) {
      if (e.find("Invalid Move Token") != std::string::npos) return true;
    }
    return false;
  })) << ::testing::PrintToString(bad_token.errors());

  MeshClient mover("mover");
  ASSERT_TRUE(mover.Connect(mesh_->client_port(0), &error)) << error;
  mover.Sub("a");
  ASSERT_TRUE(mover.Flush());
  ASSERT_TRUE(mover.SendRaw("MOVE 1\r\nPUB a 1\r\nx\r\n"));
  EXPECT_TRUE(WaitFor(seconds(5), [&] {
    for (const std::string& e : mover.errors()) {
      if (e.find("Operation After Move") != std::string::npos) return true;
    }
    return false;
  })) << ::testing::PrintToString(mover.errors());
}

}  // namespace
}  // namespace zmesh::testing

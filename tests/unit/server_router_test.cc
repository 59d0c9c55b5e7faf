// The router over fake endpoints (issue 9, item 1): it reaches local clients
// only through DeliveryEndpoint and remote nodes only through PeerForwarder,
// so these tests see every destination it picks: plain fan-out once per
// subscription, one member per queue group, echo off, "reached no one" as its
// return value (the client answers no-responders, not the router), one
// forward per remote node naming the groups chosen there, and a peer's
// message staying on this node.
#include "server/router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proto/msg_framing.h"
#include "server/io_worker.h"
#include "server/message.h"
#include "server/subject_index.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

// A local client: records each delivery as the MSG bytes it would write.
class FakeClient : public SubscriberEndpoint, public DeliveryEndpoint {
 public:
  FakeClient() : SubscriberEndpoint(Kind::kClient) { BindDelivery(this); }

  bool Deliver(IoWorker*, Subscription* sub, proto::MsgFrame& frame, const Message&, DeliveryEndpoint*) override {
    std::string_view pieces[proto::MsgFrame::kMaxPieces];
    const size_t count = frame.Pieces(/*headers_capable=*/false, sub->sid(), pieces);
    std::string bytes;
    for (size_t i = 0; i < count; ++i) bytes.append(pieces[i]);
    received.push_back(std::move(bytes));
    by_sid[sub->sid()]++;
    return accepts;
  }
  void PushBackOn(Connection*) override { ++pushbacks; }
  bool TakesQueueTurn(const Subscription& sub, std::string_view origin) const override {
    return switched.count({sub.sid(), std::string(origin)}) > 0;
  }

  std::vector<std::string> received;
  std::map<std::string, int> by_sid;
  std::set<std::pair<std::string, std::string>> switched;  // (sid, origin) a moving member takes turns for
  bool accepts = true;  // false: a consumer that refuses (over its limit)
  int pushbacks = 0;

 protected:
  ~FakeClient() override = default;
};

// A remote node: records each forward and the queue groups it names.
class FakePeer : public SubscriberEndpoint, public PeerForwarder {
 public:
  FakePeer() : SubscriberEndpoint(Kind::kPeer) { BindForwarder(this); }

  bool Forward(const Message& msg, const std::string_view* queues, size_t queue_count,
               RefPtr<Connection>*) override {
    forwards.push_back({std::string(msg.subject), std::vector<std::string>(queues, queues + queue_count)});
    return accepts;
  }

  struct Forwarded {
    std::string subject;
    std::vector<std::string> queues;
  };
  std::vector<Forwarded> forwards;
  bool accepts = true;

 protected:
  ~FakePeer() override = default;
};

class RouterTest : public ::testing::Test {
 protected:
  ~RouterTest() override {
    for (Subscription* s : subs_) {
      s->set_closed();
      index_.Remove(s);
      s->Unref();
    }
    worker_.reset();  // its match cache holds results that reference subscriptions
    for (SubscriberEndpoint* e : endpoints_) e->Unref();
  }

  FakeClient* NewClient() {
    auto* c = new FakeClient;
    endpoints_.push_back(c);
    return c;
  }
  FakePeer* NewPeer() {
    auto* p = new FakePeer;
    endpoints_.push_back(p);
    return p;
  }
  Subscription* Sub(FakeClient* owner, const std::string& subject, const std::string& sid,
                    const std::string& queue = "") {
    return Insert(new Subscription(owner, subject, queue, sid, /*remote=*/false));
  }
  // Remote interest as a PeerNode holds it: one entry, weighted by members.
  Subscription* Remote(FakePeer* owner, const std::string& subject, const std::string& queue = "",
                       uint32_t weight = 1) {
    return Insert(new Subscription(owner, subject, queue, "", /*remote=*/true, weight));
  }
  Subscription* Insert(Subscription* s) {
    EXPECT_TRUE(index_.Insert(s)) << s->subject();
    subs_.push_back(s);
    return s;
  }
  void Drop(Subscription* s) { s->set_closed(); }  // as a client's UNSUB marks it, before the cache notices

  bool Publish(FakeClient* source, std::string_view subject, bool echo = true, std::string_view reply = "",
               std::string_view payload = "hello") {
    const Message msg{subject, reply, payload, -1, {}};
    return router_.PublishFromClient(worker_.get(), source, echo, msg);
  }

  SubjectIndex index_;
  std::unique_ptr<IoWorker> worker_ = std::make_unique<IoWorker>(0, &index_);  // never started: its match cache only
  Router router_;
  std::vector<Subscription*> subs_;
  std::vector<SubscriberEndpoint*> endpoints_;
};

TEST_F(RouterTest, PlainFanOutReachesEachSubscriptionOnce) {
  FakeClient* publisher = NewClient();
  FakeClient* a = NewClient();
  FakeClient* b = NewClient();
  FakeClient* other = NewClient();
  Sub(a, "orders.new", "1");
  Sub(a, "orders.new", "2");  // a second subscription of the same client gets its own copy
  Sub(a, "orders.*", "3");
  Sub(b, "orders.>", "9");
  Sub(other, "quotes.new", "5");

  EXPECT_TRUE(Publish(publisher, "orders.new"));

  EXPECT_EQ(a->by_sid, (std::map<std::string, int>{{"1", 1}, {"2", 1}, {"3", 1}}));
  EXPECT_EQ(b->received, std::vector<std::string>{"MSG orders.new 9 5\r\nhello\r\n"});
  EXPECT_TRUE(other->received.empty());
  EXPECT_TRUE(publisher->received.empty());
}

TEST_F(RouterTest, QueueGroupPicksExactlyOneMember) {
  FakeClient* publisher = NewClient();
  FakeClient* plain = NewClient();
  std::vector<FakeClient*> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(NewClient());
    Sub(workers.back(), "jobs.run", "w" + std::to_string(i), "workers");
  }
  FakeClient* auditor = NewClient();
  Sub(auditor, "jobs.*", "a", "auditors");
  Sub(plain, "jobs.run", "p");

  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(Publish(publisher, "jobs.run"));
    size_t total = 0;
    for (FakeClient* w : workers) total += w->received.size();
    ASSERT_EQ(total, static_cast<size_t>(i + 1)) << "message " << i << " reached more or fewer than one member";
  }
  // Every member is picked (a fixed choice would fail: P(some member never
  // picked by a uniform choice) < 3 * (2/3)^300).
  for (FakeClient* w : workers) EXPECT_GT(w->received.size(), 0u);
  // Each group independently, and the plain subscriber each time.
  EXPECT_EQ(auditor->received.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(plain->received.size(), static_cast<size_t>(kMessages));
}

TEST_F(RouterTest, QueueGroupFallsToTheNextMemberWhenThePickRefuses) {
  FakeClient* publisher = NewClient();
  FakeClient* slow = NewClient();
  FakeClient* healthy = NewClient();
  slow->accepts = false;
  Sub(slow, "jobs.run", "s", "workers");
  Sub(healthy, "jobs.run", "h", "workers");

  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Publish(publisher, "jobs.run"));
  EXPECT_EQ(healthy->received.size(), 50u);
}

TEST_F(RouterTest, EchoOffSkipsThePublishersOwnSubscriptions) {
  FakeClient* publisher = NewClient();
  FakeClient* other = NewClient();
  Sub(publisher, "chat.room", "own");
  Sub(publisher, "chat.room", "own-q", "readers");  // the only member of its group
  Subscription* theirs = Sub(other, "chat.room", "theirs");

  EXPECT_TRUE(Publish(publisher, "chat.room", /*echo=*/false));
  EXPECT_TRUE(publisher->received.empty());
  EXPECT_EQ(other->received.size(), 1u);

  EXPECT_TRUE(Publish(publisher, "chat.room", /*echo=*/true));
  EXPECT_EQ(publisher->by_sid, (std::map<std::string, int>{{"own", 1}, {"own-q", 1}}));
  EXPECT_EQ(other->received.size(), 2u);

  // With echo off and nobody else, the publisher's own subscriptions do not count as responders.
  Drop(theirs);
  EXPECT_FALSE(Publish(publisher, "chat.room", /*echo=*/false, "_INBOX.1"));
}

TEST_F(RouterTest, ReachingNoOneIsTheReturnValueNotAStatusMessage) {
  FakeClient* requester = NewClient();
  FakeClient* refusing = NewClient();
  Sub(requester, "_INBOX.abc.*", "inbox");

  // No subscriber at all: the router reports it and delivers nothing itself
  // (the client connection answers no-responders on its inbox).
  EXPECT_FALSE(Publish(requester, "svc.echo", true, "_INBOX.abc.1"));
  EXPECT_TRUE(requester->received.empty());

  // A subscriber that cannot take it (a slow consumer) is no responder either.
  refusing->accepts = false;
  Sub(refusing, "svc.echo", "r");
  EXPECT_FALSE(Publish(requester, "svc.echo", true, "_INBOX.abc.2"));
  EXPECT_EQ(refusing->received.size(), 1u);

  // A closed subscription (unsubscribed since the match) is skipped.
  FakeClient* gone = NewClient();
  Subscription* s = Sub(gone, "svc.time", "g");
  Drop(s);
  EXPECT_FALSE(Publish(requester, "svc.time", true, "_INBOX.abc.3"));
  EXPECT_TRUE(gone->received.empty());

  FakeClient* responder = NewClient();
  Sub(responder, "svc.echo", "ok");
  EXPECT_TRUE(Publish(requester, "svc.echo", true, "_INBOX.abc.4"));
  EXPECT_EQ(responder->received, std::vector<std::string>{"MSG svc.echo ok _INBOX.abc.4 5\r\nhello\r\n"});
  EXPECT_TRUE(requester->received.empty());
}

TEST_F(RouterTest, EachRemoteNodeGetsOneForwardNamingItsGroups) {
  FakeClient* publisher = NewClient();
  FakeClient* local = NewClient();
  FakePeer* n1 = NewPeer();
  FakePeer* n2 = NewPeer();
  FakePeer* n3 = NewPeer();
  Remote(n1, "orders.>");
  Remote(n1, "orders.new");        // two plain entries on one node: still one forward
  Remote(n1, "orders.new", "billing", 2);  // groups only n1 has members of
  Remote(n1, "orders.*", "shipping", 1);
  Remote(n2, "orders.new");
  Remote(n3, "quotes.>");          // no match: nothing
  Sub(local, "orders.new", "l");

  EXPECT_TRUE(Publish(publisher, "orders.new"));

  ASSERT_EQ(n1->forwards.size(), 1u);
  EXPECT_EQ(n1->forwards[0].subject, "orders.new");
  std::vector<std::string> groups = n1->forwards[0].queues;
  std::sort(groups.begin(), groups.end());
  EXPECT_EQ(groups, (std::vector<std::string>{"billing", "shipping"}));
  ASSERT_EQ(n2->forwards.size(), 1u);
  EXPECT_TRUE(n2->forwards[0].queues.empty());
  EXPECT_TRUE(n3->forwards.empty());
  EXPECT_EQ(local->received.size(), 1u);
}

TEST_F(RouterTest, AGroupSpreadOverNodesIsNamedInExactlyOneForward) {
  FakeClient* publisher = NewClient();
  FakePeer* n1 = NewPeer();
  FakePeer* n2 = NewPeer();
  Remote(n1, "jobs.run", "workers", 3);
  Remote(n2, "jobs.run", "workers", 1);

  constexpr int kMessages = 400;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(Publish(publisher, "jobs.run"));
  // No plain interest: a node that was not chosen gets nothing.
  for (const auto& f : n1->forwards) EXPECT_EQ(f.queues, std::vector<std::string>{"workers"});
  for (const auto& f : n2->forwards) EXPECT_EQ(f.queues, std::vector<std::string>{"workers"});
  EXPECT_EQ(n1->forwards.size() + n2->forwards.size(), static_cast<size_t>(kMessages));
  // Weighted by members (3:1): n1 ~300, n2 ~100; bounds far outside chance.
  EXPECT_GT(n1->forwards.size(), 220u);
  EXPECT_GT(n2->forwards.size(), 40u);
}

TEST_F(RouterTest, AFailedForwardIsNotAResponder) {
  FakeClient* publisher = NewClient();
  FakePeer* down = NewPeer();
  down->accepts = false;  // no link, or the link was reset
  Remote(down, "svc.>");
  EXPECT_FALSE(Publish(publisher, "svc.echo", true, "_INBOX.x"));
  EXPECT_EQ(down->forwards.size(), 1u);
}

TEST_F(RouterTest, APeersMessageReachesLocalSubscribersOnlyAndNamedGroups) {
  FakeClient* local = NewClient();
  FakeClient* member = NewClient();
  FakeClient* other_group = NewClient();
  FakePeer* n1 = NewPeer();
  Sub(local, "orders.new", "l");
  Sub(member, "orders.new", "m", "billing");
  Sub(other_group, "orders.new", "o", "shipping");
  Remote(n1, "orders.new");
  Remote(n1, "orders.new", "billing", 1);

  const Message msg{"orders.new", "", "hello", -1, {}};
  router_.PublishFromPeer(worker_.get(), msg, {"billing", "billing"});  // a repeated name counts once
  EXPECT_EQ(local->received.size(), 1u);
  EXPECT_EQ(member->received.size(), 1u);
  EXPECT_TRUE(other_group->received.empty());  // the sender chose another node for it
  EXPECT_TRUE(n1->forwards.empty());           // never back into the mesh

  // A continuation frame: its groups only, not the plain subscribers again.
  router_.PublishFromPeer(worker_.get(), msg, {"shipping"}, /*to_plain=*/false);
  EXPECT_EQ(local->received.size(), 1u);
  EXPECT_EQ(other_group->received.size(), 1u);
}


// A moving client's new queue member on this node takes a node's messages
// in its turn only once that node switched to it (QUEUE_SWITCH): what a node
// chose this node for before was meant for the other members here. It still
// takes one when no other member can, so nothing is dropped.
TEST_F(RouterTest, AMovingMemberTakesAPeersQueueMessagesInItsTurnOnlyAfterThatPeersSwitch) {
  FakeClient* settled = NewClient();
  FakeClient* moving = NewClient();
  Sub(settled, "jobs.run", "s", "workers");
  Subscription* fresh = Sub(moving, "jobs.run", "m", "workers");
  fresh->set_move_state(Subscription::MoveState::kLatent);
  moving->switched.insert({"m", "n2"});

  auto from = [&](std::string_view origin, int count) {
    const Message msg{"jobs.run", "", "x", -1, origin};
    for (int i = 0; i < count; ++i) router_.PublishFromPeer(worker_.get(), msg, {"workers"});
  };
  from("n1", 200);
  EXPECT_EQ(settled->received.size(), 200u);
  EXPECT_TRUE(moving->received.empty()) << "a message n1 picked before its switch reached the new member";
  from("n2", 200);  // P(a uniform pick never takes it) = 2^-200
  EXPECT_GT(moving->received.size(), 0u) << "n2 switched, yet the new member never took its turn";
  EXPECT_EQ(settled->received.size() + moving->received.size(), 400u);

  const size_t before = moving->received.size();
  settled->accepts = false;  // no other member can take it: the moving one does
  from("n1", 1);
  EXPECT_EQ(moving->received.size(), before + 1);

  // Our own publishers: this node switched once the old member was released here.
  settled->accepts = true;
  FakeClient* publisher = NewClient();
  for (int i = 0; i < 100; ++i) Publish(publisher, "jobs.run");
  EXPECT_EQ(moving->received.size(), before + 1) << "this node's own picks went to the new member early";
}

}  // namespace
}  // namespace zmesh::server

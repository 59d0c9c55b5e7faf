// Client-visible behaviour of a single node over raw TCP: pub/sub, wildcards,
// queue groups, headers, request/reply, no-responders, echo, verbose,
// auto-unsubscribe and the INFO fields. Runs against zmesh-server or, to check
// the expectations themselves, nats-server 2.9 (ZMESH_TEST_TARGET).
//
// No sleeps: "nothing else arrives" is proved by a PING/PONG round trip or a
// marker message sent after the thing that must not be delivered, or, where
// no ordering ties it, by a short ExpectSilence.

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"

namespace zmesh::testing {
namespace {

using std::chrono::milliseconds;

class PubSubTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start(options_)); }

  // A client past INFO/CONNECT/PING/PONG with CONNECT fields `options_json`.
  std::unique_ptr<RawClient> NewClient(const std::string& name,
                                       std::string_view options_json = "{}") {
    auto c = std::make_unique<RawClient>();
    c->set_name(name);
    if (!c->Dial(server_.port()) || !c->Connect({}, {}, options_json)) return nullptr;
    return c;
  }

  ServerOptions options_;
  ServerUnderTest server_;
};

TEST_F(PubSubTest, PublishReachesSubscriber) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("foo", "1");
  ASSERT_TRUE(sub->Flush());  // the subscription is in place
  pub->Pub("foo", "hello");
  pub->Pub("foo", "world", "reply.to");
  EXPECT_TRUE(sub->ExpectMsg("foo", "1", "hello"));
  EXPECT_TRUE(sub->ExpectMsg("foo", "1", "world", "reply.to"));
  // Exact wire bytes of a delivered message.
  pub->Pub("foo", "x");
  EXPECT_TRUE(sub->ExpectLine("MSG foo 1 1"));
  EXPECT_TRUE(sub->ExpectLine("x"));
  // A subject nobody listens on goes nowhere; the marker proves it.
  pub->Pub("bar", "lost");
  pub->Pub("foo", "marker");
  EXPECT_TRUE(sub->ExpectMsg("foo", "1", "marker"));
}

TEST_F(PubSubTest, EveryMatchingSubscriptionOfAConnectionGetsACopy) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("a.b", "1");
  sub->Sub("a.*", "2");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("a.b", "x");
  std::set<std::string> sids;
  for (int i = 0; i < 2; ++i) {
    std::optional<Msg> m = sub->ReadMsg();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->payload, "x");
    sids.insert(m->sid);
  }
  EXPECT_EQ(sids, (std::set<std::string>{"1", "2"}));
  ASSERT_TRUE(sub->Flush());  // and no third copy
}

TEST_F(PubSubTest, PublishOrderIsKeptPerPublisher) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("seq", "1");
  ASSERT_TRUE(sub->Flush());
  constexpr int kCount = 2000;
  std::string batch;
  for (int i = 0; i < kCount; ++i) {
    const std::string p = std::to_string(i);
    batch += "PUB seq " + std::to_string(p.size()) + "\r\n" + p + "\r\n";
  }
  ASSERT_TRUE(pub->Send(batch));
  for (int i = 0; i < kCount; ++i) {
    std::optional<Msg> m = sub->ReadMsg();
    ASSERT_TRUE(m) << "message " << i;
    ASSERT_EQ(m->payload, std::to_string(i));
  }
}

TEST_F(PubSubTest, SingleTokenWildcard) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("foo.*", "1");
  sub->Sub("*.bar", "2");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("foo.x", "1");      // foo.* only
  pub->Pub("foo", "no");       // * needs a token
  pub->Pub("foo.x.y", "no");   // * is exactly one token
  pub->Pub("z.bar", "2");      // *.bar only
  pub->Pub("foo.bar", "3");    // both
  EXPECT_TRUE(sub->ExpectMsg("foo.x", "1", "1"));
  EXPECT_TRUE(sub->ExpectMsg("z.bar", "2", "2"));
  std::multiset<std::string> sids;
  for (int i = 0; i < 2; ++i) {
    std::optional<Msg> m = sub->ReadMsg();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->subject, "foo.bar");
    sids.insert(m->sid);
  }
  EXPECT_EQ(sids, (std::multiset<std::string>{"1", "2"}));
  ASSERT_TRUE(sub->Flush());
}

TEST_F(PubSubTest, FullWildcard) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("foo.>", "1");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("foo", "no");  // > needs at least one token
  pub->Pub("foo.a", "1");
  pub->Pub("foo.a.b.c", "2");
  pub->Pub("bar.a", "no");
  pub->Pub("foo.end", "3");
  EXPECT_TRUE(sub->ExpectMsg("foo.a", "1", "1"));
  EXPECT_TRUE(sub->ExpectMsg("foo.a.b.c", "1", "2"));
  EXPECT_TRUE(sub->ExpectMsg("foo.end", "1", "3"));

  auto all = NewClient("all");
  ASSERT_TRUE(all);
  all->Sub(">", "9");
  ASSERT_TRUE(all->Flush());
  pub->Pub("x", "a");
  pub->Pub("x.y.z", "b");
  EXPECT_TRUE(all->ExpectMsg("x", "9", "a"));
  EXPECT_TRUE(all->ExpectMsg("x.y.z", "9", "b"));
}

TEST_F(PubSubTest, UnsubscribeStopsDelivery) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("foo", "1");
  sub->Sub("marker", "2");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("foo", "a");
  EXPECT_TRUE(sub->ExpectMsg("foo", "1", "a"));
  sub->Unsub("1");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("foo", "b");
  pub->Pub("marker", "m");
  EXPECT_TRUE(sub->ExpectMsg("marker", "2", "m"));
}

// Queue group: each message to exactly one member; with 3 members and 3000
// messages each member's share is 1000 +- 150. The server picks at random
// (binomial, sd ~26), so +-150 (~6 sd) fails only for a biased choice. A plain
// subscriber on the same subject still gets every message.
TEST_F(PubSubTest, QueueGroupDeliversEachMessageToExactlyOneMember) {
  constexpr int kMembers = 3;
  constexpr int kMessages = 3000;
  constexpr int kTolerance = 150;
  std::vector<std::unique_ptr<RawClient>> members;
  for (int i = 0; i < kMembers; ++i) {
    members.push_back(NewClient("member" + std::to_string(i)));
    ASSERT_TRUE(members.back());
    members.back()->Sub("work", "q" + std::to_string(i), "workers");
    ASSERT_TRUE(members.back()->Flush());
  }
  auto plain = NewClient("plain");
  auto pub = NewClient("pub");
  ASSERT_TRUE(plain && pub);
  plain->Sub("work", "p");
  ASSERT_TRUE(plain->Flush());

  std::string batch;
  for (int i = 0; i < kMessages; ++i) {
    const std::string p = std::to_string(i);
    batch += "PUB work " + std::to_string(p.size()) + "\r\n" + p + "\r\n";
  }
  ASSERT_TRUE(pub->Send(batch));
  ASSERT_TRUE(pub->Flush());

  // The plain subscriber sees all of them; once it has, the members have been
  // handed theirs too (same publisher, delivered in one pass).
  for (int i = 0; i < kMessages; ++i) {
    std::optional<Msg> m = plain->ReadMsg();
    ASSERT_TRUE(m);
    ASSERT_EQ(m->payload, std::to_string(i));
  }
  std::map<std::string, int> owner_count;  // payload -> copies
  std::vector<int> share(kMembers, 0);
  for (int i = 0; i < kMembers; ++i) {
    // Ask each member for a PONG: every message for it precedes the PONG.
    ASSERT_TRUE(members[i]->Send("PING\r\n"));
    while (true) {
      std::optional<std::string> line = members[i]->ReadLine(milliseconds(5000));
      ASSERT_TRUE(line) << "member " << i << " timed out";
      if (*line == "PONG") break;
      ASSERT_TRUE(line->starts_with("MSG work q" + std::to_string(i) + " ")) << *line;
      std::optional<std::string> body =
          members[i]->ReadExact(std::stoul(line->substr(line->rfind(' ') + 1)) + 2);
      ASSERT_TRUE(body);
      ++owner_count[body->substr(0, body->size() - 2)];
      ++share[i];
    }
  }
  EXPECT_EQ(owner_count.size(), static_cast<std::size_t>(kMessages)) << "lost messages";
  for (const auto& [payload, copies] : owner_count) {
    ASSERT_EQ(copies, 1) << "message " << payload << " went to " << copies << " members";
  }
  for (int i = 0; i < kMembers; ++i) {
    EXPECT_NEAR(share[i], kMessages / kMembers, kTolerance) << "member " << i;
  }
}

TEST_F(PubSubTest, QueueGroupsAreIndependentOfEachOther) {
  auto a = NewClient("a");
  auto b = NewClient("b");
  auto pub = NewClient("pub");
  ASSERT_TRUE(a && b && pub);
  a->Sub("job", "1", "g1");
  b->Sub("job", "1", "g2");
  ASSERT_TRUE(a->Flush());
  ASSERT_TRUE(b->Flush());
  pub->Pub("job", "x");
  EXPECT_TRUE(a->ExpectMsg("job", "1", "x"));  // the only member of g1
  EXPECT_TRUE(b->ExpectMsg("job", "1", "x"));  // the only member of g2
}

TEST_F(PubSubTest, HeadersReachHeaderClientsAndAreStrippedForOthers) {
  auto hdr = NewClient("hdr", R"({"headers":true})");
  auto plain = NewClient("plain", R"({"headers":false})");
  auto pub = NewClient("pub", R"({"headers":true})");
  ASSERT_TRUE(hdr && plain && pub);
  hdr->Sub("h", "2");
  plain->Sub("h", "1");
  ASSERT_TRUE(hdr->Flush());
  ASSERT_TRUE(plain->Flush());

  const std::string headers = "NATS/1.0\r\nA: B\r\n\r\n";  // 18 bytes
  pub->HPub("h", headers, "hi", "rep");
  // Exactly what nats-server writes.
  EXPECT_TRUE(hdr->ExpectLine("HMSG h 2 rep 18 20"));
  EXPECT_EQ(hdr->ReadExact(22), headers + "hi\r\n");
  EXPECT_TRUE(plain->ExpectLine("MSG h 1 rep 2"));
  EXPECT_TRUE(plain->ExpectLine("hi"));

  // Headers and no payload.
  pub->HPub("h", headers, "");
  EXPECT_TRUE(hdr->ExpectLine("HMSG h 2 18 18"));
  EXPECT_EQ(hdr->ReadExact(20), headers + "\r\n");
  EXPECT_TRUE(plain->ExpectLine("MSG h 1 0"));
  EXPECT_TRUE(plain->ExpectLine(""));

  // A plain PUB reaches a headers client as MSG.
  pub->Pub("h", "p");
  EXPECT_TRUE(hdr->ExpectMsg("h", "2", "p"));
  EXPECT_TRUE(plain->ExpectMsg("h", "1", "p"));
}

TEST_F(PubSubTest, RequestReplyThroughReplySubject) {
  auto requester = NewClient("requester");
  auto responder = NewClient("responder");
  ASSERT_TRUE(requester && responder);
  responder->Sub("svc.echo", "1");
  ASSERT_TRUE(responder->Flush());
  requester->Sub("_INBOX.abc.*", "9");
  ASSERT_TRUE(requester->Flush());

  for (int i = 0; i < 3; ++i) {
    const std::string inbox = "_INBOX.abc." + std::to_string(i);
    requester->Pub("svc.echo", "req" + std::to_string(i), inbox);
    std::optional<Msg> req = responder->ReadMsg();
    ASSERT_TRUE(req);
    EXPECT_EQ(req->payload, "req" + std::to_string(i));
    ASSERT_EQ(req->reply, inbox);
    responder->Pub(req->reply, "rep" + std::to_string(i));
    EXPECT_TRUE(requester->ExpectMsg(inbox, "9", "rep" + std::to_string(i)));
  }
}

// A request nobody can answer, from a client that asked for no_responders,
// gets a 503 status on its reply subject.
TEST_F(PubSubTest, NoRespondersGets503Status) {
  auto requester = NewClient("requester", R"({"headers":true,"no_responders":true})");
  ASSERT_TRUE(requester);
  requester->Sub("_INBOX.x", "7");
  ASSERT_TRUE(requester->Flush());
  requester->Pub("svc.none", "hi", "_INBOX.x");
  // nats-server 2.9.10's exact bytes.
  EXPECT_TRUE(requester->ExpectLine("HMSG _INBOX.x 7 16 16"));
  EXPECT_EQ(requester->ReadExact(18), std::string("NATS/1.0 503\r\n\r\n\r\n"));

  // Same for HPUB.
  requester->HPub("svc.none", "NATS/1.0\r\n\r\n", "hi", "_INBOX.x");
  EXPECT_TRUE(requester->ExpectLine("HMSG _INBOX.x 7 16 16"));
  EXPECT_EQ(requester->ReadExact(18), std::string("NATS/1.0 503\r\n\r\n\r\n"));

  // No status without a reply subject, or when the reply subject has no
  // subscription of the requester.
  requester->Pub("svc.none", "hi");
  requester->Pub("svc.none", "hi", "_INBOX.unheard");
  ASSERT_TRUE(requester->Flush());

  // A responder (a queue member counts) means no status, just the request.
  auto responder = NewClient("responder");
  ASSERT_TRUE(responder);
  responder->Sub("svc.q", "1", "workers");
  ASSERT_TRUE(responder->Flush());
  requester->Pub("svc.q", "hi", "_INBOX.x");
  EXPECT_TRUE(responder->ExpectMsg("svc.q", "1", "hi", "_INBOX.x"));
  ASSERT_TRUE(requester->Flush());
}

TEST_F(PubSubTest, NoStatusWithoutNoRespondersOption) {
  auto requester = NewClient("requester", R"({"headers":true,"no_responders":false})");
  ASSERT_TRUE(requester);
  requester->Sub("_INBOX.x", "7");
  requester->Pub("svc.none", "hi", "_INBOX.x");
  ASSERT_TRUE(requester->Flush());
}

TEST_F(PubSubTest, EchoOnAndOff) {
  auto echo = NewClient("echo");  // echo defaults to true
  auto quiet = NewClient("quiet", R"({"echo":false})");
  ASSERT_TRUE(echo && quiet);
  echo->Sub("e", "1");
  quiet->Sub("e", "1");
  ASSERT_TRUE(echo->Flush());
  ASSERT_TRUE(quiet->Flush());

  echo->Pub("e", "from-echo");
  EXPECT_TRUE(echo->ExpectMsg("e", "1", "from-echo"));  // its own message
  EXPECT_TRUE(quiet->ExpectMsg("e", "1", "from-echo"));

  quiet->Pub("e", "from-quiet");
  EXPECT_TRUE(echo->ExpectMsg("e", "1", "from-quiet"));
  // Not to itself: the PONG comes first.
  ASSERT_TRUE(quiet->Flush());
  echo->Pub("e", "marker");
  EXPECT_TRUE(quiet->ExpectMsg("e", "1", "marker"));
}

TEST_F(PubSubTest, VerboseAcknowledgesEveryOperation) {
  auto v = NewClient("verbose", R"({"verbose":true})");  // Connect saw CONNECT's +OK
  ASSERT_TRUE(v);
  v->Sub("v", "1");
  EXPECT_TRUE(v->ExpectLine(R"(\+OK)"));
  v->Pub("v", "x");
  EXPECT_TRUE(v->ExpectLine(R"(\+OK)"));
  EXPECT_TRUE(v->ExpectMsg("v", "1", "x"));
  v->Unsub("1");
  EXPECT_TRUE(v->ExpectLine(R"(\+OK)"));
  // PING gets PONG only; a client's PONG gets nothing.
  v->Send("PONG\r\n");
  EXPECT_TRUE(v->Flush());
}

TEST_F(PubSubTest, AutoUnsubscribeAfterMaxMessages) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("m", "1");
  sub->Unsub("1", 2);
  sub->Sub("marker", "2");
  ASSERT_TRUE(sub->Flush());
  for (int i = 0; i < 5; ++i) pub->Pub("m", std::to_string(i));
  pub->Pub("marker", "end");
  EXPECT_TRUE(sub->ExpectMsg("m", "1", "0"));
  EXPECT_TRUE(sub->ExpectMsg("m", "1", "1"));
  EXPECT_TRUE(sub->ExpectMsg("marker", "2", "end"));  // nothing after max
}

TEST_F(PubSubTest, AutoUnsubscribeWithMaxAlreadyReachedStopsAtOnce) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("m", "1");
  sub->Sub("marker", "2");
  ASSERT_TRUE(sub->Flush());
  for (int i = 0; i < 3; ++i) pub->Pub("m", std::to_string(i));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(sub->ExpectMsg("m", "1", std::to_string(i)));
  // max below and equal to what was delivered: removed at once.
  sub->Unsub("1", 2);
  ASSERT_TRUE(sub->Flush());
  pub->Pub("m", "late");
  pub->Pub("marker", "end");
  EXPECT_TRUE(sub->ExpectMsg("marker", "2", "end"));

  sub->Sub("n", "3");
  ASSERT_TRUE(sub->Flush());
  for (int i = 0; i < 2; ++i) pub->Pub("n", std::to_string(i));
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(sub->ExpectMsg("n", "3", std::to_string(i)));
  sub->Unsub("3", 2);
  ASSERT_TRUE(sub->Flush());
  pub->Pub("n", "late");
  pub->Pub("marker", "end2");
  EXPECT_TRUE(sub->ExpectMsg("marker", "2", "end2"));
}

TEST_F(PubSubTest, AutoUnsubscribeCountsFromTheStartOfTheSubscription) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("m", "1");
  sub->Sub("marker", "2");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("m", "0");
  EXPECT_TRUE(sub->ExpectMsg("m", "1", "0"));
  // One delivered already; max 3 allows two more.
  sub->Unsub("1", 3);
  ASSERT_TRUE(sub->Flush());
  for (int i = 1; i < 6; ++i) pub->Pub("m", std::to_string(i));
  pub->Pub("marker", "end");
  EXPECT_TRUE(sub->ExpectMsg("m", "1", "1"));
  EXPECT_TRUE(sub->ExpectMsg("m", "1", "2"));
  EXPECT_TRUE(sub->ExpectMsg("marker", "2", "end"));
}

TEST_F(PubSubTest, LargePayloadArrivesIntact) {
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("big", "1");
  ASSERT_TRUE(sub->Flush());
  // The default max_payload (1 MiB), every byte value.
  std::string payload(1 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + 3);
  pub->Pub("big", payload);
  std::optional<Msg> m = sub->ReadMsg(milliseconds(10000));
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->payload == payload) << "payload differs";
}

TEST_F(PubSubTest, InfoCarriesTheStandardFields) {
  RawClient c;
  ASSERT_TRUE(c.Dial(server_.port()));
  std::optional<nlohmann::json> info = c.ExpectInfo();
  ASSERT_TRUE(info);
  SCOPED_TRACE(info->dump());
  ASSERT_TRUE(info->contains("server_id"));
  EXPECT_TRUE((*info)["server_id"].is_string());
  EXPECT_FALSE((*info)["server_id"].get<std::string>().empty());
  ASSERT_TRUE(info->contains("version"));
  EXPECT_TRUE((*info)["version"].is_string());
  ASSERT_TRUE(info->contains("proto"));
  EXPECT_EQ((*info)["proto"], 1);
  ASSERT_TRUE(info->contains("headers"));
  EXPECT_EQ((*info)["headers"], true);
  ASSERT_TRUE(info->contains("max_payload"));
  EXPECT_EQ((*info)["max_payload"], 1048576);
  ASSERT_TRUE(info->contains("client_id"));
  EXPECT_TRUE((*info)["client_id"].is_number_unsigned());
  ASSERT_TRUE(info->contains("client_ip"));
  EXPECT_EQ((*info)["client_ip"], "127.0.0.1");
  ASSERT_TRUE(info->contains("host"));
  ASSERT_TRUE(info->contains("port"));
  EXPECT_EQ((*info)["port"], server_.port());
  // No users configured: auth_required absent or false.
  EXPECT_FALSE(info->value("auth_required", false));

  // Each connection gets its own client_id.
  RawClient d;
  ASSERT_TRUE(d.Dial(server_.port()));
  std::optional<nlohmann::json> info2 = d.ExpectInfo();
  ASSERT_TRUE(info2);
  EXPECT_NE((*info)["client_id"], (*info2)["client_id"]);
}

// zmesh can listen on port 0 and report its ports in --ports_file; the
// harness then learns the port from the file (nats-server: a free port).
class PubSubPortsFileTest : public PubSubTest {
 protected:
  void SetUp() override {
    options_.use_ports_file = true;
    PubSubTest::SetUp();
  }
};

TEST_F(PubSubPortsFileTest, ServesOnTheReportedPort) {
  ASSERT_NE(server_.port(), 0);
  auto sub = NewClient("sub");
  auto pub = NewClient("pub");
  ASSERT_TRUE(sub && pub);
  sub->Sub("p", "1");
  ASSERT_TRUE(sub->Flush());
  pub->Pub("p", "x");
  EXPECT_TRUE(sub->ExpectMsg("p", "1", "x"));
}

class PubSubSmallPayloadTest : public PubSubTest {
 protected:
  void SetUp() override {
    options_.max_payload = 4096;
    PubSubTest::SetUp();
  }
};

TEST_F(PubSubSmallPayloadTest, InfoReportsConfiguredMaxPayload) {
  RawClient c;
  ASSERT_TRUE(c.Dial(server_.port()));
  std::optional<nlohmann::json> info = c.ExpectInfo();
  ASSERT_TRUE(info);
  EXPECT_EQ((*info)["max_payload"], 4096);
}

}  // namespace
}  // namespace zmesh::testing

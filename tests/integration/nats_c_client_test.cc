// A second standard client against a 3-node zmesh mesh: the NATS C client
// (Debian's libnats, cnats 3.x), next to the Go client of go_client_test and
// mesh_test. Everything crosses nodes: pub/sub, a queue group with one member
// per node, request/reply (and no responders), headers (HPUB/HMSG), and
// reconnect after kill -9 of the client's node to a node it only learned from
// INFO connect_urls.
//
// Interest is in place before anything is published because cnats's
// natsConnection_Flush is a PING, and a zmesh node answers it only once every
// live peer applied the connection's subscription changes (the interest
// barrier, SPEC §2). Every other wait is a bounded condition wait.

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/mesh_fixture.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kFlushTimeoutMs = 10000;
constexpr milliseconds kDeliveryTimeout{30000};

std::string StatusText(natsStatus s) {
  char stack[2048] = {};
  nats_GetLastErrorStack(stack, sizeof stack);
  return std::string(natsStatus_GetText(s)) + " " + stack;
}

// One received message, copied out of the library's natsMsg.
struct Received {
  std::string subject;
  std::string reply;
  std::string data;
  std::map<std::string, std::vector<std::string>> headers;
};

// Collects what a subscription's callback (a library thread) receives.
class Inbox {
 public:
  static void OnMsg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    static_cast<Inbox*>(closure)->Add(msg);
    natsMsg_Destroy(msg);
  }

  // Until `count` messages arrived, or `timeout`.
  bool WaitCount(size_t count, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= count; });
  }
  // Until a message with this payload arrived, or `timeout`.
  bool WaitData(const std::string& data, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return std::any_of(messages_.begin(), messages_.end(), [&](const Received& r) { return r.data == data; });
    });
  }
  std::vector<Received> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_.size();
  }

 private:
  void Add(natsMsg* msg) {
    Received r;
    r.subject = natsMsg_GetSubject(msg);
    if (const char* reply = natsMsg_GetReply(msg)) r.reply = reply;
    if (natsMsg_GetData(msg) != nullptr) r.data.assign(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    const char** keys = nullptr;
    int nkeys = 0;
    if (natsMsgHeader_Keys(msg, &keys, &nkeys) == NATS_OK) {
      for (int k = 0; k < nkeys; ++k) {
        const char** values = nullptr;
        int nvalues = 0;
        if (natsMsgHeader_Values(msg, keys[k], &values, &nvalues) != NATS_OK) continue;
        auto& out = r.headers[keys[k]];
        for (int v = 0; v < nvalues; ++v) out.emplace_back(values[v]);
        free(static_cast<void*>(values));
      }
      free(static_cast<void*>(keys));
    }
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(std::move(r));
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> messages_;
};

// Connection events from the library's callback thread.
class Events {
 public:
  static void OnReconnected(natsConnection*, void* closure) {
    auto* e = static_cast<Events*>(closure);
    std::lock_guard<std::mutex> lock(e->mu_);
    ++e->reconnects_;
    e->cv_.notify_all();
  }
  static void OnDisconnected(natsConnection*, void* closure) {
    auto* e = static_cast<Events*>(closure);
    std::lock_guard<std::mutex> lock(e->mu_);
    ++e->disconnects_;
  }

  bool WaitReconnects(int n, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return reconnects_ >= n; });
  }
  int disconnects() {
    std::lock_guard<std::mutex> lock(mu_);
    return disconnects_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int reconnects_ = 0;
  int disconnects_ = 0;
};

struct ConnDeleter {
  void operator()(natsConnection* nc) const { natsConnection_Destroy(nc); }
};
struct SubDeleter {
  void operator()(natsSubscription* sub) const { natsSubscription_Destroy(sub); }
};
struct OptsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};
using Conn = std::unique_ptr<natsConnection, ConnDeleter>;
using Sub = std::unique_ptr<natsSubscription, SubDeleter>;

// Connects to exactly `url` (no other seed): anything else the client uses
// later it learned from the node's INFO connect_urls.
Conn Connect(const std::string& url, const std::string& name, Events* events = nullptr, std::string* error = nullptr) {
  natsOptions* raw = nullptr;
  if (natsOptions_Create(&raw) != NATS_OK) return nullptr;
  std::unique_ptr<natsOptions, OptsDeleter> opts(raw);
  natsOptions_SetURL(raw, url.c_str());
  natsOptions_SetName(raw, name.c_str());
  natsOptions_SetTimeout(raw, 5000);
  natsOptions_SetMaxReconnect(raw, 100);
  natsOptions_SetReconnectWait(raw, 100);
  if (events != nullptr) {
    natsOptions_SetReconnectedCB(raw, &Events::OnReconnected, events);
    natsOptions_SetDisconnectedCB(raw, &Events::OnDisconnected, events);
  }
  natsConnection* nc = nullptr;
  const natsStatus s = natsConnection_Connect(&nc, raw);
  if (s != NATS_OK) {
    if (error != nullptr) *error = "connect to " + url + ": " + StatusText(s);
    return nullptr;
  }
  return Conn(nc);
}

std::string ConnectedUrl(natsConnection* nc) {
  char buf[256] = {};
  if (natsConnection_GetConnectedUrl(nc, buf, sizeof buf) != NATS_OK) return "";
  return buf;
}

std::set<std::string> DiscoveredServers(natsConnection* nc) {
  char** servers = nullptr;
  int count = 0;
  std::set<std::string> out;
  if (natsConnection_GetDiscoveredServers(nc, &servers, &count) != NATS_OK) return out;
  for (int k = 0; k < count; ++k) {
    out.insert(servers[k]);
    free(servers[k]);
  }
  free(servers);
  return out;
}

// Shuts the library down once, after the last test: it owns threads and
// buffers that LeakSanitizer would otherwise report against this binary.
class NatsLibrary : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_EQ(nats_Open(-1), NATS_OK); }
  void TearDown() override { EXPECT_EQ(nats_CloseAndWait(10000), NATS_OK); }
};
const auto* const kNatsLibrary = ::testing::AddGlobalTestEnvironment(new NatsLibrary);

class NatsCClientTest : public MeshFixture {
 protected:
  void SetUp() override {
    MeshFixture::SetUp();
    if (HasFatalFailure()) return;
    std::string error;
    ASSERT_TRUE(mesh_->StartNodes(3, &error)) << error;
  }

  Conn MustConnect(int node, const std::string& name, Events* events = nullptr) {
    std::string error;
    Conn c = Connect(mesh_->client_url(node), name, events, &error);
    EXPECT_TRUE(c != nullptr) << error;
    if (c != nullptr) {
      EXPECT_EQ(ConnectedUrl(c.get()), mesh_->client_url(node));
    }
    return c;
  }
};

#define NATS_OK_OR_FAIL(expr)                                             \
  do {                                                                    \
    const natsStatus s_ = (expr);                                         \
    ASSERT_EQ(s_, NATS_OK) << #expr << ": " << StatusText(s_);            \
  } while (0)

// Each of two publishers on two other nodes sends 100 messages; the
// subscriber gets each exactly once, in each publisher's order.
TEST_F(NatsCClientTest, PubSubAcrossNodes) {
  Conn sub_conn = MustConnect(0, "sub-n1");
  Conn pub2 = MustConnect(1, "pub-n2");
  Conn pub3 = MustConnect(2, "pub-n3");
  ASSERT_TRUE(sub_conn && pub2 && pub3);
  Inbox inbox;
  natsSubscription* raw = nullptr;
  NATS_OK_OR_FAIL(natsConnection_Subscribe(&raw, sub_conn.get(), "c.pubsub.*", &Inbox::OnMsg, &inbox));
  Sub sub(raw);
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(sub_conn.get(), kFlushTimeoutMs));

  constexpr int kCount = 100;
  using Publisher = std::pair<natsConnection*, std::string>;
  for (const auto& [conn, name] : {Publisher{pub2.get(), "n2"}, Publisher{pub3.get(), "n3"}}) {
    for (int k = 0; k < kCount; ++k) {
      NATS_OK_OR_FAIL(natsConnection_PublishString(conn, ("c.pubsub." + name).c_str(),
                                                   (name + "-" + std::to_string(k)).c_str()));
    }
    NATS_OK_OR_FAIL(natsConnection_FlushTimeout(conn, kFlushTimeoutMs));
  }
  ASSERT_TRUE(inbox.WaitCount(2 * kCount, kDeliveryTimeout)) << "received " << inbox.size() << " of " << 2 * kCount;
  std::map<std::string, int> next;
  for (const Received& r : inbox.messages()) {
    const std::string from = r.data.substr(0, r.data.find('-'));
    EXPECT_EQ(r.subject, "c.pubsub." + from);
    EXPECT_EQ(r.data, from + "-" + std::to_string(next[from]++)) << "out of order or duplicated";
  }
  EXPECT_EQ(next["n2"], kCount);
  EXPECT_EQ(next["n3"], kCount);
}

// One queue member per node: each message reaches exactly one member, and
// the members share the load (chosen over all members of the mesh, SPEC §2).
TEST_F(NatsCClientTest, QueueGroupSpreadsAcrossNodes) {
  std::vector<Conn> members;
  std::vector<std::unique_ptr<Inbox>> inboxes;
  std::vector<Sub> subs;
  for (int node = 0; node < 3; ++node) {
    members.push_back(MustConnect(node, "worker-n" + std::to_string(node + 1)));
    ASSERT_TRUE(members.back() != nullptr);
    inboxes.push_back(std::make_unique<Inbox>());
    natsSubscription* raw = nullptr;
    NATS_OK_OR_FAIL(natsConnection_QueueSubscribe(&raw, members.back().get(), "c.work", "workers", &Inbox::OnMsg,
                                                  inboxes.back().get()));
    subs.emplace_back(raw);
    NATS_OK_OR_FAIL(natsConnection_FlushTimeout(members.back().get(), kFlushTimeoutMs));
  }
  Conn pub = MustConnect(0, "producer-n1");
  ASSERT_TRUE(pub != nullptr);
  constexpr int kCount = 6000;
  for (int k = 0; k < kCount; ++k) {
    NATS_OK_OR_FAIL(natsConnection_PublishString(pub.get(), "c.work", std::to_string(k).c_str()));
  }
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(pub.get(), kFlushTimeoutMs));

  auto total = [&] {
    size_t n = 0;
    for (auto& in : inboxes) n += in->size();
    return n;
  };
  EXPECT_TRUE(WaitFor(kDeliveryTimeout, [&] { return total() >= kCount; }, milliseconds(10)))
      << "received " << total() << " of " << kCount;
  ASSERT_EQ(total(), static_cast<size_t>(kCount));
  std::set<std::string> seen;
  for (size_t m = 0; m < inboxes.size(); ++m) {
    const std::vector<Received> got = inboxes[m]->messages();
    for (const Received& r : got) EXPECT_TRUE(seen.insert(r.data).second) << "delivered twice: " << r.data;
    // 1/3 each: 2000 +- 400 is more than 10 standard deviations (~36) wide.
    EXPECT_GE(got.size(), 1600u) << "member on n" << m + 1;
    EXPECT_LE(got.size(), 2400u) << "member on n" << m + 1;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kCount));
}

// A responder on n3 answers requests made on n1; a subject nobody serves
// gets the no-responders status at once, not a timeout.
TEST_F(NatsCClientTest, RequestReplyAcrossNodes) {
  Conn responder = MustConnect(2, "responder-n3");
  Conn requester = MustConnect(0, "requester-n1");
  ASSERT_TRUE(responder && requester);
  struct Echo {
    static void OnMsg(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
      const std::string body = "echo:" + std::string(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
      natsConnection_Publish(nc, natsMsg_GetReply(msg), body.data(), static_cast<int>(body.size()));
      natsMsg_Destroy(msg);
    }
  };
  natsSubscription* raw = nullptr;
  NATS_OK_OR_FAIL(natsConnection_Subscribe(&raw, responder.get(), "c.svc.echo", &Echo::OnMsg, nullptr));
  Sub sub(raw);
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(responder.get(), kFlushTimeoutMs));

  for (int k = 0; k < 20; ++k) {
    natsMsg* reply = nullptr;
    const std::string body = "ping-" + std::to_string(k);
    NATS_OK_OR_FAIL(natsConnection_RequestString(&reply, requester.get(), "c.svc.echo", body.c_str(), 5000));
    EXPECT_EQ(std::string(natsMsg_GetData(reply), natsMsg_GetDataLength(reply)), "echo:" + body);
    natsMsg_Destroy(reply);
  }

  natsMsg* reply = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  const natsStatus s = natsConnection_RequestString(&reply, requester.get(), "c.svc.nobody", "x", 5000);
  EXPECT_EQ(s, NATS_NO_RESPONDERS) << StatusText(s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(4)) << "no responders must not wait for the timeout";
  if (reply != nullptr) natsMsg_Destroy(reply);
}

// Headers set on n2 (HPUB) arrive on n1 (HMSG) unchanged: single and
// multi-valued keys, and a message that has headers but no body.
TEST_F(NatsCClientTest, HeadersAcrossNodes) {
  Conn sub_conn = MustConnect(0, "hdr-sub-n1");
  Conn pub = MustConnect(1, "hdr-pub-n2");
  ASSERT_TRUE(sub_conn && pub);
  EXPECT_TRUE(natsConnection_HasHeaderSupport(sub_conn.get()) == NATS_OK);
  EXPECT_TRUE(natsConnection_HasHeaderSupport(pub.get()) == NATS_OK);
  Inbox inbox;
  natsSubscription* raw = nullptr;
  NATS_OK_OR_FAIL(natsConnection_Subscribe(&raw, sub_conn.get(), "c.hdr", &Inbox::OnMsg, &inbox));
  Sub sub(raw);
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(sub_conn.get(), kFlushTimeoutMs));

  natsMsg* msg = nullptr;
  NATS_OK_OR_FAIL(natsMsg_Create(&msg, "c.hdr", nullptr, "body-1", 6));
  std::unique_ptr<natsMsg, void (*)(natsMsg*)> owned(msg, natsMsg_Destroy);
  NATS_OK_OR_FAIL(natsMsgHeader_Set(msg, "X-Trace", "abc-123"));
  NATS_OK_OR_FAIL(natsMsgHeader_Add(msg, "X-Multi", "one"));
  NATS_OK_OR_FAIL(natsMsgHeader_Add(msg, "X-Multi", "two"));
  NATS_OK_OR_FAIL(natsConnection_PublishMsg(pub.get(), msg));
  natsMsg* empty = nullptr;
  NATS_OK_OR_FAIL(natsMsg_Create(&empty, "c.hdr", nullptr, nullptr, 0));
  std::unique_ptr<natsMsg, void (*)(natsMsg*)> owned_empty(empty, natsMsg_Destroy);
  NATS_OK_OR_FAIL(natsMsgHeader_Set(empty, "X-Only", "headers"));
  NATS_OK_OR_FAIL(natsConnection_PublishMsg(pub.get(), empty));
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(pub.get(), kFlushTimeoutMs));

  ASSERT_TRUE(inbox.WaitCount(2, kDeliveryTimeout)) << "received " << inbox.size() << " of 2";
  const std::vector<Received> got = inbox.messages();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, "body-1");
  EXPECT_EQ(got[0].headers.at("X-Trace"), std::vector<std::string>{"abc-123"});
  EXPECT_EQ(got[0].headers.at("X-Multi"), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(got[1].data, "");
  EXPECT_EQ(got[1].headers.at("X-Only"), std::vector<std::string>{"headers"});
  EXPECT_EQ(got[1].headers.size(), 1u);
}

// The client knows only n1's URL. Once n1 is killed with SIGKILL, it
// reconnects to a node it learned from INFO connect_urls, re-subscribes, and
// pub/sub works again in both directions.
TEST_F(NatsCClientTest, ReconnectsToAnotherNodeAfterKill9) {
  Events events;
  Conn client = MustConnect(0, "roaming", &events);
  ASSERT_TRUE(client != nullptr);
  const std::set<std::string> others = {mesh_->client_url(1), mesh_->client_url(2)};
  std::set<std::string> discovered;
  // connect_urls arrive in the first INFO, or in a later one when membership
  // settles: poll, bounded.
  ASSERT_TRUE(WaitFor(seconds(10), [&] {
    discovered = DiscoveredServers(client.get());
    return std::includes(discovered.begin(), discovered.end(), others.begin(), others.end());
  }, milliseconds(20))) << "discovered: " << ::testing::PrintToString(discovered);

  Inbox inbox;
  natsSubscription* raw = nullptr;
  NATS_OK_OR_FAIL(natsConnection_Subscribe(&raw, client.get(), "c.roam.in", &Inbox::OnMsg, &inbox));
  Sub sub(raw);
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(client.get(), kFlushTimeoutMs));
  {
    Conn before = MustConnect(1, "before-n2");
    ASSERT_TRUE(before != nullptr);
    NATS_OK_OR_FAIL(natsConnection_PublishString(before.get(), "c.roam.in", "before"));
    NATS_OK_OR_FAIL(natsConnection_FlushTimeout(before.get(), kFlushTimeoutMs));
    ASSERT_TRUE(inbox.WaitData("before", kDeliveryTimeout));
  }

  mesh_->Kill(0);
  ASSERT_TRUE(events.WaitReconnects(1, seconds(30))) << "no reconnect after kill -9 of n1";
  EXPECT_GE(events.disconnects(), 1);
  const std::string now_on = ConnectedUrl(client.get());
  ASSERT_TRUE(others.count(now_on)) << "reconnected to '" << now_on << "'";
  // The barrier again: the re-sent subscription is known mesh-wide.
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(client.get(), kFlushTimeoutMs));

  // A node other than the one the client moved to.
  const int other = now_on == mesh_->client_url(1) ? 2 : 1;
  Conn peer = MustConnect(other, "after");
  ASSERT_TRUE(peer != nullptr);
  Inbox back;
  natsSubscription* raw_back = nullptr;
  NATS_OK_OR_FAIL(natsConnection_Subscribe(&raw_back, peer.get(), "c.roam.out", &Inbox::OnMsg, &back));
  Sub sub_back(raw_back);
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(peer.get(), kFlushTimeoutMs));

  NATS_OK_OR_FAIL(natsConnection_PublishString(peer.get(), "c.roam.in", "after"));
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(peer.get(), kFlushTimeoutMs));
  EXPECT_TRUE(inbox.WaitData("after", kDeliveryTimeout)) << "the re-subscribed client got nothing";
  NATS_OK_OR_FAIL(natsConnection_PublishString(client.get(), "c.roam.out", "from-roaming"));
  NATS_OK_OR_FAIL(natsConnection_FlushTimeout(client.get(), kFlushTimeoutMs));
  EXPECT_TRUE(back.WaitData("from-roaming", kDeliveryTimeout)) << "the reconnected client cannot publish";
}

}  // namespace
}  // namespace zmesh::testing

// The client library's building blocks: the encoder, the frame scanner used
// to salvage publishes, the Outbox's bounds and ordering, the node cache
// file, INFO parsing and message headers.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "client/frame_scanner.h"
#include "client/node_cache.h"
#include "client/node_cache_writer.h"
#include "client/outbox.h"
#include "client/thread_owner.h"
#include "proto/client_writer.h"
#include "proto/parser.h"
#include "tests/support/wait_for.h"
#include <zmesh/message.h>

namespace zmesh::client {
namespace {

TEST(ClientWriterTest, EncodesWhatTheServerParserReads) {
  std::string out;
  proto::AppendPub(&out, "a.b", "", "hello");
  proto::AppendPub(&out, "a.b", "_INBOX.x.1", "");
  proto::AppendHPub(&out, "h", "r", "NATS/1.0\r\nK: v\r\n\r\n", "body");
  proto::AppendSub(&out, "a.*", "", 7);
  proto::AppendSub(&out, "q.>", "grp", 8);
  proto::AppendUnsub(&out, 7);
  proto::AppendUnsub(&out, 8, 5);
  proto::AppendPing(&out);
  EXPECT_EQ(out.substr(0, 18), "PUB a.b 5\r\nhello\r\n");
  EXPECT_EQ(proto::PubSize("a.b", "", 5), 18u);
  EXPECT_EQ(proto::PubSize("a.b", "_INBOX.x.1", 0), std::string("PUB a.b _INBOX.x.1 0\r\n\r\n").size());
  EXPECT_EQ(proto::HPubSize("h", "r", 18, 4), std::string("HPUB h r 18 22\r\nNATS/1.0\r\nK: v\r\n\r\nbody\r\n").size());

  proto::Parser parser(proto::Parser::Role::kServer, {});
  std::string_view in = out;
  proto::Op op;
  std::vector<std::string> seen;
  while (parser.Next(&in, &op) == proto::ParseStatus::kOp) {
    std::string s = std::to_string(static_cast<int>(op.type)) + ":" + std::string(op.subject) + "|" +
                    std::string(op.reply) + "|" + std::string(op.queue) + "|" + std::string(op.sid) + "|" +
                    std::to_string(op.max_msgs) + "|" + std::string(op.payload);
    seen.push_back(s);
  }
  ASSERT_EQ(seen.size(), 8u);
  EXPECT_EQ(seen[0], std::to_string(static_cast<int>(proto::OpType::kPub)) + ":a.b||||-1|hello");
  EXPECT_EQ(seen[4], std::to_string(static_cast<int>(proto::OpType::kSub)) + ":q.>||grp|8|-1|");
  EXPECT_EQ(seen[6], std::to_string(static_cast<int>(proto::OpType::kUnsub)) + ":|||8|5|");
}

TEST(FrameScannerTest, KeepsOnlyWholeUnsentPublishes) {
  std::string buf;
  proto::AppendConnect(&buf, "{}");
  proto::AppendPing(&buf);
  proto::AppendSub(&buf, "x", "", 1);
  const size_t first_pub = buf.size();
  proto::AppendPub(&buf, "p", "", "one");
  proto::AppendUnsub(&buf, 1);
  proto::AppendPub(&buf, "p", "", "two\r\nPUB fake 1\r\n");  // payload that looks like protocol
  proto::AppendPing(&buf);
  proto::AppendHPub(&buf, "p", "", "NATS/1.0\r\n\r\n", "three");

  std::string kept;
  EXPECT_EQ(KeepFrames(buf, 0, kFramePub, &kept), 3u);
  std::string expected;
  proto::AppendPub(&expected, "p", "", "one");
  proto::AppendPub(&expected, "p", "", "two\r\nPUB fake 1\r\n");
  proto::AppendHPub(&expected, "p", "", "NATS/1.0\r\n\r\n", "three");
  EXPECT_EQ(kept, expected);

  // A publish partly written (offset inside it) is gone; later ones stay.
  kept.clear();
  EXPECT_EQ(KeepFrames(buf, first_pub + 3, kFramePub, &kept), 2u);
  kept.clear();
  EXPECT_EQ(KeepFrames(buf, 0, kFramePub | kFramePing, &kept), 5u);
  // Truncated input ends the walk without reading past the end.
  kept.clear();
  EXPECT_EQ(KeepFrames(std::string_view(buf).substr(0, buf.size() - 4), 0, kFramePub, &kept), 2u);
}

TEST(OutboxTest, BoundsPublishesWhileDisconnectedWithAnError) {
  Outbox box(Outbox::Limits{1 << 20, 100});
  ASSERT_TRUE(box.Init().ok());
  int ok = 0;
  Status st;
  for (int i = 0; i < 100; ++i) {
    st = box.AppendPub("s", "", "", "012345678");  // 20 bytes each
    if (!st.ok()) break;
    ++ok;
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(st.code(), StatusCode::kBufferFull);
  EXPECT_EQ(box.pending_bytes(), 100u);
}

TEST(OutboxTest, DisconnectKeepsPublishesAndPingsAndDropsSubscriptions) {
  Outbox box(Outbox::Limits{1 << 20, 1 << 20});
  ASSERT_TRUE(box.Init().ok());
  box.SetConnected([] {});
  box.WithLock([](bool connected, std::string* pending) {
    EXPECT_TRUE(connected);
    proto::AppendSub(pending, "x", "", 1);
  });
  ASSERT_TRUE(box.AppendPub("a", "", "", "1").ok());
  auto waiter = std::make_shared<Completion<bool>>();
  ASSERT_TRUE(box.AppendPing(waiter).ok());
  box.WithLock([](bool, std::string* pending) { proto::AppendUnsub(pending, 1); });
  std::string salvaged;
  proto::AppendPub(&salvaged, "early", "", "0");
  box.SetDisconnected(salvaged);
  // Not connected: nothing to take yet, and subscription changes are not queued.
  std::string wbuf;
  std::deque<PongWaiter> waiters;
  EXPECT_FALSE(box.TakePending(&wbuf, &waiters));
  box.WithLock([](bool connected, std::string*) { EXPECT_FALSE(connected); });
  box.SetConnected([] {});
  ASSERT_TRUE(box.TakePending(&wbuf, &waiters));
  EXPECT_EQ(wbuf, "PUB early 1\r\n0\r\nPUB a 1\r\n1\r\nPING\r\n");
  ASSERT_EQ(waiters.size(), 1u);
  EXPECT_EQ(waiters[0], waiter);
}

// A planned move: what was queued before the re-subscription snapshot has
// its SUB/UNSUB in that snapshot, so they are dropped when the new
// connection takes over; later ones stay, publishes and PINGs keep their
// order, and publishes salvaged from the old connection go first.
TEST(OutboxTest, MoveDropsOnlyTheSubscriptionChangesItsSnapshotCovers) {
  Outbox box(Outbox::Limits{1 << 20, 1 << 20});
  ASSERT_TRUE(box.Init().ok());
  box.SetConnected([] {});
  ASSERT_TRUE(box.AppendPub("a", "", "", "1").ok());
  box.WithLock([](bool, std::string* pending) { proto::AppendSub(pending, "x", "", 1); });
  auto w1 = std::make_shared<Completion<bool>>();
  ASSERT_TRUE(box.AppendPing(w1).ok());
  box.WithLock([](bool, std::string* pending) { proto::AppendUnsub(pending, 2); });
  std::string snapshot;
  const size_t covered = box.SnapshotSubscriptions([&] { proto::AppendSub(&snapshot, "x", "", 1); });
  EXPECT_EQ(covered, box.pending_bytes());
  box.WithLock([](bool, std::string* pending) { proto::AppendSub(pending, "y", "", 3); });
  ASSERT_TRUE(box.AppendPub("b", "", "", "2").ok());
  std::string salvaged;
  proto::AppendPub(&salvaged, "early", "", "0");
  proto::AppendSub(&salvaged, "z", "", 9);  // never kept from the old connection
  box.ResumeAfterMove(covered, salvaged);
  std::string wbuf;
  std::deque<PongWaiter> waiters;
  ASSERT_TRUE(box.TakePending(&wbuf, &waiters));
  EXPECT_EQ(wbuf, "PUB early 1\r\n0\r\nPUB a 1\r\n1\r\nPING\r\nSUB y 3\r\nPUB b 1\r\n2\r\n");
  ASSERT_EQ(waiters.size(), 1u);
  EXPECT_EQ(waiters[0], w1);
}

TEST(OutboxTest, PublishBlocksAtTheHighWaterMarkWhileConnected) {
  Outbox box(Outbox::Limits{64, 1 << 20});
  ASSERT_TRUE(box.Init().ok());
  box.SetConnected([] {});
  ASSERT_TRUE(box.AppendPub("s", "", "", std::string(50, 'x')).ok());  // first always fits
  std::atomic<bool> done{false};
  std::thread t([&] {
    EXPECT_TRUE(box.AppendPub("s", "", "", std::string(50, 'y')).ok());
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load());
  std::string wbuf;
  std::deque<PongWaiter> waiters;
  EXPECT_TRUE(box.TakePending(&wbuf, &waiters));
  t.join();
  EXPECT_TRUE(done.load());
}

TEST(OutboxTest, CloseFailsAppendsAndReturnsWaiters) {
  Outbox box(Outbox::Limits{});
  ASSERT_TRUE(box.Init().ok());
  ASSERT_TRUE(box.AppendPing(std::make_shared<Completion<bool>>()).ok());
  EXPECT_EQ(box.Close().size(), 1u);
  EXPECT_EQ(box.AppendPub("s", "", "", "x").code(), StatusCode::kClosed);
  EXPECT_FALSE(box.WithLock([](bool, std::string*) {}));
}

class NodeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zmesh-cache-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(NodeCacheTest, WritesAtomicallyAndReadsBack) {
  const std::string path = dir_ + "/sub/dir/nodes.json";
  std::vector<CachedNode> nodes = {{"n1", "nats://127.0.0.1:1"}, {"n2", "nats://127.0.0.1:2"}};
  ASSERT_TRUE(WriteNodeCache(path, "zk:2181", "/zmesh/x", nodes).ok());
  std::string error;
  auto read = ReadNodeCache(path, &error);
  ASSERT_TRUE(read) << error;
  EXPECT_EQ(*read, nodes);
  // Overwrite; no temporary files are left behind.
  nodes.pop_back();
  ASSERT_TRUE(WriteNodeCache(path, "zk:2181", "/zmesh/x", nodes).ok());
  EXPECT_EQ(*ReadNodeCache(path, &error), nodes);
  const std::string listing = dir_ + "/sub/dir";
  int files = 0;
  for (const char* name : {"nodes.json"}) files += ::access((listing + "/" + name).c_str(), F_OK) == 0;
  EXPECT_EQ(files, 1);
  EXPECT_EQ(std::system(("test $(ls " + listing + " | wc -l) -eq 1").c_str()), 0);
}

TEST_F(NodeCacheTest, TheWriterWritesOnItsOwnThreadAndTheNewestListWins) {
  const std::string path = dir_ + "/nodes.json";
  const std::vector<CachedNode> first = {{"n1", "nats://127.0.0.1:1"}};
  const std::vector<CachedNode> last = {{"n2", "nats://127.0.0.1:2"}, {"n3", "nats://127.0.0.1:3"}};
  {
    NodeCacheWriter writer(path, "zk:2181", "/zmesh/x");
    writer.Submit(first);
    for (int i = 0; i < 20; ++i) writer.Submit({{"n" + std::to_string(i), "nats://127.0.0.1:9"}});
    writer.Submit(last);
  }  // the destructor leaves the newest list on disk
  std::string error;
  auto read = ReadNodeCache(path, &error);
  ASSERT_TRUE(read) << error;
  EXPECT_EQ(*read, last);
  EXPECT_EQ(std::system(("test $(ls " + dir_ + " | wc -l) -eq 1").c_str()), 0) << "a temporary file was left";
}

TEST_F(NodeCacheTest, AWriterThatCannotWriteSaysWhyAndTriesAgain) {
  std::ofstream(dir_ + "/file") << "not a directory\n";  // even root cannot make a directory here
  NodeCacheWriter writer(dir_ + "/file/nodes.json", "zk:2181", "/zmesh/x");
  EXPECT_TRUE(writer.last_error().ok()) << "nothing written yet";
  writer.Submit({{"n1", "nats://127.0.0.1:1"}});
  EXPECT_TRUE(zmesh::testing::WaitFor(std::chrono::seconds(5), [&] { return !writer.last_error().ok(); }))
      << "a failed write was not reported";
  // What was in the way goes: the list reaches the disk without a new one.
  ASSERT_EQ(std::remove((dir_ + "/file").c_str()), 0);
  EXPECT_TRUE(zmesh::testing::WaitFor(std::chrono::seconds(10), [&] { return writer.last_error().ok(); }))
      << "a failed write was never tried again";
  std::string error;
  auto read = ReadNodeCache(dir_ + "/file/nodes.json", &error);
  ASSERT_TRUE(read) << error;
  EXPECT_EQ(read->size(), 1u);
}

TEST_F(NodeCacheTest, RejectsGarbage) {
  std::string error;
  EXPECT_FALSE(ReadNodeCache(dir_ + "/missing.json", &error));
  for (const char* text : {"", "not json", "[1,2]", "{\"nodes\":5}"}) {
    std::ofstream(dir_ + "/bad.json") << text;
    EXPECT_FALSE(ReadNodeCache(dir_ + "/bad.json", &error)) << text;
  }
  std::ofstream(dir_ + "/partial.json") << R"({"nodes":[{"id":"a"},{"client_url":"nats://h:1"},7]})";
  auto read = ReadNodeCache(dir_ + "/partial.json", &error);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].client_url, "nats://h:1");
}

TEST_F(NodeCacheTest, DefaultPathDependsOnConnectStringAndRoot) {
  const std::string a = DefaultNodeCachePath("zk1:2181", "/zmesh/prod");
  EXPECT_NE(a, DefaultNodeCachePath("zk2:2181", "/zmesh/prod"));
  EXPECT_NE(a, DefaultNodeCachePath("zk1:2181", "/zmesh/test"));
  EXPECT_NE(a.find("zmesh_prod"), std::string::npos) << a;
}

// The I/O-thread checks abort on a foreign thread, also in release builds.
TEST(ThreadOwnerTest, ChecksTheOwningThread) {
  ThreadOwner owner("Thing");
  owner.Check();  // the constructing thread owns it
  EXPECT_DEATH(std::thread([&] { owner.Check(); }).join(), "Thing used outside its I/O thread");
  std::thread([&] {
    owner.TakeOver();
    owner.Check();
  }).join();
  EXPECT_DEATH(owner.Check(), "Thing used outside its I/O thread");
}

TEST(MessageTest, HeadersAndStatus) {
  Message m("s", "r", "NATS/1.0 503 No Responders\r\nKey: v1\r\nkey: v2\r\n\r\n", "data");
  EXPECT_EQ(m.subject(), "s");
  EXPECT_EQ(m.reply(), "r");
  EXPECT_EQ(m.data(), "data");
  EXPECT_EQ(m.status(), 503);
  EXPECT_EQ(m.Header("KEY").value_or(""), "v1");
  EXPECT_FALSE(m.Header("other"));
  Message plain("s", "", "", "x");
  EXPECT_EQ(plain.status(), 0);
  EXPECT_EQ(plain.size(), 2u);
}

}  // namespace
}  // namespace zmesh::client

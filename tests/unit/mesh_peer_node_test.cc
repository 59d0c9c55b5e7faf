// PeerNode: a remote node's interest in the subject index and the one link
// messages to it take. Links here are real PeerLinks on one end of a
// socketpair, never started: Forward writes to the socket from the test
// thread, and the test reads the frames from the other end.

#include "server/mesh/peer_node.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>

#include "proto/peer_protocol.h"
#include "server/io_worker.h"
#include "server/mesh/local_interest.h"
#include "server/mesh/mesh_options.h"
#include "server/mesh/peer_link.h"
#include "server/subject_index.h"
#include "tests/support/wait_for.h"

namespace zmesh::server::mesh {
namespace {

using namespace std::chrono_literals;
namespace peer = proto::peer;

class NullDelegate : public PeerLinkDelegate {
 public:
  void OnLinkAuthenticated(PeerLink*) override {}
  void OnLinkSynced(PeerLink*) override {}
  void OnLinkClosed(PeerLink*) override {}
  void OnPeerLeaving(PeerLink*, uint64_t) override {}
  void OnInterestRepair(PeerLink*) override {}
  void OnMoveCut(PeerLink*, uint64_t, const std::vector<proto::peer::Applied>&) override {}
  void OnPeerLoad(PeerLink*, uint64_t) override {}
};

class NullSink : public PeerMessageSink {
 public:
  void OnPeerMessage(IoWorker*, const Message&, const std::vector<std::string_view>&, bool) override {}
};

peer::Interest Plain(std::string_view subject, uint32_t count = 1) { return {subject, "", count, 0}; }
peer::Interest Queue(std::string_view subject, std::string_view group, uint32_t members) {
  return {subject, group, members, 0};
}

class PeerNodeTest : public ::testing::Test {
 protected:
  void SetUp() override { node_ = new PeerNode(&index_, "n2", 7); }
  void TearDown() override {
    if (node_->link()) {
      RefPtr<PeerLink> l = node_->link();
      node_->DropLinkIf(l.get());
    }
    node_->Unref();
    for (PeerLink* l : links_) l->Unref();
    for (int fd : remote_fds_) ::close(fd);
  }

  // A link whose other end the test reads.
  PeerLink* NewLink() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    remote_fds_.push_back(fds[1]);
    auto* link = new PeerLink(context_, &worker_, fds[0], next_id_++, "test", PeerLink::Direction::kOutbound, "n2");
    links_.push_back(link);
    return link;
  }

  // Everything written to the link's socket so far, as frames.
  std::vector<std::string> ReadFrames(size_t link_index) {
    std::string bytes(1 << 16, '\0');
    const ssize_t n = ::recv(remote_fds_[link_index], bytes.data(), bytes.size(), MSG_DONTWAIT);
    bytes.resize(n > 0 ? static_cast<size_t>(n) : 0);
    std::vector<std::string> out;
    std::string_view in(bytes);
    peer::Frame frame;
    while (reader_.Next(&in, &frame) == peer::FrameReader::Status::kFrame) {
      std::string s = std::string(frame.msg.subject) + "|" + std::string(frame.msg.payload);
      for (auto q : frame.msg.queues) s += "|" + std::string(q);
      out.push_back(s);
    }
    return out;
  }

  bool Matches(std::string_view subject) const {
    auto r = index_.Match(subject);
    return !r->empty();
  }

  static peer::Digest DigestOf(std::initializer_list<peer::Interest> entries) {
    InterestDigest d;
    for (const auto& e : entries) d.Add(e.subject, e.queue, e.count);
    return {d.hash, d.entries, 0};
  }

  SubjectIndex index_;
  IoWorker worker_{0, &index_};
  MeshOptions options_;
  LocalInterest interest_;
  NullDelegate delegate_;
  NullSink sink_;
  PeerLink::Context context_{&options_, &interest_, &delegate_, &sink_};
  PeerNode* node_ = nullptr;
  std::vector<PeerLink*> links_;
  std::vector<int> remote_fds_;
  uint64_t next_id_ = 1;
  peer::FrameReader reader_{1 << 20};
};

TEST_F(PeerNodeTest, InterestIsAppliedOnlyFromTheActiveLink) {
  PeerLink* a = NewLink();
  PeerLink* b = NewLink();
  EXPECT_FALSE(node_->SwapLink(a));
  node_->ApplyInterest(a, Plain("orders.new"));
  node_->ApplyInterest(b, Plain("stale.from.b"));
  EXPECT_EQ(node_->interest_count(), 1u);
  EXPECT_TRUE(Matches("orders.new"));
  EXPECT_FALSE(Matches("stale.from.b"));
  EXPECT_EQ(index_.size(), 1u);
}

TEST_F(PeerNodeTest, CountsAreAbsoluteAndZeroRemoves) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Queue("jobs", "workers", 3));
  node_->ApplyInterest(a, Queue("jobs", "workers", 3));  // idempotent
  node_->ApplyInterest(a, Queue("jobs", "workers", 5));  // a new weight replaces the entry
  EXPECT_EQ(node_->interest_count(), 1u);
  EXPECT_EQ(index_.size(), 1u);
  auto r = index_.Match("jobs");
  ASSERT_EQ(r->groups.size(), 1u);
  EXPECT_EQ(r->groups[0].total_weight, 5u);
  EXPECT_TRUE(node_->DigestMatches(DigestOf({Queue("jobs", "workers", 5)})));
  EXPECT_FALSE(node_->DigestMatches(DigestOf({Queue("jobs", "workers", 3)})));

  node_->ApplyInterest(a, Plain("never.there", 0));  // removing the unknown: nothing
  node_->ApplyInterest(a, Queue("jobs", "workers", 0));
  EXPECT_EQ(node_->interest_count(), 0u);
  EXPECT_EQ(index_.size(), 0u);
  EXPECT_TRUE(node_->DigestMatches(DigestOf({})));
}

// A moving client's queue member at this node, announced latent: it is in
// the node's count (and digest) but takes no picks here until released.
TEST_F(PeerNodeTest, ALatentQueueMemberTakesNoPicksUntilReleased) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Queue("jobs", "workers", 2));
  ASSERT_TRUE(node_->ApplyInterest(a, Queue("jobs", "workers", 3), /*latent=*/+1));
  auto r = index_.Match("jobs");
  ASSERT_EQ(r->groups.size(), 1u);
  EXPECT_EQ(r->groups[0].total_weight, 2u) << "the latent member is picked before its old end is released";
  EXPECT_TRUE(node_->DigestMatches(DigestOf({Queue("jobs", "workers", 3)}))) << "the digest is what the node announced";
  node_->ReleaseLatent("jobs", "workers");
  r = index_.Match("jobs");
  ASSERT_EQ(r->groups.size(), 1u);
  EXPECT_EQ(r->groups[0].total_weight, 3u);
}

TEST_F(PeerNodeTest, AGroupOfLatentMembersOnlyIsNotInTheIndexUntilReleased) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  // The release may come first (another link's thread): the member then
  // counts at once.
  node_->ReleaseLatent("early", "workers");
  node_->ApplyInterest(a, Queue("early", "workers", 1), +1);
  EXPECT_TRUE(Matches("early"));
  node_->ApplyInterest(a, Queue("jobs", "workers", 1), +1);
  EXPECT_FALSE(Matches("jobs"));
  EXPECT_EQ(node_->interest_count(), 2u);
  node_->ReleaseLatent("jobs", "workers");
  EXPECT_TRUE(Matches("jobs"));
  EXPECT_FALSE(node_->ApplyInterest(NewLink(), Queue("jobs", "workers", 2), +1)) << "not the active link";
}

TEST_F(PeerNodeTest, EndSyncDropsWhatTheSnapshotDidNotMention) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Plain("keep"));
  node_->ApplyInterest(a, Plain("gone"));
  node_->ApplyInterest(a, Queue("q", "g", 2));
  EXPECT_EQ(node_->interest_count(), 3u);

  node_->BeginSync(a);  // a new epoch
  node_->ApplyInterest(a, Plain("keep"));
  node_->ApplyInterest(a, Queue("q", "g", 4));
  node_->ApplyInterest(a, Plain("new"));
  EXPECT_EQ(node_->interest_count(), 4u);  // nothing is dropped before SYNC_END
  EXPECT_TRUE(node_->EndSync(a, DigestOf({Plain("keep"), Queue("q", "g", 4), Plain("new")})));
  EXPECT_EQ(node_->interest_count(), 3u);
  EXPECT_FALSE(Matches("gone"));
  EXPECT_TRUE(Matches("keep"));
  EXPECT_TRUE(Matches("new"));
  EXPECT_EQ(index_.size(), 3u);

  // A snapshot whose announced digest differs is reported (the link asks
  // again), but what it did mention is kept.
  node_->BeginSync(a);
  node_->ApplyInterest(a, Plain("keep"));
  EXPECT_FALSE(node_->EndSync(a, DigestOf({Plain("keep"), Plain("missing")})));
  EXPECT_EQ(node_->interest_count(), 1u);
  EXPECT_TRUE(node_->DigestMatches(DigestOf({Plain("keep")})));
}

TEST_F(PeerNodeTest, SyncFramesFromAnotherLinkAreIgnored) {
  PeerLink* a = NewLink();
  PeerLink* b = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Plain("x"));
  node_->BeginSync(b);
  EXPECT_TRUE(node_->EndSync(b, DigestOf({})));  // not the active link: no verdict, nothing dropped
  EXPECT_EQ(node_->interest_count(), 1u);
  // b's BeginSync did not start an epoch: a's entries survive a's next check.
  node_->BeginSync(a);
  node_->ApplyInterest(a, Plain("x"));
  EXPECT_TRUE(node_->EndSync(a, DigestOf({Plain("x")})));
  EXPECT_EQ(node_->interest_count(), 1u);
}

TEST_F(PeerNodeTest, SwapLinkKeepsTheInterestAndReturnsTheOldLink) {
  PeerLink* a = NewLink();
  PeerLink* b = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Plain("x"));
  RefPtr<PeerLink> old = node_->SwapLink(b);
  EXPECT_EQ(old.get(), a);
  EXPECT_TRUE(node_->IsActive(b));
  EXPECT_FALSE(node_->IsActive(a));
  EXPECT_EQ(node_->interest_count(), 1u);
  node_->ApplyInterest(a, Plain("from.retiring"));  // a retiring link may carry stale frames
  EXPECT_EQ(node_->interest_count(), 1u);
  // Dropping the replaced link changes nothing.
  EXPECT_FALSE(node_->DropLinkIf(a));
  EXPECT_EQ(node_->interest_count(), 1u);
  EXPECT_TRUE(node_->IsActive(b));
}

TEST_F(PeerNodeTest, DropLinkIfClearsTheInterest) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Plain("x"));
  node_->ApplyInterest(a, Queue("y", "g", 2));
  EXPECT_TRUE(node_->DropLinkIf(a));
  EXPECT_FALSE(node_->link());
  EXPECT_EQ(node_->interest_count(), 0u);
  EXPECT_EQ(index_.size(), 0u);
  EXPECT_TRUE(node_->DigestMatches(DigestOf({})));
  node_->ApplyInterest(a, Plain("late"));  // a frame the dropped link still had
  EXPECT_EQ(node_->interest_count(), 0u);
  EXPECT_FALSE(node_->DropLinkIf(a));
}

TEST_F(PeerNodeTest, ForwardWithoutALinkReturnsFalse) {
  RefPtr<Connection> busy;
  const Message msg{"a.b", "", "hello", -1, {}};
  EXPECT_FALSE(node_->Forward(msg, nullptr, 0, &busy));
  EXPECT_FALSE(busy);
}

TEST_F(PeerNodeTest, ForwardWritesOneMessageNamingItsGroups) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  RefPtr<Connection> busy;
  const std::string_view groups[] = {"g1", "g2"};
  EXPECT_TRUE(node_->Forward(Message{"a.b", "", "hello", -1, {}}, groups, 2, &busy));
  EXPECT_TRUE(node_->Forward(Message{"a.c", "", "world", -1, {}}, nullptr, 0, &busy));
  EXPECT_FALSE(busy);  // far below the backpressure threshold
  std::vector<std::string> frames;
  ASSERT_TRUE(testing::WaitFor(2s, [&] {
    for (auto& f : ReadFrames(0)) frames.push_back(f);
    return frames.size() >= 2;
  }));
  EXPECT_EQ(frames, (std::vector<std::string>{"a.b|hello|g1|g2", "a.c|world"}));
}

// The state ('R', 'S', 'D', ...) of thread `tid` of this process.
char ThreadState(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

// A peer's burst of interest updates must not stall publishers forwarding
// to it: while one ApplyInterest is stuck inside the subject index (holding
// the interest table), Forward still goes through.
TEST_F(PeerNodeTest, ForwardIsNotBlockedWhileInterestIsApplied) {
  PeerLink* a = NewLink();
  node_->SwapLink(a);
  node_->ApplyInterest(a, Plain("first"));  // so that ForEachWhile has an entry to stop at

  // Hold the index's reader lock: an insert (the writer) waits for it.
  std::promise<void> holding, release;
  std::shared_future<void> released = release.get_future().share();
  std::thread reader([&] {
    index_.ForEachWhile([&](const Subscription*) {
      holding.set_value();
      released.wait();
      return false;
    });
  });
  holding.get_future().wait();

  std::atomic<pid_t> applier_tid{0};
  std::thread applier([&] {
    applier_tid = static_cast<pid_t>(syscall(SYS_gettid));
    node_->ApplyInterest(a, Plain("second"));  // blocks inside the index, holding the interest table
  });
  // Nothing else contends for the interest table, so once the applier sleeps
  // it is waiting for the index's writer lock, inside ApplyInterest.
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return applier_tid != 0 && ThreadState(applier_tid) == 'S'; }));

  std::atomic<bool> forwarded{false};
  std::thread publisher([&] {
    RefPtr<Connection> busy;
    forwarded = node_->Forward(Message{"first", "", "payload", -1, {}}, nullptr, 0, &busy);
  });
  const bool done_while_held = testing::WaitFor(5s, [&] { return forwarded.load(); });
  EXPECT_TRUE(node_->IsActive(a));  // the link lock is free as well
  release.set_value();
  publisher.join();
  applier.join();
  reader.join();
  EXPECT_TRUE(done_while_held) << "Forward waited for interest processing";
  EXPECT_EQ(node_->interest_count(), 2u);
}

}  // namespace
}  // namespace zmesh::server::mesh

// PeerLink without a mesh: the link runs on a real IoWorker over one end of
// a socketpair (plain frames, as with --insecure_peers); the test plays the
// peer on the other end, and a recording delegate and sink stand in for the
// Mesh and the router.

#include "server/mesh/peer_link.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "proto/peer_protocol.h"
#include "server/event_loop.h"
#include "server/io_worker.h"
#include "server/mesh/local_interest.h"
#include "server/mesh/mesh_options.h"
#include "server/mesh/peer_node.h"
#include "server/subject_index.h"
#include "tests/support/wait_for.h"

namespace zmesh::server::mesh {
namespace {

using namespace std::chrono_literals;
namespace peer = proto::peer;

// Records what the link reports; called on the worker thread.
class RecordingDelegate : public PeerLinkDelegate {
 public:
  void OnLinkAuthenticated(PeerLink*) override { Note("authenticated"); }
  void OnLinkSynced(PeerLink*) override { Note("synced"); }
  void OnLinkClosed(PeerLink*) override { Note("closed"); }
  void OnPeerLeaving(PeerLink*, uint64_t drain_ms) override { Note("leaving " + std::to_string(drain_ms)); }
  void OnInterestRepair(PeerLink*) override { Note("repair"); }
  void OnMoveCut(PeerLink*, uint64_t token, const std::vector<proto::peer::Applied>&) override { Note("cut " + std::to_string(token)); }
  void OnPeerLoad(PeerLink*, uint64_t clients) override { Note("load " + std::to_string(clients)); }

  bool Saw(const std::string& event) {
    std::lock_guard<std::mutex> lock(mu_);
    return std::find(events_.begin(), events_.end(), event) != events_.end();
  }

 private:
  void Note(std::string event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  std::mutex mu_;
  std::vector<std::string> events_;
};

class RecordingSink : public PeerMessageSink {
 public:
  void OnPeerMessage(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                     bool to_plain) override {
    std::string s = std::string(msg.subject) + "|" + std::string(msg.payload) + (to_plain ? "|plain" : "|queues-only");
    for (auto q : queues) s += "|" + std::string(q);
    if (worker != IoWorker::Current()) s += "|wrong-thread";
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(std::move(s));
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> messages_;
};

// One frame the link sent, copied out of the reader's buffer.
struct SentFrame {
  peer::FrameType type = peer::FrameType::kPing;
  std::string node_id;  // HELLO
  uint64_t seq = 0;     // INTEREST_ACK, SYNC_END
};

class PeerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.node_id = "n1";
    options_.incarnation = 11;
    worker_.Start(20ms);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    peer_fd_ = fds[1];
    worker_.loop()->RunInLoop([this, fd = fds[0]] {
      auto* link = new PeerLink(context_, &worker_, fd, 1, "test", PeerLink::Direction::kInbound, "");
      link->Start();
      link_ = link;
    });
    ASSERT_TRUE(testing::WaitFor(5s, [&] { return link_.load() != nullptr; }));
  }

  void TearDown() override {
    worker_.Stop();  // closes the link
    link_.load()->Unref();
    if (node_ != nullptr) node_->Unref();
    ::close(peer_fd_);
  }

  void Send(const std::string& frame) {
    ASSERT_EQ(::send(peer_fd_, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
  }

  // The next frame of `type` the link sends (others are skipped), within 5 s.
  bool Expect(peer::FrameType type, SentFrame* out = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      while (!frames_.empty()) {
        SentFrame f = frames_.front();
        frames_.erase(frames_.begin());
        if (f.type == type) {
          if (out != nullptr) *out = f;
          return true;
        }
      }
      if (ReadSome() <= 0) return false;
    }
    return false;
  }

  // Reads what the link sends until it closes its end (EOF), within 5 s;
  // the frames are left in frames_.
  bool ReadUntilClosed() {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = ReadSome();
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN) return false;
    }
    return false;
  }

  // One read (50 ms at most) parsed into frames_: bytes read, 0 at EOF, -1
  // with errno EAGAIN when nothing came.
  ssize_t ReadSome() {
    pollfd p{peer_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) {
      errno = EAGAIN;
      return -1;
    }
    char buf[4096];
    const ssize_t n = ::recv(peer_fd_, buf, sizeof buf, 0);
    if (n <= 0) return n;
    std::string_view in(buf, static_cast<size_t>(n));
    peer::Frame frame;
    while (reader_.Next(&in, &frame) == peer::FrameReader::Status::kFrame) {
      SentFrame f;
      f.type = frame.type;
      f.node_id = std::string(frame.hello.node_id);
      f.seq = frame.type == peer::FrameType::kInterestAck ? frame.ack_seq : frame.digest.seq;
      frames_.push_back(f);
    }
    return n;
  }

  // HELLO both ways, then the mesh's part: activate with a node.
  void Handshake() {
    SentFrame hello;
    ASSERT_TRUE(Expect(peer::FrameType::kHello, &hello));
    EXPECT_EQ(hello.node_id, "n1");
    std::string frame;
    peer::Hello h;
    h.version = peer::kProtocolVersion;
    h.node_id = "n2";
    h.incarnation = 22;
    peer::EncodeHello(h, &frame);
    Send(frame);
    ASSERT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("authenticated"); }));
    node_ = new PeerNode(&index_, "n2", 22);  // the test's reference
    RefPtr<PeerNode> node(node_);              // the link's
    PeerLink* link = link_;
    worker_.loop()->RunInLoop([link, node] { link->Activate(node); });
    ASSERT_TRUE(Expect(peer::FrameType::kSyncEnd));  // our (empty) snapshot
  }

  SubjectIndex index_;
  MeshOptions options_;
  LocalInterest interest_;
  RecordingDelegate delegate_;
  RecordingSink sink_;
  PeerLink::Context context_{&options_, &interest_, &delegate_, &sink_};
  IoWorker worker_{0, &index_};
  std::atomic<PeerLink*> link_{nullptr};
  PeerNode* node_ = nullptr;
  int peer_fd_ = -1;
  peer::FrameReader reader_{1 << 20};
  std::vector<SentFrame> frames_;
};

TEST_F(PeerLinkTest, SnapshotIsAppliedAcknowledgedAndReported) {
  Handshake();
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frames);
  peer::EncodeInterest({"orders.*", "", 1, 3}, &frames);
  peer::EncodeInterest({"jobs", "workers", 2, 3}, &frames);
  InterestDigest d;
  d.Add("orders.*", "", 1);
  d.Add("jobs", "workers", 2);
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {d.hash, d.entries, 3}, &frames);
  Send(frames);
  SentFrame ack;
  ASSERT_TRUE(Expect(peer::FrameType::kInterestAck, &ack));
  EXPECT_EQ(ack.seq, 3u);
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("synced"); }));
  EXPECT_EQ(node_->interest_count(), 2u);
  EXPECT_FALSE(index_.Match("orders.new")->empty());

  // A live change after the snapshot: applied and acknowledged with its seq.
  std::string change;
  peer::EncodeInterest({"orders.*", "", 0, 4}, &change);
  Send(change);
  ASSERT_TRUE(Expect(peer::FrameType::kInterestAck, &ack));
  EXPECT_EQ(ack.seq, 4u);
  EXPECT_EQ(node_->interest_count(), 1u);
  EXPECT_FALSE(delegate_.Saw("repair"));
}

TEST_F(PeerLinkTest, ForwardedMessagesGoToTheSink) {
  Handshake();
  const std::string_view groups[] = {"g"};
  std::string frame;
  peer::EncodeMsgHeader("orders.new", "", -1, groups, 1, 5, &frame);
  frame += "hello";
  std::string continuation;
  peer::EncodeMsgHeader("orders.new", "", -1, groups, 1, 5, &continuation, /*queues_only=*/true);
  continuation += "hello";
  Send(frame + continuation);
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return sink_.messages().size() == 2; }));
  EXPECT_EQ(sink_.messages(),
            (std::vector<std::string>{"orders.new|hello|plain|g", "orders.new|hello|queues-only|g"}));
  EXPECT_EQ(link_.load()->in_msgs(), 1u);  // a continuation is the same message
}

TEST_F(PeerLinkTest, DigestMismatchAsksForAResyncAndCountsARepair) {
  Handshake();
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frames);
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {0, 0, 1}, &frames);  // empty and consistent
  Send(frames);
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("synced"); }));
  std::string digest;
  peer::EncodeDigest(peer::FrameType::kDigest, {12345, 1, 0}, &digest);
  Send(digest);
  EXPECT_TRUE(Expect(peer::FrameType::kResync));
  EXPECT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("repair"); }));
}

TEST_F(PeerLinkTest, LeavingIsReported) {
  Handshake();
  std::string frame;
  peer::EncodeLeaving({1500}, &frame);
  Send(frame);
  EXPECT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("leaving 1500"); }));
}

TEST_F(PeerLinkTest, ProtocolErrorClosesAndWithdrawsTheInterest) {
  Handshake();
  std::string frames;
  peer::EncodeInterest({"x", "", 1, 1}, &frames);
  Send(frames);
  SentFrame ack;
  ASSERT_TRUE(Expect(peer::FrameType::kInterestAck, &ack));
  EXPECT_EQ(node_->interest_count(), 1u);
  const char garbage[] = {1, 0, 0, 0, 0x7f};  // length 1, unknown type
  Send(std::string(garbage, sizeof garbage));
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("closed"); }));
  EXPECT_EQ(node_->interest_count(), 0u);
  EXPECT_FALSE(node_->link());
}

// RETIRE is the last thing a retiring link sends: the peer closes once it
// has read it, and anything arriving after that (a PONG, an INTEREST_ACK)
// would meet a closed socket, whose reset throws away data the peer had not
// read yet (messages lost across a link replacement). The link itself closes
// only after the peer's RETIRE, so it reads everything the peer sent first.
TEST_F(PeerLinkTest, RetireIsTheLastFrameAndTheLinkClosesAfterThePeersRetire) {
  Handshake();
  PeerLink* link = link_;
  worker_.loop()->RunInLoop([link] { link->Retire(); });
  ASSERT_TRUE(Expect(peer::FrameType::kRetire));
  frames_.clear();
  // What the peer still had queued before it switched: a ping, an interest
  // change and a message, each of which used to draw a reply.
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kPing, &frames);
  peer::EncodeInterest({"late", "", 1, 1}, &frames);
  peer::EncodeMsgHeader("late", "", -1, nullptr, 0, 4, &frames);
  frames += "tail";
  Send(frames);
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return sink_.messages().size() == 1; }));
  EXPECT_FALSE(delegate_.Saw("closed")) << "closed before the peer's RETIRE: what it still sends would be lost";
  std::string retire;
  peer::EncodeEmpty(peer::FrameType::kRetire, &retire);
  Send(retire);
  ASSERT_TRUE(ReadUntilClosed());
  EXPECT_TRUE(frames_.empty()) << "the link sent " << frames_.size() << " frame(s) after its RETIRE, first type "
                               << static_cast<int>(frames_.front().type);
  EXPECT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("closed"); }));
  EXPECT_EQ(sink_.messages(), std::vector<std::string>{"late|tail|plain"});
}

TEST_F(PeerLinkTest, FramesBeforeHelloAreRefused) {
  std::string frame;
  peer::EncodeInterest({"x", "", 1, 1}, &frame);
  Send(frame);
  ASSERT_TRUE(testing::WaitFor(5s, [&] { return delegate_.Saw("closed"); }));
  EXPECT_FALSE(delegate_.Saw("authenticated"));
}

}  // namespace
}  // namespace zmesh::server::mesh

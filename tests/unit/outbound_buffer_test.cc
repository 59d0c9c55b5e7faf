// OutboundBuffer through its public interface only: what an append returns,
// what reaches the transport and in which order, the pending accounting, the
// max_pending and node-budget refusals, the blocked -> writable hand-over and
// closing. A scripted Transport decides how many bytes each write takes; a
// real socketpair checks the same against the kernel.

#include "server/outbound_buffer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>

#include "server/pending_budget.h"
#include "server/transport.h"

namespace zmesh::server {
namespace {

using Append = OutboundBuffer::AppendResult;
using Flush = OutboundBuffer::FlushResult;

// A plain-TCP-like transport whose socket takes `room` bytes (then EAGAIN),
// or fails with `fail_errno`.
class ScriptedTransport final : public Transport {
 public:
  static constexpr size_t kUnlimited = ~size_t{0};

  ssize_t Read(char*, size_t, int* err) override {
    *err = EAGAIN;
    return -1;
  }
  ssize_t Writev(const iovec* iov, int count, int* err) override {
    ++writes;
    if (fail_errno != 0) {
      *err = fail_errno;
      return -1;
    }
    size_t taken = 0;
    for (int i = 0; i < count && room > 0; ++i) {
      const size_t k = std::min(room, iov[i].iov_len);
      written.append(static_cast<const char*>(iov[i].iov_base), k);
      taken += k;
      if (room != kUnlimited) room -= k;
      if (k < iov[i].iov_len) break;
    }
    if (taken == 0) {
      *err = EAGAIN;
      return -1;
    }
    return static_cast<ssize_t>(taken);
  }
  bool writes_from_any_thread() const override { return true; }

  size_t room = kUnlimited;
  int fail_errno = 0;
  int writes = 0;
  std::string written;
};

Append AppendText(OutboundBuffer& out, std::string_view text, size_t* pending_after = nullptr) {
  return out.Append(&text, 1, 0, false, pending_after);
}

// A last append seals the stream: what is queued is still written, nothing
// may follow it (a peer link's RETIRE must be the last frame on the wire).
TEST(OutboundBufferTest, ALastAppendRefusesLaterAppendsButIsWritten) {
  ScriptedTransport t;
  OutboundBuffer out(-1, &t, 1 << 20);
  EXPECT_EQ(AppendText(out, "data "), Append::kQueuedNeedsFlush);
  const std::string_view last = "RETIRE";
  EXPECT_EQ(out.Append(&last, 1, 0, false, nullptr, /*last=*/true), Append::kQueued);
  EXPECT_EQ(AppendText(out, "PONG"), Append::kClosed);
  EXPECT_EQ(out.Flush(), Flush::kDone);
  EXPECT_EQ(t.written, "data RETIRE");
  EXPECT_EQ(AppendText(out, "PONG"), Append::kClosed) << "still sealed once written";
  EXPECT_EQ(out.pending_bytes(), 0u);
}

TEST(OutboundBufferTest, FlushWritesAppendsInOrderAndEmptiesTheBuffer) {
  ScriptedTransport t;
  OutboundBuffer out(-1, &t, 1 << 20);
  EXPECT_EQ(AppendText(out, "first "), Append::kQueuedNeedsFlush);
  // A flush is already arranged: later appends need not ask for another.
  EXPECT_EQ(AppendText(out, "second "), Append::kQueued);
  const std::string_view pieces[] = {"MSG a 1 ", "5", "\r\nhello\r\n"};
  EXPECT_EQ(out.Append(pieces, 3, 5, true), Append::kQueued);
  EXPECT_EQ(out.pending_bytes(), std::string("first second MSG a 1 5\r\nhello\r\n").size());
  EXPECT_TRUE(t.written.empty()) << "appending must not write";

  EXPECT_EQ(out.Flush(), Flush::kDone);
  EXPECT_EQ(t.written, "first second MSG a 1 5\r\nhello\r\n");
  EXPECT_EQ(out.pending_bytes(), 0u);
  EXPECT_EQ(out.out_msgs(), 1u) << "only the message counts, not protocol replies";
  EXPECT_EQ(out.out_bytes(), 5u) << "payload bytes, not framing";

  // After a flush the next append must ask for one again.
  EXPECT_EQ(AppendText(out, "third"), Append::kQueuedNeedsFlush);
  EXPECT_EQ(out.Flush(), Flush::kDone);
  EXPECT_EQ(t.written, "first second MSG a 1 5\r\nhello\r\nthird");
  EXPECT_EQ(out.Flush(), Flush::kDone) << "nothing queued";
}

TEST(OutboundBufferTest, PendingAfterReportsWhatIsQueued) {
  ScriptedTransport t;
  OutboundBuffer out(-1, &t, 1 << 20);
  size_t pending = 0;
  AppendText(out, "12345", &pending);
  EXPECT_EQ(pending, 5u);
  AppendText(out, "678", &pending);
  EXPECT_EQ(pending, 8u);
  out.Flush();
  AppendText(out, "9", &pending);
  EXPECT_EQ(pending, 1u);
}

TEST(OutboundBufferTest, LargeAppendsSpanChunksAndKeepTheirBytes) {
  ScriptedTransport t;
  OutboundBuffer out(-1, &t, 64 << 20);
  std::string expected;
  for (int i = 0; i < 40; ++i) {
    // Sizes across the small, large and oversized chunk classes.
    std::string piece(static_cast<size_t>(1000 + i * 7919 % 150000), static_cast<char>('a' + i % 26));
    ASSERT_NE(AppendText(out, piece), Append::kOverLimit);
    expected += piece;
  }
  EXPECT_EQ(out.pending_bytes(), expected.size());
  EXPECT_EQ(out.Flush(), Flush::kDone);
  EXPECT_EQ(t.written.size(), expected.size());
  EXPECT_TRUE(t.written == expected) << "bytes reordered or corrupted across chunks";
}

TEST(OutboundBufferTest, RefusesAnAppendBeyondMaxPendingAndKeepsWhatItHas) {
  ScriptedTransport t;
  OutboundBuffer out(-1, &t, 100);
  EXPECT_EQ(AppendText(out, std::string(60, 'a')), Append::kQueuedNeedsFlush);
  EXPECT_EQ(AppendText(out, std::string(41, 'b')), Append::kOverLimit);
  EXPECT_EQ(out.pending_bytes(), 60u) << "a refused append adds nothing";
  EXPECT_EQ(AppendText(out, std::string(40, 'd')), Append::kQueued) << "exactly max_pending fits";
  EXPECT_EQ(out.pending_bytes(), 100u);
  EXPECT_EQ(AppendText(out, "e"), Append::kOverLimit);
  EXPECT_EQ(out.Flush(), Flush::kDone);
  EXPECT_EQ(t.written, std::string(60, 'a') + std::string(40, 'd'));
  // Written bytes free the room again.
  EXPECT_EQ(AppendText(out, std::string(100, 'f')), Append::kQueuedNeedsFlush);
}

TEST(OutboundBufferTest, BlockedSocketWaitsForOnWritableThenResumesInOrder) {
  ScriptedTransport t;
  t.room = 4;
  OutboundBuffer out(-1, &t, 1 << 20);
  EXPECT_EQ(out.blocked_since_ms(), -1);
  AppendText(out, "0123456789");
  EXPECT_EQ(out.Flush(), Flush::kBlocked) << "a short write means the socket is full";
  EXPECT_EQ(t.written, "0123");
  EXPECT_EQ(out.pending_bytes(), 6u);
  EXPECT_GE(out.blocked_since_ms(), 0);

  // While blocked only the owner writes (on EV_WRITE): Flush is a no-op and
  // appends need no flush of their own.
  t.room = ScriptedTransport::kUnlimited;
  const int writes_before = t.writes;
  EXPECT_EQ(out.Flush(), Flush::kDone);
  EXPECT_EQ(t.writes, writes_before);
  EXPECT_EQ(AppendText(out, "abc"), Append::kQueued);
  EXPECT_EQ(out.pending_bytes(), 9u);

  EXPECT_EQ(out.OnWritable(), Flush::kDone);
  EXPECT_EQ(t.written, "0123456789abc");
  EXPECT_EQ(out.pending_bytes(), 0u);
  EXPECT_EQ(out.blocked_since_ms(), -1);
  EXPECT_EQ(AppendText(out, "x"), Append::kQueuedNeedsFlush) << "unblocked: appends ask for flushes again";
}

TEST(OutboundBufferTest, TrickleOfShortWritesDeliversEveryByteInOrder) {
  ScriptedTransport t;
  OutboundBuffer out(-1, &t, 1 << 20);
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    const std::string line = "line " + std::to_string(i) + "\r\n";
    AppendText(out, line);
    expected += line;
  }
  t.room = 7;
  Flush r = out.Flush();
  for (int i = 0; i < 10000 && r == Flush::kBlocked; ++i) {
    t.room = 7;
    r = out.OnWritable();
  }
  EXPECT_EQ(r, Flush::kDone);
  EXPECT_EQ(t.written, expected);
}

TEST(OutboundBufferTest, WriteErrorIsReported) {
  ScriptedTransport t;
  t.fail_errno = EPIPE;
  OutboundBuffer out(-1, &t, 1 << 20);
  AppendText(out, "lost");
  EXPECT_EQ(out.Flush(), Flush::kError);
}

TEST(OutboundBufferTest, CloseSocketRefusesAppendsAndDropsWhatIsQueued) {
  ScriptedTransport t;
  t.room = 0;
  OutboundBuffer out(-1, &t, 1 << 20);
  AppendText(out, "never written");
  EXPECT_EQ(out.Flush(), Flush::kBlocked);
  out.CloseSocket();
  EXPECT_EQ(out.pending_bytes(), 0u);
  EXPECT_EQ(AppendText(out, "more"), Append::kClosed);
  EXPECT_EQ(out.Flush(), Flush::kClosed);
  EXPECT_EQ(out.OnWritable(), Flush::kClosed);
  EXPECT_TRUE(t.written.empty());
  out.CloseSocket();  // idempotent
}

TEST(OutboundBufferTest, BackpressureThresholdIsHalfTheLimitUpTo256KiB) {
  ScriptedTransport t;
  EXPECT_EQ(OutboundBuffer(-1, &t, 1000).backpressure_threshold(), 500u);
  EXPECT_EQ(OutboundBuffer(-1, &t, 512 << 10).backpressure_threshold(), 256u << 10);
  EXPECT_EQ(OutboundBuffer(-1, &t, 64 << 20).backpressure_threshold(), 256u << 10);
}

TEST(OutboundBufferTest, BudgetCountsQueuedBytesAndCutsOnlyABehindConnectionOnce) {
  PendingBudget budget(1000);
  ScriptedTransport behind_t, keeping_up_t;
  behind_t.room = 0;
  OutboundBuffer behind(-1, &behind_t, 1600);         // threshold 800
  OutboundBuffer keeping_up(-1, &keeping_up_t, 1600);
  behind.set_budget(&budget);
  keeping_up.set_budget(&budget);

  EXPECT_EQ(AppendText(behind, std::string(900, 'x')), Append::kQueuedNeedsFlush);
  EXPECT_EQ(behind.Flush(), Flush::kBlocked);
  EXPECT_EQ(budget.total(), 900u);
  // Written bytes leave the budget at once.
  EXPECT_EQ(AppendText(keeping_up, std::string(50, 'y')), Append::kQueuedNeedsFlush);
  EXPECT_EQ(budget.total(), 950u);
  EXPECT_EQ(keeping_up.Flush(), Flush::kDone);
  EXPECT_EQ(budget.total(), 900u);

  // Over budget: the connection that is behind (900 > its 800 threshold) is
  // refused, and counted as one cut however often it is refused.
  EXPECT_EQ(AppendText(behind, std::string(200, 'x')), Append::kOverLimit);
  EXPECT_EQ(AppendText(behind, std::string(200, 'x')), Append::kOverLimit);
  EXPECT_EQ(budget.cuts(), 1u);
  EXPECT_EQ(behind.pending_bytes(), 900u);
  // One that is not behind still gets its bytes although the node is over.
  EXPECT_EQ(AppendText(keeping_up, std::string(200, 'y')), Append::kQueuedNeedsFlush);
  EXPECT_EQ(budget.total(), 1100u);
  EXPECT_EQ(budget.cuts(), 1u);
  EXPECT_EQ(keeping_up.Flush(), Flush::kDone);

  // Closing gives the dropped bytes back.
  behind.CloseSocket();
  EXPECT_EQ(budget.total(), 0u);
}

// The same contract against a real socket: fill it until it blocks, drain
// the other end, resume on "EV_WRITE"; every byte arrives once, in order.
TEST(OutboundBufferTest, RealSocketBlocksResumesAndClosesTheFd) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ASSERT_EQ(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
  const int small = 4096;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  PlainTransport transport(sv[0]);
  {
    OutboundBuffer out(sv[0], &transport, 16 << 20);
    std::string expected;
    Flush r = Flush::kDone;
    for (int i = 0; i < 10000 && r != Flush::kBlocked; ++i) {
      const std::string line = "MSG subject " + std::to_string(i) + " 40\r\n" + std::string(40, 'p') + "\r\n";
      ASSERT_NE(AppendText(out, line), Append::kOverLimit);
      expected += line;
      r = out.Flush();
      ASSERT_NE(r, Flush::kError);
    }
    ASSERT_EQ(r, Flush::kBlocked) << "a 4 KiB socket buffer never filled";
    EXPECT_GT(out.pending_bytes(), 0u);
    EXPECT_GE(out.blocked_since_ms(), 0);

    std::string received;
    char buf[8192];
    for (int i = 0; i < 100000 && received.size() < expected.size(); ++i) {
      const ssize_t n = read(sv[1], buf, sizeof buf);
      ASSERT_GT(n, 0);
      received.append(buf, static_cast<size_t>(n));
      if (out.pending_bytes() > 0) {
        ASSERT_NE(out.OnWritable(), Flush::kError);
      }
    }
    EXPECT_EQ(out.pending_bytes(), 0u);
    EXPECT_TRUE(received == expected) << "received " << received.size() << " of " << expected.size() << " bytes";

    out.CloseSocket();
    EXPECT_EQ(read(sv[1], buf, sizeof buf), 0) << "CloseSocket closes the fd: the peer sees end of stream";
  }
  close(sv[1]);
}

}  // namespace
}  // namespace zmesh::server

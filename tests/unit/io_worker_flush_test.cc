// IoWorker's deferred flush (ScheduleFlush) must run within the loop
// iteration that scheduled it, however busy the worker's sockets are. A
// worker whose peer link receives a long flood has that link's read event
// ready in every iteration (TLS reads one 16 KiB record per callback); when
// the flush waited for an iteration with no I/O at all, the link's own PINGs
// and PONGs stayed queued until the flood ended and the other node closed the
// link as stale.

#include <event2/event.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "server/close_reason.h"
#include "server/connection.h"
#include "server/io_worker.h"
#include "server/subject_index.h"

namespace zmesh::server {
namespace {

// A plain connection that ignores its input; only its outbound side is used.
class QuietConnection final : public Connection {
 public:
  QuietConnection(IoWorker* worker, int fd) : Connection(Kind::kClient, worker, fd, 1, "test", 1 << 20) {}

 protected:
  void OnInput(std::string_view) override {}
  void OnClose(CloseReason) override {}
};

// Runs `fn` on the worker's thread and waits for it.
template <typename Fn>
void OnWorker(IoWorker& worker, Fn fn) {
  std::promise<void> done;
  worker.loop()->QueueInLoop([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

TEST(IoWorkerFlushTest, ScheduledFlushRunsWhileASocketStaysReadable) {
  SubjectIndex index;
  IoWorker worker(0, &index);
  worker.Start(std::chrono::milliseconds(50));

  // A socket that is readable in every iteration: its callback reads nothing.
  int busy[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, busy), 0);
  ASSERT_EQ(write(busy[1], "x", 1), 1);
  int calls = 0;
  event* busy_event = nullptr;
  OnWorker(worker, [&] {
    busy_event = event_new(
        worker.loop()->base(), busy[0], EV_READ | EV_PERSIST,
        [](evutil_socket_t, short, void* arg) { ++*static_cast<int*>(arg); }, &calls);
    event_add(busy_event, nullptr);
  });

  int out[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, out), 0);
  auto* conn = new QuietConnection(&worker, out[0]);  // owns out[0]
  bool queued = false;
  OnWorker(worker, [&] {
    const std::string_view line = "PING\r\n";
    // On the worker thread, the flush is deferred to the end of the iteration.
    queued = conn->Enqueue(&line, 1, 0, false, CloseReason::kSlowConsumerPendingBytes);
  });
  ASSERT_TRUE(queued);

  pollfd pfd{out[1], POLLIN, 0};
  const int ready = poll(&pfd, 1, 2000);
  char buf[16] = {};
  const ssize_t n = ready == 1 ? read(out[1], buf, sizeof buf) : -1;
  int busy_calls = 0;
  OnWorker(worker, [&] {
    busy_calls = calls;
    event_free(busy_event);
  });
  EXPECT_EQ(ready, 1) << "the flush did not run within 2 s; the busy socket's callback ran " << busy_calls
                      << " times meanwhile";
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "PING\r\n");
  EXPECT_GT(busy_calls, 0) << "the busy socket never fired: the test proves nothing";

  worker.Stop();
  conn->Unref();
  close(busy[0]);
  close(busy[1]);
  close(out[1]);
}

}  // namespace
}  // namespace zmesh::server

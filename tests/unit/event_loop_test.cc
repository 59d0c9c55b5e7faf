// EventLoop::AssertInLoopThread: passes before Run() (set-up from any thread)
// and on the loop's own thread, aborts on any other thread once the loop
// runs; compiled out where EventLoop::kChecksThreads is false (Release).
#include "server/event_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace zmesh::server {
namespace {

// Runs a loop on its own thread until the object goes away.
struct RunningLoop {
  EventLoop loop;
  std::thread thread;
  RunningLoop() {
    std::atomic<bool> running{false};
    thread = std::thread([this, &running] {
      loop.QueueInLoop([&running] { running = true; });
      loop.Run();
    });
    for (int i = 0; i < 5000 && !running; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(running.load());
  }
  ~RunningLoop() {
    loop.Quit();
    thread.join();
  }
};

TEST(EventLoopTest, AssertPassesBeforeRunAndOnTheLoopThread) {
  EventLoop idle;
  idle.AssertInLoopThread();  // not bound yet: set-up may happen anywhere

  RunningLoop r;
  std::atomic<bool> checked{false};
  r.loop.QueueInLoop([&] {
    r.loop.AssertInLoopThread();
    checked = r.loop.IsInLoopThread();
  });
  for (int i = 0; i < 5000 && !checked; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(checked.load());
  EXPECT_FALSE(r.loop.IsInLoopThread());
}

TEST(EventLoopDeathTest, AssertAbortsOnAForeignThread) {
  if (!EventLoop::kChecksThreads) GTEST_SKIP() << "thread checks are compiled out in this build";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        RunningLoop r;
        r.loop.AssertInLoopThread();
      },
      "used from a foreign thread");
}

}  // namespace
}  // namespace zmesh::server

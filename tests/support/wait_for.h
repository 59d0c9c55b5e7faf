#pragma once

// Polling waits for tests: poll a predicate until it holds or a deadline passes,
// instead of sleeping a fixed time and hoping (nats-server's checkFor).

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

namespace zmesh::testing {

// Returns true as soon as `pred` returns true; false if it is still false once
// `timeout` has passed. `pred` is evaluated at least once, and once more at the
// deadline, so a zero timeout is a single check.
inline bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& pred,
                    std::chrono::milliseconds step = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(step, deadline - now));
  }
}

}  // namespace zmesh::testing

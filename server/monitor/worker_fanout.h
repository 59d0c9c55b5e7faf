#pragma once

// Collects a value from every I/O worker, each computed on the worker's own
// thread (where its connections may be read), and hands the whole set to
// the main loop. Nothing blocks: each worker gets a task, posts its part
// back to the main loop, and the last part to arrive runs `done`.
//
// Threading: call CollectFromWorkers on the main loop. `per_worker` runs on
// each worker thread (concurrently, so it must only read what it captured
// by value and the worker it is given); `done` runs on the main loop.
// If a loop stops before answering (shutdown), `done` never runs and the
// captured state is simply released.

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "server/event_loop.h"
#include "server/io_worker.h"

namespace zmesh::server::monitor {

template <typename T>
void CollectFromWorkers(const std::vector<IoWorker*>& workers, EventLoop* main_loop,
                        std::function<T(IoWorker*)> per_worker, std::function<void(std::vector<T>)> done) {
  main_loop->AssertInLoopThread();
  // Touched only on the main loop; the workers merely carry the pointer.
  struct Gather {
    std::vector<T> parts;
    size_t remaining = 0;
    std::function<void(std::vector<T>)> done;
  };
  auto gather = std::make_shared<Gather>();
  gather->parts.resize(workers.size());
  gather->remaining = workers.size();
  gather->done = std::move(done);
  if (workers.empty()) {
    main_loop->QueueInLoop([gather] { gather->done(std::move(gather->parts)); });
    return;
  }
  auto fn = std::make_shared<const std::function<T(IoWorker*)>>(std::move(per_worker));
  for (size_t i = 0; i < workers.size(); ++i) {
    IoWorker* worker = workers[i];
    worker->loop()->QueueInLoop([gather, fn, worker, i, main_loop] {
      T part = (*fn)(worker);
      main_loop->QueueInLoop([gather, i, part = std::move(part)]() mutable {
        gather->parts[i] = std::move(part);
        if (--gather->remaining == 0) gather->done(std::move(gather->parts));
      });
    });
  }
}

}  // namespace zmesh::server::monitor

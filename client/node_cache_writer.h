#pragma once

// Writes the node cache file (node_cache.h) off the client's I/O thread. A
// write ends with fsync, which takes seconds on a busy disk; an I/O thread
// waiting for it reads none of its connection, misses its node's PINGs and
// is closed as a stale connection, losing what was in flight (seen in a
// rolling restart while a build was writing to the same disk: 745 messages).
// The latest list wins: one submitted while another is written replaces
// any list still waiting. A failed write is tried again, 1 s later and
// then at doubling intervals up to a minute, until it succeeds or a newer
// list replaces it.
//
// Threading: Submit, last_error and the destructor on the owner's thread
// (the client's I/O thread); the writes on a thread of its own, started by
// the first Submit. The destructor waits for the write in progress and the
// one waiting, if any (bounded by two writes), so a closing client leaves
// the newest list on disk.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zmesh/status.h>

#include "client/node_cache.h"

namespace zmesh::client {

class NodeCacheWriter {
 public:
  NodeCacheWriter(std::string path, std::string zk_connect, std::string zk_root);
  ~NodeCacheWriter();
  NodeCacheWriter(const NodeCacheWriter&) = delete;
  NodeCacheWriter& operator=(const NodeCacheWriter&) = delete;

  void Submit(std::vector<CachedNode> nodes);
  // The last write's failure (Ok after a success, including a retry's).
  Status last_error() const;

 private:
  static constexpr std::chrono::milliseconds kFirstRetry{1000};
  static constexpr std::chrono::milliseconds kMaxRetry{60000};

  void Run();

  const std::string path_, zk_connect_, zk_root_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::optional<std::vector<CachedNode>> waiting_;  // mu_
  bool stop_ = false;                               // mu_
  Status last_error_;                               // mu_
  std::thread thread_;                              // owner's thread
};

}  // namespace zmesh::client

#include "client/node_cache_writer.h"

#include <algorithm>
#include <utility>

namespace zmesh::client {

NodeCacheWriter::NodeCacheWriter(std::string path, std::string zk_connect, std::string zk_root)
    : path_(std::move(path)), zk_connect_(std::move(zk_connect)), zk_root_(std::move(zk_root)) {}

NodeCacheWriter::~NodeCacheWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void NodeCacheWriter::Submit(std::vector<CachedNode> nodes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_ = std::move(nodes);
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  wake_.notify_one();
}

Status NodeCacheWriter::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void NodeCacheWriter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  // The newest list when its write failed (a full disk, a directory not
  // there yet): written again after a backoff, unless a newer list comes
  // first. Stopping gives up on it: the destructor waits for two writes at
  // most.
  std::optional<std::vector<CachedNode>> failed;
  std::chrono::milliseconds backoff = kFirstRetry;
  for (;;) {
    if (failed) {
      wake_.wait_for(lock, backoff, [this] { return stop_ || waiting_.has_value(); });
      if (!waiting_) {
        if (stop_) return;
        waiting_ = std::move(failed);
      }
      failed.reset();
      backoff = std::min(2 * backoff, kMaxRetry);
    } else {
      wake_.wait(lock, [this] { return stop_ || waiting_.has_value(); });
      if (!waiting_) return;  // stopping, nothing left to write
    }
    std::vector<CachedNode> nodes = std::move(*waiting_);
    waiting_.reset();
    lock.unlock();
    Status st = WriteNodeCache(path_, zk_connect_, zk_root_, nodes);
    lock.lock();
    if (st.ok()) {
      backoff = kFirstRetry;
    } else {
      failed = std::move(nodes);
    }
    last_error_ = std::move(st);
  }
}

}  // namespace zmesh::client

#include "client/outbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client/frame_scanner.h"
#include "proto/client_writer.h"

namespace zmesh::client {

Outbox::Outbox(Limits limits) : limits_(limits) {}

Outbox::~Outbox() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status Outbox::Init() {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Status(StatusCode::kIoError, std::string("eventfd: ") + std::strerror(errno));
  return Status::Ok();
}

bool Outbox::NeedsWakeLocked() {
  if (!connected_ || !io_idle_ || signaled_) return false;
  io_idle_ = false;
  signaled_ = true;
  return true;
}

void Outbox::Wake() {
  const uint64_t one = 1;
  // EAGAIN only when the counter is saturated: the I/O thread is awake anyway.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void Outbox::WaitForSpaceLocked(std::unique_lock<std::mutex>* lock, size_t need) {
  // The first message of an empty buffer always fits, however large.
  while (connected_ && !closed_ && !pending_.empty() && pending_.size() + need > limits_.connected_high_water) {
    ++space_waiters_;
    space_cv_.wait(*lock);
    --space_waiters_;
  }
}

Status Outbox::AppendPub(std::string_view subject, std::string_view reply, std::string_view headers,
                         std::string_view data) {
  const size_t need = headers.empty() ? proto::PubSize(subject, reply, data.size())
                                      : proto::HPubSize(subject, reply, headers.size(), data.size());
  bool wake = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    WaitForSpaceLocked(&lock, need);
    if (closed_) return Status(StatusCode::kClosed, "client closed");
    if (!connected_ && pending_.size() + need > limits_.disconnected_max) {
      return Status(StatusCode::kBufferFull, "reconnect buffer full (" + std::to_string(pending_.size()) + " of " +
                                                 std::to_string(limits_.disconnected_max) + " bytes)");
    }
    if (headers.empty()) {
      proto::AppendPub(&pending_, subject, reply, data);
    } else {
      proto::AppendHPub(&pending_, subject, reply, headers, data);
    }
    wake = NeedsWakeLocked();
  }
  if (wake) Wake();
  return Status::Ok();
}

Status Outbox::AppendPing(PongWaiter waiter) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status(StatusCode::kClosed, "client closed");
    proto::AppendPing(&pending_);
    pending_waiters_.push_back(std::move(waiter));
    wake = NeedsWakeLocked();
  }
  if (wake) Wake();
  return Status::Ok();
}

void Outbox::Post(std::function<void()> task) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    tasks_.push_back(std::move(task));
    if (!signaled_) {
      signaled_ = true;
      wake = true;
    }
  }
  if (wake) Wake();
}

size_t Outbox::pending_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

std::vector<std::function<void()>> Outbox::TakeTasks() {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = ::read(wake_fd_, &count, sizeof(count));
  std::vector<std::function<void()>> tasks;
  std::lock_guard<std::mutex> lock(mu_);
  signaled_ = false;
  tasks.swap(tasks_);
  return tasks;
}

bool Outbox::TakePending(std::string* wbuf, std::deque<PongWaiter>* waiters) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!connected_ || pending_.empty()) return false;
  if (wbuf->empty()) {
    wbuf->swap(pending_);  // pending_ keeps wbuf's capacity: no allocation
  } else {
    wbuf->append(pending_);
    pending_.clear();
  }
  for (auto& w : pending_waiters_) waiters->push_back(std::move(w));
  pending_waiters_.clear();
  if (space_waiters_ > 0) space_cv_.notify_all();
  return true;
}

bool Outbox::ArmIfIdle() {
  std::lock_guard<std::mutex> lock(mu_);
  if (connected_ && !pending_.empty()) return false;
  io_idle_ = true;
  return true;
}

void Outbox::SetDisconnected(std::string_view salvaged) {
  std::lock_guard<std::mutex> lock(mu_);
  connected_ = false;
  io_idle_ = false;
  std::string kept;
  kept.reserve(salvaged.size() + pending_.size());
  KeepFrames(salvaged, 0, kFramePub, &kept);
  // PINGs stay: their waiters are still in pending_waiters_, in order.
  KeepFrames(pending_, 0, kFramePub | kFramePing, &kept);
  pending_.swap(kept);
  if (space_waiters_ > 0) space_cv_.notify_all();
}

void Outbox::ResumeAfterMove(size_t covered, std::string_view salvaged) {
  std::lock_guard<std::mutex> lock(mu_);
  covered = std::min(covered, pending_.size());
  std::string kept;
  kept.reserve(salvaged.size() + pending_.size());
  KeepFrames(salvaged, 0, kFramePub, &kept);
  // PINGs stay: their waiters are in pending_waiters_, in order.
  KeepFrames(std::string_view(pending_).substr(0, covered), 0, kFramePub | kFramePing, &kept);
  kept.append(pending_, covered, std::string::npos);
  pending_.swap(kept);
}

std::deque<PongWaiter> Outbox::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  connected_ = false;
  tasks_.clear();
  std::deque<PongWaiter> waiters;
  waiters.swap(pending_waiters_);
  if (space_waiters_ > 0) space_cv_.notify_all();
  return waiters;
}

}  // namespace zmesh::client

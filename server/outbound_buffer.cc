#include "server/outbound_buffer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "server/event_loop.h"
#include "server/pending_budget.h"
#include "server/transport.h"

namespace zmesh::server {

struct OutboundBuffer::Chunk {
  Chunk* next;
  uint32_t begin;     // first unwritten byte
  uint32_t end;       // one past the last appended byte
  uint32_t capacity;
  uint32_t pool_class;  // 0 small, 1 large, 2 oversized (never pooled)
  char* data() { return reinterpret_cast<char*>(this + 1); }
};

namespace {

// A reply such as INFO or PONG fits the small class; streams move to the large one.
constexpr size_t kSmallChunkBytes = 4096;
constexpr size_t kLargeChunkBytes = 64 * 1024;
// Per thread and class: enough for a fan-out batch to many subscribers
// (4 MiB of small, 16 MiB of large chunks at most); what a sweep finds unused
// since the previous one is released (TrimChunkPool).
constexpr size_t kPoolLimit[2] = {1024, 256};
constexpr int kMaxIov = 64;
// A writer stops after this many write rounds fed by concurrent appends, so
// that fan-in cannot pin one publisher's loop; the owner loop takes over.
// TLS writes one record (16 KiB) per round on the owner thread: more rounds.
constexpr int kMaxWriteRounds = 4;
constexpr int kMaxTlsWriteRounds = 64;

// Freed chunks are kept per thread (lock-free) for the next allocation.
struct ChunkPool {
  std::vector<void*> free[2];
  size_t low_water[2] = {0, 0};  // fewest free chunks seen since the last trim
  ~ChunkPool() {
    for (auto& list : free) {
      for (void* p : list) ::operator delete(p);
    }
  }
};
thread_local ChunkPool t_pool;

// Protocol pieces are mostly a few bytes (" ", a sid, "\r\n"): copy those
// inline with overlapping word moves instead of a libc call each.
inline void CopySmall(char* dst, const char* src, size_t n) {
  if (n > 16) {
    std::memcpy(dst, src, n);
  } else if (n >= 8) {
    uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    std::memcpy(dst, &a, 8);
    std::memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    std::memcpy(dst, &a, 4);
    std::memcpy(dst + n - 4, &b, 4);
  } else if (n > 0) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

}  // namespace

OutboundBuffer::Chunk* OutboundBuffer::NewChunk(size_t min_capacity, bool first) {
  const size_t header = sizeof(Chunk);
  uint32_t cls;
  size_t bytes;
  if (first && min_capacity + header <= kSmallChunkBytes) {
    cls = 0, bytes = kSmallChunkBytes;
  } else if (min_capacity + header <= kLargeChunkBytes) {
    cls = 1, bytes = kLargeChunkBytes;
  } else {
    cls = 2, bytes = min_capacity + header;
  }
  void* mem;
  if (cls < 2 && !t_pool.free[cls].empty()) {
    mem = t_pool.free[cls].back();
    t_pool.free[cls].pop_back();
    t_pool.low_water[cls] = std::min(t_pool.low_water[cls], t_pool.free[cls].size());
  } else {
    mem = ::operator new(bytes);
  }
  auto* c = static_cast<Chunk*>(mem);
  c->next = nullptr;
  c->begin = c->end = 0;
  c->capacity = static_cast<uint32_t>(bytes - header);
  c->pool_class = cls;
  return c;
}

void OutboundBuffer::TrimChunkPool() {
  for (int cls = 0; cls < 2; ++cls) {
    auto& list = t_pool.free[cls];
    // Chunks that stayed in the pool through a whole sweep interval were not
    // needed: give them back.
    for (size_t drop = std::min(t_pool.low_water[cls], list.size()); drop > 0; --drop) {
      ::operator delete(list.back());
      list.pop_back();
    }
    t_pool.low_water[cls] = list.size();
  }
}

void OutboundBuffer::FreeChunk(Chunk* chunk) {
  if (chunk->pool_class < 2 && t_pool.free[chunk->pool_class].size() < kPoolLimit[chunk->pool_class]) {
    t_pool.free[chunk->pool_class].push_back(chunk);
  } else {
    ::operator delete(chunk);
  }
}

OutboundBuffer::~OutboundBuffer() {
  FreeAllLocked();
  if (fd_ >= 0) ::close(fd_);
}

void OutboundBuffer::FreeAllLocked() {
  while (head_ != nullptr) {
    Chunk* next = head_->next;
    FreeChunk(head_);
    head_ = next;
  }
  tail_ = nullptr;
  if (budget_ != nullptr) budget_->Release(pending_);
  pending_ = 0;
}

void OutboundBuffer::CopyIn(const char* data, size_t n) {
  while (n > 0) {
    if (tail_ == nullptr || tail_->end == tail_->capacity) {
      Chunk* c = NewChunk(n, head_ == nullptr);
      if (tail_ == nullptr) {
        head_ = tail_ = c;
      } else {
        tail_->next = c;
        tail_ = c;
      }
    }
    const size_t k = std::min<size_t>(n, tail_->capacity - tail_->end);
    std::memcpy(tail_->data() + tail_->end, data, k);
    tail_->end += static_cast<uint32_t>(k);
    data += k;
    n -= k;
  }
}

OutboundBuffer::AppendResult OutboundBuffer::Append(const std::string_view* pieces, size_t count,
                                                    size_t payload_bytes, bool is_message, size_t* pending_after,
                                                    bool last) {
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) total += pieces[i].size();
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || sealed_) return AppendResult::kClosed;
  if (pending_ + total > max_pending_) return AppendResult::kOverLimit;
  // Over the node's budget, a connection that is behind (more than the
  // backpressure threshold still queued here, which its socket did not take)
  // gets no more copies: it is cut, and its bytes go back to the budget.
  if (budget_ != nullptr && pending_ > backpressure_threshold_ && budget_->Exceeded(total)) {
    if (!budget_cut_) budget_->CountCut();  // once per connection, however many copies it is refused
    budget_cut_ = true;
    return AppendResult::kOverLimit;
  }
  if (tail_ != nullptr && tail_->capacity - tail_->end >= total) {
    // The common case: the whole message fits the current chunk.
    char* out = tail_->data() + tail_->end;
    for (size_t i = 0; i < count; ++i) {
      CopySmall(out, pieces[i].data(), pieces[i].size());
      out += pieces[i].size();
    }
    tail_->end += static_cast<uint32_t>(total);
  } else {
    for (size_t i = 0; i < count; ++i) CopyIn(pieces[i].data(), pieces[i].size());
  }
  pending_ += total;
  sealed_ = last;
  if (budget_ != nullptr) budget_->Add(total);
  if (pending_after != nullptr) *pending_after = pending_;
  if (is_message) {
    ++out_msgs_;
    out_bytes_ += payload_bytes;
  }
  if (flush_scheduled_ || writing_ || blocked_) return AppendResult::kQueued;
  flush_scheduled_ = true;
  return AppendResult::kQueuedNeedsFlush;
}

int OutboundBuffer::FillIov(iovec* iov, int max_iov, size_t* total) const {
  int n = 0;
  *total = 0;
  for (Chunk* c = head_; c != nullptr && n < max_iov; c = c->next) {
    if (c->end == c->begin) continue;
    iov[n].iov_base = c->data() + c->begin;
    iov[n].iov_len = c->end - c->begin;
    *total += iov[n].iov_len;
    ++n;
  }
  return n;
}

void OutboundBuffer::Consume(size_t n) {
  pending_ -= n;
  if (budget_ != nullptr) budget_->Release(n);
  while (n > 0 && head_ != nullptr) {
    const size_t k = std::min<size_t>(n, head_->end - head_->begin);
    head_->begin += static_cast<uint32_t>(k);
    n -= k;
    if (head_->begin == head_->end) {
      Chunk* next = head_->next;
      FreeChunk(head_);
      head_ = next;
      if (head_ == nullptr) tail_ = nullptr;
    }
  }
}

OutboundBuffer::FlushResult OutboundBuffer::WriteLocked(std::unique_lock<std::mutex>& lock) {
  const bool plain = transport_->writes_from_any_thread();
  const int max_rounds = plain ? kMaxWriteRounds : kMaxTlsWriteRounds;
  for (int round = 0;; ++round) {
    if (closed_) {
      writing_ = false;
      if (close_fd_after_write_) {
        FreeAllLocked();
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
      }
      return FlushResult::kClosed;
    }
    iovec iov[kMaxIov];
    size_t total = 0;
    const int count = FillIov(iov, kMaxIov, &total);
    if (count == 0) {
      writing_ = false;
      blocked_since_ms_ = -1;
      return FlushResult::kDone;
    }
    if (round == max_rounds) {
      // More keeps arriving: hand the rest to whoever the caller picks (the owner).
      writing_ = false;
      flush_scheduled_ = true;
      return FlushResult::kBlocked;
    }
    // fd_ and the transport stay valid: the fd is only closed under mu_
    // while no writer is active.
    lock.unlock();
    int err = 0;
    const ssize_t n = transport_->Writev(iov, count, &err);
    lock.lock();
    if (n > 0) Consume(static_cast<size_t>(n));
    if (closed_ || (n < 0 && err == EINTR)) continue;  // the loop top finishes a close
    if (n < 0 && err != EAGAIN) {
      writing_ = false;
      return FlushResult::kError;
    }
    // A short plain writev means the socket is full; TLS writes one record
    // at a time, so only EAGAIN means that.
    if (n < 0 || (plain && static_cast<size_t>(n) < total)) {
      writing_ = false;
      blocked_ = true;
      if (n > 0 || blocked_since_ms_ < 0) blocked_since_ms_ = MonotonicMs();
      return FlushResult::kBlocked;
    }
  }
}

OutboundBuffer::FlushResult OutboundBuffer::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  flush_scheduled_ = false;
  if (closed_) return FlushResult::kClosed;
  if (writing_ || blocked_) return FlushResult::kDone;
  writing_ = true;
  return WriteLocked(lock);
}

OutboundBuffer::FlushResult OutboundBuffer::OnWritable() {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return FlushResult::kClosed;
  blocked_ = false;
  flush_scheduled_ = false;
  if (writing_) return FlushResult::kDone;
  writing_ = true;
  return WriteLocked(lock);
}

void OutboundBuffer::CloseSocket() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  if (writing_) {
    close_fd_after_write_ = true;
    return;
  }
  FreeAllLocked();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int64_t OutboundBuffer::blocked_since_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return blocked_ ? blocked_since_ms_ : -1;
}

size_t OutboundBuffer::pending_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

uint64_t OutboundBuffer::out_msgs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_msgs_;
}

uint64_t OutboundBuffer::out_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_bytes_;
}


}  // namespace zmesh::server

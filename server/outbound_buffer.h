#pragma once

// The bytes waiting to be written to one socket, and the socket's write side.
//
// Threading: any thread may Append (a publisher fanning out on its own loop)
// and Flush (the same publisher at the end of its read batch): appends are
// serialised by a short lock, and at most one thread at a time is inside
// writev() (writing_), so bytes leave in the order they were appended. When
// the socket would block, the buffer enters the blocked state and only the
// owning loop writes again, on EV_WRITE (OnWritable). The fd is closed by
// CloseSocket() on the owner thread, or, if another thread is inside writev()
// at that moment, by that thread as soon as it returns, so an fd number is
// never reused under a writer.
//
// Memory: chunks are allocated on demand and freed (to a small per-thread
// pool) as soon as they are written, so an idle connection holds none. The
// total is capped by max_pending; an append beyond it is refused and the
// caller treats the connection as a slow consumer.

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace zmesh::server {

class PendingBudget;
class Transport;

class OutboundBuffer {
 public:
  enum class AppendResult : uint8_t {
    kQueued,            // someone will write it
    kQueuedNeedsFlush,  // the caller must arrange a Flush (first append since the last one)
    kOverLimit,         // refused: max_pending would be exceeded, or the node's PendingBudget
                        // while this connection is behind (slow consumer)
    kClosed,            // refused: the connection is closing
  };
  enum class FlushResult : uint8_t {
    kDone,     // everything appended so far is written, or another writer has it
    kBlocked,  // the owner loop must carry on, on EV_WRITE: the socket is full, or
               // concurrent appends kept this writer busy for too long
    kError,    // write failed (peer gone); the owner must close the connection
    kClosed,
  };

  // Writes go through `transport` (owned by the connection, which outlives
  // this buffer's use of it); the fd is only closed here.
  OutboundBuffer(int fd, Transport* transport, size_t max_pending)
      : fd_(fd), transport_(transport), max_pending_(max_pending),
        backpressure_threshold_(ThresholdFor(max_pending)) {}
  // Before any write (owner thread, before the connection starts).
  void set_transport(Transport* transport) { transport_ = transport; }
  // Counts this buffer's bytes in `budget` and obeys it (client connections;
  // see PendingBudget). Before the first append; the budget outlives us.
  void set_budget(PendingBudget* budget) { budget_ = budget; }
  ~OutboundBuffer();
  OutboundBuffer(const OutboundBuffer&) = delete;
  OutboundBuffer& operator=(const OutboundBuffer&) = delete;

  // Appends the concatenation of `pieces` atomically, counting one message
  // with `payload_bytes` of payload when that is non-zero or `is_message`.
  // Protocol replies (PONG, +OK, -ERR) count against max_pending too: a client
  // that never reads cannot grow them without bound. Any thread.
  // *pending_after, when given, receives the bytes queued after this append.
  // `last` ends the stream: later appends are refused (kClosed) while what is
  // queued is still written, so nothing can follow this append on the wire
  // (a peer link's RETIRE).
  AppendResult Append(const std::string_view* pieces, size_t count, size_t payload_bytes, bool is_message,
                      size_t* pending_after = nullptr, bool last = false);

  // Writes what it can without blocking. Any thread; a no-op returning kDone
  // when another thread is writing or the owner waits for EV_WRITE.
  FlushResult Flush();
  // Owner thread, on EV_WRITE: leaves the blocked state and writes.
  FlushResult OnWritable();

  // Refuses further appends and drops what is queued. Owner thread. Closes
  // the fd now, or lets the writer inside writev() close it.
  void CloseSocket();

  // Owner thread: how long (ms, monotonic) the socket has been blocked
  // without progress, or -1 when it is not blocked.
  int64_t blocked_since_ms() const;

  // The calling thread's pool of free chunks: releases what went unused
  // since the previous call (each worker's sweep calls it).
  static void TrimChunkPool();

  size_t pending_bytes() const;
  // Above this many pending bytes the connection pushes back on the clients
  // that feed it (see IoWorker's producer stalls).
  size_t backpressure_threshold() const { return backpressure_threshold_; }
  uint64_t out_msgs() const;
  uint64_t out_bytes() const;

 private:
  struct Chunk;
  // The kernel's socket buffer (up to a few MiB) keeps the connection busy;
  // more backlog here buys no throughput, only memory: with 100 subscribers
  // an 8 MiB threshold let a fan-out hold 1.5 GB.
  static size_t ThresholdFor(size_t max_pending) { return std::min<size_t>(max_pending / 2, 256u << 10); }
  static Chunk* NewChunk(size_t min_capacity, bool first);
  static void FreeChunk(Chunk* chunk);

  // Requires mu_. Copies bytes to the tail, allocating chunks as needed.
  void CopyIn(const char* data, size_t n);
  // Requires mu_. Fills iov from the queued chunks; returns the count.
  int FillIov(iovec* iov, int max_iov, size_t* total) const;
  // Requires mu_. Drops `n` written bytes from the head.
  void Consume(size_t n);
  // The write loop shared by Flush and OnWritable; entered with mu_ held
  // and writing_ set.
  FlushResult WriteLocked(std::unique_lock<std::mutex>& lock);
  void FreeAllLocked();

  mutable std::mutex mu_;
  int fd_;                      // -1 once closed
  Transport* transport_;
  PendingBudget* budget_ = nullptr;
  const size_t max_pending_;
  const size_t backpressure_threshold_;
  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t pending_ = 0;
  uint64_t out_msgs_ = 0;
  uint64_t out_bytes_ = 0;
  int64_t blocked_since_ms_ = -1;
  bool flush_scheduled_ = false;  // a Flush is arranged; further appends need not ask
  bool writing_ = false;          // a thread is between FillIov and Consume
  bool blocked_ = false;          // EAGAIN: only OnWritable writes
  bool closed_ = false;
  bool sealed_ = false;  // an append was the last one: refuse more, keep writing
  bool close_fd_after_write_ = false;
  bool budget_cut_ = false;  // refused by the node's budget (counted once)
};

}  // namespace zmesh::server

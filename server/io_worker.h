#pragma once

// One I/O thread: an EventLoop plus the per-thread state of the message path.
// Connections are spread over the workers; each belongs to one for life.
//
// Fan-out: a publisher's worker appends to each subscriber's OutboundBuffer
// (any worker's connection) and records the connection in its own pending
// list; an event queued behind that iteration's reads drains the list once per
// loop iteration, after every read of that iteration, so each connection gets
// one writev per batch rather than one write per message.
//
// Threading: everything here is used on the worker's own thread, except
// loop() (whose RunInLoop/QueueInLoop are thread-safe) and the stats, which
// other threads read with relaxed atomics.

#include <event2/event.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "server/event_loop.h"
#include "server/match_cache.h"

namespace zmesh::server {

class ClientConnection;
class Connection;
class SubjectIndex;

// Counters written by one worker thread, read by monitoring.
struct WorkerStats {
  std::atomic<uint64_t> in_msgs{0};
  std::atomic<uint64_t> in_bytes{0};
  std::atomic<uint64_t> out_msgs{0};
  std::atomic<uint64_t> out_bytes{0};
  std::atomic<uint64_t> slow_consumers{0};

  void Add(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

class IoWorker {
 public:
  static constexpr size_t kReadBufferBytes = 64 * 1024;

  IoWorker(int index, const SubjectIndex* index_for_cache);
  ~IoWorker();
  IoWorker(const IoWorker&) = delete;
  IoWorker& operator=(const IoWorker&) = delete;

  // Starts the thread; `tick` is the period of the housekeeping sweep.
  void Start(std::chrono::milliseconds tick);
  // Closes every connection (on the worker thread), stops and joins.
  void Stop();

  EventLoop* loop() { return &loop_; }
  int index() const { return loop_.index(); }
  WorkerStats& stats() { return stats_; }

  // The worker running on the calling thread, or nullptr.
  static IoWorker* Current();

  // --- worker thread only ---
  MatchCache& match_cache() { return match_cache_; }
  char* read_buffer() { return read_buffer_.get(); }

  // Registers a started connection (takes a reference) / forgets it.
  void AddConnection(Connection* conn);
  void RemoveConnection(Connection* conn);
  size_t connection_count() const { return connection_count_; }

  // `conn` (of any worker) got bytes that need writing; it is flushed at the
  // end of this loop iteration.
  void ScheduleFlush(Connection* conn);
  // Writes everything scheduled so far. Also run automatically.
  void FlushPending();

  // Flow control for fast producers: `producer` (a client of this worker)
  // fed `consumer` past its backpressure threshold while that consumer still
  // drains, so the producer stops (after that message: the rest of its input
  // waits) and reads nothing more until the consumer is back under
  // half the threshold (the consumer's flush wakes it: ReleaseStall), is
  // stuck or gone, or kMaxStallMs passed (a coarse timer checks those).
  // Nothing blocks: the producer's socket simply is not read, and TCP slows
  // the publisher down. Peer links are never stalled (fan-out must not block
  // a link's read loop).
  void StallProducer(ClientConnection* producer, Connection* consumer);
  // Resumes `producer` if it is stalled here. Worker thread.
  void ReleaseStall(Connection* producer);
  static constexpr int64_t kMaxStallMs = 1000;
  static constexpr int kStallCheckMs = 10;

  // Visits each connection of this worker (monitoring; worker thread only).
  template <typename Fn>
  void ForEachConnection(Fn&& fn) {
    for (Connection* c = head_; c != nullptr;) {
      Connection* next = NextOf(c);
      fn(c);
      c = next;
    }
  }

 private:
  static void OnFlushEvent(evutil_socket_t, short, void* arg);
  static void OnStallTimer(evutil_socket_t, short, void* arg);
  void CheckStalls();
  static Connection* NextOf(Connection* c);
  void Sweep();
  void CloseAll();

  EventLoop loop_;
  MatchCache match_cache_;
  WorkerStats stats_;
  std::unique_ptr<char[]> read_buffer_;
  event* flush_event_ = nullptr;
  bool flush_event_active_ = false;
  std::vector<Connection*> pending_flush_;  // each holds a reference
  Connection* head_ = nullptr;              // intrusive list of this worker's connections
  size_t connection_count_ = 0;
  struct Stall {
    ClientConnection* producer;  // each holds a reference
    Connection* consumer;
    int64_t since_ms;
  };
  static void EndStall(const Stall& st);  // resumes the producer, drops both references
  std::vector<Stall> stalls_;
  event* stall_timer_ = nullptr;
  std::unique_ptr<EventLoop::Timer> sweep_timer_;
  std::thread thread_;
};

}  // namespace zmesh::server

#include "server/io_worker.h"

#include <glog/logging.h>

#include "server/client_connection.h"
#include "server/connection.h"
#include "server/outbound_buffer.h"

namespace zmesh::server {
namespace {
thread_local IoWorker* t_worker = nullptr;
// Socket I/O callbacks and timers run at the default priority (1 of 0..2; the
// loop's task queue, registered before, runs at 0). The flush of the pending
// list runs at 1 too: activated from a read callback, it queues behind every
// event this iteration found ready, so it runs after all of this iteration's
// reads. At a lower priority it would run only in an iteration with nothing
// else ready, which never comes while one socket stays readable (a peer link
// receiving a long flood reads one TLS record per callback): every flush of
// the worker, that link's own PONGs included, would wait for the flood to end.
constexpr int kPriorities = 3;
constexpr int kFlushPriority = 1;
}  // namespace

IoWorker::IoWorker(int index, const SubjectIndex* index_for_cache)
    : loop_(index), match_cache_(index_for_cache), read_buffer_(new char[kReadBufferBytes]) {
  event_base_priority_init(loop_.base(), kPriorities);
  flush_event_ = event_new(loop_.base(), -1, 0, &IoWorker::OnFlushEvent, this);
  event_priority_set(flush_event_, kFlushPriority);
  stall_timer_ = evtimer_new(loop_.base(), &IoWorker::OnStallTimer, this);
}

IoWorker::~IoWorker() {
  if (thread_.joinable()) Stop();
  for (const Stall& st : stalls_) EndStall(st);  // connections are closed by now
  event_free(stall_timer_);
  event_free(flush_event_);
}

IoWorker* IoWorker::Current() { return t_worker; }

void IoWorker::Start(std::chrono::milliseconds tick) {
  thread_ = std::thread([this, tick] {
    t_worker = this;
    sweep_timer_ = loop_.RunEvery(tick, [this] { Sweep(); });
    loop_.Run();
    sweep_timer_.reset();
    t_worker = nullptr;
  });
}

void IoWorker::Stop() {
  if (!thread_.joinable()) return;
  loop_.QueueInLoop([this] { CloseAll(); });
  loop_.Quit();
  thread_.join();
}

void IoWorker::CloseAll() {
  ForEachConnection([](Connection* c) {
    RefPtr<Connection> hold(c);
    c->Close(CloseReason::kServerShutdown, /*flush=*/true);
  });
  FlushPending();
}

Connection* IoWorker::NextOf(Connection* c) { return c->next_; }

void IoWorker::AddConnection(Connection* conn) {
  loop_.AssertInLoopThread();
  conn->Ref();
  conn->prev_ = nullptr;
  conn->next_ = head_;
  if (head_ != nullptr) head_->prev_ = conn;
  head_ = conn;
  ++connection_count_;
}

void IoWorker::RemoveConnection(Connection* conn) {
  loop_.AssertInLoopThread();
  if (conn->prev_ != nullptr) {
    conn->prev_->next_ = conn->next_;
  } else {
    head_ = conn->next_;
  }
  if (conn->next_ != nullptr) conn->next_->prev_ = conn->prev_;
  conn->prev_ = conn->next_ = nullptr;
  --connection_count_;
  conn->Unref();
}

void IoWorker::ScheduleFlush(Connection* conn) {
  loop_.AssertInLoopThread();
  conn->Ref();
  pending_flush_.push_back(conn);
  if (!flush_event_active_) {
    flush_event_active_ = true;
    event_active(flush_event_, EV_TIMEOUT, 0);
  }
}

void IoWorker::OnFlushEvent(evutil_socket_t, short, void* arg) { static_cast<IoWorker*>(arg)->FlushPending(); }

void IoWorker::FlushPending() {
  loop_.AssertInLoopThread();
  flush_event_active_ = false;
  // Flushing may schedule more (e.g. a close that writes a last line); take
  // the list as it is now and let the next event handle anything new.
  std::vector<Connection*> batch;
  batch.swap(pending_flush_);
  for (Connection* c : batch) {
    c->FlushFromAnyThread();
    c->Unref();
  }
  if (pending_flush_.empty()) {
    batch.clear();
    pending_flush_.swap(batch);  // reuse the allocation
  }
}

void IoWorker::Sweep() {
  const int64_t now = loop_.now_ms();
  match_cache_.CatchUp();
  OutboundBuffer::TrimChunkPool();
  ForEachConnection([now](Connection* c) {
    RefPtr<Connection> hold(c);
    c->OnTick(now);
  });
}

}  // namespace zmesh::server

namespace zmesh::server {

void IoWorker::StallProducer(ClientConnection* producer, Connection* consumer) {
  loop_.AssertInLoopThread();
  if (producer->closing()) return;
  for (const Stall& st : stalls_) {
    if (st.producer == producer) return;  // already waiting
  }
  producer->PauseReading(Connection::kPauseBackpressure);
  producer->Ref();
  consumer->Ref();
  stalls_.push_back(Stall{producer, consumer, MonotonicMs()});
  if (stalls_.size() == 1) {
    const timeval tick{0, kStallCheckMs * 1000};
    evtimer_add(stall_timer_, &tick);
  }
  consumer->AddDrainWaiter(producer);  // may call ReleaseStall (posted) at once
}

void IoWorker::EndStall(const Stall& st) {
  st.producer->ResumeAfterStall();
  st.producer->Unref();
  st.consumer->Unref();
}

void IoWorker::ReleaseStall(Connection* producer) {
  loop_.AssertInLoopThread();
  for (size_t i = 0; i < stalls_.size(); ++i) {
    if (stalls_[i].producer != producer) continue;
    Stall st = stalls_[i];
    stalls_[i] = stalls_.back();
    stalls_.pop_back();
    EndStall(st);
    return;
  }
}

void IoWorker::OnStallTimer(evutil_socket_t, short, void* arg) { static_cast<IoWorker*>(arg)->CheckStalls(); }

void IoWorker::CheckStalls() {
  // The safety net behind the consumer's wake-up: a consumer that got stuck
  // (it will be cut) or a stall that lasted too long releases its producer.
  const int64_t now = MonotonicMs();
  size_t kept = 0;
  for (Stall& st : stalls_) {
    const bool release = st.consumer->closing_requested() || st.consumer->WriteStuck() ||
                         st.consumer->out().pending_bytes() <= st.consumer->out().backpressure_threshold() / 2 ||
                         now - st.since_ms >= kMaxStallMs;
    if (release) {
      EndStall(st);
    } else {
      stalls_[kept++] = st;
    }
  }
  stalls_.resize(kept);
  if (!stalls_.empty()) {
    const timeval tick{0, kStallCheckMs * 1000};
    evtimer_add(stall_timer_, &tick);
  }
}

}  // namespace zmesh::server

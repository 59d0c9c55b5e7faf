#include "server/connection.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "server/event_loop.h"
#include "server/io_worker.h"
#include "server/tls_transport.h"

namespace zmesh::server {
namespace {
// Reads per readiness event: enough to drain a busy publisher, few enough
// that one connection cannot monopolise its worker.
constexpr int kMaxReadsPerEvent = 4;
// Input read and discarded before closing, so that close() sends FIN after
// our last -ERR instead of a RST that could destroy it.
constexpr size_t kMaxDrainBytes = 256 * 1024;
}  // namespace

Connection::Connection(Kind kind, IoWorker* worker, int fd, uint64_t id, std::string remote_address,
                       size_t max_pending)
    : SubscriberEndpoint(kind),
      worker_(worker),
      fd_(fd),
      id_(id),
      remote_address_(std::move(remote_address)),
      transport_(std::make_unique<PlainTransport>(fd)),
      out_(fd, transport_.get(), max_pending) {
  created_ms_ = last_read_ms_ = MonotonicMs();
  created_unix_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
}

Connection::~Connection() {
  // Events were freed by Close() on the owner thread; the socket by out_.
  DCHECK(read_event_ == nullptr && write_event_ == nullptr);
}

EventLoop* Connection::loop() const { return worker_->loop(); }

void Connection::EnableTls(SSL_CTX* ctx, bool server_side, const std::string& expected_host, void* app_data,
                           bool sniff_plaintext) {
  transport_ = std::make_unique<TlsTransport>(ctx, fd_, server_side, expected_host, app_data, sniff_plaintext);
  out_.set_transport(transport_.get());
}

void Connection::Start() {
  loop()->AssertInLoopThread();
  read_event_ = event_new(worker_->loop()->base(), fd_, EV_READ | EV_PERSIST, &Connection::OnReadable, this);
  event_add(read_event_, nullptr);
  worker_->AddConnection(this);
  OnStart();
  if (!closing_ && !transport_->handshake_done()) ContinueHandshake();  // a TLS client speaks first
}

void Connection::WriteClearNow(std::string_view bytes) {
  loop()->AssertInLoopThread();
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n <= 0 && errno != EINTR) return;  // the read side will see what is wrong
    if (n > 0) bytes.remove_prefix(static_cast<size_t>(n));
  }
}

bool Connection::ContinueHandshake() {
  switch (transport_->DoHandshake()) {
    case Transport::Handshake::kDone:
      VLOG(1) << "conn " << id_ << " " << remote_address_ << ": TLS established";
      FlushFromAnyThread();  // what was queued during the handshake
      return true;
    case Transport::Handshake::kWantRead:
      return false;
    case Transport::Handshake::kWantWrite:
      ArmWriteEvent();
      return false;
    case Transport::Handshake::kFailed:
      OnHandshakeFailed(*transport_);
      Close(CloseReason::kTlsHandshakeError, false);
      return false;
  }
  return false;
}

void Connection::OnHandshakeFailed(const Transport& transport) {
  loop()->AssertInLoopThread();
  LOG(INFO) << "conn " << id_ << " " << remote_address_ << ": TLS handshake failed: " << transport.last_error();
}

void Connection::OnReadable(evutil_socket_t, short, void* arg) {
  RefPtr<Connection> self(static_cast<Connection*>(arg));  // Close() may drop the worker's reference
  Connection* c = self.get();
  IoWorker* w = c->worker_;
  c->last_read_ms_ = MonotonicMs();
  if (!c->transport_->handshake_done() && !c->ContinueHandshake()) return;
  for (int i = 0; i < kMaxReadsPerEvent && !c->closing_ && !c->reading_paused(); ++i) {
    int err = 0;
    const ssize_t n = c->transport_->Read(w->read_buffer(), IoWorker::kReadBufferBytes, &err);
    if (n > 0) {
      c->OnInput(std::string_view(w->read_buffer(), static_cast<size_t>(n)));
      if (static_cast<size_t>(n) < IoWorker::kReadBufferBytes) break;
      continue;
    }
    if (n == 0) {
      c->Close(CloseReason::kClientClosed, false);
      break;
    }
    if (err == EINTR) continue;
    if (err != EAGAIN) c->Close(CloseReason::kReadError, false);
    break;
  }
  // TLS may hold decrypted bytes that no socket event will announce.
  if (!c->closing_ && !c->reading_paused() && c->transport_->buffered_input() > 0) {
    event_active(c->read_event_, EV_READ, 0);
  }
}

void Connection::OnWritableEvent(evutil_socket_t, short, void* arg) {
  RefPtr<Connection> self(static_cast<Connection*>(arg));
  Connection* c = self.get();
  if (!c->transport_->handshake_done()) {
    if (!c->ContinueHandshake()) return;
    // Handshake done: reading may be waiting on it too.
    if (c->transport_->buffered_input() > 0 && c->read_event_ != nullptr) event_active(c->read_event_, EV_READ, 0);
  }
  const OutboundBuffer::FlushResult result = c->out_.OnWritable();
  c->WakeDrainWaiters(result == OutboundBuffer::FlushResult::kClosed);
  switch (result) {
    case OutboundBuffer::FlushResult::kDone:
      if (c->write_event_ != nullptr) event_del(c->write_event_);
      break;
    case OutboundBuffer::FlushResult::kBlocked:
      break;  // stays armed (EV_PERSIST)
    case OutboundBuffer::FlushResult::kError:
      c->Close(CloseReason::kWriteError, false);
      break;
    case OutboundBuffer::FlushResult::kClosed:
      break;
  }
}

void Connection::ArmWriteEvent() {
  if (closing_) return;
  if (write_event_ == nullptr) {
    write_event_ = event_new(worker_->loop()->base(), fd_, EV_WRITE | EV_PERSIST, &Connection::OnWritableEvent, this);
  }
  event_add(write_event_, nullptr);
}

void Connection::AddDrainWaiter(Connection* producer) {
  producer->Ref();
  {
    std::lock_guard<std::mutex> lock(drain_waiters_mu_);
    drain_waiters_.push_back(producer);
    has_drain_waiters_.store(true, std::memory_order_release);
  }
  // It may have drained (or closed) between the producer's decision and now.
  WakeDrainWaiters(closing_requested());
}

void Connection::NotifyWhenDrained() {
  loop()->AssertInLoopThread();
  drain_notice_wanted_.store(true, std::memory_order_release);
  NoticeDrainedIfWanted();  // it may have drained already
}

void Connection::NoticeDrainedIfWanted() {
  if (!drain_notice_wanted_.load(std::memory_order_acquire)) return;
  if (out_.pending_bytes() > out_.backpressure_threshold() / 2) return;
  if (!drain_notice_wanted_.exchange(false)) return;
  RefPtr<Connection> self(this);
  worker_->loop()->QueueInLoop([self] {
    if (!self->closing_) self->OnOutputDrained();
  });
}

void Connection::WakeDrainWaiters(bool closing) {
  if (!closing) NoticeDrainedIfWanted();
  if (!has_drain_waiters_.load(std::memory_order_acquire)) return;
  if (!closing && out_.pending_bytes() > out_.backpressure_threshold() / 2) return;
  std::vector<Connection*> waiters;
  {
    std::lock_guard<std::mutex> lock(drain_waiters_mu_);
    waiters.swap(drain_waiters_);
    has_drain_waiters_.store(false, std::memory_order_release);
  }
  for (Connection* p : waiters) {
    IoWorker* w = p->worker_;
    w->loop()->QueueInLoop([w, p] {
      w->ReleaseStall(p);
      p->Unref();
    });
  }
}

void Connection::HandleFlushResult(OutboundBuffer::FlushResult result) {
  WakeDrainWaiters(result == OutboundBuffer::FlushResult::kClosed);
  switch (result) {
    case OutboundBuffer::FlushResult::kDone:
    case OutboundBuffer::FlushResult::kClosed:
      return;
    case OutboundBuffer::FlushResult::kBlocked:
      if (worker_->loop()->IsInLoopThread()) {
        ArmWriteEvent();
      } else {
        RefPtr<Connection> self(this);
        worker_->loop()->QueueInLoop([self] { self->ArmWriteEvent(); });
      }
      return;
    case OutboundBuffer::FlushResult::kError:
      RequestClose(CloseReason::kWriteError);
      return;
  }
}

void Connection::FlushFromAnyThread() {
  if (!transport_->handshake_done()) return;  // flushed when the handshake completes
  if (!transport_->writes_from_any_thread() && !worker_->loop()->IsInLoopThread()) {
    // An OpenSSL session belongs to one thread: the owner writes.
    if (owner_flush_posted_.exchange(true)) return;
    RefPtr<Connection> self(this);
    worker_->loop()->QueueInLoop([self] {
      self->owner_flush_posted_.store(false);
      self->HandleFlushResult(self->out_.Flush());
    });
    return;
  }
  HandleFlushResult(out_.Flush());
}

bool Connection::Enqueue(const std::string_view* pieces, size_t count, size_t payload_bytes, bool is_message,
                         CloseReason on_overflow, size_t* pending_after, bool last) {
  switch (out_.Append(pieces, count, payload_bytes, is_message, pending_after, last)) {
    case OutboundBuffer::AppendResult::kQueuedNeedsFlush:
      if (IoWorker* current = IoWorker::Current()) {
        current->ScheduleFlush(this);
      } else {
        FlushFromAnyThread();
      }
      return true;
    case OutboundBuffer::AppendResult::kQueued:
      return true;
    case OutboundBuffer::AppendResult::kOverLimit:
      RequestClose(on_overflow);
      return false;
    case OutboundBuffer::AppendResult::kClosed:
      return false;
  }
  return false;
}

void Connection::SendControl(std::string_view bytes) { SendControl({bytes}); }

void Connection::SendControl(std::initializer_list<std::string_view> pieces) {
  loop()->AssertInLoopThread();
  if (closing_) return;
  Enqueue(pieces.begin(), pieces.size(), 0, /*is_message=*/false, CloseReason::kSlowConsumerPendingBytes);
}

void Connection::PauseReading(PauseReason reason) {
  loop()->AssertInLoopThread();
  if (closing_ || read_event_ == nullptr) return;
  if (pause_reasons_ == 0) event_del(read_event_);
  pause_reasons_ |= reason;
}

void Connection::ResumeReading(PauseReason reason) {
  loop()->AssertInLoopThread();
  if (closing_ || (pause_reasons_ & reason) == 0) return;
  pause_reasons_ &= static_cast<uint8_t>(~reason);
  if (pause_reasons_ == 0) {
    event_add(read_event_, nullptr);
    last_read_ms_ = MonotonicMs();  // quiet time starts again: we were the ones not reading
  }
}

bool Connection::WriteStuck() const {
  // A busy but live socket makes progress every few milliseconds; one that
  // took nothing for this long (a stopped or partitioned peer, a frozen
  // client) must not hold up its publishers (SPEC §4): it is cut instead, by
  // its pending limit, its write deadline or its pings.
  const int64_t blocked_since = out_.blocked_since_ms();
  const int64_t stuck_after = std::min<int64_t>(kStuckAfterMs, write_deadline_ms_ / 2);
  return blocked_since >= 0 && MonotonicMs() - blocked_since >= stuck_after;
}

bool Connection::WantsBackpressure(size_t pending) const {
  return pending > out_.backpressure_threshold() && !WriteStuck();
}

void Connection::RequestClose(CloseReason reason) {
  if (close_requested_.exchange(true)) return;
  RefPtr<Connection> self(this);
  // Always deferred: the caller may be iterating over this connection's state.
  worker_->loop()->QueueInLoop([self, reason] { self->Close(reason, false); });
}

void Connection::DrainInput() {
  char buf[16 * 1024];
  for (size_t total = 0; total < kMaxDrainBytes;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) return;
    total += static_cast<size_t>(n);
  }
}

void Connection::Close(CloseReason reason, bool flush) {
  loop()->AssertInLoopThread();
  if (closing_) return;
  closing_ = true;
  close_requested_.store(true, std::memory_order_release);
  close_reason_ = reason;
  if (read_event_ != nullptr) {
    event_free(read_event_);
    read_event_ = nullptr;
  }
  if (write_event_ != nullptr) {
    event_free(write_event_);
    write_event_ = nullptr;
  }
  if (flush) {
    out_.Flush();
    DrainInput();
  }
  if (IsSlowConsumer(reason)) worker_->stats().Add(worker_->stats().slow_consumers, 1);
  OnClose(reason);
  out_.CloseSocket();
  WakeDrainWaiters(/*closing=*/true);
  worker_->RemoveConnection(this);  // may drop the last reference: nothing after this
}

void Connection::OnTick(int64_t now_ms) {
  loop()->AssertInLoopThread();
  if (!transport_->handshake_done() && now_ms - created_ms_ >= handshake_timeout_ms_) {
    LOG(INFO) << "conn " << id_ << " " << remote_address_ << ": no TLS handshake within " << handshake_timeout_ms_
              << " ms";
    Close(CloseReason::kTlsHandshakeError, false);
    return;
  }
  const int64_t since = out_.blocked_since_ms();
  if (since >= 0 && now_ms - since >= write_deadline_ms_) Close(CloseReason::kSlowConsumerWriteDeadline, false);
}

}  // namespace zmesh::server

#pragma once

// A socket owned by one IoWorker: reading, the outbound buffer, closing. The
// protocol on top (NATS client session, peer link) is a subclass; a peer link
// is simply another kind of connection with its own protocol and limits.
//
// Threading: created on and owned by its worker's thread, which does all
// reads, event registration and Close(). Other threads may Append to out()
// and write it through the worker's flush (see OutboundBuffer), and ask for a
// close with RequestClose(). Reference counted: the worker holds one reference
// while the connection is open; subscriptions and pending flushes hold others,
// so the object may outlive its socket.

#include <event2/event.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/close_reason.h"
#include "server/outbound_buffer.h"
#include "server/subscriber_endpoint.h"
#include "server/transport.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace zmesh::server {

class IoWorker;
class EventLoop;

class Connection : public SubscriberEndpoint {
 public:
  Connection(Kind kind, IoWorker* worker, int fd, uint64_t id, std::string remote_address, size_t max_pending);

  uint64_t id() const { return id_; }
  uint64_t connection_id() const override { return id_; }
  IoWorker* worker() const { return worker_; }
  EventLoop* loop() const;
  const std::string& remote_address() const { return remote_address_; }
  OutboundBuffer& out() { return out_; }

  // Before Start(): speak TLS on this socket (accepting, or connecting and
  // expecting the peer certificate to name `expected_host`); see TlsTransport
  // for `app_data` and `sniff_plaintext`.
  void EnableTls(SSL_CTX* ctx, bool server_side, const std::string& expected_host, void* app_data = nullptr,
                 bool sniff_plaintext = false);
  bool tls() const { return !transport_->writes_from_any_thread(); }

  // Owner thread: registers the read event and calls OnStart().
  void Start();
  // Owner thread: closes once, with `reason`. With `flush`, what is queued
  // (such as a final -ERR) is written first, best effort.
  void Close(CloseReason reason, bool flush);
  // Any thread: asks the owner to Close(reason). Idempotent.
  void RequestClose(CloseReason reason);
  // Owner thread.
  bool closing() const { return closing_; }
  // Any thread: a close was asked for or has happened.
  bool closing_requested() const { return close_requested_.load(std::memory_order_acquire); }
  CloseReason close_reason() const { return close_reason_; }

  // Any thread: appends the concatenation of `pieces` and makes sure it gets
  // written (at the end of the current loop iteration on a worker thread, at
  // once elsewhere). When the connection cannot take it (over its pending
  // limit) it is closed with `on_overflow` (asked for, so the close happens
  // after the caller's loop iteration) and false is returned; false also
  // when it is closing. The one append path: deliveries, peer frames and
  // SendControl all come through here. `last`: see OutboundBuffer::Append.
  bool Enqueue(const std::string_view* pieces, size_t count, size_t payload_bytes, bool is_message,
               CloseReason on_overflow, size_t* pending_after = nullptr, bool last = false);

  // Any thread: after an append left `pending` bytes queued here, should the
  // client that produced it pause reading? Yes above the threshold while
  // this socket still drains; a consumer that is stuck (no write progress
  // for a while) pushes back on no one: it is cut instead.
  bool WantsBackpressure(size_t pending) const;
  // Any thread: the socket has been full without any progress for
  // kStuckAfterMs (or half the write deadline, if shorter).
  bool WriteStuck() const;
  static constexpr int64_t kStuckAfterMs = 250;

  // Any thread: `producer` waits for this connection to drain below half its
  // backpressure threshold; it is told (IoWorker::ReleaseStall on its own
  // worker) as soon as a flush gets there, or this connection closes.
  void AddDrainWaiter(Connection* producer);

  // Owner thread: OnOutputDrained() will run on the owner thread once the
  // pending output is at most half the backpressure threshold (one notice
  // per call; none after a close). Lets a connection stream something large
  // (a peer's interest snapshot) at the pace its socket takes it.
  void NotifyWhenDrained();

  // Writes what is queued; called by whichever worker scheduled the flush
  // (any thread). Blocks never; on a full socket the owner waits for EV_WRITE.
  void FlushFromAnyThread();

  // Owner thread: periodic housekeeping (timeouts), from the worker's sweep.
  virtual void OnTick(int64_t now_ms);
  // Owner thread: the connection is the old end of a planned move and ends
  // on its own (MOVED); lame duck leaves it alone meanwhile.
  virtual bool in_planned_move() const { return false; }
  // Owner thread: the client moves by itself when told its node is leaving
  // (CONNECT "moves"); lame duck closes it only at the end of its duration.
  virtual bool moves_when_asked() const { return false; }
  // Owner thread: lame duck reads nothing more from it; what it published
  // so far is forwarded, then it is closed (Server::LameDuckStep).
  void StopReadingToLeave() {
    leaving_ = true;
    PauseReading(kPauseLeaving);
  }
  bool leaving() const { return leaving_; }

  int64_t created_ms() const { return created_ms_; }  // monotonic
  int64_t created_unix_ms() const { return created_unix_ms_; }
  int64_t last_read_ms() const { return last_read_ms_; }
  uint64_t in_msgs() const { return in_msgs_.load(std::memory_order_relaxed); }
  uint64_t in_bytes() const { return in_bytes_.load(std::memory_order_relaxed); }

 protected:
  ~Connection() override;

  // Owner thread. `data` is only valid during the call.
  virtual void OnStart() {}
  virtual void OnInput(std::string_view data) = 0;
  virtual void OnClose(CloseReason reason) = 0;
  // Owner thread: the TLS handshake failed; the connection closes next.
  virtual void OnHandshakeFailed(const Transport& transport);
  // Owner thread: see NotifyWhenDrained().
  virtual void OnOutputDrained() {}

  const Transport& transport() const { return *transport_; }

  // Owner thread, from OnStart: writes bytes straight to the socket, before
  // any TLS (nats-server sends INFO in clear and then expects the client's
  // TLS handshake). The socket is new, so they fit.
  void WriteClearNow(std::string_view bytes);

  // Owner thread: Enqueue for protocol bytes (not counted as a message); a
  // connection that cannot take them is closed as a slow consumer.
  void SendControl(std::string_view bytes);
  void SendControl(std::initializer_list<std::string_view> pieces);

  // Owner thread: stop/restart reading. Reading runs while no reason holds.
  enum PauseReason : uint8_t {
    kPauseAuth = 1,        // a CONNECT is being verified
    kPauseActivation = 2,  // a peer link waits for the mesh to accept it
    kPauseBackpressure = 4,  // a consumer this client feeds is behind
    kPauseOrder = 8,       // a peer link waits until the link it replaces has drained
    kPauseLeaving = 16,    // lame duck closes it once what it published has reached every peer
  };
  void PauseReading(PauseReason reason);
  void ResumeReading(PauseReason reason);
  bool reading_paused() const { return pause_reasons_ != 0; }

  void CountIn(uint64_t bytes) {
    in_msgs_.store(in_msgs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    in_bytes_.store(in_bytes_.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
  }

  // Write-deadline and slow-consumer checks shared by every kind.
  int64_t write_deadline_ms_ = 10000;
  // A TLS handshake must complete within this long.
  int64_t handshake_timeout_ms_ = 2000;

 private:
  friend class IoWorker;
  static void OnReadable(evutil_socket_t fd, short what, void* arg);
  static void OnWritableEvent(evutil_socket_t fd, short what, void* arg);
  void HandleFlushResult(OutboundBuffer::FlushResult result);
  // Wakes the producers waiting for this connection to drain, if it has.
  void WakeDrainWaiters(bool closing);
  // Posts OnOutputDrained() if it was asked for and the output has drained.
  void NoticeDrainedIfWanted();
  // Advances a TLS handshake; true once it is done (and what was queued
  // meanwhile is being written).
  bool ContinueHandshake();
  void ArmWriteEvent();
  void DrainInput();

  IoWorker* const worker_;
  const int fd_;
  const uint64_t id_;
  const std::string remote_address_;
  std::unique_ptr<Transport> transport_;  // before out_, which writes through it
  OutboundBuffer out_;
  std::atomic<bool> owner_flush_posted_{false};  // TLS: a flush handed to the owner
  std::atomic<bool> has_drain_waiters_{false};
  std::atomic<bool> drain_notice_wanted_{false};
  std::mutex drain_waiters_mu_;
  std::vector<Connection*> drain_waiters_;  // guarded by drain_waiters_mu_; each holds a reference
  event* read_event_ = nullptr;
  event* write_event_ = nullptr;
  uint8_t pause_reasons_ = 0;
  bool leaving_ = false;  // owner thread: lame duck closes it after a barrier
  bool closing_ = false;
  CloseReason close_reason_ = CloseReason::kClientClosed;
  std::atomic<bool> close_requested_{false};
  int64_t created_ms_;
  int64_t created_unix_ms_;
  int64_t last_read_ms_;
  std::atomic<uint64_t> in_msgs_{0};
  std::atomic<uint64_t> in_bytes_{0};
  // The worker's intrusive list.
  Connection* prev_ = nullptr;
  Connection* next_ = nullptr;
};

// Holds a counted reference to a connection.
template <typename T>
class RefPtr {
 public:
  RefPtr() = default;
  explicit RefPtr(T* p) : p_(p) {
    if (p_) p_->Ref();
  }
  RefPtr(const RefPtr& o) : RefPtr(o.p_) {}
  RefPtr(RefPtr&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  RefPtr& operator=(RefPtr o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~RefPtr() {
    if (p_) p_->Unref();
  }
  T* get() const { return p_; }
  T* operator->() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  T* p_ = nullptr;
};

}  // namespace zmesh::server

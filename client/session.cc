#include "client/session.h"

#include <algorithm>
#include <random>

#include "client/client_state.h"
#include "client/frame_scanner.h"
#include "client/request_mux.h"
#include "client/server_url.h"
#include "client/subscription_table.h"
#include "client/tls_transport.h"
#include "proto/client_writer.h"

namespace zmesh::client {
namespace {

constexpr const char* kVersion = "0.1.0";
// Batches the Pump moves per event before yielding to reads.
constexpr int kPumpRounds = 64;

timeval ToTimeval(Session::Clock::duration d) {
  const auto us = std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  timeval tv;
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  return tv;
}

uint64_t Seed(uint64_t configured) {
  if (configured != 0) return configured;
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

ServerPool::Policy MakePolicy(const Options& o) {
  ServerPool::Policy p;
  p.backoff_initial = o.reconnect_wait_initial;
  p.backoff_max = o.reconnect_wait_max;
  p.jitter = o.reconnect_jitter;
  p.stable_after = o.stable_connection;
  return p;
}

bool NeedsTlsContext(const TlsOptions& t) {
  return t.required || !t.ca_file.empty() || !t.cert_file.empty() || !t.server_name.empty() ||
         t.insecure_skip_verify;
}

}  // namespace

Session::Session(const Options& options, Hooks hooks, std::shared_ptr<Outbox> outbox, SubscriptionTable* subs,
                 RequestMux* mux, Dispatcher* dispatcher, ClientState* state)
    : options_(options),
      hooks_(std::move(hooks)),
      outbox_(std::move(outbox)),
      subs_(subs),
      dispatcher_(dispatcher),
      state_(state),
      owner_("Session"),
      inbound_(&owner_, subs, mux, dispatcher, state),
      pool_(MakePolicy(options_), Seed(options_.random_seed)) {}

Session::~Session() { FreeLoop(); }

// ----------------------------------------------------------------------------
// Owner thread: set-up

Status Session::Init() {
  AssertInIoThread();  // still the owner's: Run has not taken it over
  std::vector<ServerUrl> statics;
  for (const std::string& s : options_.servers) {
    std::string error;
    auto url = ParseServerUrl(s, &error);
    if (!url) return Status(StatusCode::kInvalidArgument, error);
    statics.push_back(*url);
  }
  pool_.Update(ServerPool::kStatic, statics);

  // What our CONNECT always says: no +OK acks, no pedantic checks, and
  // asynchronous INFO updates (protocol 1) for connect_urls and lame duck.
  proto::ConnectOptions& connect = conn_options_.connect;
  connect.verbose = false;
  connect.pedantic = false;
  connect.name = options_.name;
  connect.lang = "cpp";
  connect.version = kVersion;
  connect.protocol = 1;
  connect.echo = options_.echo;
  // We follow a node's INFO "move_to" (rebalancing) with a planned move.
  if (options_.lossless_moves) connect.moves = true;
  if (!options_.user.empty()) connect.user = options_.user;
  if (!options_.password.empty()) connect.pass = options_.password;
  conn_options_.connect_timeout = options_.connect_timeout;
  conn_options_.max_control_line = options_.max_control_line;
  conn_options_.max_payload = options_.max_incoming_payload;
  conn_options_.tls_required = options_.tls.required;
  conn_options_.tls_options = options_.tls;
  if (NeedsTlsContext(options_.tls)) {
    Status st;
    conn_options_.tls = TlsContext::Create(options_.tls, &st);
    if (!conn_options_.tls) return st;
  }

  Status st = outbox_->Init();
  if (!st.ok()) return st;
  base_ = event_base_new();
  if (base_ == nullptr) return Status(StatusCode::kIoError, "event_base_new failed");
  wake_ev_ = event_new(base_, outbox_->wake_fd(), EV_READ | EV_PERSIST, &Session::OnWakeEvent, this);
  tick_ev_ = event_new(base_, -1, EV_PERSIST, &Session::OnTickEvent, this);
  retry_ev_ = evtimer_new(base_, &Session::OnRetryEvent, this);
  reap_ev_ = event_new(base_, -1, 0, &Session::OnReapEvent, this);
  pump_ev_ = event_new(base_, -1, 0, &Session::OnPumpEvent, this);
  event_add(wake_ev_, nullptr);
  const auto tick = std::clamp<std::chrono::milliseconds>(options_.ping_interval / 4, std::chrono::milliseconds(5),
                                                          std::chrono::milliseconds(1000));
  const timeval tv = ToTimeval(tick);
  event_add(tick_ev_, &tv);
  PublishKnownServers();
  return Status::Ok();
}

// ----------------------------------------------------------------------------
// I/O thread: loop, wake-ups, timers

void Session::Run() {
  owner_.TakeOver();
  StartDiscovery();
  TryNext();
  event_base_dispatch(base_);

  // The loop ended (Close): free everything the I/O thread owns, here.
  conn_.reset();
  move_.reset();
  retired_moves_.clear();
  graveyard_.clear();
  inbound_.Reset();
  discovery_.reset();
  FreeLoop();
}

void Session::FreeLoop() {
  for (event** ev : {&wake_ev_, &tick_ev_, &retry_ev_, &reap_ev_, &pump_ev_}) {
    if (*ev != nullptr) event_free(*ev);
    *ev = nullptr;
  }
  if (base_ != nullptr) event_base_free(base_);
  base_ = nullptr;
}

void Session::OnWakeEvent(evutil_socket_t, short, void* arg) { static_cast<Session*>(arg)->HandleWake(); }
void Session::OnTickEvent(evutil_socket_t, short, void* arg) { static_cast<Session*>(arg)->Tick(); }
void Session::OnRetryEvent(evutil_socket_t, short, void* arg) { static_cast<Session*>(arg)->TryNext(); }
void Session::OnReapEvent(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Session*>(arg);
  self->AssertInIoThread();
  self->graveyard_.clear();
  self->retired_moves_.clear();
}
void Session::OnPumpEvent(evutil_socket_t, short, void* arg) { static_cast<Session*>(arg)->Pump(); }

void Session::HandleWake() {
  AssertInIoThread();
  for (auto& task : outbox_->TakeTasks()) {
    if (io_closed_) break;  // tasks after Close may refer to what it freed
    task();
  }
  if (!io_closed_) Pump();
}

void Session::Retire(std::unique_ptr<Connection> conn) {
  AssertInIoThread();
  if (conn == nullptr) return;
  graveyard_.push_back(std::move(conn));
  event_active(reap_ev_, 0, 0);
}

void Session::Pump() {
  AssertInIoThread();
  for (int round = 0; round < kPumpRounds; ++round) {
    // A move holds everything back for the new connection (client/move.h).
    if (conn_ == nullptr || !conn_ready_ || move_ != nullptr) return;
    if (!conn_->write_idle()) return;  // writability resumes us (OnConnectionWritable)
    if (!outbox_->TakePending(conn_->wbuf(), &inflight_pongs_)) {
      if (outbox_->ArmIfIdle()) return;
      continue;
    }
    conn_->Flush();
  }
  event_active(pump_ev_, 0, 0);  // more keeps coming: continue after other events
}

void Session::Tick() {
  AssertInIoThread();
  if (conn_ == nullptr || !conn_ready_) return;
  const auto now = Clock::now();
  if (!conn_->write_idle() && now - conn_->last_write_progress() > options_.write_deadline) {
    DropConnection(Status(StatusCode::kDisconnected, conn_->url().key() + ": no write progress for " +
                                                         std::to_string(options_.write_deadline.count()) + " ms"),
                   false);
    return;
  }
  // After MOVE nothing more goes to the old node; the move's deadline bounds the wait.
  if (move_ != nullptr && move_->cut_sent()) return;
  if (now - last_ping_ < options_.ping_interval) return;
  last_ping_ = now;
  if (++pings_out_ > options_.max_pings_out) {
    DropConnection(Status(StatusCode::kDisconnected, conn_->url().key() + ": stale connection (" +
                                                         std::to_string(options_.max_pings_out) +
                                                         " PINGs unanswered)"),
                   false);
    return;
  }
  proto::AppendPing(conn_->wbuf());
  inflight_pongs_.push_back(nullptr);
  conn_->Flush();
}

// ----------------------------------------------------------------------------
// I/O thread: choosing nodes and connecting

void Session::TryNext() {
  AssertInIoThread();
  if (io_closed_ || conn_ != nullptr) return;
  evtimer_del(retry_ev_);
  const auto now = Clock::now();
  auto pick = pool_.Next(now);
  if (!pick) return;  // wait for discovery (Start's deadline bounds the first connect)
  if (pick->delay > Clock::duration(0)) {
    const timeval tv = ToTimeval(pick->delay);
    evtimer_add(retry_ev_, &tv);
    return;
  }
  if (ever_connected_ && options_.max_reconnect_attempts >= 0 && failed_attempts_ >= options_.max_reconnect_attempts) {
    Close(Status(StatusCode::kNoServers,
                   "gave up after " + std::to_string(failed_attempts_) + " failed reconnect attempts"));
    return;
  }
  StartAttempt(pick->server);
}

void Session::StartAttempt(const ServerUrl& url) {
  AssertInIoThread();
  conn_ready_ = false;
  conn_ = std::make_unique<Connection>(base_, url, conn_options_, this);
  conn_->Start();  // may fail at once: OnConnectionClosed then already ran
}

void Session::AttemptFailed(const ServerUrl& url, const Status& why) {
  AssertInIoThread();
  const auto now = Clock::now();
  pool_.OnAttemptFailed(url.key(), now);
  ++failed_attempts_;
  state_->SetLastError(why);
  if (!ever_connected_) {
    initial_tried_.insert(url.key());
    bool all = discovery_settled_ && !pool_.empty();
    for (const ServerUrl& s : pool_.servers()) all = all && initial_tried_.count(s.key()) > 0;
    if (all) {
      state_->MarkInitialConnectFailed();
    }
  }
  TryNext();
}

// ----------------------------------------------------------------------------
// I/O thread: connection events

void Session::OnConnectionReady(Connection* conn) {
  AssertInIoThread();
  const auto now = Clock::now();
  conn_ready_ = true;
  pool_.OnConnected(conn->url().key(), now);
  failed_attempts_ = 0;
  pings_out_ = 0;
  last_ping_ = now;
  state_->server_max_payload.store(conn->info().max_payload);

  // Re-subscribe everything before anything queued meanwhile, under the
  // Outbox lock so no Subscribe/Unsubscribe slips between. A PING follows:
  // its PONG comes once every node of the mesh has the subscriptions (the
  // interest barrier), and only then is the move reported.
  std::string* out = conn->wbuf();
  std::vector<std::shared_ptr<SubState>> ended;
  resubscribed_ = nullptr;
  outbox_->SetConnected([&] {
    const size_t resubscribed = AppendResubscription(out, &ended);
    if (resubscribed > 0 && options_.subscribe_confirm_timeout.count() > 0) {
      proto::AppendPing(out);
      resubscribed_ = std::make_shared<Completion<bool>>();
      inflight_pongs_.push_back(resubscribed_);  // first: nothing else is in flight on a new connection
    }
  });
  for (const auto& sub : ended) subs_->Remove(sub->sid);
  conn->Flush();
  // The flush may have failed; the failover may even have started a new
  // attempt already. Either way this connection is no longer ours.
  if (conn_.get() != conn || !conn_ready_) return;

  if (ever_connected_) state_->reconnects.fetch_add(1, std::memory_order_relaxed);
  ever_connected_ = true;
  state_->SetState(ConnectionState::kConnected, conn->url().ToString());
  if (resubscribed_ == nullptr) ReportConnected(conn->url());
  HandleServerInfo(conn->info());
  if (conn_.get() == conn && conn_ready_) Pump();
}

size_t Session::AppendResubscription(std::string* out, std::vector<std::shared_ptr<SubState>>* ended) const {
  AssertInIoThread();
  size_t resubscribed = 0;
  for (const auto& sub : subs_->All()) {
    const int64_t max = sub->max_msgs.load();
    const int64_t remaining = max > 0 ? max - sub->delivered.load() : 0;
    if (max > 0 && remaining <= 0) {
      ended->push_back(sub);
      continue;
    }
    proto::AppendSub(out, sub->subject, sub->queue_group, sub->sid);
    if (max > 0) proto::AppendUnsub(out, sub->sid, remaining);
    ++resubscribed;
  }
  return resubscribed;
}

void Session::ReportConnected(const ServerUrl& url) {
  AssertInIoThread();
  dispatcher_->Emit(reported_connected_ ? EventType::kReconnected : EventType::kConnected, url.ToString(), Status());
  reported_connected_ = true;
}

void Session::OnConnectionOp(Connection* conn, const proto::Op& op) {
  AssertInIoThread();
  switch (op.type) {
    case proto::OpType::kMsg:
    case proto::OpType::kHMsg:
      inbound_.Deliver(op, conn->url());
      return;
    case proto::OpType::kPong:
      pings_out_ = 0;
      if (!inflight_pongs_.empty()) {
        PongWaiter w = std::move(inflight_pongs_.front());
        inflight_pongs_.pop_front();
        if (w) w->Complete(Status::Ok(), true);
        if (w != nullptr && w == resubscribed_) {
          resubscribed_ = nullptr;
          ReportConnected(conn->url());
        }
      }
      return;
    case proto::OpType::kInfo:
      HandleServerInfo(conn->info());
      return;
    case proto::OpType::kMoved:
      HandleMoved(op.arg);
      return;
    case proto::OpType::kErr: {
      Status err(StatusCode::kServerError, conn->url().key() + ": -ERR " + std::string(op.arg));
      if (op.arg.find("Permissions Violation") != std::string_view::npos) {
        dispatcher_->Emit(EventType::kError, conn->url().ToString(), err);  // the connection stays
        return;
      }
      // Every other -ERR is followed by the server closing the connection.
      dispatcher_->Emit(EventType::kError, conn->url().ToString(), err);
      DropConnection(err, false);
      return;
    }
    default:
      return;
  }
}

void Session::OnConnectionReadDone(Connection*) {
  AssertInIoThread();
  inbound_.Flush();
}

void Session::OnConnectionWritable(Connection*) {
  AssertInIoThread();
  Pump();
}

void Session::OnConnectionClosed(Connection* conn, const Status& why) {
  AssertInIoThread();
  if (conn != conn_.get()) return;
  if (conn_ready_) {
    // Salvage happens in DropConnection, which reads the buffer first.
    DropConnection(why, false);
    return;
  }
  const ServerUrl url = conn->url();
  Retire(std::move(conn_));
  AttemptFailed(url, why);
}

void Session::DropConnection(Status why, bool lame_duck) {
  AssertInIoThread();
  if (conn_ == nullptr) return;
  if (move_ != nullptr && EndMoveOnOldLoss(why, &lame_duck)) return;
  std::unique_ptr<Connection> conn = std::move(conn_);
  const bool was_ready = conn_ready_;
  conn_ready_ = false;
  if (lame_duck) conn->Flush();  // a leaving node still reads: hand it what we can
  // Publishes the dead connection never wrote go to the next node first.
  std::string salvaged;
  KeepFrames(*conn->wbuf(), conn->write_offset(), kFramePub, &salvaged);
  conn->Close();
  const ServerUrl url = conn->url();
  Retire(std::move(conn));
  outbox_->SetDisconnected(salvaged);
  for (auto& w : inflight_pongs_) {
    if (w) w->Complete(Status(StatusCode::kDisconnected, why.message()));
  }
  inflight_pongs_.clear();
  resubscribed_ = nullptr;  // the next connection re-subscribes and reports
  inbound_.Reset();
  const auto now = Clock::now();
  if (lame_duck) {
    pool_.Leave(url.key(), now, options_.lame_duck_hold);
  } else if (was_ready) {
    pool_.OnConnectionLost(url.key(), now);
  }
  state_->SetLastError(why);
  state_->SetState(ConnectionState::kReconnecting, {});
  dispatcher_->Emit(EventType::kDisconnected, url.ToString(), why);
  TryNext();
}

void Session::Close(Status why) {
  AssertInIoThread();
  if (io_closed_) return;
  io_closed_ = true;
  if (conn_ != nullptr) {
    // After MOVE the old node must receive nothing more.
    if (conn_ready_ && (move_ == nullptr || !move_->cut_sent())) {
      // Best effort: what is already encoded goes out if the socket takes it.
      outbox_->TakePending(conn_->wbuf(), &inflight_pongs_);
      conn_->Flush();
    }
    if (conn_ != nullptr) conn_->Close();
  }
  if (move_ != nullptr) RetireMove(std::move(move_));  // closes the new connection
  for (auto& w : inflight_pongs_) {
    if (w) w->Complete(why);
  }
  inflight_pongs_.clear();
  if (discovery_ != nullptr) discovery_->Stop();
  if (why.code() != StatusCode::kClosed) state_->SetLastError(why);
  state_->MarkCloseRequested();
  event_base_loopbreak(base_);
}

}  // namespace zmesh::client

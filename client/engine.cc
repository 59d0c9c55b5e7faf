#include "client/engine.h"

#include <algorithm>
#include <charconv>
#include <random>

#include "client/frame_scanner.h"
#include "client/nuid.h"
#include "client/tls_transport.h"
#include "proto/client_writer.h"
#include "proto/subject.h"

namespace zmesh::client {
namespace {

constexpr const char* kVersion = "0.1.0";
// Batches the Pump moves per event before yielding to reads.
constexpr int kPumpRounds = 64;

timeval ToTimeval(Engine::Clock::duration d) {
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

bool ValidQueueName(std::string_view q) {
  if (q.empty()) return false;
  return std::none_of(q.begin(), q.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

bool ParseSid(std::string_view s, uint64_t* sid) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *sid);
  return ec == std::errc() && end == s.data() + s.size();
}

bool NeedsTlsContext(const TlsOptions& t) {
  return t.required || !t.ca_file.empty() || !t.cert_file.empty() || !t.server_name.empty() ||
         t.insecure_skip_verify;
}

}  // namespace

Engine::Engine(Options options, Hooks hooks)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      outbox_(std::make_shared<Outbox>(Outbox::Limits{options_.max_pending_write_bytes, options_.reconnect_buffer_bytes})),
      dispatcher_(std::make_shared<Dispatcher>(options_.on_event)),
      pool_(MakePolicy(options_), Seed(options_.random_seed)) {}

Engine::~Engine() { Close(); }

// ----------------------------------------------------------------------------
// Start and close

Status Engine::Start() {
  if (options_.servers.empty() && options_.zk_connect.empty()) {
    return Status(StatusCode::kInvalidArgument, "no servers and no ZooKeeper connect string given");
  }
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
  wake_ev_ = event_new(base_, outbox_->wake_fd(), EV_READ | EV_PERSIST, &Engine::OnWakeEvent, this);
  tick_ev_ = event_new(base_, -1, EV_PERSIST, &Engine::OnTickEvent, this);
  retry_ev_ = evtimer_new(base_, &Engine::OnRetryEvent, this);
  reap_ev_ = event_new(base_, -1, 0, &Engine::OnReapEvent, this);
  pump_ev_ = event_new(base_, -1, 0, &Engine::OnPumpEvent, this);
  event_add(wake_ev_, nullptr);
  const auto tick = std::clamp<std::chrono::milliseconds>(options_.ping_interval / 4, std::chrono::milliseconds(5),
                                                          std::chrono::milliseconds(1000));
  const timeval tv = ToTimeval(tick);
  event_add(tick_ev_, &tv);
  PublishKnownServers();
  if (options_.on_event) dispatcher_->Start();

  io_thread_ = std::thread([this] { Run(); });

  const auto deadline = Clock::now() + options_.initial_connect_timeout;
  std::unique_lock<std::mutex> lock(mu_);
  state_cv_.wait_until(lock, deadline, [this] {
    return state_ == ConnectionState::kConnected || finished_ || close_requested_ ||
           (initial_failed_ && !options_.retry_on_failed_connect);
  });
  if (state_ == ConnectionState::kConnected || (options_.retry_on_failed_connect && !finished_)) {
    return Status::Ok();
  }
  Status result = last_error_;
  if (result.ok()) {
    result = known_.empty() ? Status(StatusCode::kNoServers, "no node known (ZooKeeper unreachable and no cache?)")
                            : Status(StatusCode::kTimeout, "no connection within the initial connect timeout");
  }
  lock.unlock();
  Close();
  return result;
}

void Engine::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
  }
  state_cv_.notify_all();
  // Concurrent Close calls wait here for the first; none of this waits for
  // the dispatcher, so a Close from a callback cannot deadlock with it.
  std::call_once(close_once_, [this] {
    if (io_thread_.joinable()) {
      outbox_->Post([this] { DoClose(Status(StatusCode::kClosed, "closed by the application")); });
      io_thread_.join();
    } else if (base_ != nullptr) {
      FreeLoop();  // Start failed before the thread ran
    }
  });
  FinishClose();
  dispatcher_->Stop();  // joins, or detaches when called from a callback
}

void Engine::FinishClose() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    state_ = ConnectionState::kClosed;
    connected_url_.clear();
  }
  state_cv_.notify_all();
  for (auto& w : outbox_->Close()) {
    if (w) w->Complete(Status(StatusCode::kClosed, "client closed"));
  }
  for (const auto& sub : subs_.Clear()) sub->Close(true);
  mux_.FailAll(Status(StatusCode::kClosed, "client closed"));
  Emit(EventType::kClosed, {}, last_error());
}

bool Engine::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_requested_ || finished_;
}

// ----------------------------------------------------------------------------
// I/O thread: loop, wake-ups, timers

void Engine::Run() {
  if (!options_.zk_connect.empty()) {
    zk::Executor executor = [outbox = outbox_](std::function<void()> task) { outbox->Post(std::move(task)); };
    if (hooks_.discovery_factory) {
      discovery_ = hooks_.discovery_factory(executor);
    } else {
      zk::RegistryOptions ro;
      ro.connect = options_.zk_connect;
      ro.root = options_.zk_root;
      ro.session_timeout_ms = static_cast<int>(options_.zk_session_timeout.count());
      std::string cache;
      if (options_.use_node_cache) {
        cache = options_.node_cache_file.empty() ? DefaultNodeCachePath(options_.zk_connect, options_.zk_root)
                                                 : options_.node_cache_file;
      }
      discovery_ = std::make_unique<RegistryDiscovery>(
          ro, cache, executor, hooks_.registry_factory ? hooks_.registry_factory : DefaultRegistryFactory());
    }
    discovery_settled_ = false;
    discovery_->Start([this](const std::vector<std::string>& urls, std::string_view source) { OnNodes(urls, source); });
  }
  TryNext();
  event_base_dispatch(base_);

  // The loop ended (DoClose): free everything the I/O thread owns, here.
  conn_.reset();
  graveyard_.clear();
  cached_sub_.reset();
  discovery_.reset();
  FreeLoop();
  // Also when the engine closed itself (gave up reconnecting): from here on
  // every call fails with kClosed. The dispatcher is stopped by Close().
  FinishClose();
}

void Engine::FreeLoop() {
  event_free(wake_ev_);
  event_free(tick_ev_);
  event_free(retry_ev_);
  event_free(reap_ev_);
  event_free(pump_ev_);
  event_base_free(base_);
  base_ = nullptr;
}

void Engine::OnWakeEvent(evutil_socket_t, short, void* arg) { static_cast<Engine*>(arg)->HandleWake(); }
void Engine::OnTickEvent(evutil_socket_t, short, void* arg) { static_cast<Engine*>(arg)->Tick(); }
void Engine::OnRetryEvent(evutil_socket_t, short, void* arg) { static_cast<Engine*>(arg)->TryNext(); }
void Engine::OnReapEvent(evutil_socket_t, short, void* arg) { static_cast<Engine*>(arg)->graveyard_.clear(); }
void Engine::OnPumpEvent(evutil_socket_t, short, void* arg) { static_cast<Engine*>(arg)->Pump(); }

void Engine::HandleWake() {
  for (auto& task : outbox_->TakeTasks()) {
    if (io_closed_) break;  // tasks after DoClose may refer to what it freed
    task();
  }
  if (!io_closed_) Pump();
}

void Engine::Retire(std::unique_ptr<Connection> conn) {
  if (conn == nullptr) return;
  graveyard_.push_back(std::move(conn));
  event_active(reap_ev_, 0, 0);
}

void Engine::Pump() {
  for (int round = 0; round < kPumpRounds; ++round) {
    if (conn_ == nullptr || !conn_ready_) return;
    if (!conn_->write_idle()) return;  // writability resumes us (OnConnectionWritable)
    if (!outbox_->TakePending(conn_->wbuf(), &inflight_pongs_)) {
      if (outbox_->ArmIfIdle()) return;
      continue;
    }
    conn_->Flush();
  }
  event_active(pump_ev_, 0, 0);  // more keeps coming: continue after other events
}

void Engine::Tick() {
  if (conn_ == nullptr || !conn_ready_) return;
  const auto now = Clock::now();
  if (!conn_->write_idle() && now - conn_->last_write_progress() > options_.write_deadline) {
    DropConnection(Status(StatusCode::kDisconnected, conn_->url().key() + ": no write progress for " +
                                                         std::to_string(options_.write_deadline.count()) + " ms"),
                   false);
    return;
  }
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

void Engine::TryNext() {
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
    DoClose(Status(StatusCode::kNoServers,
                   "gave up after " + std::to_string(failed_attempts_) + " failed reconnect attempts"));
    return;
  }
  StartAttempt(pick->server);
}

void Engine::StartAttempt(const ServerUrl& url) {
  conn_ready_ = false;
  conn_ = std::make_unique<Connection>(base_, url, conn_options_, this);
  conn_->Start();  // may fail at once: OnConnectionClosed then already ran
}

void Engine::AttemptFailed(const ServerUrl& url, const Status& why) {
  const auto now = Clock::now();
  pool_.OnAttemptFailed(url.key(), now);
  ++failed_attempts_;
  SetLastError(why);
  if (!ever_connected_) {
    initial_tried_.insert(url.key());
    bool all = discovery_settled_ && !pool_.empty();
    for (const ServerUrl& s : pool_.servers()) all = all && initial_tried_.count(s.key()) > 0;
    if (all) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        initial_failed_ = true;
      }
      state_cv_.notify_all();
    }
  }
  TryNext();
}

void Engine::OnNodes(const std::vector<std::string>& urls, std::string_view source) {
  std::vector<ServerUrl> parsed;
  for (const std::string& u : urls) {
    if (auto url = ParseServerUrl(u)) parsed.push_back(*url);
  }
  if (source != "cache") discovery_settled_ = true;
  if (pool_.Update(ServerPool::kDiscovered, parsed)) {
    PublishKnownServers();
    Emit(EventType::kServersChanged, std::string(source), Status());
  }
  if (conn_ == nullptr) TryNext();  // a new node may be worth trying now
}

void Engine::UpdateAnnounced(const std::vector<std::string>& urls) {
  std::vector<ServerUrl> parsed;
  for (const std::string& u : urls) {
    if (auto url = ParseServerUrl(u)) {
      // connect_urls carry no credentials or scheme: inherit TLS from the
      // node we are on (a mesh is TLS throughout or not at all).
      if (conn_ != nullptr) url->tls = conn_->url().tls;
      parsed.push_back(*url);
    }
  }
  if (pool_.Update(ServerPool::kAnnounced, parsed)) {
    PublishKnownServers();
    Emit(EventType::kServersChanged, "connect_urls", Status());
  }
}

void Engine::PublishKnownServers() {
  std::vector<std::string> known;
  for (const ServerUrl& s : pool_.servers()) known.push_back(s.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  known_ = std::move(known);
}

// ----------------------------------------------------------------------------
// I/O thread: connection events

void Engine::OnConnectionReady(Connection* conn) {
  const auto now = Clock::now();
  conn_ready_ = true;
  pool_.OnConnected(conn->url().key(), now);
  failed_attempts_ = 0;
  pings_out_ = 0;
  last_ping_ = now;
  server_max_payload_.store(conn->info().max_payload);

  // Re-subscribe everything before anything queued meanwhile, under the
  // Outbox lock so no Subscribe/Unsubscribe slips between.
  std::string* out = conn->wbuf();
  std::vector<std::shared_ptr<SubState>> ended;
  outbox_->SetConnected([&] {
    for (const auto& sub : subs_.All()) {
      const int64_t max = sub->max_msgs.load();
      const int64_t remaining = max > 0 ? max - sub->delivered.load() : 0;
      if (max > 0 && remaining <= 0) {
        ended.push_back(sub);
        continue;
      }
      proto::AppendSub(out, sub->subject, sub->queue_group, sub->sid);
      if (max > 0) proto::AppendUnsub(out, sub->sid, remaining);
    }
  });
  for (const auto& sub : ended) subs_.Remove(sub->sid);
  conn->Flush();
  // The flush may have failed; the failover may even have started a new
  // attempt already. Either way this connection is no longer ours.
  if (conn_.get() != conn || !conn_ready_) return;

  const bool reconnect = ever_connected_;
  ever_connected_ = true;
  if (reconnect) reconnects_.fetch_add(1, std::memory_order_relaxed);
  SetState(ConnectionState::kConnected, conn->url().ToString());
  Emit(reconnect ? EventType::kReconnected : EventType::kConnected, conn->url().ToString(), Status());
  HandleServerInfo(conn->info());
  if (conn_.get() == conn && conn_ready_) Pump();
}

void Engine::OnConnectionOp(Connection* conn, const proto::Op& op) {
  switch (op.type) {
    case proto::OpType::kMsg:
    case proto::OpType::kHMsg:
      HandleMsg(op);
      return;
    case proto::OpType::kPong:
      pings_out_ = 0;
      if (!inflight_pongs_.empty()) {
        PongWaiter w = std::move(inflight_pongs_.front());
        inflight_pongs_.pop_front();
        if (w) w->Complete(Status::Ok(), true);
      }
      return;
    case proto::OpType::kInfo:
      HandleServerInfo(conn->info());
      return;
    case proto::OpType::kErr: {
      Status err(StatusCode::kServerError, conn->url().key() + ": -ERR " + std::string(op.arg));
      if (op.arg.find("Permissions Violation") != std::string_view::npos) {
        Emit(EventType::kError, conn->url().ToString(), err);  // the connection stays
        return;
      }
      // Every other -ERR is followed by the server closing the connection.
      Emit(EventType::kError, conn->url().ToString(), err);
      DropConnection(err, false);
      return;
    }
    default:
      return;
  }
}

void Engine::HandleMsg(const proto::Op& op) {
  uint64_t sid = 0;
  if (!ParseSid(op.sid, &sid)) return;
  if (cached_sub_ == nullptr || cached_sid_ != sid || cached_sub_->closed.load(std::memory_order_relaxed)) {
    cached_sub_ = subs_.Find(sid);
    cached_sid_ = sid;
  }
  std::shared_ptr<SubState>& sub = cached_sub_;
  if (sub == nullptr) return;  // unsubscribed meanwhile
  std::string_view headers;
  std::string_view data = op.payload;
  if (op.type == proto::OpType::kHMsg && op.header_size > 0) {
    headers = op.payload.substr(0, static_cast<size_t>(op.header_size));
    data = op.payload.substr(static_cast<size_t>(op.header_size));
  }
  in_msgs_.fetch_add(1, std::memory_order_relaxed);
  in_bytes_.fetch_add(data.size(), std::memory_order_relaxed);

  if (sub->kind == SubState::Kind::kMux) {
    mux_.Deliver(Message(op.subject, op.reply, headers, data));
    return;
  }
  const int64_t delivered = sub->delivered.fetch_add(1, std::memory_order_relaxed) + 1;
  const int64_t max = sub->max_msgs.load(std::memory_order_relaxed);
  if (max > 0 && delivered > max) return;
  std::shared_ptr<SubState> keep = sub;  // the cache may be reset below
  if (max > 0 && delivered == max) {
    subs_.Remove(keep->sid);  // the server dropped it too
    cached_sub_.reset();
  }
  Message msg(op.subject, op.reply, headers, data);
  if (!keep->Admit(static_cast<int64_t>(msg.size()))) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    if (!keep->slow_reported.exchange(true)) {
      Emit(EventType::kSlowConsumer, conn_ ? conn_->url().ToString() : std::string(),
           Status(StatusCode::kBufferFull, "pending limit reached; dropping messages"), keep->subject);
    }
    return;
  }
  if (keep->slow_reported.load(std::memory_order_relaxed)) {
    const int64_t lm = keep->limit_msgs.load(std::memory_order_relaxed);
    if (lm <= 0 || keep->pending_msgs.load(std::memory_order_relaxed) < lm / 2) keep->slow_reported.store(false);
  }
  const bool last = max > 0 && delivered == max;
  if (keep->kind == SubState::Kind::kAsync) {
    batch_.push_back(Dispatcher::Item{std::move(keep), std::move(msg), nullptr});
  } else {
    keep->Push(std::move(msg));
    // Ended: NextMsg returns what is queued, then kClosed.
    if (last) keep->Close(/*discard=*/false);
  }
}

void Engine::OnConnectionReadDone(Connection*) { dispatcher_->PushBatch(&batch_); }

void Engine::OnConnectionWritable(Connection*) { Pump(); }

void Engine::HandleServerInfo(const proto::Info& info) {
  server_max_payload_.store(info.max_payload);
  if (info.connect_urls) UpdateAnnounced(*info.connect_urls);
  if (info.lame_duck && conn_ != nullptr && conn_ready_) {
    Emit(EventType::kLameDuck, conn_->url().ToString(), Status());
    DropConnection(Status(StatusCode::kDisconnected, conn_->url().key() + ": node entered lame duck mode"), true);
  }
}

void Engine::OnConnectionClosed(Connection* conn, const Status& why) {
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

void Engine::DropConnection(Status why, bool lame_duck) {
  if (conn_ == nullptr) return;
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
  dispatcher_->PushBatch(&batch_);
  cached_sub_.reset();
  const auto now = Clock::now();
  if (lame_duck) {
    pool_.Leave(url.key(), now, options_.lame_duck_hold);
  } else if (was_ready) {
    pool_.OnConnectionLost(url.key(), now);
  }
  SetLastError(why);
  SetState(ConnectionState::kReconnecting, {});
  Emit(EventType::kDisconnected, url.ToString(), why);
  TryNext();
}

void Engine::DoClose(Status why) {
  if (io_closed_) return;
  io_closed_ = true;
  if (conn_ != nullptr) {
    if (conn_ready_) {
      // Best effort: what is already encoded goes out if the socket takes it.
      outbox_->TakePending(conn_->wbuf(), &inflight_pongs_);
      conn_->Flush();
    }
    if (conn_ != nullptr) conn_->Close();
  }
  for (auto& w : inflight_pongs_) {
    if (w) w->Complete(why);
  }
  inflight_pongs_.clear();
  if (discovery_ != nullptr) discovery_->Stop();
  if (why.code() != StatusCode::kClosed) SetLastError(why);
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
  }
  state_cv_.notify_all();
  event_base_loopbreak(base_);
}

// ----------------------------------------------------------------------------
// Any thread

void Engine::SetState(ConnectionState state, const std::string& url) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    state_ = state;
    connected_url_ = url;
  }
  state_cv_.notify_all();
}

void Engine::SetLastError(const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = status;
}

void Engine::Emit(EventType type, std::string url, Status status, std::string subject) {
  if (!options_.on_event) return;
  Event e;
  e.type = type;
  e.url = std::move(url);
  e.status = std::move(status);
  e.subject = std::move(subject);
  dispatcher_->PushEvent(std::move(e));
}

ConnectionState Engine::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

std::string Engine::connected_url() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_url_;
}

std::vector<std::string> Engine::known_servers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return known_;
}

Status Engine::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

ClientStats Engine::stats() const {
  ClientStats s;
  s.in_msgs = in_msgs_.load(std::memory_order_relaxed);
  s.in_bytes = in_bytes_.load(std::memory_order_relaxed);
  s.out_msgs = out_msgs_.load(std::memory_order_relaxed);
  s.out_bytes = out_bytes_.load(std::memory_order_relaxed);
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.dropped_msgs = dropped_.load(std::memory_order_relaxed);
  return s;
}

std::string Engine::NewInbox() const { return "_INBOX." + NewNuid(); }

Status Engine::Publish(std::string_view subject, std::string_view reply, std::string_view headers,
                       std::string_view data) {
  if (!proto::IsValidLiteralSubject(subject)) {
    return Status(StatusCode::kInvalidArgument, "invalid publish subject '" + std::string(subject) + "'");
  }
  if (!reply.empty() && !proto::IsValidLiteralSubject(reply)) {
    return Status(StatusCode::kInvalidArgument, "invalid reply subject '" + std::string(reply) + "'");
  }
  const int64_t max = server_max_payload_.load(std::memory_order_relaxed);
  if (max > 0 && static_cast<int64_t>(headers.size() + data.size()) > max) {
    return Status(StatusCode::kMaxPayload, "payload of " + std::to_string(headers.size() + data.size()) +
                                               " bytes exceeds the server's max_payload " + std::to_string(max));
  }
  Status st = outbox_->AppendPub(subject, reply, headers, data);
  if (st.ok()) {
    out_msgs_.fetch_add(1, std::memory_order_relaxed);
    out_bytes_.fetch_add(data.size(), std::memory_order_relaxed);
  }
  return st;
}

Status Engine::Subscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                         std::shared_ptr<SubState>* out) {
  if (!proto::IsValidSubject(subject)) {
    return Status(StatusCode::kInvalidArgument, "invalid subject '" + std::string(subject) + "'");
  }
  if (!queue.empty() && !ValidQueueName(queue)) {
    return Status(StatusCode::kInvalidArgument, "invalid queue group '" + std::string(queue) + "'");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_ || finished_) return Status(StatusCode::kClosed, "client closed");
    if (draining_) return Status(StatusCode::kDraining, "client is draining");
  }
  const auto kind = handler ? SubState::Kind::kAsync : SubState::Kind::kSync;
  if (kind == SubState::Kind::kAsync) dispatcher_->Start();
  auto sub = std::make_shared<SubState>(subs_.NextSid(), std::string(subject), std::string(queue), kind,
                                        std::move(handler), options_.pending_msgs_limit, options_.pending_bytes_limit);
  const bool ok = outbox_->WithLock([&](bool connected, std::string* pending) {
    subs_.Add(sub);
    if (connected) proto::AppendSub(pending, sub->subject, sub->queue_group, sub->sid);
  });
  if (!ok) return Status(StatusCode::kClosed, "client closed");
  *out = std::move(sub);
  return Status::Ok();
}

Status Engine::Unsubscribe(const std::shared_ptr<SubState>& sub) {
  bool removed = false;
  const bool ok = outbox_->WithLock([&](bool connected, std::string* pending) {
    removed = subs_.Remove(sub->sid) != nullptr;
    if (removed && connected) proto::AppendUnsub(pending, sub->sid);
  });
  const bool was_open = !sub->closed.exchange(true);
  sub->Close(true);
  if (!ok) return Status(StatusCode::kClosed, "client closed");
  if (!removed && !was_open) return Status(StatusCode::kClosed, "subscription already ended");
  return Status::Ok();
}

Status Engine::AutoUnsubscribe(const std::shared_ptr<SubState>& sub, int64_t max) {
  if (max <= 0) return Status(StatusCode::kInvalidArgument, "max must be positive");
  if (sub->closed.load()) return Status(StatusCode::kClosed, "subscription ended");
  sub->max_msgs.store(max);
  if (sub->delivered.load() >= max) {
    subs_.Remove(sub->sid);
    return Unsubscribe(sub);
  }
  const bool ok = outbox_->WithLock([&](bool connected, std::string* pending) {
    if (connected && subs_.Find(sub->sid) != nullptr) proto::AppendUnsub(pending, sub->sid, max);
  });
  return ok ? Status::Ok() : Status(StatusCode::kClosed, "client closed");
}

Status Engine::DrainSubscription(const std::shared_ptr<SubState>& sub, Clock::time_point deadline) {
  if (sub->closed.load()) return Status(StatusCode::kClosed, "subscription ended");
  sub->draining.store(true);
  outbox_->WithLock([&](bool connected, std::string* pending) {
    if (connected && subs_.Find(sub->sid) != nullptr) proto::AppendUnsub(pending, sub->sid);
  });
  // After the PONG every MSG the server sent for it before the UNSUB is here.
  Status st = Flush(deadline);
  subs_.Remove(sub->sid);
  // From a callback the dispatcher is busy with us: queued messages still
  // run after we return, but we cannot wait for them here.
  const bool can_wait = !dispatcher_->OnDispatcherThread();
  if (sub->kind == SubState::Kind::kAsync && can_wait && !sub->WaitEmpty(deadline)) {
    st = Status(StatusCode::kTimeout, "drain: callbacks did not finish in time");
  }
  // Sync: what is queued stays readable. Async from a callback: the queued
  // messages must still run, so it is left ending (draining, out of the table).
  if (sub->kind != SubState::Kind::kAsync || can_wait) sub->Close(false);
  return st;
}

Status Engine::Flush(Clock::time_point deadline) {
  if (closed()) return Status(StatusCode::kClosed, "client closed");
  auto waiter = std::make_shared<Completion<bool>>();
  Status st = outbox_->AppendPing(waiter);
  if (!st.ok()) return st;
  if (!waiter->WaitUntil(deadline)) return Status(StatusCode::kTimeout, "flush timed out");
  return waiter->status();
}

Status Engine::EnsureMux() {
  std::lock_guard<std::mutex> lock(mux_mu_);
  if (mux_sub_ != nullptr) return Status::Ok();
  auto sub = std::make_shared<SubState>(subs_.NextSid(), mux_.prefix() + "*", std::string(), SubState::Kind::kMux,
                                        MessageHandler(), 0, 0);
  const bool ok = outbox_->WithLock([&](bool connected, std::string* pending) {
    subs_.Add(sub);
    if (connected) proto::AppendSub(pending, sub->subject, {}, sub->sid);
  });
  if (!ok) return Status(StatusCode::kClosed, "client closed");
  mux_sub_ = std::move(sub);
  return Status::Ok();
}

Status Engine::Request(std::string_view subject, std::string_view headers, std::string_view data,
                       std::chrono::milliseconds timeout, Message* reply) {
  const auto deadline = Clock::now() + timeout;
  if (!proto::IsValidLiteralSubject(subject)) {
    return Status(StatusCode::kInvalidArgument, "invalid request subject '" + std::string(subject) + "'");
  }
  Status st = EnsureMux();
  if (!st.ok()) return st;
  std::string inbox;
  ReplyWaiter waiter = mux_.Register(&inbox);
  st = Publish(subject, inbox, headers, data);
  if (!st.ok()) {
    mux_.Cancel(inbox);
    return st;
  }
  if (!waiter->WaitUntil(deadline)) {
    mux_.Cancel(inbox);
    return Status(StatusCode::kTimeout, "no reply within " + std::to_string(timeout.count()) + " ms");
  }
  if (!waiter->status().ok()) return waiter->status();
  *reply = std::move(waiter->value());
  return Status::Ok();
}

Status Engine::Drain(Clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_ || finished_) return Status(StatusCode::kClosed, "client closed");
    draining_ = true;
  }
  std::vector<std::shared_ptr<SubState>> subs;
  for (auto& sub : subs_.All()) {
    if (sub->kind != SubState::Kind::kMux) subs.push_back(sub);
  }
  outbox_->WithLock([&](bool connected, std::string* pending) {
    for (const auto& sub : subs) {
      sub->draining.store(true);
      if (connected) proto::AppendUnsub(pending, sub->sid);
    }
  });
  // A flush lost to a failover is retried: after a move the subscriptions
  // are gone from the old node anyway.
  Status st;
  do {
    st = Flush(deadline);
  } while (st.code() == StatusCode::kDisconnected && Clock::now() < deadline);
  for (const auto& sub : subs) subs_.Remove(sub->sid);
  const bool can_wait = !dispatcher_->OnDispatcherThread();  // see DrainSubscription
  for (const auto& sub : subs) {
    if (sub->kind == SubState::Kind::kAsync && can_wait && !sub->WaitEmpty(deadline)) {
      st = Status(StatusCode::kTimeout, "drain: callbacks did not finish in time");
    }
    sub->Close(false);
  }
  if (st.ok()) {
    do {
      st = Flush(deadline);  // publishes made by the callbacks
    } while (st.code() == StatusCode::kDisconnected && Clock::now() < deadline);
  }
  Close();
  return st;
}

}  // namespace zmesh::client

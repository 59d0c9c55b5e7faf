#include "client/engine.h"

#include <algorithm>

#include "client/nuid.h"
#include "proto/client_writer.h"
#include "proto/subject.h"

namespace zmesh::client {
namespace {

bool ValidQueueName(std::string_view q) {
  if (q.empty()) return false;
  return std::none_of(q.begin(), q.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

}  // namespace

Engine::Engine(Options options, Hooks hooks)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      outbox_(std::make_shared<Outbox>(
          Outbox::Limits{options_.max_pending_write_bytes, options_.reconnect_buffer_bytes})),
      dispatcher_(std::make_shared<Dispatcher>(options_.on_event)) {}

Engine::~Engine() { Close(); }

// ----------------------------------------------------------------------------
// Start and close

Status Engine::Start() {
  if (options_.servers.empty() && options_.zk_connect.empty()) {
    return Status(StatusCode::kInvalidArgument, "no servers and no ZooKeeper connect string given");
  }
  session_ = std::make_unique<Session>(options_, std::move(hooks_), outbox_, &subs_, &mux_, dispatcher_.get(), &state_);
  Status st = session_->Init();
  if (!st.ok()) return st;
  if (options_.on_event) dispatcher_->Start();

  io_thread_ = std::thread([this, session = session_.get()] {
    session->Run();
    // Also when the session ended itself (gave up reconnecting): from here
    // on every call fails with kClosed. The dispatcher is stopped by Close().
    FinishClose();
  });

  st = state_.WaitForFirstConnection(Clock::now() + options_.initial_connect_timeout,
                                     options_.retry_on_failed_connect);
  if (!st.ok()) Close();
  return st;
}

void Engine::Close() {
  state_.MarkCloseRequested();
  // Concurrent Close calls wait here for the first; none of this waits for
  // the dispatcher, so a Close from a callback cannot deadlock with it.
  std::call_once(close_once_, [this] {
    if (io_thread_.joinable()) {
      Session* session = session_.get();
      outbox_->Post([session] { session->Close(Status(StatusCode::kClosed, "closed by the application")); });
      io_thread_.join();
    }
    session_.reset();  // frees the loop also when Start failed before the thread ran
  });
  FinishClose();
  dispatcher_->Stop();  // joins, or detaches when called from a callback
}

Status Engine::RequestMove(const std::string& url) {
  std::string error;
  auto target = ParseServerUrl(url, &error);
  if (!target) return Status(StatusCode::kInvalidArgument, error);
  if (closed()) return Status(StatusCode::kClosed, "client closed");
  // Runs on the I/O thread, which session_ outlives (reset after the join).
  outbox_->Post([this, target = *target] { session_->RequestMove(target); });
  return Status::Ok();
}

void Engine::FinishClose() {
  if (!state_.Finish()) return;
  for (auto& w : outbox_->Close()) {
    if (w) w->Complete(Status(StatusCode::kClosed, "client closed"));
  }
  for (const auto& sub : subs_.Clear()) sub->Close(true);
  mux_.FailAll(Status(StatusCode::kClosed, "client closed"));
  dispatcher_->Emit(EventType::kClosed, {}, state_.last_error());
}

// ----------------------------------------------------------------------------
// Any thread: operations

std::string Engine::NewInbox() const { return "_INBOX." + NewNuid(); }

Status Engine::Publish(std::string_view subject, std::string_view reply, std::string_view headers,
                       std::string_view data) {
  if (!proto::IsValidLiteralSubject(subject)) {
    return Status(StatusCode::kInvalidArgument, "invalid publish subject '" + std::string(subject) + "'");
  }
  if (!reply.empty() && !proto::IsValidLiteralSubject(reply)) {
    return Status(StatusCode::kInvalidArgument, "invalid reply subject '" + std::string(reply) + "'");
  }
  const int64_t max = state_.server_max_payload.load(std::memory_order_relaxed);
  if (max > 0 && static_cast<int64_t>(headers.size() + data.size()) > max) {
    return Status(StatusCode::kMaxPayload, "payload of " + std::to_string(headers.size() + data.size()) +
                                               " bytes exceeds the server's max_payload " + std::to_string(max));
  }
  Status st = outbox_->AppendPub(subject, reply, headers, data);
  if (st.ok()) {
    state_.out_msgs.fetch_add(1, std::memory_order_relaxed);
    state_.out_bytes.fetch_add(data.size(), std::memory_order_relaxed);
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
  if (Status st = state_.CheckAcceptsSubscriptions(); !st.ok()) return st;
  const auto kind = handler ? SubState::Kind::kAsync : SubState::Kind::kSync;
  if (kind == SubState::Kind::kAsync) dispatcher_->Start();
  auto sub = std::make_shared<SubState>(subs_.NextSid(), std::string(subject), std::string(queue), kind,
                                        std::move(handler), options_.pending_msgs_limit, options_.pending_bytes_limit);
  bool sent = false;
  const bool ok = outbox_->WithLock([&](bool connected, std::string* pending) {
    subs_.Add(sub);
    if (connected) proto::AppendSub(pending, sub->subject, sub->queue_group, sub->sid);
    sent = connected;
  });
  if (!ok) return Status(StatusCode::kClosed, "client closed");
  // Disconnected: the reconnect re-subscribes and confirms before it reports.
  if (sent && options_.subscribe_confirm_timeout.count() > 0) {
    Status st = Flush(Clock::now() + options_.subscribe_confirm_timeout);
    if (st.code() == StatusCode::kTimeout) {
      Unsubscribe(sub);
      return Status(StatusCode::kTimeout, "subscription to '" + sub->subject + "' not confirmed by the mesh within " +
                                              std::to_string(options_.subscribe_confirm_timeout.count()) + " ms");
    }
    // kDisconnected: the connection was lost meanwhile; the next one
    // re-subscribes (and confirms). kClosed: the client is closing.
    if (st.code() == StatusCode::kClosed) return st;
  }
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
  if (Status st = state_.BeginDrain(); !st.ok()) return st;
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

// zmesh::Client and zmesh::Subscription: thin, documented facades over
// client::Engine and client::SubState.

#include <zmesh/client.h>

#include "client/engine.h"

namespace zmesh {
namespace {

using Clock = std::chrono::steady_clock;

Status ClosedStatus() { return Status(StatusCode::kClosed, "client closed"); }

std::string EncodeHeaders(const Headers& headers) {
  if (headers.empty()) return {};
  std::string out = "NATS/1.0\r\n";
  for (const auto& [key, value] : headers) {
    out.append(key).append(": ").append(value).append("\r\n");
  }
  out.append("\r\n");
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Subscription

Subscription::Subscription(std::weak_ptr<client::Engine> engine, std::shared_ptr<client::SubState> state)
    : engine_(std::move(engine)), state_(std::move(state)) {}

Subscription::~Subscription() = default;

const std::string& Subscription::subject() const { return state_->subject; }
const std::string& Subscription::queue() const { return state_->queue_group; }
uint64_t Subscription::sid() const { return state_->sid; }

bool Subscription::valid() const {
  if (state_->closed.load() || state_->draining.load()) return false;
  const int64_t max = state_->max_msgs.load();
  return max <= 0 || state_->delivered.load() < max;
}

Status Subscription::Unsubscribe() {
  auto engine = engine_.lock();
  if (engine == nullptr) return ClosedStatus();
  return engine->Unsubscribe(state_);
}

Status Subscription::AutoUnsubscribe(int64_t max) {
  auto engine = engine_.lock();
  if (engine == nullptr) return ClosedStatus();
  return engine->AutoUnsubscribe(state_, max);
}

Status Subscription::Drain(std::chrono::milliseconds timeout) {
  auto engine = engine_.lock();
  if (engine == nullptr) return ClosedStatus();
  return engine->DrainSubscription(state_, Clock::now() + timeout);
}

Status Subscription::NextMsg(Message* out, std::chrono::milliseconds timeout) {
  if (state_->kind != client::SubState::Kind::kSync) {
    return Status(StatusCode::kInvalidArgument, "NextMsg on an async subscription");
  }
  return state_->Pop(out, Clock::now() + timeout);
}

Status Subscription::SetPendingLimits(int64_t msgs, int64_t bytes) {
  state_->limit_msgs.store(msgs);
  state_->limit_bytes.store(bytes);
  return Status::Ok();
}

int64_t Subscription::pending_msgs() const { return state_->pending_msgs.load(); }
int64_t Subscription::pending_bytes() const { return state_->pending_bytes.load(); }
int64_t Subscription::delivered() const { return state_->delivered.load(); }
int64_t Subscription::dropped() const { return state_->dropped.load(); }

// ---------------------------------------------------------------------------
// Client

Status Client::Connect(Options options, std::unique_ptr<Client>* out) {
  auto engine = std::make_shared<client::Engine>(std::move(options), client::Engine::Hooks{});
  Status st = engine->Start();
  if (!st.ok()) return st;
  out->reset(new Client(std::move(engine)));
  return Status::Ok();
}

Client::Client(std::shared_ptr<client::Engine> engine) : engine_(std::move(engine)) {}

Client::~Client() { engine_->Close(); }

Status Client::Publish(std::string_view subject, std::string_view data) {
  return engine_->Publish(subject, {}, {}, data);
}

Status Client::Publish(std::string_view subject, std::string_view reply, std::string_view data) {
  return engine_->Publish(subject, reply, {}, data);
}

Status Client::Publish(std::string_view subject, std::string_view reply, const Headers& headers,
                       std::string_view data) {
  return engine_->Publish(subject, reply, EncodeHeaders(headers), data);
}

Status Client::DoSubscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                           std::shared_ptr<Subscription>* out) {
  std::shared_ptr<client::SubState> state;
  Status st = engine_->Subscribe(subject, queue, std::move(handler), &state);
  if (!st.ok()) return st;
  out->reset(new Subscription(engine_, std::move(state)));
  return Status::Ok();
}

Status Client::Subscribe(std::string_view subject, MessageHandler handler, std::shared_ptr<Subscription>* out) {
  if (!handler) return Status(StatusCode::kInvalidArgument, "empty handler (use SubscribeSync)");
  return DoSubscribe(subject, {}, std::move(handler), out);
}

Status Client::QueueSubscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                              std::shared_ptr<Subscription>* out) {
  if (!handler) return Status(StatusCode::kInvalidArgument, "empty handler (use QueueSubscribeSync)");
  if (queue.empty()) return Status(StatusCode::kInvalidArgument, "empty queue group");
  return DoSubscribe(subject, queue, std::move(handler), out);
}

Status Client::SubscribeSync(std::string_view subject, std::shared_ptr<Subscription>* out) {
  return DoSubscribe(subject, {}, MessageHandler(), out);
}

Status Client::QueueSubscribeSync(std::string_view subject, std::string_view queue,
                                  std::shared_ptr<Subscription>* out) {
  if (queue.empty()) return Status(StatusCode::kInvalidArgument, "empty queue group");
  return DoSubscribe(subject, queue, MessageHandler(), out);
}

Status Client::Request(std::string_view subject, std::string_view data, std::chrono::milliseconds timeout,
                       Message* reply) {
  return engine_->Request(subject, {}, data, timeout, reply);
}

Status Client::Request(std::string_view subject, const Headers& headers, std::string_view data,
                       std::chrono::milliseconds timeout, Message* reply) {
  return engine_->Request(subject, EncodeHeaders(headers), data, timeout, reply);
}

Status Client::Flush(std::chrono::milliseconds timeout) { return engine_->Flush(Clock::now() + timeout); }

Status Client::Drain(std::chrono::milliseconds timeout) { return engine_->Drain(Clock::now() + timeout); }

void Client::Close() { engine_->Close(); }

ConnectionState Client::state() const { return engine_->state(); }
std::string Client::connected_url() const { return engine_->connected_url(); }
std::vector<std::string> Client::known_servers() const { return engine_->known_servers(); }
Status Client::last_error() const { return engine_->last_error(); }
size_t Client::buffered_bytes() const { return engine_->buffered_bytes(); }
ClientStats Client::stats() const { return engine_->stats(); }
std::string Client::NewInbox() const { return engine_->NewInbox(); }

}  // namespace zmesh

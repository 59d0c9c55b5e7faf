#include "server/client_connection.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>

#include "auth/authenticator.h"
#include "auth/users_file.h"
#include "auth/permissions.h"
#include "proto/connect.h"
#include "proto/msg_framing.h"
#include "proto/peer_protocol.h"
#include "proto/subject.h"
#include "server/interest_observer.h"
#include "server/move_coordinator.h"
#include "server/io_worker.h"
#include "server/server_context.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

constexpr std::string_view kPong = "PONG\r\n";
constexpr std::string_view kPing = "PING\r\n";
constexpr std::string_view kOk = "+OK\r\n";

}  // namespace

ClientConnection::ClientConnection(ServerContext* ctx, InterestObserver* interest, MoveCoordinator* moves,
                                   IoWorker* worker, int fd, uint64_t id, std::string remote_ip, int remote_port)
    : Connection(Kind::kClient, worker, fd, id, remote_ip + ":" + std::to_string(remote_port),
                 ctx->options.max_pending_bytes),
      ctx_(ctx),
      interest_(interest),
      moves_(moves),
      remote_ip_(std::move(remote_ip)),
      remote_port_(remote_port),
      parser_(proto::Parser::Role::kServer,
              proto::Parser::Limits{ctx->options.max_control_line, ctx->options.max_payload}),
      auth_required_(ctx->authenticator != nullptr) {
  BindDelivery(this);
  out().set_budget(&ctx->client_pending);
  write_deadline_ms_ = ctx->options.write_deadline_ms;
  handshake_timeout_ms_ = ctx->options.auth_timeout_ms;
  parser_.set_headers_allowed(false);  // until CONNECT asks for headers
  if (ctx->tls) EnableTls(ctx->tls->client_port(), /*server_side=*/true, "");
}

ClientConnection::~ClientConnection() = default;

void ClientConnection::OnStart() {
  loop()->AssertInLoopThread();
  last_ping_ms_ = created_ms();
  if (tls()) {
    WriteClearNow(ctx_->info.ForClient(id(), remote_ip_));  // then the client starts TLS
  } else {
    SendControl(ctx_->info.ForClient(id(), remote_ip_));
  }
}

void ClientConnection::SendInfo(std::string_view info_line) {
  loop()->AssertInLoopThread();
  // nats-server sends INFO updates only to clients that said they take them.
  if (connect_received_ && protocol_ >= 1 && !auth_pending_) SendControl(info_line);
}

void ClientConnection::SendErr(std::string_view text) { SendControl({"-ERR '", text, "'\r\n"}); }

void ClientConnection::SendOk() { SendControl(kOk); }

void ClientConnection::ErrAndClose(std::string_view text, CloseReason reason) {
  SendErr(text);
  Close(reason, /*flush=*/true);
}

void ClientConnection::OnInput(std::string_view data) {
  loop()->AssertInLoopThread();
  if (auth_pending_) {  // reading is paused; keep whatever was already read
    paused_input_.append(data);
    return;
  }
  if (paused_input_.empty()) {
    ProcessInput(data);
    return;
  }
  // Reading resumed before the input held back by a stall was processed.
  paused_input_.append(data);
  std::string input;
  input.swap(paused_input_);
  ProcessInput(input);
}

void ClientConnection::ProcessInput(std::string_view input) {
  Process(input);
  if (pushback_) {
    RefPtr<Connection> consumer = std::move(pushback_);
    pushback_ = RefPtr<Connection>();
    worker()->StallProducer(this, consumer.get());
  }
}

void ClientConnection::ResumeAfterStall() {
  ResumeReading(kPauseBackpressure);
  if (closing() || paused_input_.empty()) return;
  // On a turn of its own: the caller may be walking the worker's stalls.
  RefPtr<ClientConnection> self(this);
  loop()->QueueInLoop([self] {
    ClientConnection* c = self.get();
    if (c->closing() || c->reading_paused() || c->paused_input_.empty()) return;
    std::string input;
    input.swap(c->paused_input_);
    c->ProcessInput(input);
  });
}

void ClientConnection::Process(std::string_view in) {
  while (!in.empty() && !closing()) {
    // Until an authenticated CONNECT, the first byte of every operation must
    // start CONNECT (nats-server checks exactly this, before parsing the op).
    if (awaiting_auth() && parser_.AtOpStart() && in.front() != 'C' && in.front() != 'c') {
      ErrAndClose("Authorization Violation", CloseReason::kAuthenticationViolation);
      return;
    }
    proto::Op op;
    const proto::ParseStatus st = parser_.Next(&in, &op);
    if (st == proto::ParseStatus::kNeedMore) return;
    if (st == proto::ParseStatus::kError) {
      HandleParseError();
      return;
    }
    HandleOp(op);
    if (auth_pending_ && !closing()) {
      // The rest waits for the verdict on the credentials.
      paused_input_.assign(in.data(), in.size());
      PauseReading(kPauseAuth);
      return;
    }
    if (pushback_ && !closing()) {
      // The rest waits until the consumer has drained (ResumeAfterStall).
      paused_input_.assign(in.data(), in.size());
      return;
    }
  }
}

void ClientConnection::HandleParseError() {
  switch (parser_.error()) {
    case proto::ParseError::kUnknownOp:
      VLOG(1) << "cid=" << id() << " unknown protocol operation: '" << parser_.error_context() << "'";
      ErrAndClose("Unknown Protocol Operation", CloseReason::kProtocolViolation);
      return;
    case proto::ParseError::kMaxControlLine:
      ErrAndClose("maximum control line exceeded", CloseReason::kMaxControlLineExceeded);
      return;
    case proto::ParseError::kMaxPayload:
      ErrAndClose("Maximum Payload Violation", CloseReason::kMaxPayloadExceeded);
      return;
    case proto::ParseError::kBadArguments:
    case proto::ParseError::kHeadersNotSupported:
    case proto::ParseError::kNone:
      // nats-server closes these without a word.
      VLOG(1) << "cid=" << id() << " malformed arguments: '" << parser_.error_context() << "'";
      Close(CloseReason::kProtocolViolation, /*flush=*/true);
      return;
  }
}

void ClientConnection::HandleOp(const proto::Op& op) {
  if (moving_out_ && op.type != proto::OpType::kPing && op.type != proto::OpType::kPong) {
    // Anything after MOVE would come after our cut (docs/design-lossless-moves.md).
    ErrAndClose("Operation After Move", CloseReason::kProtocolViolation);
    return;
  }
  switch (op.type) {
    case proto::OpType::kPub:
    case proto::OpType::kHPub:
      HandlePub(op);
      return;
    case proto::OpType::kSub:
      HandleSub(op);
      return;
    case proto::OpType::kUnsub:
      HandleUnsub(op);
      return;
    case proto::OpType::kPing:
      HandlePing();
      return;
    case proto::OpType::kPong:
      pings_out_ = 0;
      return;
    case proto::OpType::kConnect:
      HandleConnect(op.arg);
      return;
    case proto::OpType::kErr:
      // A client reporting an error: nats-server logs it and closes.
      LOG(WARNING) << "cid=" << id() << " client error: " << op.arg;
      Close(CloseReason::kParseError, /*flush=*/true);
      return;
    case proto::OpType::kMove:
      HandleMove(op);
      return;
    case proto::OpType::kInfo:
    case proto::OpType::kOk:
    case proto::OpType::kMsg:
    case proto::OpType::kHMsg:
    case proto::OpType::kMoved:
      return;  // ignored from clients, as nats-server does
  }
}

void ClientConnection::HandlePub(const proto::Op& op) {
  CountIn(op.payload.size());
  WorkerStats& stats = worker()->stats();
  stats.Add(stats.in_msgs, 1);
  stats.Add(stats.in_bytes, op.payload.size());
  if (pedantic_ && !proto::IsValidLiteralSubject(op.subject)) SendErr("Invalid Publish Subject");
  // Beyond the name bounds nothing is delivered: no node would accept it
  // from a peer, and none must hold such a subject (the connection stays).
  if (proto::BoundViolation v = proto::CheckPublish(op.subject, op.reply, ctx_->options.name_bounds);
      v != proto::BoundViolation::kNone) {
    SendErr(proto::ViolationText(v, ctx_->options.name_bounds, /*publish=*/true));
    return;
  }
  if (permissions_ && !permissions_->unrestricted() && !permissions_->CanPublish(op.subject)) {
    SendErr(auth::PublishViolationText(op.subject));
    return;
  }
  if (verbose_) SendOk();
  Message msg{op.subject, op.reply, op.payload, op.header_size, /*origin=*/{}};
  bool delivered;
  {
    // One message is wholly before or wholly after a planned move's cut.
    std::lock_guard<std::mutex> gate(ctx_->forward_gate.Shared(worker()->index()));
    delivered = ctx_->router.PublishFromClient(worker(), this, echo_, msg);
  }
  if (!delivered && no_responders_ && !msg.reply.empty()) SendNoResponders(msg.reply);
}

void ClientConnection::HandleSub(const proto::Op& op) {
  if (permissions_ && !permissions_->unrestricted() && !permissions_->CanSubscribe(op.subject)) {
    SendErr(auth::SubscribeViolationText(op.subject, op.queue));
    return;
  }
  // As nats-server: the error, and the connection stays open.
  if (ctx_->options.max_subs > 0 && subs_.size() >= static_cast<size_t>(ctx_->options.max_subs)) {
    SendErr("maximum subscriptions exceeded");
    return;
  }
  if (ctx_->subscription_count.load(std::memory_order_relaxed) >= ctx_->options.max_subs_total) {
    LOG_EVERY_N(WARNING, 1000) << "cid=" << id() << ": the node holds --max_subs_total="
                               << ctx_->options.max_subs_total << " subscriptions; SUB refused";
    SendErr("maximum subscriptions exceeded");
    return;
  }
  if (subs_.contains(op.sid)) {  // nats-server ignores a repeated sid
    if (verbose_) SendOk();
    return;
  }
  // What cannot be announced to peers intact is refused here, so that no
  // subscription can make a peer frame its receiver refuses.
  if (!proto::peer::IsAnnounceable(op.subject, op.queue)) {
    SendErr("Invalid Subject");
    return;
  }
  if (proto::BoundViolation v = proto::CheckSubscription(op.subject, op.queue, ctx_->options.name_bounds);
      v != proto::BoundViolation::kNone) {
    SendErr(proto::ViolationText(v, ctx_->options.name_bounds, /*publish=*/false));
    return;
  }
  auto* sub = new Subscription(this, std::string(op.subject), std::string(op.queue), std::string(op.sid),
                               /*remote=*/false);
  // The new end's queue member of a move: latent before anyone can pick it.
  const uint64_t move_token = QueueMoveToken(*sub, /*subscribing=*/true);
  if (move_token != 0) sub->set_move_state(Subscription::MoveState::kLatent);
  if (!ctx_->index.Insert(sub)) {
    sub->Unref();
    SendErr("Invalid Subject");
    return;
  }
  ctx_->subscription_count.fetch_add(1, std::memory_order_relaxed);
  subs_.emplace(sub->sid(), sub);
  if (move_token != 0) moves_->QueueMemberLatent(move_token, sub);
  if (interest_ != nullptr) interest_seq_ = std::max(interest_seq_, interest_->OnLocalSubscribe(*sub, move_token));
  if (verbose_) SendOk();
}

void ClientConnection::HandleUnsub(const proto::Op& op) {
  auto it = subs_.find(op.sid);
  if (it != subs_.end()) {
    Subscription* sub = it->second;
    const int64_t max = op.max_msgs;
    if (max > 0 && static_cast<uint64_t>(max) > sub->delivered()) {
      sub->set_max_msgs(static_cast<uint64_t>(max));
    } else {
      RemoveSubscription(sub);
    }
  }
  if (verbose_) SendOk();
}

void ClientConnection::RemoveSubscription(Subscription* sub) {
  subs_.erase(sub->sid());
  Withdraw(sub);
}

void ClientConnection::Withdraw(Subscription* sub) {
  ctx_->subscription_count.fetch_sub(1, std::memory_order_relaxed);
  sub->set_closed();  // deliveries already matched skip it
  ctx_->index.Remove(sub);
  if (interest_ != nullptr && !interest_withdrawn_) {
    const uint64_t move_token = QueueMoveToken(*sub, /*subscribing=*/false);
    if (move_token != 0) moves_->QueueMemberReleased(move_token, sub);
    interest_seq_ = std::max(interest_seq_, interest_->OnLocalUnsubscribe(*sub, move_token));
  }
  sub->Unref();
}

void ClientConnection::HandlePing() {
  const uint64_t seq = interest_seq_;
  interest_seq_ = 0;
  // Nothing changed since the last PONG and nothing waits: answer at once,
  // so keepalives and publish flushes cost nothing.
  if (held_pongs_.empty() && (seq == 0 || interest_ == nullptr)) {
    SendControl(kPong);
    return;
  }
  if (held_pongs_.size() >= 2) {
    HeldPongs& tail = held_pongs_.back();
    tail.seq = std::max(tail.seq, seq);
    ++tail.count;
  } else {
    held_pongs_.push_back({seq, 1});
  }
  ReleasePongs();
}

void ClientConnection::ReleasePongs() {
  loop()->AssertInLoopThread();
  while (!held_pongs_.empty() && !awaiting_peers_ && !closing()) {
    const HeldPongs front = held_pongs_.front();
    if (front.seq != 0 && interest_ != nullptr) {
      RefPtr<ClientConnection> self(this);
      awaiting_peers_ = true;
      const bool done = interest_->AwaitPeers(front.seq, [self] {
        self->loop()->QueueInLoop([self] {
          self->awaiting_peers_ = false;
          if (!self->held_pongs_.empty()) {
            for (uint64_t i = self->held_pongs_.front().count; i > 0; --i) self->SendControl(kPong);
            self->held_pongs_.pop_front();
          }
          self->ReleasePongs();
        });
      });
      if (!done) return;  // counted by the barrier
      awaiting_peers_ = false;
    }
    held_pongs_.pop_front();
    for (uint64_t i = front.count; i > 0; --i) SendControl(kPong);
  }
}

void ClientConnection::OnTick(int64_t now) {
  loop()->AssertInLoopThread();
  Connection::OnTick(now);
  if (closing()) return;
  if (awaiting_auth() && now - created_ms() >= ctx_->options.auth_timeout_ms) {
    ErrAndClose("Authentication Timeout", CloseReason::kAuthenticationTimeout);
    return;
  }
  if (movable_) MaybeAskToMove(now);
  // While we are not reading this client (backpressure, a password being
  // checked) its PONGs wait unread: it is not stale, we are not looking.
  if (reading_paused()) return;
  const int64_t interval = ctx_->options.ping_interval_ms;
  // Like nats-server, a PING is sent only when the client has been quiet for
  // a whole interval; PONG (any input, in fact) resets the clock.
  if (now - last_read_ms() >= interval && now - last_ping_ms_ >= interval) {
    if (pings_out_ + 1 > ctx_->options.max_pings_out) {
      ErrAndClose("Stale Connection", CloseReason::kStaleConnection);
      return;
    }
    ++pings_out_;
    last_ping_ms_ = now;
    SendControl(kPing);
  }
}

void ClientConnection::OnClose(CloseReason reason) {
  loop()->AssertInLoopThread();
  ForgetMoves();
  for (auto& [sid, sub] : subs_) Withdraw(sub);
  const size_t subs = subs_.size();
  subs_.clear();
  ctx_->client_count.fetch_sub(1, std::memory_order_relaxed);
  ClosedConnection closed;
  closed.cid = id();
  closed.ip = remote_ip_;
  closed.port = remote_port_;
  closed.start_unix_ms = created_unix_ms();
  closed.stop_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  closed.reason = std::string(CloseReasonText(reason));
  closed.name = name_;
  closed.lang = lang_;
  closed.version = version_;
  closed.user = user_;
  closed.in_msgs = in_msgs();
  closed.in_bytes = in_bytes();
  closed.out_msgs = out().out_msgs();
  closed.out_bytes = out().out_bytes();
  closed.subscriptions = subs;
  ctx_->closed.Add(std::move(closed));
  LOG(INFO) << "node " << ctx_->node_id << ": cid=" << id() << " " << remote_address()
            << (user_.empty() ? "" : " user=" + user_)
            << (name_.empty() ? "" : " name=" + name_) << " closed: " << CloseReasonText(reason) << " (subs=" << subs
            << " in_msgs=" << in_msgs() << " out_msgs=" << out().out_msgs() << ")";
}

}  // namespace zmesh::server

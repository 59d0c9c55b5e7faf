#include "client/move.h"

#include <cstdio>
#include <random>

namespace zmesh::client {
namespace {

// What a kept message costs besides its strings (bookkeeping, allocations).
constexpr size_t kKeptOverhead = 64;

bool IsPermissionsError(std::string_view text) {
  return text.find("Permissions Violation") != std::string_view::npos;
}

}  // namespace

Move::Move(event_base* base, const ThreadOwner* io_thread, Host* host, Reason reason, ServerUrl target,
           ConnectionOptions options, Limits limits)
    : base_(base),
      io_thread_(io_thread),
      host_(host),
      reason_(reason),
      target_(std::move(target)),
      token_(options.connect.move_token.value_or("")),
      limits_(limits) {
  conn_ = std::make_unique<Connection>(base_, target_, std::move(options), this);
}

Move::~Move() {
  Stop();
  if (deadline_ev_ != nullptr) event_free(deadline_ev_);
}

std::string Move::NewToken() {
  std::random_device rd;
  const uint64_t bits = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(bits));
  return hex;
}

void Move::Start() {
  io_thread_->Check();
  deadline_ev_ = evtimer_new(base_, &Move::OnDeadlineEvent, this);
  const auto ms = limits_.timeout.count();
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  evtimer_add(deadline_ev_, &tv);
  conn_->Start();  // a failure at once is reported through OnConnectionClosed
}

void Move::Confirming(size_t covered) {
  io_thread_->Check();
  covered_ = covered;
  phase_ = Phase::kConfirming;
}

void Move::CutSent() {
  io_thread_->Check();
  phase_ = Phase::kCutSent;
}

void Move::Replay(const std::function<void(const proto::Op&)>& deliver) {
  io_thread_->Check();
  for (const Kept& k : kept_) {
    proto::Op op;
    op.type = k.type;
    op.subject = k.subject;
    op.reply = k.reply;
    op.sid = k.sid;
    op.payload = k.payload;
    op.header_size = k.header_size;
    deliver(op);
  }
  std::vector<Kept>().swap(kept_);
  kept_bytes_ = 0;
}

std::unique_ptr<Connection> Move::TakeConnection(Connection::Delegate* next) {
  io_thread_->Check();
  std::unique_ptr<Connection> conn = std::move(conn_);
  if (conn != nullptr) conn->set_delegate(next);
  Stop();
  return conn;
}

void Move::Stop() {
  stopped_ = true;
  if (deadline_ev_ != nullptr) evtimer_del(deadline_ev_);
  if (conn_ != nullptr) conn_->Close();
}

void Move::OnDeadlineEvent(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Move*>(arg);
  self->io_thread_->Check();
  if (self->stopped_) return;
  self->host_->OnMoveFailed(self, Failure::kDeadline,
                            Status(StatusCode::kTimeout, "move to " + self->target_.key() + " not finished within " +
                                                             std::to_string(self->limits_.timeout.count()) + " ms"));
}

void Move::Keep(const proto::Op& op) {
  Kept k{op.type,           std::string(op.subject), std::string(op.reply), std::string(op.sid),
         std::string(op.payload), op.header_size};
  kept_bytes_ += k.subject.size() + k.reply.size() + k.sid.size() + k.payload.size() + kKeptOverhead;
  kept_.push_back(std::move(k));
  if (kept_bytes_ > limits_.max_buffered_bytes && !overflow_reported_) {
    overflow_reported_ = true;
    host_->OnMoveFailed(this, Failure::kBufferFull,
                        Status(StatusCode::kBufferFull, "move to " + target_.key() + ": more than " +
                                                            std::to_string(limits_.max_buffered_bytes) +
                                                            " bytes delivered before the switch"));
  }
}

void Move::Lose(Status why, bool target_at_fault) {
  if (lost_ || stopped_) return;
  lost_ = true;
  target_at_fault_ = target_at_fault;
  lost_why_ = why;
  if (conn_ != nullptr) conn_->Close();
  host_->OnMoveFailed(this, Failure::kLost, why);
}

void Move::OnConnectionReady(Connection* conn) {
  io_thread_->Check();
  if (stopped_) return;
  accepted_ = true;
  // A node that does not take part in moves ignores the token and would
  // deliver everything at once: duplicates of what the old node delivers.
  if (!conn->info().move) {
    Lose(Status(StatusCode::kConnectFailed, target_.key() + ": new node does not take part in moves"),
         /*target_at_fault=*/false);
    return;
  }
  host_->OnMoveConnected(this);
}

void Move::OnConnectionOp(Connection* conn, const proto::Op& op) {
  io_thread_->Check();
  if (stopped_) return;
  switch (op.type) {
    case proto::OpType::kMsg:
    case proto::OpType::kHMsg:
      Keep(op);
      return;
    case proto::OpType::kPong:
      // The only PING on this connection before the switch is the one after
      // the re-subscription.
      if (phase_ == Phase::kConfirming && !confirmed_) {
        confirmed_ = true;
        host_->OnMoveConfirmed(this);
      }
      return;
    case proto::OpType::kInfo:
      // A node that is leaving is no place to move to. After the cut the
      // switch goes ahead; the Session then handles the INFO as its own.
      if (conn->info().lame_duck && phase_ != Phase::kCutSent) {
        Lose(Status(StatusCode::kDisconnected, target_.key() + ": new node entered lame duck mode during the move"));
      }
      return;
    case proto::OpType::kErr:
      // A refused SUB keeps the connection, as on any connection; any other
      // -ERR is followed by the server closing it.
      if (IsPermissionsError(op.arg)) return;
      Lose(Status(StatusCode::kServerError, target_.key() + ": -ERR " + std::string(op.arg)));
      return;
    default:
      return;
  }
}

void Move::OnConnectionReadDone(Connection*) { io_thread_->Check(); }

void Move::OnConnectionWritable(Connection*) { io_thread_->Check(); }

void Move::OnConnectionClosed(Connection*, const Status& why) {
  io_thread_->Check();
  Lose(why);
}

}  // namespace zmesh::client

// The Session's side of planned, lossless moves (client/move.h,
// docs/design-lossless-moves.md): starting one, the Move's reports, MOVED,
// the switch, and every way a move ends. I/O thread only, like the rest of
// the Session.

#include "client/client_state.h"
#include "client/frame_scanner.h"
#include "client/session.h"
#include "client/subscription_table.h"
#include "proto/client_writer.h"

namespace zmesh::client {

bool Session::CanMove() const {
  AssertInIoThread();
  return options_.lossless_moves && !io_closed_ && conn_ != nullptr && conn_ready_ && move_ == nullptr &&
         conn_->info().move;
}

bool Session::RequestMove(const ServerUrl& target) {
  AssertInIoThread();
  if (!CanMove() || target.key() == conn_->url().key()) return false;
  StartMove(target, Move::Reason::kRequested);
  return true;
}

bool Session::StartLameDuckMove() {
  AssertInIoThread();
  if (!CanMove()) return false;
  // The node is leaving either way; failover's choice, without it. That
  // node may be held out (in a rolling restart every other node has just
  // left, and a static or unchanged list never says it came back): it is
  // tried anyway, since a planned move that finds it still gone costs one
  // refused connection while this node still serves us, where dropping
  // first would wait out the hold disconnected.
  const auto now = Clock::now();
  pool_.Leave(conn_->url().key(), now, options_.lame_duck_hold);
  auto pick = pool_.Next(now);
  if (!pick || pick->server.key() == conn_->url().key()) return false;
  StartMove(pick->server, Move::Reason::kLameDuck);
  return true;
}

void Session::StartMove(const ServerUrl& target, Move::Reason reason) {
  AssertInIoThread();
  ConnectionOptions options = conn_options_;
  options.connect.move_token = Move::NewToken();
  Move::Limits limits;
  limits.timeout = options_.move_timeout;
  limits.max_buffered_bytes = options_.move_buffer_bytes;
  // From here Pump() leaves the Outbox alone: the old connection gets
  // nothing more from the application.
  move_ = std::make_unique<Move>(base_, &owner_, static_cast<Move::Host*>(this), reason, target,
                                 std::move(options), limits);
  move_->Start();  // a failure at once abandons the move before this returns
}

void Session::OnMoveConnected(Move* move) {
  AssertInIoThread();
  pool_.OnConnected(move->target().key(), Clock::now());
  Connection* conn = move->conn();
  std::vector<std::shared_ptr<SubState>> ended;
  // The same re-subscription as after a failover, then a PING: its PONG
  // comes once every node has the new node's interest. What the
  // application queued before this snapshot is covered by it.
  const size_t covered = outbox_->SnapshotSubscriptions([&] {
    AppendResubscription(conn->wbuf(), &ended);
    proto::AppendPing(conn->wbuf());
  });
  for (const auto& sub : ended) subs_->Remove(sub->sid);
  move->Confirming(covered);
  conn->Flush();  // a failure reports kLost
}

void Session::OnMoveConfirmed(Move* move) {
  AssertInIoThread();
  // The cut: MOVE after whatever the old connection still has to write,
  // and nothing after it, not even a PONG.
  move->CutSent();
  std::string* out = conn_->wbuf();
  out->append("MOVE ").append(move->token()).append("\r\n");
  conn_->Seal();
  conn_->Flush();  // a failure ends the old connection: DropConnection switches
}

void Session::OnMoveFailed(Move* move, Move::Failure failure, const Status& why) {
  AssertInIoThread();
  if (!move->cut_sent()) {
    // Nothing was asked of the old node: stay on it, as if the move had
    // never begun, or leave it the old way when it is leaving.
    const std::string target = move->target().key();
    const bool lame_duck = AbandonMove(/*replay=*/false) == Move::Reason::kLameDuck;
    if (lame_duck) {
      DropConnection(Status(StatusCode::kDisconnected, conn_->url().key() + ": node entered lame duck mode (move to " +
                                                           target + " abandoned: " + why.message() + ")"),
                     true);
    } else {
      Pump();
    }
    return;
  }
  // The new node is gone after the cut: the old one still delivers what it
  // owes; then (MOVED, its end or the deadline) the session fails over.
  if (failure == Move::Failure::kLost) return;
  if (move->lost()) {
    const Status lost = move->lost_why();
    const bool lame_duck = AbandonMove(/*replay=*/true) == Move::Reason::kLameDuck;
    DropConnection(lost, lame_duck);
    return;
  }
  SwitchToNew(why);  // deadline or buffer bound: whatever the old node still owed is lost
}

void Session::HandleMoved(std::string_view token) {
  AssertInIoThread();
  // Not ours (no move, or another token): ignored; the server closes the
  // connection next, which is an ordinary loss.
  if (move_ == nullptr || !move_->cut_sent() || token != move_->token()) return;
  if (move_->lost()) {
    const Status lost = move_->lost_why();
    const bool lame_duck = AbandonMove(/*replay=*/true) == Move::Reason::kLameDuck;
    DropConnection(lost, lame_duck);
    return;
  }
  SwitchToNew(Status::Ok());
}

bool Session::EndMoveOnOldLoss(const Status& why, bool* lame_duck) {
  AssertInIoThread();
  if (move_->cut_sent() && !move_->lost()) {
    SwitchToNew(why);
    return true;
  }
  // The old node's stream is over, so what the new node delivered (never
  // what the old one would: the server's contract) follows it in order
  // instead of being lost; then today's failover.
  if (AbandonMove(/*replay=*/true) == Move::Reason::kLameDuck) *lame_duck = true;
  return false;
}

Move::Reason Session::AbandonMove(bool replay) {
  AssertInIoThread();
  std::unique_ptr<Move> move = std::move(move_);
  const std::string key = move->target().key();
  const auto now = Clock::now();
  if (move->lost() && move->target_at_fault()) {
    if (move->accepted()) {
      pool_.OnConnectionLost(key, now);
    } else {
      pool_.OnAttemptFailed(key, now);
    }
  } else if (move->accepted()) {
    pool_.OnDisconnected(key);
  }
  if (replay) {
    const ServerUrl url = move->target();
    move->Replay([&](const proto::Op& op) { inbound_.Deliver(op, url); });
    inbound_.Flush();
  }
  state_->moves_abandoned.fetch_add(1, std::memory_order_relaxed);
  const Move::Reason reason = move->reason();
  RetireMove(std::move(move));
  return reason;
}

void Session::SwitchToNew(const Status& why) {
  AssertInIoThread();
  const bool planned = why.ok();
  std::unique_ptr<Move> move = std::move(move_);
  std::unique_ptr<Connection> old = std::move(conn_);
  const ServerUrl old_url = old->url();
  const ServerUrl url = move->target();
  const auto now = Clock::now();

  // After MOVED the old node has read everything up to MOVE; otherwise the
  // publishes it never got go first on the new connection.
  std::string salvaged;
  if (!planned) KeepFrames(*old->wbuf(), old->write_offset(), kFramePub, &salvaged);
  old->Close();
  Retire(std::move(old));
  if (move->reason() != Move::Reason::kLameDuck) {  // a leaving node was held out already
    if (planned) {
      pool_.OnDisconnected(old_url.key());
    } else {
      pool_.OnConnectionLost(old_url.key(), now);
    }
  }
  // The old node answers its PINGs before MOVED; any left were lost with it.
  for (auto& w : inflight_pongs_) {
    if (w) w->Complete(Status(StatusCode::kDisconnected, old_url.key() + ": connection ended by a move"));
  }
  inflight_pongs_.clear();
  resubscribed_ = nullptr;

  // Everything the old node delivered is handed over; now what the new
  // node delivered meanwhile, in arrival order.
  move->Replay([&](const proto::Op& op) { inbound_.Deliver(op, url); });
  inbound_.Reset();

  conn_ = move->TakeConnection(this);
  conn_ready_ = true;
  failed_attempts_ = 0;
  pings_out_ = 0;
  last_ping_ = now;
  outbox_->ResumeAfterMove(move->covered(), salvaged);
  state_->server_max_payload.store(conn_->info().max_payload);
  state_->SetState(ConnectionState::kConnected, url.ToString());
  if (planned) {
    state_->moves.fetch_add(1, std::memory_order_relaxed);
    dispatcher_->Emit(EventType::kMoved, url.ToString(), Status());
  } else {
    // As an unplanned failover reports it.
    state_->moves_abandoned.fetch_add(1, std::memory_order_relaxed);
    state_->reconnects.fetch_add(1, std::memory_order_relaxed);
    state_->SetLastError(why);
    dispatcher_->Emit(EventType::kDisconnected, old_url.ToString(), why);
    dispatcher_->Emit(EventType::kReconnected, url.ToString(), Status());
    reported_connected_ = true;
  }
  RetireMove(std::move(move));
  // The new node's INFO as the session's own (connect_urls; lame duck
  // starts the next move). Then what the application queued meanwhile.
  HandleServerInfo(conn_->info());
  if (conn_ != nullptr && conn_ready_) Pump();
}

void Session::RetireMove(std::unique_ptr<Move> move) {
  AssertInIoThread();
  move->Stop();
  retired_moves_.push_back(std::move(move));
  event_active(reap_ev_, 0, 0);
}

}  // namespace zmesh::client

// ClientConnection's part in planned moves (docs/design-lossless-moves.md):
// the new end filters what nodes published before their cut, the old end
// what they published after it, and the old end writes MOVED once it has
// delivered all it owes. The mesh side (cuts, marks) is MoveCoordinator.
#include <charconv>

#include <glog/logging.h>
#include <nlohmann/json.hpp>

#include "server/client_connection.h"
#include "server/event_loop.h"
#include "server/forward_gate.h"
#include "server/interest_observer.h"
#include "server/io_worker.h"
#include "server/message.h"
#include "server/move_coordinator.h"
#include "server/server_context.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

// 1 to 16 hex digits (the client sends 16: 64 random bits).
bool ParseMoveToken(std::string_view text, uint64_t* token) {
  if (text.empty() || text.size() > 16) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *token, 16);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

void ClientConnection::InstallMoveFilter(std::shared_ptr<MoveFilter> filter) {
  if (move_) {
    // A move out right after a move in: the earlier move stops filtering.
    move_->Finish();
    moves_->Forget(move_.get());
    retired_moves_.push_back(move_);
  }
  move_ = std::move(filter);
  move_view_.store(move_.get(), std::memory_order_release);
}

bool ClientConnection::BeginMoveIn(std::string_view token_text) {
  loop()->AssertInLoopThread();
  uint64_t token = 0;
  if (!ParseMoveToken(token_text, &token)) {
    ErrAndClose("Invalid Move Token", CloseReason::kProtocolViolation);
    return false;
  }
  if (moves_ == nullptr || move_) return true;  // standalone, or a repeated CONNECT: nothing to cut
  auto filter = std::make_shared<MoveFilter>(MoveFilter::Side::kIncoming, token, MonotonicMs());
  InstallMoveFilter(filter);
  moves_->MoveIn(std::move(filter));
  ctx_->moves.in.fetch_add(1, std::memory_order_relaxed);
  VLOG(1) << "cid=" << id() << " is the new end of move " << std::hex << token;
  return true;
}

void ClientConnection::HandleMove(const proto::Op& op) {
  loop()->AssertInLoopThread();
  if (moves_ == nullptr) {  // standalone: nowhere to move, as nats-server sees it
    ErrAndClose("Unknown Protocol Operation", CloseReason::kProtocolViolation);
    return;
  }
  uint64_t token = 0;
  if (!ParseMoveToken(op.arg, &token)) {
    ErrAndClose("Invalid Move Token", CloseReason::kProtocolViolation);
    return;
  }
  moving_out_ = true;
  move_token_text_ = std::string(op.arg);
  auto filter = std::make_shared<MoveFilter>(MoveFilter::Side::kOutgoing, token, MonotonicMs());
  InstallMoveFilter(filter);
  LOG(INFO) << "node " << ctx_->node_id << ": cid=" << id() << " moves (token " << move_token_text_ << ", "
            << subs_.size() << " subscriptions)";
  RefPtr<ClientConnection> self(this);
  moves_->MoveOut(std::move(filter), [self] { self->loop()->QueueInLoop([self] { self->FinishMoveOut(); }); });
}

void ClientConnection::FinishMoveOut() {
  loop()->AssertInLoopThread();
  if (closing() || !moving_out_ || interest_withdrawn_) return;
  // Withdraw our interest but keep the subscriptions until every peer has
  // applied that: a queue message a peer chose us for before it did is on
  // its way and must still be delivered here.
  uint64_t seq = 0;
  if (interest_ != nullptr) {
    for (auto& [sid, sub] : subs_) {
      // Our queue member takes no new picks here; the new end's does.
      const uint64_t move_token = QueueMoveToken(*sub, /*subscribing=*/false);
      if (move_token != 0) moves_->QueueMemberReleased(move_token, sub);
      seq = std::max(seq, interest_->OnLocalUnsubscribe(*sub, move_token));
    }
  }
  interest_withdrawn_ = true;
  RefPtr<ClientConnection> self(this);
  auto moved = [self] {
    if (self->closing()) return;
    {
      // No local publish is between routing and delivery while the
      // subscriptions go: MOVED is the last thing on this connection.
      ForwardGateCut cut(&self->ctx_->forward_gate);
      self->move_->Finish();
      for (auto& [sid, sub] : self->subs_) self->Withdraw(sub);
      self->subs_.clear();
    }
    self->SendControl({"MOVED ", self->move_token_text_, "\r\n"});
    self->ctx_->moves.out.fetch_add(1, std::memory_order_relaxed);
    LOG(INFO) << "node " << self->ctx_->node_id << ": cid=" << self->id() << " moved (token "
              << self->move_token_text_ << ")";
  };
  if (interest_ == nullptr || interest_->AwaitPeers(seq, [self, moved] { self->loop()->QueueInLoop(moved); })) {
    moved();
  }
}

void ClientConnection::MaybeAskToMove(int64_t now) {
  // A client that just arrived (perhaps moved here) is left alone for a
  // while, so a mesh in flux does not bounce it from node to node; one that
  // was asked and stayed (its move was abandoned) is asked again later.
  constexpr int64_t kSettleMs = 5000, kAskAgainMs = 10000;
  if (moving_out_ || awaiting_auth() || now - created_ms() < kSettleMs ||
      (asked_to_move_ms_ != 0 && now - asked_to_move_ms_ < kAskAgainMs)) {
    return;
  }
  std::string target;
  if (!ctx_->rebalance.Take(&target)) return;
  asked_to_move_ms_ = now;
  ctx_->moves.rebalance_requests.fetch_add(1, std::memory_order_relaxed);
  // The whole INFO, as every INFO is (a client replaces what it knew), plus
  // where to go.
  std::string info = ctx_->info.ForClient(id(), remote_ip_);
  const size_t end = info.rfind('}');
  if (end == std::string::npos) return;
  info.insert(end, ",\"move_to\":" + nlohmann::json(target).dump());
  SendControl(info);
  VLOG(1) << "cid=" << id() << " asked to move to " << target << " (rebalancing)";
}

void ClientConnection::ForgetMoves() {
  if (move_ && moves_ != nullptr) moves_->Forget(move_.get());
}

uint64_t ClientConnection::QueueMoveToken(const Subscription& sub, bool subscribing) const {
  if (!sub.is_queue() || !move_) return 0;
  // A member the new end announces while its move is under way stays out of
  // picks until the old end's is gone (server/mesh/move_table.h); one it
  // announces later is an ordinary member. Any member an end of a move
  // withdraws releases its counterpart: the old end's lets the new one's
  // in, the new end's (a move given up) lets nobody wait for it.
  if (subscribing) return move_->side() == MoveFilter::Side::kIncoming && !move_->finished() ? move_->token() : 0;
  return move_->token();
}

bool ClientConnection::TakesQueueTurn(const Subscription& sub, std::string_view origin) const {
  const MoveFilter* filter = move_view_.load(std::memory_order_acquire);
  if (filter == nullptr) return false;
  switch (sub.move_state()) {
    case Subscription::MoveState::kLatent:  // the new end's: from each node's switch on
      return filter->side() == MoveFilter::Side::kIncoming && filter->QueueSwitched(origin, sub.subject(), sub.queue());
    case Subscription::MoveState::kReleased:
      // The old end's: a node's messages up to its switch were picked with
      // it counted; this node's own picks stopped counting it at once.
      return !origin.empty() && filter->side() == MoveFilter::Side::kOutgoing &&
             !filter->QueueSwitched(origin, sub.subject(), sub.queue());
    case Subscription::MoveState::kSettled:
      break;
  }
  return true;
}

bool ClientConnection::MoveAccepts(const Subscription* sub, const Message& msg) const {
  const MoveFilter* filter = move_view_.load(std::memory_order_acquire);
  // A queue message goes to one member mesh-wide: never dropped, never doubled.
  return filter == nullptr || sub->is_queue() || filter->Accepts(msg.origin);
}

}  // namespace zmesh::server

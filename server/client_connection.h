#pragma once

// A NATS client session on a Connection: CONNECT and authentication, PUB/HPUB
// into the router, SUB/UNSUB into the subject index, PING/PONG, and the
// client-side timeouts (auth timeout, stale connection).
//
// Behaves like nats-server 2.9 where a client can tell: default options before
// CONNECT are verbose/pedantic/echo, the same -ERR texts, and the same choice
// between "-ERR then close" and a silent close.
//
// Threading: owned by its worker thread (see Connection). Publishers on other
// workers deliver to it through Deliver() (the router's DeliveryEndpoint, in
// client_delivery.cc), which reads only headers_supported() and
// permissions() (fixed before any of its subscriptions exists, or swapped
// atomically) and appends to out().

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proto/parser.h"
#include "server/connection.h"

namespace zmesh::auth {
class Permissions;
class UsersTable;
struct AuthResult;
}  // namespace zmesh::auth

namespace zmesh::server {

struct ServerContext;
class InterestObserver;
class MoveCoordinator;
class MoveFilter;
class Subscription;

class ClientConnection : public Connection, public DeliveryEndpoint {
 public:
  // `interest` (null on a standalone node) learns of our subscriptions and
  // runs the interest barrier; `moves` (null on a standalone node) cuts the
  // mesh's streams for planned moves. Both outlive every client connection.
  ClientConnection(ServerContext* ctx, InterestObserver* interest, MoveCoordinator* moves, IoWorker* worker, int fd,
                   uint64_t id, std::string remote_ip, int remote_port);

  // Read by publishers on any thread.
  bool headers_supported() const { return headers_.load(std::memory_order_relaxed); }
  const auth::Permissions* permissions() const { return permissions_view_.load(std::memory_order_acquire); }

  // DeliveryEndpoint. Any thread: one message on one of our subscriptions.
  bool Deliver(IoWorker* worker, Subscription* sub, proto::MsgFrame& frame, const Message& msg,
               DeliveryEndpoint* source) override;
  // Owner thread, from the router: a delivery of ours left `consumer` behind;
  // this client pauses after the current message (IoWorker::StallProducer),
  // keeping the rest of its input for ResumeAfterStall.
  void PushBackOn(Connection* consumer) override {
    if (!pushback_) pushback_ = RefPtr<Connection>(consumer);
  }
  // A move's new end: `origin` has switched to `sub`; its old end: `origin`
  // has not switched away from `sub` yet (MoveFilter::QueueSwitch).
  bool TakesQueueTurn(const Subscription& sub, std::string_view origin) const override;
  // Owner thread, from IoWorker: the stall is over; reading resumes, and the
  // input held back goes first.
  void ResumeAfterStall();

  bool echo() const { return echo_; }
  bool no_responders() const { return no_responders_; }

  // For monitoring (owner thread).
  const std::string& name() const { return name_; }
  const std::string& lang() const { return lang_; }
  const std::string& version() const { return version_; }
  const std::string& user() const { return user_; }
  // Owner thread: the move this connection is an end of (null: none).
  const MoveFilter* move() const { return move_.get(); }
  size_t subscription_count() const { return subs_.size(); }
  const std::string& remote_ip() const { return remote_ip_; }
  int remote_port() const { return remote_port_; }
  // Added for /connz?subs=1 (owner thread): calls fn(const Subscription&)
  // for each subscription until it returns false (monitoring lists a capped
  // number); the caller includes server/subscription.h.
  template <typename Fn>
  void ForEachSubscriptionWhile(Fn&& fn) const {
    for (const auto& [sid, sub] : subs_) {
      if (!fn(*sub)) return;
    }
  }

  void OnTick(int64_t now_ms) override;

  // Owner thread, after SIGHUP reloaded the users file: like nats-server, a
  // client whose user is gone is disconnected; the others get the new
  // permissions, losing subscriptions these no longer allow.
  void OnUsersReloaded(const auth::UsersTable& table);

  // Owner thread: re-send INFO (connect_urls or lame duck changed).
  void SendInfo(std::string_view info_line);
  // Owner thread, right after Start(): INFO was sent; refuse the client.
  void RejectMaxConnections() { ErrAndClose("maximum connections exceeded", CloseReason::kMaxConnectionsExceeded); }

 protected:
  void OnStart() override;
  void OnInput(std::string_view data) override;
  void OnClose(CloseReason reason) override;
  bool in_planned_move() const override { return moving_out_; }
  bool moves_when_asked() const override { return movable_; }

 private:
  ~ClientConnection() override;

  // Process, then stall on the consumer that it left behind, if any.
  void ProcessInput(std::string_view input);
  // Handles the operations in `input` until a delivery pushes back.
  void Process(std::string_view input);
  void HandleOp(const proto::Op& op);
  void HandleParseError();
  void HandleConnect(std::string_view json);
  void FinishConnect();
  void OnAuthResult(const auth::AuthResult& result);
  // Routes the message; a request that reached no one gets no-responders.
  void HandlePub(const proto::Op& op);
  // Owner thread: the NATS 503 for a request that reached nobody, delivered
  // on the client's own subscription to `reply`.
  void SendNoResponders(std::string_view reply);
  // Any thread: a delivery reached the subscription's auto-unsubscribe limit.
  void PostAutoUnsubscribe(Subscription* sub);
  void HandleSub(const proto::Op& op);
  void HandleUnsub(const proto::Op& op);
  // The interest barrier (SPEC §2): a PING after a SUB or UNSUB is answered
  // once every peer has applied the change; PONGs keep their order.
  void HandlePing();
  // Sends the PONGs whose barrier has passed; waits for the next one.
  void ReleasePongs();
  void RemoveSubscription(Subscription* sub);
  // Takes `sub` out of the index and the mesh's interest and drops our
  // reference; the caller forgets it in subs_.
  void Withdraw(Subscription* sub);
  void SetPermissions(std::shared_ptr<const auth::Permissions> permissions);
  void SendErr(std::string_view text);
  void SendOk();
  void ErrAndClose(std::string_view text, CloseReason reason);

  bool awaiting_auth() const { return auth_required_ && !connect_received_; }

  // Planned moves (client_move.cc; docs/design-lossless-moves.md), owner
  // thread. CONNECT move_token: this connection is the new end of a move.
  bool BeginMoveIn(std::string_view token);
  // MOVE <token>: this connection is the old end; it delivers what every
  // node published before its cut, then MOVED.
  void HandleMove(const proto::Op& op);
  // Every node has cut: withdraw our interest, wait for the peers to apply
  // that, then take the subscriptions out and write MOVED as the last thing.
  void FinishMoveOut();
  // The connection closes: the coordinator forgets its moves.
  void ForgetMoves();
  // Any thread: whether the move (if any) lets `msg` through to `sub`.
  bool MoveAccepts(const Subscription* sub, const Message& msg) const;
  // The move token a change of `sub` is announced with (0: none); see
  // InterestObserver.
  uint64_t QueueMoveToken(const Subscription& sub, bool subscribing) const;
  void InstallMoveFilter(std::shared_ptr<MoveFilter> filter);
  // Owner thread, from the tick: asks this client to move when the mesh's
  // rebalancer wants one of ours elsewhere.
  void MaybeAskToMove(int64_t now);

  ServerContext* const ctx_;
  InterestObserver* const interest_;
  MoveCoordinator* const moves_;
  const std::string remote_ip_;
  const int remote_port_;
  proto::Parser parser_;
  // Subscriptions by sid; the key views the Subscription's own sid string.
  absl::flat_hash_map<std::string_view, Subscription*> subs_;
  // The user's permissions. Publishers on other workers read them through
  // permissions_view_; a reload swaps the pointer and keeps the previous set
  // alive (retired) for the connection's lifetime, so a reader never sees
  // freed memory.
  std::shared_ptr<const auth::Permissions> permissions_;
  std::atomic<const auth::Permissions*> permissions_view_{nullptr};
  std::vector<std::shared_ptr<const auth::Permissions>> retired_permissions_;
  RefPtr<Connection> pushback_;  // the consumer to wait for after this message
  // Input read but not processed yet: it came while a CONNECT was being
  // verified, or after a message that left a consumer behind. One read's worth
  // of PUBs can become far more output than input (queue-group names on a
  // peer link): processing it all before pausing would queue it all before
  // anything is written.
  std::string paused_input_;
  std::string user_, name_, lang_, version_;
  std::atomic<bool> headers_{false};
  bool auth_required_;
  bool connect_received_ = false;
  bool auth_pending_ = false;
  bool verbose_ = true;   // nats-server's defaults until CONNECT says otherwise
  bool pedantic_ = true;
  bool echo_ = true;
  bool no_responders_ = false;
  int64_t protocol_ = 0;  // CONNECT "protocol": 1 = the client takes async INFO updates
  int pings_out_ = 0;
  int64_t last_ping_ms_ = 0;
  uint64_t interest_seq_ = 0;  // covers our last SUB/UNSUB not yet behind a PONG
  // PONGs held for the barrier, in order: `count` PONGs that go out once
  // peers applied `seq` (0: nothing of their own). At most two entries, the
  // one awaited and the rest merged (the newest change covers every earlier
  // one), so a client that keeps sending PINGs cannot grow this.
  struct HeldPongs {
    uint64_t seq;
    uint64_t count;
  };
  std::deque<HeldPongs> held_pongs_;
  bool awaiting_peers_ = false;  // a barrier wait for held_pongs_.front() is posted

  // The move this connection is an end of. Deliveries on other threads read
  // move_view_; a later move replaces the filter and keeps the earlier one
  // alive (retired) for the connection's lifetime.
  std::shared_ptr<MoveFilter> move_;
  std::atomic<MoveFilter*> move_view_{nullptr};
  std::vector<std::shared_ptr<MoveFilter>> retired_moves_;
  bool moving_out_ = false;          // MOVE received: nothing but PING/PONG from the client now
  bool movable_ = false;             // CONNECT "moves": the client follows INFO move_to
  int64_t asked_to_move_ms_ = 0;     // when it was last sent one (0: never)
  std::string move_token_text_;      // as the client wrote it: MOVED echoes it
  bool interest_withdrawn_ = false;  // our interest is already withdrawn from the mesh
};

}  // namespace zmesh::server

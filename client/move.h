#pragma once

// One planned move of the client from its node O to another node N that
// loses, duplicates and reorders nothing (make before break;
// docs/design-lossless-moves.md). The Session keeps the connection to O
// (the old connection); the Move owns the connection to N (the new one)
// until the switch, and keeps what N delivers meanwhile. Phases:
//
//   kConnecting  the new connection handshakes; its CONNECT carries the
//                move token (16 lower-case hex digits, 64 random bits)
//   kConfirming  the Host wrote the re-subscription and a PING on it; the
//                PONG means N's subscriptions are live mesh-wide
//   kCutSent     the Host wrote MOVE <token> on the old connection, the last
//                thing it ever writes there, and waits for MOVED <token>
//
// Messages from N are copied out of the parser's transient views and kept
// in arrival order, up to a byte bound, until the Host replays them at the
// switch (after everything O delivered up to MOVED). What goes wrong is
// reported to the Host (Failure), which decides by phase: before the cut it
// abandons the move; after it, it switches to N anyway or, N being lost,
// fails over. The whole move has a deadline.
//
// Thread contract: the Session's I/O thread only (its ThreadOwner is
// checked). The Host is called from the Move's own callbacks (connection,
// timer) and must not destroy the Move inside them: it Stop()s it and frees
// it later, as it does with connections.

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <zmesh/status.h>

#include "client/connection.h"
#include "client/server_url.h"
#include "client/thread_owner.h"
#include "proto/parser.h"

namespace zmesh::client {

class Move : public Connection::Delegate {
 public:
  enum class Reason { kLameDuck, kRequested };
  enum class Phase { kConnecting, kConfirming, kCutSent };
  enum class Failure {
    kLost,        // the new connection ended (closed, -ERR, its node is leaving before the cut, or it
                  // does not take part in moves)
    kDeadline,    // the move did not finish within its timeout
    kBufferFull,  // N delivered more than the bound before the switch
  };

  class Host {
   public:
    virtual ~Host() = default;
    // N accepted CONNECT: write the re-subscription and a PING into
    // move->conn()->wbuf(), then call move->Confirming().
    virtual void OnMoveConnected(Move* move) = 0;
    // That PING was answered: time to write MOVE on the old connection and
    // call move->CutSent().
    virtual void OnMoveConfirmed(Move* move) = 0;
    // Once per Failure kind at most; the Move reports nothing after Stop().
    virtual void OnMoveFailed(Move* move, Failure failure, const Status& why) = 0;
  };

  struct Limits {
    std::chrono::milliseconds timeout{15000};
    size_t max_buffered_bytes = 64 << 20;
  };

  // `options` already carries the token in connect.move_token.
  Move(event_base* base, const ThreadOwner* io_thread, Host* host, Reason reason, ServerUrl target,
       ConnectionOptions options, Limits limits);
  ~Move() override;
  Move(const Move&) = delete;
  Move& operator=(const Move&) = delete;

  // 16 lower-case hex digits of 64 random bits.
  static std::string NewToken();

  // Connects and arms the deadline. A failure may be reported before it returns.
  void Start();
  // The re-subscription is written; `covered` is what Outbox::SnapshotSubscriptions
  // returned, kept for Outbox::ResumeAfterMove.
  void Confirming(size_t covered);
  // MOVE is written on the old connection.
  void CutSent();
  // Hands the kept messages to `deliver`, in arrival order, and forgets them.
  void Replay(const std::function<void(const proto::Op&)>& deliver);
  // The switch: the new connection, whose later callbacks go to `next`.
  std::unique_ptr<Connection> TakeConnection(Connection::Delegate* next);
  // Ends the move: closes the new connection if it is still here and stops
  // the deadline. No Host call after it.
  void Stop();

  Reason reason() const { return reason_; }
  void set_reason(Reason reason) { reason_ = reason; }
  Phase phase() const { return phase_; }
  bool cut_sent() const { return phase_ == Phase::kCutSent; }
  // N accepted CONNECT at some point.
  bool accepted() const { return accepted_; }
  // The new connection is gone, and why; target_at_fault: it failed (for
  // the failover policy), rather than being unfit (no INFO "move").
  bool lost() const { return lost_; }
  bool target_at_fault() const { return target_at_fault_; }
  const Status& lost_why() const { return lost_why_; }
  const std::string& token() const { return token_; }
  const ServerUrl& target() const { return target_; }
  size_t covered() const { return covered_; }
  // Null once taken or before Start.
  Connection* conn() const { return conn_.get(); }

  // Connection::Delegate (the new connection), I/O thread.
  void OnConnectionReady(Connection* conn) override;
  void OnConnectionOp(Connection* conn, const proto::Op& op) override;
  void OnConnectionReadDone(Connection* conn) override;
  void OnConnectionWritable(Connection* conn) override;
  void OnConnectionClosed(Connection* conn, const Status& why) override;

 private:
  // A message from N, copied out of the parser's views.
  struct Kept {
    proto::OpType type;
    std::string subject, reply, sid, payload;
    int64_t header_size;
  };

  static void OnDeadlineEvent(evutil_socket_t, short, void* arg);
  void Keep(const proto::Op& op);
  void Lose(Status why, bool target_at_fault = true);

  event_base* const base_;
  const ThreadOwner* const io_thread_;
  Host* const host_;
  Reason reason_;
  const ServerUrl target_;
  const std::string token_;
  const Limits limits_;
  std::unique_ptr<Connection> conn_;
  event* deadline_ev_ = nullptr;
  Phase phase_ = Phase::kConnecting;
  size_t covered_ = 0;
  std::vector<Kept> kept_;
  size_t kept_bytes_ = 0;
  bool accepted_ = false;
  bool confirmed_ = false;
  bool lost_ = false;
  bool target_at_fault_ = false;
  Status lost_why_;
  bool overflow_reported_ = false;
  bool stopped_ = false;
};

}  // namespace zmesh::client

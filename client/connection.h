#pragma once

// One connection to one node, from TCP connect to close, on the client's I/O
// thread (libevent). It runs the handshake itself — TCP connect, INFO, TLS if
// asked for, CONNECT + PING until PONG — and then hands every operation the
// server sends to its Delegate, except PING, which it answers.
//
// States, in order:
//   kTcpConnecting  socket connecting; waiting for writability
//   kAwaitInfo      connected; the first operation must be INFO
//   kTlsHandshake   INFO asked for TLS (or we require it); handshaking
//   kAwaitPong      CONNECT and PING sent; PONG means accepted, -ERR refused
//   kReady          accepted; operations go to the delegate
//   kClosed         closed; no more callbacks
// The whole handshake must finish within `connect_timeout`.
//
// Server input is bounded by the parser's limits (control line, payload);
// anything that is not valid protocol closes the connection with
// kProtocolError. The delegate learns of the end exactly once through
// OnConnectionClosed, unless it called Close() itself.
//
// Thread safety: none; I/O thread only. The delegate must not destroy the
// Connection inside a callback (close it and free it later).

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <zmesh/options.h>
#include <zmesh/status.h>

#include "client/server_url.h"
#include "client/transport.h"
#include "proto/connect.h"
#include "proto/info.h"
#include "proto/parser.h"

namespace zmesh::client {

class TlsContext;

struct ConnectionOptions {
  // CONNECT as configured (name, credentials, echo, ...). The connection
  // sets tls_required, headers and no_responders from the handshake, and
  // user/pass from the URL, which win.
  proto::ConnectOptions connect;
  std::chrono::milliseconds connect_timeout{2000};
  size_t max_control_line = 64 * 1024;
  int64_t max_payload = 64 << 20;
  bool tls_required = false;
  std::shared_ptr<TlsContext> tls;  // null: created on demand with default options
  TlsOptions tls_options;
};

class Connection {
 public:
  enum class State { kTcpConnecting, kAwaitInfo, kTlsHandshake, kAwaitPong, kReady, kClosed };

  class Delegate {
   public:
    virtual ~Delegate() = default;
    // The server accepted CONNECT. The delegate may write into wbuf() now.
    virtual void OnConnectionReady(Connection* conn) = 0;
    // An operation from the server after the handshake (never PING).
    virtual void OnConnectionOp(Connection* conn, const proto::Op& op) = 0;
    // One read batch is processed (to hand over what it produced at once).
    virtual void OnConnectionReadDone(Connection* conn) = 0;
    // wbuf() drained completely after having been blocked.
    virtual void OnConnectionWritable(Connection* conn) = 0;
    // The connection ended (handshake failure or loss). Once.
    virtual void OnConnectionClosed(Connection* conn, const Status& why) = 0;
  };

  Connection(event_base* base, ServerUrl url, ConnectionOptions options, Delegate* delegate);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting. Failures are reported through OnConnectionClosed
  // (possibly before Start returns).
  void Start();
  // Closes the socket without a callback. Idempotent.
  void Close();
  // Later callbacks go to `delegate` (a planned move hands its new
  // connection to the Session). Not from inside this connection's callback
  // to the old delegate unless that callback returns at once.
  void set_delegate(Delegate* delegate) { delegate_ = delegate; }
  // Nothing more will be written beyond what wbuf() holds: the server's
  // PINGs are no longer answered (after MOVE the old node must receive
  // nothing more). The caller appends nothing either.
  void Seal() { sealed_ = true; }

  // Bytes to send, in order. Append whole operations, then call Flush().
  std::string* wbuf() { return &wbuf_; }
  // Writes as much of wbuf() as the socket takes; arms writability for the
  // rest. May report a failure through OnConnectionClosed.
  void Flush();
  // Nothing waits to be written.
  bool write_idle() const { return wpos_ == wbuf_.size() && !(transport_ && transport_->WantsWrite()); }
  // Bytes in wbuf() not yet handed to the kernel, starting at the first
  // unsent byte; Salvage: KeepFrames(wbuf(), write_offset(), ...).
  size_t write_offset() const { return wpos_; }
  // Last time a write made progress, or when waiting for writability began.
  std::chrono::steady_clock::time_point last_write_progress() const { return last_write_progress_; }

  State state() const { return state_; }
  bool ready() const { return state_ == State::kReady; }
  const ServerUrl& url() const { return url_; }
  const proto::Info& info() const { return info_; }

 private:
  static void OnReadEvent(evutil_socket_t fd, short what, void* arg);
  static void OnWriteEvent(evutil_socket_t fd, short what, void* arg);
  static void OnTimeoutEvent(evutil_socket_t fd, short what, void* arg);

  void HandleReadable();
  void HandleWritable();
  void HandleOp(const proto::Op& op);
  // The first INFO: remember it, then TLS or CONNECT.
  void HandleInfo(std::string_view json);
  // Any INFO: replaces info_; false after failing the connection on bad JSON.
  bool UpdateInfo(std::string_view json);
  void StartTls();
  void ContinueTls();
  void SendConnect();
  void Fail(Status why);
  void ArmWrite();

  event_base* base_;
  ServerUrl url_;
  ConnectionOptions options_;
  Delegate* delegate_;
  State state_ = State::kTcpConnecting;
  int fd_ = -1;
  std::unique_ptr<Transport> transport_;
  proto::Parser parser_;
  proto::Info info_;
  std::string rbuf_;
  std::string wbuf_;
  size_t wpos_ = 0;
  std::chrono::steady_clock::time_point last_write_progress_;
  event* read_ev_ = nullptr;
  event* write_ev_ = nullptr;
  event* timeout_ev_ = nullptr;
  bool write_armed_ = false;
  bool write_was_blocked_ = false;
  bool sealed_ = false;
};

}  // namespace zmesh::client

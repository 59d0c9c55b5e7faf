#include "client/connection.h"

#include <unistd.h>

#include "client/tls_transport.h"
#include "proto/client_writer.h"

namespace zmesh::client {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Reads per readiness event before yielding to other events.
constexpr int kReadsPerEvent = 16;
// A write buffer that grew past this for a burst is released once drained.
constexpr size_t kKeepWriteBuffer = 8 << 20;

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string ParseErrorText(const proto::Parser& p) {
  switch (p.error()) {
    case proto::ParseError::kUnknownOp: return "unknown protocol operation";
    case proto::ParseError::kMaxControlLine: return "control line exceeds the limit";
    case proto::ParseError::kMaxPayload: return "payload exceeds the limit";
    case proto::ParseError::kBadArguments: return "malformed arguments";
    case proto::ParseError::kHeadersNotSupported: return "headers not supported";
    case proto::ParseError::kNone: break;
  }
  return "parse error";
}

bool IsAuthError(std::string_view text) {
  return text.find("Authorization Violation") != std::string_view::npos ||
         text.find("Authentication") != std::string_view::npos ||
         text.find("User Authentication") != std::string_view::npos;
}

}  // namespace

Connection::Connection(event_base* base, ServerUrl url, ConnectionOptions options, Delegate* delegate)
    : base_(base),
      url_(std::move(url)),
      options_(std::move(options)),
      delegate_(delegate),
      parser_(proto::Parser::Role::kClient,
              proto::Parser::Limits{options_.max_control_line, options_.max_payload}) {}

Connection::~Connection() { Close(); }

void Connection::Start() {
  Status st;
  fd_ = StartTcpConnect(url_, &st);
  if (fd_ < 0) {
    state_ = State::kClosed;
    delegate_->OnConnectionClosed(this, st);
    return;
  }
  read_ev_ = event_new(base_, fd_, EV_READ | EV_PERSIST, &Connection::OnReadEvent, this);
  write_ev_ = event_new(base_, fd_, EV_WRITE, &Connection::OnWriteEvent, this);
  timeout_ev_ = evtimer_new(base_, &Connection::OnTimeoutEvent, this);
  const timeval tv = ToTimeval(options_.connect_timeout);
  evtimer_add(timeout_ev_, &tv);
  ArmWrite();  // writability = connect finished
}

void Connection::Close() {
  if (read_ev_ != nullptr) event_free(read_ev_);
  if (write_ev_ != nullptr) event_free(write_ev_);
  if (timeout_ev_ != nullptr) event_free(timeout_ev_);
  read_ev_ = write_ev_ = timeout_ev_ = nullptr;
  transport_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  state_ = State::kClosed;
}

void Connection::Fail(Status why) {
  if (state_ == State::kClosed) return;
  Close();
  delegate_->OnConnectionClosed(this, why);
}

void Connection::ArmWrite() {
  if (write_armed_ || write_ev_ == nullptr) return;
  write_armed_ = true;
  event_add(write_ev_, nullptr);
}

void Connection::OnReadEvent(evutil_socket_t, short, void* arg) { static_cast<Connection*>(arg)->HandleReadable(); }
void Connection::OnWriteEvent(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  self->write_armed_ = false;
  self->HandleWritable();
}
void Connection::OnTimeoutEvent(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  self->Fail(Status(StatusCode::kConnectFailed, self->url_.key() + ": handshake did not finish within " +
                                                    std::to_string(self->options_.connect_timeout.count()) + " ms"));
}

void Connection::HandleWritable() {
  switch (state_) {
    case State::kTcpConnecting: {
      Status st = FinishTcpConnect(fd_);
      if (!st.ok()) {
        Fail(Status(StatusCode::kConnectFailed, url_.key() + ": " + st.message()));
        return;
      }
      transport_ = std::make_unique<PlainTransport>(fd_);
      state_ = State::kAwaitInfo;
      rbuf_.resize(kReadChunk);
      event_add(read_ev_, nullptr);
      return;
    }
    case State::kTlsHandshake:
      ContinueTls();
      return;
    case State::kClosed:
      return;
    default:
      Flush();
      if (state_ != State::kClosed && write_idle() && write_was_blocked_) {
        write_was_blocked_ = false;
        delegate_->OnConnectionWritable(this);
      }
  }
}

void Connection::HandleReadable() {
  if (state_ == State::kTlsHandshake) {
    ContinueTls();
    return;
  }
  for (int i = 0; i < kReadsPerEvent; ++i) {
    IoResult r = transport_->Read(rbuf_.data(), rbuf_.size());
    if (r.status == IoStatus::kWouldBlock) break;
    if (r.status != IoStatus::kOk) {
      const bool eof = r.status == IoStatus::kEof;
      Fail(Status(state_ == State::kReady ? StatusCode::kDisconnected
                  : eof                   ? StatusCode::kConnectFailed
                                          : StatusCode::kIoError,
                  url_.key() + ": " + r.error));
      return;
    }
    std::string_view in(rbuf_.data(), r.bytes);
    proto::Op op;
    while (!in.empty()) {
      const proto::ParseStatus ps = parser_.Next(&in, &op);
      if (ps == proto::ParseStatus::kNeedMore) break;
      if (ps == proto::ParseStatus::kError) {
        Fail(Status(StatusCode::kProtocolError, url_.key() + ": " + ParseErrorText(parser_) + " near '" +
                                                    parser_.error_context() + "'"));
        return;
      }
      HandleOp(op);
      if (state_ == State::kClosed) return;
      if (state_ == State::kTlsHandshake) {
        if (!in.empty()) {
          Fail(Status(StatusCode::kProtocolError, url_.key() + ": data after INFO before the TLS handshake"));
        }
        return;
      }
    }
    if (i + 1 == kReadsPerEvent) {
      // More may be waiting (or buffered inside TLS, invisible to epoll):
      // come back after other events had their turn.
      event_active(read_ev_, EV_READ, 0);
    }
  }
  if (state_ == State::kReady) delegate_->OnConnectionReadDone(this);
}

void Connection::HandleOp(const proto::Op& op) {
  using proto::OpType;
  if (op.type == OpType::kPing) {
    if (sealed_) return;
    proto::AppendPong(&wbuf_);
    Flush();
    return;
  }
  switch (state_) {
    case State::kAwaitInfo:
      if (op.type != OpType::kInfo) {
        Fail(Status(StatusCode::kProtocolError, url_.key() + ": expected INFO first"));
        return;
      }
      HandleInfo(op.arg);
      return;
    case State::kAwaitPong:
      switch (op.type) {
        case OpType::kPong:
          state_ = State::kReady;
          evtimer_del(timeout_ev_);
          delegate_->OnConnectionReady(this);
          return;
        case OpType::kErr:
          Fail(Status(IsAuthError(op.arg) ? StatusCode::kAuthFailed : StatusCode::kServerError,
                      url_.key() + ": -ERR " + std::string(op.arg)));
          return;
        case OpType::kInfo:
          UpdateInfo(op.arg);
          return;
        case OpType::kOk:
          return;
        default:
          Fail(Status(StatusCode::kProtocolError, url_.key() + ": unexpected operation during the handshake"));
          return;
      }
    case State::kReady:
      if (op.type == OpType::kInfo && !UpdateInfo(op.arg)) return;
      delegate_->OnConnectionOp(this, op);
      return;
    default:
      return;
  }
}

bool Connection::UpdateInfo(std::string_view json) {
  proto::Info info;
  std::string error;
  if (!proto::DecodeInfo(json, &info, &error)) {
    Fail(Status(StatusCode::kProtocolError, url_.key() + ": " + error));
    return false;
  }
  info_ = std::move(info);
  return true;
}

void Connection::HandleInfo(std::string_view json) {
  if (!UpdateInfo(json)) return;
  const bool want_tls = info_.tls_required || options_.tls_required || url_.tls;
  if (want_tls && !info_.tls_required && !info_.tls_available) {
    Fail(Status(StatusCode::kTlsError, url_.key() + ": TLS required but the server does not offer it"));
    return;
  }
  if (want_tls) {
    StartTls();
  } else {
    SendConnect();
  }
}

void Connection::StartTls() {
  Status st;
  std::shared_ptr<TlsContext> ctx = options_.tls;
  if (!ctx) ctx = TlsContext::Create(options_.tls_options, &st);
  if (!ctx) {
    Fail(st);
    return;
  }
  std::unique_ptr<TlsTransport> tls = TlsTransport::Create(ctx, fd_, url_.host, &st);
  if (!tls) {
    Fail(st);
    return;
  }
  transport_ = std::move(tls);
  state_ = State::kTlsHandshake;
  ContinueTls();
}

void Connection::ContinueTls() {
  auto* tls = static_cast<TlsTransport*>(transport_.get());
  IoResult r = tls->Handshake();
  if (r.status == IoStatus::kOk) {
    SendConnect();
    return;
  }
  if (r.status == IoStatus::kWouldBlock) {
    if (tls->WantsWrite()) ArmWrite();
    return;
  }
  Fail(Status(StatusCode::kTlsError, url_.key() + ": " + r.error));
}

void Connection::SendConnect() {
  proto::ConnectOptions connect = options_.connect;
  if (!url_.user.empty()) {
    connect.user = url_.user;
    connect.pass = url_.password.empty() ? std::nullopt : std::optional<std::string>(url_.password);
  }
  connect.tls_required = state_ == State::kTlsHandshake;
  // Headers whenever the server speaks them; no_responders needs them.
  connect.headers = info_.headers;
  connect.no_responders = info_.headers;
  state_ = State::kAwaitPong;
  proto::AppendConnect(&wbuf_, proto::EncodeConnect(connect));
  proto::AppendPing(&wbuf_);
  Flush();
}

void Connection::Flush() {
  if (transport_ == nullptr || state_ == State::kTcpConnecting || state_ == State::kTlsHandshake ||
      state_ == State::kClosed) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (!write_was_blocked_) last_write_progress_ = now;
  while (wpos_ < wbuf_.size()) {
    IoResult r = transport_->Write(wbuf_.data() + wpos_, wbuf_.size() - wpos_);
    if (r.status == IoStatus::kWouldBlock) break;
    if (r.status != IoStatus::kOk) {
      Fail(Status(state_ == State::kReady ? StatusCode::kDisconnected : StatusCode::kConnectFailed,
                  url_.key() + ": " + r.error));
      return;
    }
    if (r.bytes == 0) break;
    wpos_ += r.bytes;
    last_write_progress_ = now;
  }
  if (wpos_ == wbuf_.size()) {
    if (wbuf_.capacity() > kKeepWriteBuffer) {
      std::string().swap(wbuf_);
    } else {
      wbuf_.clear();
    }
    wpos_ = 0;
    if (transport_->WantsWrite()) {
      IoResult r = transport_->Write(nullptr, 0);
      if (r.status == IoStatus::kError) {
        Fail(Status(StatusCode::kDisconnected, url_.key() + ": " + r.error));
        return;
      }
    }
  }
  if (!write_idle()) {
    write_was_blocked_ = true;
    ArmWrite();
  }
}

}  // namespace zmesh::client

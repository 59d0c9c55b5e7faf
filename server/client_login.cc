// ClientConnection's login: CONNECT (options, credentials checked off the
// loop by the authenticator), the permissions it grants, and what a users
// file reload changes for a connected client. The session's other
// operations are in client_connection.cc.
#include <glog/logging.h>

#include "auth/authenticator.h"
#include "auth/permissions.h"
#include "auth/users_file.h"
#include "proto/connect.h"
#include "server/client_connection.h"
#include "server/io_worker.h"
#include "server/server_context.h"

namespace zmesh::server {

void ClientConnection::HandleConnect(std::string_view json_text) {
  proto::ConnectOptions opts;
  if (!proto::DecodeConnect(json_text, &opts)) {
    Close(CloseReason::kProtocolViolation, /*flush=*/true);
    return;
  }
  // Unset options keep what the connection had (nats-server's defaults on
  // the first CONNECT).
  verbose_ = opts.verbose.value_or(verbose_);
  pedantic_ = opts.pedantic.value_or(pedantic_);
  echo_ = opts.echo.value_or(echo_);
  no_responders_ = opts.no_responders.value_or(no_responders_);
  headers_.store(opts.headers.value_or(headers_.load()), std::memory_order_relaxed);
  if (opts.move_token && !BeginMoveIn(*opts.move_token)) return;  // refused and closed
  movable_ = opts.moves.value_or(false);
  parser_.set_headers_allowed(headers_supported());
  name_ = opts.name.value_or("");
  lang_ = opts.lang.value_or("");
  version_ = opts.version.value_or("");
  const int64_t protocol = opts.protocol.value_or(0);
  protocol_ = protocol;
  const bool wants_account = !opts.account.value_or("").empty() || opts.new_account.value_or(false);
  connect_received_ = true;

  if (auth_required_) {
    user_ = opts.user.value_or("");
    std::string pass = opts.pass.value_or("");
    auth_pending_ = true;
    RefPtr<ClientConnection> self(this);
    ctx_->authenticator->Verify(remote_ip_, user_, std::move(pass), [self, protocol, wants_account](auth::AuthResult r) {
      // Runs on an authenticator worker: hand the verdict to our loop.
      auto result = std::make_shared<auth::AuthResult>(std::move(r));
      self->loop()->QueueInLoop([self, result, protocol, wants_account] {
        ClientConnection* c = self.get();
        c->auth_pending_ = false;
        if (c->closing()) return;
        // A SIGHUP reload may have come since the worker's verdict; one that
        // comes after this line re-checks us in OnUsersReloaded.
        *result = c->ctx_->authenticator->Confirm(std::move(*result));
        if (auth::IsRetryable(result->status)) {
          // Not a verdict on the credentials: no 'Authorization Violation',
          // which makes standard clients give up reconnecting.
          c->ctx_->auth_overloaded.fetch_add(1, std::memory_order_relaxed);
          c->ErrAndClose("Server Busy, Try Again", CloseReason::kServerBusy);
          return;
        }
        if (!result->ok() || wants_account) {
          c->ctx_->auth_failures.fetch_add(1, std::memory_order_relaxed);
          LOG(INFO) << "cid=" << c->id() << " " << c->remote_address() << " authentication failed for user '"
                    << c->user_ << "'";
          c->ErrAndClose("Authorization Violation", CloseReason::kAuthenticationViolation);
          return;
        }
        c->SetPermissions(result->permissions);
        if (protocol < 0 || protocol > 1) {
          c->ErrAndClose("invalid client protocol", CloseReason::kBadClientProtocolVersion);
          return;
        }
        c->FinishConnect();
        if (c->closing()) return;
        std::string input;
        input.swap(c->paused_input_);
        c->ResumeReading(kPauseAuth);
        c->ProcessInput(input);
      });
    });
    return;
  }
  if (wants_account) {
    ErrAndClose("Authorization Violation", CloseReason::kAuthenticationViolation);
    return;
  }
  if (protocol < 0 || protocol > 1) {
    ErrAndClose("invalid client protocol", CloseReason::kBadClientProtocolVersion);
    return;
  }
  FinishConnect();
}

void ClientConnection::FinishConnect() {
  if (no_responders_ && !headers_supported()) {
    ErrAndClose("no responders requires headers support", CloseReason::kNoRespondersRequiresHeaders);
    return;
  }
  if (verbose_) SendOk();
}

void ClientConnection::SetPermissions(std::shared_ptr<const auth::Permissions> permissions) {
  if (permissions_) retired_permissions_.push_back(permissions_);
  permissions_ = std::move(permissions);
  permissions_view_.store(permissions_.get(), std::memory_order_release);
}

void ClientConnection::OnUsersReloaded(const auth::UsersTable& table) {
  loop()->AssertInLoopThread();
  if (!auth_required_ || !connect_received_ || auth_pending_ || closing()) return;
  const auth::UserEntry* entry = table.Find(user_);
  if (entry == nullptr) {
    LOG(INFO) << "cid=" << id() << " user '" << user_ << "' is no longer in the users file; disconnecting";
    Close(CloseReason::kAuthenticationViolation, /*flush=*/true);
    return;
  }
  if (entry->permissions == permissions_) return;
  SetPermissions(entry->permissions);
  std::vector<Subscription*> refused;
  for (auto& [sid, sub] : subs_) {
    if (!permissions_->CanSubscribe(sub->subject())) refused.push_back(sub);
  }
  for (Subscription* sub : refused) {
    SendErr(auth::SubscribeViolationText(sub->subject(), sub->queue()));
    RemoveSubscription(sub);
  }
}

}  // namespace zmesh::server

#pragma once

// The thread-safe core behind zmesh::Client: the public operations
// (publish, subscribe, request, flush, drain, close) and the client's
// lifecycle. The I/O side — event loop, connection, failover — is the
// Session, which runs on the I/O thread this engine starts.
//
// Thread contract: every public method is safe from any thread, including
// Dispatcher callbacks (see DrainSubscription/Drain for what a callback
// cannot wait for). The engine never touches the Session after starting it,
// except to post Close through the Outbox; it reaches the I/O thread only
// through the Outbox (bytes in order + tasks) and reads what the I/O thread
// reports from ClientState.
// Lock order: Outbox -> SubscriptionTable -> SubState::mu; ClientState's
// lock and mux_mu_ are leaves.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmesh/client.h>
#include <zmesh/options.h>

#include "client/client_state.h"
#include "client/dispatcher.h"
#include "client/outbox.h"
#include "client/request_mux.h"
#include "client/session.h"
#include "client/subscription_table.h"

namespace zmesh::client {

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  using Clock = std::chrono::steady_clock;
  // Test seams (fake discovery); empty members use the real thing.
  using Hooks = Session::Hooks;

  Engine(Options options, Hooks hooks);
  ~Engine();

  // Starts the threads and waits for the first connection (see Options).
  // On failure the engine is closed. Call once.
  Status Start();

  Status Publish(std::string_view subject, std::string_view reply, std::string_view headers,
                 std::string_view data);
  // `handler` empty = sync subscription.
  Status Subscribe(std::string_view subject, std::string_view queue, MessageHandler handler,
                   std::shared_ptr<SubState>* out);
  Status Unsubscribe(const std::shared_ptr<SubState>& sub);
  Status AutoUnsubscribe(const std::shared_ptr<SubState>& sub, int64_t max);
  Status DrainSubscription(const std::shared_ptr<SubState>& sub, Clock::time_point deadline);
  Status Flush(Clock::time_point deadline);
  Status Request(std::string_view subject, std::string_view headers, std::string_view data,
                 std::chrono::milliseconds timeout, Message* reply);
  Status Drain(Clock::time_point deadline);
  void Close();
  // Asks the I/O thread to move to `url` the lossless way (a planned move;
  // rebalancing, tests). Returns once asked; the move is reported by kMoved,
  // or not made (see Session::RequestMove).
  Status RequestMove(const std::string& url);

  ConnectionState state() const { return state_.state(); }
  std::string connected_url() const { return state_.connected_url(); }
  std::vector<std::string> known_servers() const { return state_.known_servers(); }
  Status last_error() const { return state_.last_error(); }
  size_t buffered_bytes() const { return outbox_->pending_bytes(); }
  ClientStats stats() const { return state_.stats(); }
  std::string NewInbox() const;
  bool closed() const { return state_.closed(); }

 private:
  // Once, after the I/O thread ended (or never ran): fails what still waits
  // and reports kClosed.
  void FinishClose();
  Status EnsureMux();

  const Options options_;
  Hooks hooks_;  // handed to the Session in Start
  std::shared_ptr<Outbox> outbox_;
  SubscriptionTable subs_;
  RequestMux mux_;
  std::shared_ptr<Dispatcher> dispatcher_;
  ClientState state_;

  std::mutex mux_mu_;
  std::shared_ptr<SubState> mux_sub_;  // guarded by mux_mu_

  // Declared after what it borrows, so it goes first.
  std::unique_ptr<Session> session_;
  std::thread io_thread_;
  std::once_flag close_once_;
};

}  // namespace zmesh::client

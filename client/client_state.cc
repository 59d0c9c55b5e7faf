#include "client/client_state.h"

namespace zmesh::client {

void ClientState::SetState(ConnectionState state, const std::string& url) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    state_ = state;
    connected_url_ = url;
  }
  cv_.notify_all();
}

void ClientState::SetLastError(const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = status;
}

void ClientState::SetKnownServers(std::vector<std::string> servers) {
  std::lock_guard<std::mutex> lock(mu_);
  known_ = std::move(servers);
}

void ClientState::MarkInitialConnectFailed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    initial_failed_ = true;
  }
  cv_.notify_all();
}

void ClientState::MarkCloseRequested() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
  }
  cv_.notify_all();
}

Status ClientState::BeginDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  if (close_requested_ || finished_) return Status(StatusCode::kClosed, "client closed");
  draining_ = true;
  return Status::Ok();
}

bool ClientState::Finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return false;
    finished_ = true;
    state_ = ConnectionState::kClosed;
    connected_url_.clear();
  }
  cv_.notify_all();
  return true;
}

Status ClientState::WaitForFirstConnection(Clock::time_point deadline, bool retry_on_failed_connect) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, deadline, [&] {
    return state_ == ConnectionState::kConnected || finished_ || close_requested_ ||
           (initial_failed_ && !retry_on_failed_connect);
  });
  if (state_ == ConnectionState::kConnected || (retry_on_failed_connect && !finished_)) return Status::Ok();
  if (!last_error_.ok()) return last_error_;
  return known_.empty() ? Status(StatusCode::kNoServers, "no node known (ZooKeeper unreachable and no cache?)")
                        : Status(StatusCode::kTimeout, "no connection within the initial connect timeout");
}

Status ClientState::CheckAcceptsSubscriptions() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (close_requested_ || finished_) return Status(StatusCode::kClosed, "client closed");
  if (draining_) return Status(StatusCode::kDraining, "client is draining");
  return Status::Ok();
}

bool ClientState::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_requested_ || finished_;
}

ConnectionState ClientState::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

std::string ClientState::connected_url() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_url_;
}

std::vector<std::string> ClientState::known_servers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return known_;
}

Status ClientState::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

ClientStats ClientState::stats() const {
  ClientStats s;
  s.in_msgs = in_msgs.load(std::memory_order_relaxed);
  s.in_bytes = in_bytes.load(std::memory_order_relaxed);
  s.out_msgs = out_msgs.load(std::memory_order_relaxed);
  s.out_bytes = out_bytes.load(std::memory_order_relaxed);
  s.reconnects = reconnects.load(std::memory_order_relaxed);
  s.dropped_msgs = dropped.load(std::memory_order_relaxed);
  s.moves = moves.load(std::memory_order_relaxed);
  s.moves_abandoned = moves_abandoned.load(std::memory_order_relaxed);
  return s;
}

}  // namespace zmesh::client

#pragma once

// Outgoing TCP connections on an EventLoop, the counterpart of Listener:
// a non-blocking connect() bounded by a timeout, whose socket (non-blocking,
// TCP_NODELAY) or error is handed to a callback. When a source host is given
// (a specific address, not a wildcard) every socket leaves from it, bound
// with IP_BIND_ADDRESS_NO_PORT so that the port is picked per destination at
// connect() time instead of reserving an ephemeral port for each dial (a
// large mesh on one address would run out of them).
//
// DialBackoff is the retry policy that goes with it: the delay before the
// next dial doubles from 100 ms to 5 s, plus up to a quarter at random, so
// that many nodes that lost the same peer do not retry in step.
//
// Threading: created, used and destroyed on its loop's thread; callbacks run
// there. Destroying it abandons the dials in progress (their callbacks never
// run, their sockets are closed).

#include <cstdint>
#include <functional>
#include <string>

#include <absl/container/flat_hash_set.h>

namespace zmesh::server {

class EventLoop;

class Connector {
 public:
  // `fd` is the connected socket (the callee owns it), or -1 with `error`.
  using DoneCallback = std::function<void(int fd, const std::string& error)>;

  // `source_host`: the address outgoing sockets are bound to; empty, 0.0.0.0
  // or :: = chosen by the kernel.
  Connector(EventLoop* loop, std::string source_host, int64_t timeout_ms);
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Starts connecting to `host_port`. False with `error` when that fails at
  // once (bad address, no socket, connect refused synchronously): `done`
  // then never runs. Otherwise `done` runs later, on the loop thread, once.
  bool Dial(const std::string& host_port, DoneCallback done, std::string* error);

  size_t in_progress() const { return pending_.size(); }

 private:
  struct Pending;
  static void OnConnectEvent(int fd, short what, void* arg);

  EventLoop* const loop_;
  const std::string source_host_;
  const int64_t timeout_ms_;
  absl::flat_hash_set<Pending*> pending_;
};

// Delay before the next dial to one destination after a failure.
// Threading: a plain value; its owner's thread.
class DialBackoff {
 public:
  static constexpr int64_t kMinMs = 100;
  static constexpr int64_t kMaxMs = 5000;

  // One more failure: doubles the base delay (within [kMinMs, kMaxMs]) and
  // returns it plus up to a quarter of it at random.
  int64_t Failed();
  // A success: the next failure starts again from kMinMs.
  void Reset() { base_ms_ = 0; }
  int64_t base_ms() const { return base_ms_; }

 private:
  int64_t base_ms_ = 0;
};

}  // namespace zmesh::server

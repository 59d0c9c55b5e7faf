#pragma once

// Request/reply over one wildcard inbox subscription per client
// ("_INBOX.<nuid>.*"), as nats.go does: each request gets a token, its reply
// subject is the prefix + token, and the I/O thread hands the first reply
// for a token to the waiting caller. Replies for unknown (timed out) tokens
// are dropped.
//
// Thread safety: all methods are thread-safe.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <zmesh/message.h>
#include <zmesh/status.h>

#include "client/completion.h"

namespace zmesh::client {

using ReplyWaiter = std::shared_ptr<Completion<Message>>;

class RequestMux {
 public:
  RequestMux();

  // "_INBOX.<nuid>." — the mux subscribes to prefix() + "*".
  const std::string& prefix() const { return prefix_; }

  // A new waiter and its reply subject.
  ReplyWaiter Register(std::string* reply_subject);
  void Cancel(std::string_view reply_subject);
  // I/O thread: a message arrived on the inbox. A 503 status with no data is
  // turned into kNoResponders.
  void Deliver(Message msg);
  // Fails every waiter (client closed).
  void FailAll(const Status& status);
  size_t outstanding() const;

 private:
  const std::string prefix_;
  mutable std::mutex mu_;
  uint64_t next_ = 1;
  std::unordered_map<std::string, ReplyWaiter> waiters_;  // by token
};

}  // namespace zmesh::client

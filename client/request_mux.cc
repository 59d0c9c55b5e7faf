#include "client/request_mux.h"

#include "client/nuid.h"

namespace zmesh::client {

RequestMux::RequestMux() : prefix_("_INBOX." + NewNuid() + ".") {}

ReplyWaiter RequestMux::Register(std::string* reply_subject) {
  auto waiter = std::make_shared<Completion<Message>>();
  std::lock_guard<std::mutex> lock(mu_);
  std::string token = std::to_string(next_++);
  *reply_subject = prefix_ + token;
  waiters_.emplace(std::move(token), waiter);
  return waiter;
}

void RequestMux::Cancel(std::string_view reply_subject) {
  if (reply_subject.substr(0, prefix_.size()) != prefix_) return;
  std::lock_guard<std::mutex> lock(mu_);
  waiters_.erase(std::string(reply_subject.substr(prefix_.size())));
}

void RequestMux::Deliver(Message msg) {
  const std::string_view subject = msg.subject();
  if (subject.substr(0, prefix_.size()) != prefix_) return;
  ReplyWaiter waiter;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(std::string(subject.substr(prefix_.size())));
    if (it == waiters_.end()) return;
    waiter = std::move(it->second);
    waiters_.erase(it);
  }
  if (msg.status() == 503 && msg.data().empty()) {
    waiter->Complete(Status(StatusCode::kNoResponders, "no responders for the request"));
  } else {
    waiter->Complete(Status::Ok(), std::move(msg));
  }
}

void RequestMux::FailAll(const Status& status) {
  std::unordered_map<std::string, ReplyWaiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiters.swap(waiters_);
  }
  for (auto& [token, w] : waiters) w->Complete(status);
}

size_t RequestMux::outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiters_.size();
}

}  // namespace zmesh::client

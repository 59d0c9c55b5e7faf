#include "client/inbound.h"

#include <charconv>

#include "client/client_state.h"
#include "client/request_mux.h"
#include "client/subscription_table.h"

namespace zmesh::client {
namespace {

bool ParseSid(std::string_view s, uint64_t* sid) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *sid);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Inbound::Inbound(const ThreadOwner* io_thread, SubscriptionTable* subs, RequestMux* mux, Dispatcher* dispatcher,
                 ClientState* state)
    : io_thread_(io_thread), subs_(subs), mux_(mux), dispatcher_(dispatcher), state_(state) {}

void Inbound::Deliver(const proto::Op& op, const ServerUrl& from) {
  io_thread_->Check();
  uint64_t sid = 0;
  if (!ParseSid(op.sid, &sid)) return;
  if (cached_sub_ == nullptr || cached_sid_ != sid || cached_sub_->closed.load(std::memory_order_relaxed)) {
    cached_sub_ = subs_->Find(sid);
    cached_sid_ = sid;
  }
  std::shared_ptr<SubState>& sub = cached_sub_;
  if (sub == nullptr) return;  // unsubscribed meanwhile
  std::string_view headers;
  std::string_view data = op.payload;
  if (op.type == proto::OpType::kHMsg && op.header_size > 0) {
    headers = op.payload.substr(0, static_cast<size_t>(op.header_size));
    data = op.payload.substr(static_cast<size_t>(op.header_size));
  }
  state_->in_msgs.fetch_add(1, std::memory_order_relaxed);
  state_->in_bytes.fetch_add(data.size(), std::memory_order_relaxed);

  if (sub->kind == SubState::Kind::kMux) {
    mux_->Deliver(Message(op.subject, op.reply, headers, data));
    return;
  }
  const int64_t delivered = sub->delivered.fetch_add(1, std::memory_order_relaxed) + 1;
  const int64_t max = sub->max_msgs.load(std::memory_order_relaxed);
  if (max > 0 && delivered > max) return;
  std::shared_ptr<SubState> keep = sub;  // the cache may be reset below
  if (max > 0 && delivered == max) {
    subs_->Remove(keep->sid);  // the server dropped it too
    cached_sub_.reset();
  }
  Message msg(op.subject, op.reply, headers, data);
  if (!keep->Admit(static_cast<int64_t>(msg.size()))) {
    state_->dropped.fetch_add(1, std::memory_order_relaxed);
    if (!keep->slow_reported.exchange(true)) {
      dispatcher_->Emit(EventType::kSlowConsumer, from.ToString(),
                        Status(StatusCode::kBufferFull, "pending limit reached; dropping messages"), keep->subject);
    }
    return;
  }
  if (keep->slow_reported.load(std::memory_order_relaxed)) {
    const int64_t lm = keep->limit_msgs.load(std::memory_order_relaxed);
    if (lm <= 0 || keep->pending_msgs.load(std::memory_order_relaxed) < lm / 2) keep->slow_reported.store(false);
  }
  const bool last = max > 0 && delivered == max;
  if (keep->kind == SubState::Kind::kAsync) {
    batch_.push_back(Dispatcher::Item{std::move(keep), std::move(msg), nullptr});
  } else {
    keep->Push(std::move(msg));
    // Ended: NextMsg returns what is queued, then kClosed.
    if (last) keep->Close(/*discard=*/false);
  }
}

void Inbound::Flush() {
  io_thread_->Check();
  dispatcher_->PushBatch(&batch_);
}

void Inbound::Reset() {
  io_thread_->Check();
  dispatcher_->PushBatch(&batch_);
  cached_sub_.reset();
}

}  // namespace zmesh::client

#include "server/subscription.h"

#include "server/subscriber_endpoint.h"

namespace zmesh::server {

Subscription::Subscription(SubscriberEndpoint* owner, std::string subject, std::string queue, std::string sid,
                           bool remote, uint32_t weight)
    : remote_(remote),
      weight_(weight),
      owner_(owner),
      subject_(std::move(subject)),
      queue_(std::move(queue)),
      sid_(std::move(sid)) {
  owner_->Ref();
}

Subscription::~Subscription() { owner_->Unref(); }

}  // namespace zmesh::server

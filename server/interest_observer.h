#pragma once

// The seam between local subscriptions and the mesh: the peer layer learns of
// every change to local client interest here and announces it to peers.
//
// Threading: called on the worker thread of the client that (un)subscribed,
// after the index changed; implementations must be thread safe.

namespace zmesh::server {

class Subscription;

class InterestObserver {
 public:
  virtual ~InterestObserver() = default;
  virtual void OnLocalSubscribe(const Subscription& sub) = 0;
  virtual void OnLocalUnsubscribe(const Subscription& sub) = 0;
};

}  // namespace zmesh::server

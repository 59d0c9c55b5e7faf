#pragma once

// The seam between local subscriptions and the mesh: the peer layer learns of
// every change to local client interest here and announces it to peers.
//
// Each change is covered by an interest sequence number; AwaitPeers tells
// when every peer has applied it (the interest barrier, SPEC §2).
//
// Threading: called on the worker thread of the client that (un)subscribed,
// after the index changed; implementations must be thread safe.

#include <cstdint>
#include <functional>

namespace zmesh::server {

class Subscription;

class InterestObserver {
 public:
  virtual ~InterestObserver() = default;
  // Both return the sequence number that covers the change. `move_token`
  // (queue members only, 0: none): the member belongs to a client in a
  // planned move; subscribing, it is the new end's member, latent until the
  // old end's is gone; unsubscribing, the old end's member is (or the new
  // end gives up its own).
  virtual uint64_t OnLocalSubscribe(const Subscription& sub, uint64_t move_token = 0) = 0;
  virtual uint64_t OnLocalUnsubscribe(const Subscription& sub, uint64_t move_token = 0) = 0;
  // True when every peer has applied the changes up to `seq`; otherwise
  // false, and `done` runs (on any thread) once they have.
  virtual bool AwaitPeers(uint64_t seq, std::function<void()> done) = 0;
};

}  // namespace zmesh::server

#pragma once

// Whatever a subscription delivers to: a local client connection, or a peer
// node of the mesh (remote interest). The router switches on kind() instead
// of a virtual call on the per-message path.
//
// Threading: reference counted with atomics; the last Unref (any thread)
// deletes the object, so destructors must not touch loop state.

#include <atomic>
#include <cstdint>

namespace zmesh::server {

class SubscriberEndpoint {
 public:
  enum class Kind : uint8_t {
    kClient,    // a local client connection (delivers MSG)
    kPeer,      // a remote node: its interest, forwarded over its active link
    kPeerLink,  // a peer link connection; never owns subscriptions
  };

  explicit SubscriberEndpoint(Kind kind) : kind_(kind) {}
  SubscriberEndpoint(const SubscriberEndpoint&) = delete;
  SubscriberEndpoint& operator=(const SubscriberEndpoint&) = delete;

  Kind kind() const { return kind_; }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 protected:
  virtual ~SubscriberEndpoint() = default;

 private:
  std::atomic<int32_t> refs_{1};
  const Kind kind_;
};

}  // namespace zmesh::server

#pragma once

// What a PeerLink reports to, instead of reaching through the mesh into the
// server: its life cycle goes to a PeerLinkDelegate (the Mesh), the messages
// a peer forwards go to a PeerMessageSink (the router). Tests implement both
// to drive one link without a mesh.
//
// Threading: a link calls both from its own worker thread; implementations
// must be safe from any worker (the mesh posts to its main loop, the router
// works on the calling worker) and must outlive every link.

#include <cstdint>
#include <string_view>
#include <vector>

#include "proto/peer_protocol.h"
#include "server/message.h"

namespace zmesh::server {
class IoWorker;
}  // namespace zmesh::server

namespace zmesh::server::mesh {

class PeerLink;

class PeerLinkDelegate {
 public:
  // The peer's HELLO was accepted; the link reads nothing more until it is
  // activated (PeerLink::Activate) or refused.
  virtual void OnLinkAuthenticated(PeerLink* link) = 0;
  // The peer's first full interest snapshot has been applied.
  virtual void OnLinkSynced(PeerLink* link) = 0;
  // The link closed (once, after it released the node).
  virtual void OnLinkClosed(PeerLink* link) = 0;
  // The peer announced a graceful leave (LEAVING).
  virtual void OnPeerLeaving(PeerLink* link, uint64_t drain_ms) = 0;
  // Anti-entropy found the peer's interest diverged; a RESYNC was sent.
  virtual void OnInterestRepair(PeerLink* link) = 0;
  // The peer asks for our cut of a planned client move (CUT); `applied`:
  // the interest it had applied from each node at its cut (our MARK waits
  // until we have applied as much). Views valid during the call only.
  virtual void OnMoveCut(PeerLink* link, uint64_t token, const std::vector<proto::peer::Applied>& applied) = 0;
  // The peer's client count (LOAD), for rebalancing.
  virtual void OnPeerLoad(PeerLink* link, uint64_t clients) = 0;

 protected:
  ~PeerLinkDelegate() = default;
};

class PeerMessageSink {
 public:
  // A message the peer forwarded: local subscribers only (see
  // Router::PublishFromPeer for `queues` and `to_plain`).
  virtual void OnPeerMessage(IoWorker* worker, const Message& msg, const std::vector<std::string_view>& queues,
                             bool to_plain) = 0;

 protected:
  ~PeerMessageSink() = default;
};

}  // namespace zmesh::server::mesh

#pragma once

// The seam between a client connection in a planned move and the mesh that
// cuts the forwarding streams for it (docs/design-lossless-moves.md). The
// connection owns its MoveFilter and applies it to deliveries; the
// coordinator marks it as the nodes' cuts arrive.
//
// Threading: implementations are thread safe; callbacks run on any thread.

#include <functional>
#include <memory>

#include "server/move_filter.h"
#include "server/subscription.h"

namespace zmesh::server {

class MoveCoordinator {
 public:
  virtual ~MoveCoordinator() = default;
  // The old end of a move (the client sent MOVE): registers `filter` and
  // makes this node's cut, which asks every peer for its own. `cuts_done`
  // runs once every node linked at the cut has cut (or the move timed out).
  virtual void MoveOut(std::shared_ptr<MoveFilter> filter, std::function<void()> cuts_done) = 0;
  // The new end (CONNECT with move_token): registers `filter`, which the
  // nodes' cuts complete.
  virtual void MoveIn(std::shared_ptr<MoveFilter> filter) = 0;
  // The connection is gone.
  virtual void Forget(const MoveFilter* filter) = 0;

  // Queue members (never filtered; see server/mesh/move_table.h). The new
  // end subscribed `member` for move `token`: it stays latent until every
  // node has switched its picks to it (or the move times out).
  virtual void QueueMemberLatent(uint64_t token, Subscription* member) = 0;
  // The old end's `member` for `token` is withdrawn here: this node's picks
  // no longer count it, other nodes' until they switch away.
  virtual void QueueMemberReleased(uint64_t token, Subscription* member) = 0;
};

}  // namespace zmesh::server

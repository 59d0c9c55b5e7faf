#pragma once

// Which plain messages a moving client's connection takes, by the node they
// were published at (docs/design-lossless-moves.md). Every node X cuts its
// forwarding stream once per move (a CUT on every link): the old node
// delivers to the client only what X published before its cut
// (kOutgoing), the new node only what X published after it (kIncoming).
// Queue-group deliveries are never filtered (each goes to one member only),
// but each end records, per group, which nodes have switched their picks
// (QueueSwitch): to the new end's member, away from the old end's. A
// message a node chose this node for is then handed to this client's
// member in its turn only if that node's pick counted the member.
//
// Origins are node ids; "" is this node (local publishers).
//
// Threading: any thread; one mutex, touched only by deliveries to a
// connection that is in a move. Marks of one origin arrive on the thread
// that reads that origin's link, in stream order with its messages, so a
// message and the mark after it are judged in that order.

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

namespace zmesh::server {

class MoveFilter {
 public:
  enum class Side : uint8_t { kIncoming, kOutgoing };

  MoveFilter(Side side, uint64_t token, int64_t started_ms) : side_(side), token_(token), started_ms_(started_ms) {}
  MoveFilter(const MoveFilter&) = delete;
  MoveFilter& operator=(const MoveFilter&) = delete;

  Side side() const { return side_; }
  uint64_t token() const { return token_; }
  int64_t started_ms() const { return started_ms_; }

  // Whether a plain message published at `origin` goes to this client.
  bool Accepts(std::string_view origin) const;

  // `origin` has cut (its CUT arrived, or its link is gone: nothing more
  // comes from it). True when this completed the move's cuts (once).
  bool Mark(std::string_view origin);
  // `origin` has read this node's CUT (its MARK arrived, or its link is
  // gone), so it has delivered all this node forwarded before the cut. The
  // old end waits for this too: a client that publishes may publish on the
  // new node once MOVED arrives, and those messages must not overtake its
  // earlier ones anywhere. True when this completed the move (once).
  bool Acknowledge(std::string_view origin);
  // This node's cut went to `origins` (the peers linked at that moment);
  // the cut is complete when they and this node have marked. True when this
  // completed it (once).
  bool Expect(std::vector<std::string> origins);
  // `origin`'s link is gone: nothing more comes from it and nothing is
  // waited for from it (a cut, a MARK, a queue switch). True when this
  // completed the move (once).
  bool OriginGone(std::string_view origin);
  // Ends the filtering: an incoming filter takes everything from now on
  // (the cut completed, or the move gave up waiting), an outgoing one
  // nothing (the old connection delivered its last message). True the first
  // time the cut is reported complete by this call.
  bool Finish();

  // Queue members (docs/design-lossless-moves.md, "Queue groups"):
  // `origin`'s picks count the new end's member of (subject, queue) from
  // now on, or no longer count the old end's (its QUEUE_SWITCH arrived; ""
  // is this node, where the old end's member was released).
  void QueueSwitch(std::string_view origin, std::string_view subject, std::string_view queue);
  // Whether `origin` has switched (or its link is gone).
  bool QueueSwitched(std::string_view origin, std::string_view subject, std::string_view queue) const;
  // The new end: this node and every node it cut to have switched to the
  // member.
  bool QueueSwitchComplete(std::string_view subject, std::string_view queue) const;

  bool complete() const;
  bool finished() const;
  // Plain messages Accepts turned away (the other end of the move delivers
  // them): /connz shows it for a connection in a move.
  uint64_t withheld() const;

 private:
  bool CompleteLocked() const;
  bool ReportLocked();
  bool QueueSwitchedLocked(std::string_view origin, std::string_view subject, std::string_view queue) const;

  const Side side_;
  const uint64_t token_;
  const int64_t started_ms_;
  mutable std::mutex mu_;
  absl::flat_hash_set<std::string> marked_;
  absl::flat_hash_set<std::string> acknowledged_;  // the old end only
  absl::flat_hash_set<std::string> gone_;
  // (subject, queue) -> the origins that switched to the new end's member.
  absl::flat_hash_map<std::pair<std::string, std::string>, absl::flat_hash_set<std::string>> queue_switched_;
  std::vector<std::string> expected_;
  bool expecting_ = false;  // this node has cut
  bool finished_ = false;
  bool reported_ = false;   // completion was reported
  mutable uint64_t withheld_ = 0;
};

}  // namespace zmesh::server

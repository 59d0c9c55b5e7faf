#pragma once

// The node's lock order: every mutex in server/ (with server/mesh/,
// server/monitor/) and auth/, in the order they may be nested. A thread that
// holds a lock may only take locks further down this list, never one above
// it; locks on the same line are never held together. Most locks are
// leaves: nothing is taken while they are held. Class comments refer here
// instead of repeating the order.
//
// Almost all work runs on event-loop threads that own their data and need no
// lock (see EventLoop); locks guard the few things other threads reach.
//
//  #  mutex                                  held by (who takes it)
//  -  -------------------------------------  ------------------------------------------------------
//  0  ForwardGate (one mutex per worker)     a client worker around routing one publish (its own
//                                            gate; under it 1 never, 3a, 4, 6 to 8, 0b); a cut
//                                            takes all, in index order (the main loop's Mesh::Cut,
//                                            a worker finishing a move), then 0a, 3a, 6 to 8.
//  0a mesh::MoveTable::mu_                   link workers (marks), the main loop (cuts, expiry),
//                                            client workers (register, forget). Under it: 0b;
//                                            completion callbacks run after it is dropped.
//  0b MoveFilter::mu_                        any delivering thread (Accepts), under 0a. Leaf.
//     RebalanceOrder::mu_                    leaf: the main loop sets, client workers claim.
//  1  mesh::LocalInterest::mu_               client workers (SUB/UNSUB changes), peer-link workers
//                                            (snapshot batches, digests), the main loop (attach,
//                                            detach). Under it: the barrier (2), and each attached
//                                            link's SendFrame -> Connection::Enqueue (6 to 8).
//  2  mesh::InterestBarrier::mu_             under 1, or alone from a peer link's worker (ACKs)
//                                            and the main loop (Overdue). Released `done`
//                                            callbacks run after it is dropped (they post to the
//                                            client's loop: 8), but possibly still under 1.
//  3  mesh::PeerNode::interest_mu_           the active link's worker (interest frames, snapshot
//                                            epochs), link swaps and drops. Under it: link_mu_
//                                            (3a) and the subject index (4).
//  3a mesh::PeerNode::link_mu_               publishers on any worker (Forward: the only lock it
//                                            takes), link swaps and drops (under 3). Under it:
//                                            the link's Connection::Enqueue (6 to 8); never 3.
//  4  SubjectIndex::mu_ (shared_mutex)       any worker (Match: shared; Insert/Remove:
//                                            exclusive), under 3 for remote interest. Leaf.
//  5  mesh::PeerLink::successor_mu_          a link's and its replacement's workers. Leaf.
//  6  OutboundBuffer::mu_                    any thread appending to or flushing a connection
//                                            (under 1 or 3a for peer links). Leaf: writev() and
//                                            TLS writes run with it released; PendingBudget is
//                                            lock-free.
//  7  Connection::drain_waiters_mu_          any thread: producers waiting for this consumer, and
//                                            the flushing thread that wakes them. Leaf.
//  8  EventLoop::mu_                         any thread posting a task (QueueInLoop/RunInLoop),
//                                            under any lock above. Leaf: tasks run after it is
//                                            dropped.
//     mesh::Mesh::status_mu_,                leaves, each taken alone: the main loop writes, the
//     InfoBuilder::mu_,                      monitor and workers read copies.
//     ClosedConnections::mu_
//
// auth/ (its own threads: the password checkers; callers are client workers):
//  a  auth::Authenticator::shutdown_mu_      Shutdown() only (joins the checkers); alone.
//  b  auth::Authenticator::reload_mu_        SIGHUP on the main loop (Reload()); then c.
//  c  auth::Authenticator::mu_               workers submitting CONNECTs, checker threads, Reload;
//                                            then d.
//  d  auth::CredentialCache::mu_             under c, or alone. Leaf.
//     auth::PeerKeys::mu_                    leaf: the main loop swaps the keyring, TLS
//                                            handshakes on workers read it.
//
// zk/ and client/ are separate libraries with their own locks (the client's
// order is in client/engine.h); server/ never holds a lock above while
// calling into them.
//
// A new mutex gets a line here, in the place its nesting puts it.

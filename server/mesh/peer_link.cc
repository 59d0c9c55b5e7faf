#include "server/mesh/peer_link.h"

#include <glog/logging.h>

#include "auth/peer_keys.h"
#include "server/event_loop.h"
#include "server/io_worker.h"
#include "server/mesh/local_interest.h"
#include "server/mesh/move_table.h"
#include "server/mesh/peer_node.h"

namespace zmesh::server::mesh {

namespace peer = proto::peer;

namespace {

// The first bytes of a version-1 peer: a HELLO frame header (u32 length,
// type 0x01) followed by u16 version 1, sent in clear.
bool LooksLikeVersion1Hello(std::string_view head) {
  return head.size() >= 7 && head[2] == 0 && head[3] == 0 && head[4] == 0x01 && head[5] == 0x01 && head[6] == 0;
}

}  // namespace

PeerLink::PeerLink(const Context& context, IoWorker* worker, int fd, uint64_t id, std::string remote_address,
                   Direction direction, std::string expected_node_id, uint64_t expected_incarnation, uint64_t dial_id)
    : Connection(Kind::kPeerLink, worker, fd, id, std::move(remote_address), context.options->peer_max_pending_bytes),
      options_(*context.options),
      interest_(context.interest),
      delegate_(context.delegate),
      sink_(context.sink),
      moves_(context.moves),
      direction_(direction),
      expected_node_id_(std::move(expected_node_id)),
      expected_incarnation_(expected_incarnation),
      dial_id_(dial_id),
      reader_(options_.max_frame_bytes) {
  write_deadline_ms_ = options_.write_deadline_ms;
  handshake_timeout_ms_ = options_.handshake_timeout_ms;
}

PeerLink::~PeerLink() = default;

void PeerLink::UseTls(SSL_CTX* ctx, bool server_side, std::shared_ptr<const auth::PeerKeyring> keys) {
  tls_keys_ = std::move(keys);
  // No host name check: a peer is identified by its node id (HELLO, and the
  // certificate in certificate mode), not by the address it was reached at.
  EnableTls(ctx, server_side, "", const_cast<auth::PeerKeyring*>(tls_keys_.get()), /*sniff_plaintext=*/true);
}

void PeerLink::SendFrame(std::string_view frame) { Enqueue(&frame, 1, 0, false, CloseReason::kPeerResync); }

void PeerLink::SendOwn(std::string_view frame) { SendFrame(frame); }

void PeerLink::PumpSnapshot() {
  loop()->AssertInLoopThread();
  // Batches go out while at most half the backpressure threshold waits to
  // be written: the snapshot moves at the socket's pace, never near
  // --peer_max_pending_bytes, and forwarded messages interleave with it.
  constexpr size_t kBatchBytes = 64 * 1024;
  while (sending_snapshot_ && !closing()) {
    if (out().pending_bytes() > out().backpressure_threshold() / 2) {
      NotifyWhenDrained();
      return;
    }
    sending_snapshot_ = !interest_->ContinueSnapshot(this, kBatchBytes);
  }
}

void PeerLink::OnOutputDrained() { PumpSnapshot(); }

void PeerLink::FinishRetireIfDrained() {
  if (closing() || state_ != State::kRetiring || !peer_retired_) return;
  // Both ends have switched, but what we queued before our RETIRE (messages
  // the peer delivers before anything from the new link) must reach it
  // first: closing with it unwritten would lose it. The peer reads this link
  // until our RETIRE, so it drains; the next tick looks again (the drain
  // notice fires at half the threshold, not at empty, so it cannot serve).
  if (out().pending_bytes() > 0) return;
  Close(CloseReason::kDuplicatePeer, /*flush=*/true);
}

void PeerLink::OnStart() {
  loop()->AssertInLoopThread();
  last_ping_ms_ = created_ms();
  const MeshOptions& o = options_;
  peer::Hello hello;
  hello.node_id = o.node_id;
  hello.incarnation = o.incarnation;
  hello.peer_url = o.peer_url;
  hello.client_url = o.client_url;
  std::string frame;
  peer::EncodeHello(hello, &frame);
  SendOwn(frame);  // with TLS, written once the handshake is done
}

void PeerLink::OnInput(std::string_view data) { Process(data); }

void PeerLink::Process(std::string_view in) {
  loop()->AssertInLoopThread();
  ProcessFrames(in);
  // One acknowledgement per read, however many interest changes it held: a
  // storm of subscriptions does not double the frames.
  if (ack_due_ && !closing()) {
    ack_due_ = false;
    std::string ack;
    peer::EncodeInterestAck(applied_seq_, &ack);
    SendOwn(ack);
  }
}

void PeerLink::ProcessFrames(std::string_view in) {
  while (!in.empty() && !closing()) {
    // The mesh has not decided yet, or the link we replace still delivers:
    // keep it for later.
    if (state_ == State::kAuthenticated || held_) {
      stashed_input_.append(in.data(), in.size());
      return;
    }
    peer::Frame frame;
    const auto status = reader_.Next(&in, &frame);
    if (status == peer::FrameReader::Status::kNeedMore) return;
    if (status == peer::FrameReader::Status::kError) {
      ProtocolError(reader_.error());
      return;
    }
    std::string why;
    if (!peer::ValidateFrame(frame, options_.name_bounds, &why)) {
      ProtocolError(why);
      return;
    }
    HandleFrame(frame);
  }
}

void PeerLink::ProtocolError(const std::string& what) {
  LOG(WARNING) << Describe() << ": protocol error: " << what << "; resetting the link";
  Close(CloseReason::kProtocolViolation, /*flush=*/false);
}

void PeerLink::OnHandshakeFailed(const Transport& transport) {
  loop()->AssertInLoopThread();
  const std::string_view head = transport.plaintext_prefix();
  std::string why;
  if (LooksLikeVersion1Hello(head)) {
    why = "the peer speaks zmesh peer protocol version 1 (plaintext, HMAC challenge-response), which this node "
          "refuses: it speaks version " + std::to_string(peer::kProtocolVersion) +
          " (TLS 1.3); upgrade that node";
  } else if (!head.empty()) {
    why = "the other side does not speak TLS (not a zmesh " + std::to_string(peer::kProtocolVersion) +
          " peer, or one started with --insecure_peers)";
  } else {
    why = std::string(transport.last_error()) +
          (options_.certificate_mode ? " (a certificate the peer CA did not sign, or none)"
                                     : " (a different or missing cluster secret)");
  }
  LOG(WARNING) << "node " << options_.node_id << ": peer link " << id() << " " << remote_address()
               << ": TLS handshake failed: " << why;
}

void PeerLink::HandleFrame(const peer::Frame& f) {
  switch (f.type) {
    case peer::FrameType::kPing: {
      std::string pong;
      peer::EncodeEmpty(peer::FrameType::kPong, &pong);
      SendOwn(pong);
      return;
    }
    case peer::FrameType::kPong:
      pings_out_ = 0;
      rtt_ms_.store(MonotonicMs() - ping_sent_ms_, std::memory_order_relaxed);
      return;
    case peer::FrameType::kRefuse:
      LOG(WARNING) << Describe() << ": the peer refused this link: " << f.reason;
      Close(CloseReason::kPeerRefused, false);
      return;
    default:
      break;
  }
  if (state_ == State::kHandshake) {
    if (f.type == peer::FrameType::kHello && !got_hello_) {
      HandleHello(f.hello);
    } else {
      LOG(WARNING) << Describe() << ": frame type " << static_cast<int>(f.type) << " before HELLO; refused";
      Close(CloseReason::kAuthenticationViolation, false);
    }
    return;
  }
  switch (f.type) {
    case peer::FrameType::kQueueMove: {
      bool applied;
      if (f.queue_move == peer::QueueMoveKind::kLatent) {
        if (moves_ == nullptr) {  // no moves here: an ordinary member
          applied = node_->ApplyInterest(this, f.interest);
        } else if ((applied = node_->ApplyInterest(this, f.interest, /*latent=*/+1))) {
          moves_->QueueLatent(f.move_token, node_, f.interest.subject, f.interest.queue, MonotonicMs());
        }
      } else {
        applied = node_->ApplyInterest(this, f.interest);
        if (moves_ != nullptr) {
          // Our picks stop counting the old end's member here: every queue
          // message we forward to it after this frame was chosen for one of
          // its other members.
          node_->SendQueueSwitch(f.move_token, f.interest.subject, f.interest.queue);
          moves_->QueueReleased(f.move_token, f.interest.subject, f.interest.queue, MonotonicMs());
        }
      }
      NoteApplied(f.interest.seq, applied);
      return;
    }
    case peer::FrameType::kInterest:
      NoteApplied(f.interest.seq, node_->ApplyInterest(this, f.interest));
      return;
    case peer::FrameType::kSyncBegin:
      node_->BeginSync(this);
      in_snapshot_ = true;
      return;
    case peer::FrameType::kSyncEnd: {
      const bool consistent = node_->EndSync(this, f.digest);
      in_snapshot_ = false;
      if (f.digest.seq >= applied_seq_) {
        applied_seq_ = f.digest.seq;
        ack_due_ = true;  // also for seq 0: a peer with no change yet waits for our snapshot
        if (node_->IsActive(this)) node_->NoteApplied(applied_seq_);
      }
      resync_requested_ = false;
      if (!consistent && node_->IsActive(this)) {
        LOG(WARNING) << "peer " << peer_node_id_ << ": snapshot digest mismatch; asking again";
        std::string resync;
        peer::EncodeEmpty(peer::FrameType::kResync, &resync);
        SendOwn(resync);
        resync_requested_ = true;
      }
      if (!synced_ && node_->IsActive(this)) {
        synced_ = true;
        delegate_->OnLinkSynced(this);
      }
      return;
    }
    case peer::FrameType::kDigest:
      // Anti-entropy: the digest reflects everything the peer sent before it
      // on this link, so a mismatch is a real divergence (a peer does not
      // send one inside its snapshot; SYNC_END checks that).
      if (node_->IsActive(this) && !in_snapshot_ && !resync_requested_ && !node_->DigestMatches(f.digest)) {
        LOG(WARNING) << "peer " << peer_node_id_ << ": interest digest differs from what it announced; resyncing";
        std::string resync;
        peer::EncodeEmpty(peer::FrameType::kResync, &resync);
        SendOwn(resync);
        resync_requested_ = true;
        delegate_->OnInterestRepair(this);
      }
      return;
    case peer::FrameType::kResync:
      interest_->BeginSnapshot(this);
      sending_snapshot_ = true;
      PumpSnapshot();
      return;
    case peer::FrameType::kInterestAck:
      interest_->barrier().OnAck(this, f.ack_seq);
      return;
    case peer::FrameType::kMsg:
    case peer::FrameType::kMsgQueues:
      HandleMsg(f.msg);
      return;
    case peer::FrameType::kRetire:
      ReleaseSuccessor();
      // It switched to another link; we follow when the mesh sees it, or
      // close once what we still owe it is written.
      peer_retired_ = true;
      FinishRetireIfDrained();
      return;
    case peer::FrameType::kLeaving:
      delegate_->OnPeerLeaving(this, f.leaving.drain_ms);
      return;
    case peer::FrameType::kCut:
      // Here, in stream order: the peer's messages before this frame were
      // judged before the mark, those after it will be judged after. What
      // our side forwarded before our own CUT has been delivered here, so
      // the reply (MARK) tells the peer so.
      if (moves_ != nullptr) moves_->Mark(f.move_token, peer_node_id_);
      delegate_->OnMoveCut(this, f.move_token, f.cut_applied);
      return;
    case peer::FrameType::kQueueSwitch:
      // In stream order, like CUT: the peer's queue messages before this
      // frame were chosen for our other members of the group.
      if (moves_ != nullptr) moves_->QueueSwitched(f.move_token, peer_node_id_, f.interest.subject, f.interest.queue);
      return;
    case peer::FrameType::kMark:
      // The peer has read our CUT (its own CUT came first on this link).
      if (moves_ != nullptr) moves_->Acknowledged(f.move_token, peer_node_id_);
      return;
    case peer::FrameType::kLoad:
      delegate_->OnPeerLoad(this, f.load_clients);
      return;
    case peer::FrameType::kHello:
    case peer::FrameType::kPing:
    case peer::FrameType::kPong:
    case peer::FrameType::kRefuse:
      ProtocolError("HELLO after the handshake");
      return;
  }
}

void PeerLink::HandleHello(const peer::Hello& hello) {
  const MeshOptions& o = options_;
  if (hello.version != peer::kProtocolVersion) {
    LOG(WARNING) << Describe() << ": the peer speaks zmesh peer protocol version " << hello.version
                 << ", this node speaks version " << peer::kProtocolVersion << "; refused (upgrade the older node)";
    Close(CloseReason::kProtocolViolation, false);
    return;
  }
  const std::string node_id(hello.node_id);
  if (node_id == o.node_id) {
    LOG(WARNING) << Describe() << " leads to this node id itself (incarnation " << hello.incarnation
                 << (hello.incarnation == o.incarnation ? ", this very process" : ", another process") << "); closing";
    Close(CloseReason::kDuplicatePeer, false);
    return;
  }
  if (!expected_node_id_.empty() && node_id != expected_node_id_) {
    LOG(WARNING) << Describe() << ": dialled node " << expected_node_id_ << " but reached node " << node_id
                 << "; closing";
    Close(CloseReason::kDuplicatePeer, false);
    return;
  }
  // The znode names the process that owns the node id; a dial reaches that
  // process or nobody.
  if (expected_incarnation_ != 0 && hello.incarnation != expected_incarnation_) {
    LOG(WARNING) << Describe() << ": dialled node " << node_id << " incarnation " << expected_incarnation_
                 << " (its znode) but reached incarnation " << hello.incarnation << "; closing";
    Close(CloseReason::kPeerRefused, false);
    return;
  }
  if (o.certificate_mode && !transport().PeerCertificateNames(node_id)) {
    LOG(WARNING) << Describe() << ": the peer certificate does not name node " << node_id
                 << " (subjectAltName DNS or common name); refused";
    Close(CloseReason::kAuthenticationViolation, false);
    return;
  }
  peer_node_id_ = node_id;
  peer_incarnation_ = hello.incarnation;
  peer_client_url_ = std::string(hello.client_url);
  peer_peer_url_ = std::string(hello.peer_url);
  got_hello_ = true;
  state_ = State::kAuthenticated;
  PauseReading(kPauseActivation);
  delegate_->OnLinkAuthenticated(this);
}

void PeerLink::NoteApplied(uint64_t seq, bool applied) {
  // Inside a snapshot nothing counts until the whole snapshot is in.
  if (in_snapshot_ || seq <= applied_seq_) return;
  applied_seq_ = seq;
  ack_due_ = true;
  if (applied) node_->NoteApplied(seq);  // what a CUT's receiver compares (Mesh::OnMoveCut)
}

void PeerLink::HandleMsg(const peer::Msg& msg) {
  if (!msg.queues_only) {  // a continuation (MSG_QUEUES) is the same message
    CountIn(msg.payload.size());
    WorkerStats& stats = worker()->stats();
    stats.Add(stats.in_msgs, 1);
    stats.Add(stats.in_bytes, msg.payload.size());
  }
  Message m{msg.subject, msg.reply, msg.payload, msg.header_size, peer_node_id_};
  sink_->OnPeerMessage(worker(), m, msg.queues, /*to_plain=*/!msg.queues_only);
}

void PeerLink::Activate(RefPtr<PeerNode> node) {
  loop()->AssertInLoopThread();
  if (closing() || state_ != State::kAuthenticated) return;
  node_ = std::move(node);
  state_ = State::kActive;
  RefPtr<PeerLink> old = node_->SwapLink(this);
  interest_->Attach(this, old.get());
  sending_snapshot_ = true;
  PumpSnapshot();
  if (old) {
    // Messages the peer sent on the old link before switching must be
    // delivered before anything it sends on this one.
    if (old->HoldSuccessor(this)) {
      held_ = true;
      PauseReading(kPauseOrder);
    }
    old->loop()->QueueInLoop([old] { old->Retire(); });
  }
  ResumeReading(kPauseActivation);
  std::string stash;
  stash.swap(stashed_input_);
  Process(stash);
}

bool PeerLink::HoldSuccessor(PeerLink* next) {
  std::lock_guard<std::mutex> lock(successor_mu_);
  if (predecessor_done_) return false;
  successor_ = RefPtr<PeerLink>(next);
  return true;
}

void PeerLink::ReleaseSuccessor() {
  loop()->AssertInLoopThread();
  RefPtr<PeerLink> next;
  {
    std::lock_guard<std::mutex> lock(successor_mu_);
    predecessor_done_ = true;
    next = std::move(successor_);
    successor_ = RefPtr<PeerLink>();
  }
  if (next) next->loop()->QueueInLoop([next] { next->EndHold(); });
}

void PeerLink::EndHold() {
  loop()->AssertInLoopThread();
  if (!held_ || closing()) return;
  held_ = false;
  ResumeReading(kPauseOrder);
  std::string stash;
  stash.swap(stashed_input_);
  Process(stash);
}

void PeerLink::Retire() {
  loop()->AssertInLoopThread();
  if (closing()) return;
  if (state_ != State::kActive) {  // never carried traffic: just drop it
    Close(CloseReason::kDuplicatePeer, false);
    return;
  }
  state_ = State::kRetiring;
  sending_snapshot_ = false;  // Activate detached us from our interest: the new link carries it
  std::string retire;
  peer::EncodeEmpty(peer::FrameType::kRetire, &retire);
  // The last bytes we ever send here: no PONG, ack or ping may follow, since
  // the peer closes once it has read our RETIRE, and bytes arriving at a
  // closed socket make its kernel answer with a reset, which throws away
  // whatever it had not yet read or sent. A sealed stream closes cleanly.
  std::string_view piece(retire);
  Enqueue(&piece, 1, 0, false, CloseReason::kPeerResync, nullptr, /*last=*/true);
  FinishRetireIfDrained();
}

void PeerLink::Refuse(const std::string& reason) {
  loop()->AssertInLoopThread();
  if (closing()) return;
  std::string frame;
  peer::EncodeRefuse(reason, &frame);
  SendOwn(frame);
  Close(CloseReason::kPeerRefused, /*flush=*/true);
}

void PeerLink::OnTick(int64_t now) {
  loop()->AssertInLoopThread();
  Connection::OnTick(now);
  if (closing()) return;
  if (sending_snapshot_) PumpSnapshot();  // a missed drain notice costs a tick, not the snapshot
  const MeshOptions& o = options_;
  if ((state_ == State::kHandshake || state_ == State::kAuthenticated) &&
      now - created_ms() >= o.handshake_timeout_ms) {
    LOG(WARNING) << Describe() << ": no complete handshake within " << o.handshake_timeout_ms << " ms";
    Close(CloseReason::kAuthenticationTimeout, false);
    return;
  }
  if (state_ == State::kRetiring) {
    FinishRetireIfDrained();
    if (closing()) return;
    // Until its RETIRE the peer still writes here what it queued before it
    // switched, so a retiring link is not cut for taking long, only for
    // stopping: silence while we read (the peer lost the new link, or is
    // gone) or no write progress (Connection's write deadline). Cutting a
    // link that still moves would lose what is in it. We send nothing, not
    // even pings, after our RETIRE.
    if (!peer_retired_ && !reading_paused() && now - last_read_ms() >= o.handshake_timeout_ms) {
      LOG(WARNING) << Describe() << ": retiring, but nothing received for " << now - last_read_ms()
                   << " ms and no RETIRE; closing";
      Close(CloseReason::kDuplicatePeer, true);
    }
    return;
  }
  // Fixed-interval pings whatever the traffic, so a peer that vanished while
  // we were busy writing to it is still noticed (SPEC §4). A live peer's
  // bytes (its own pings, our pongs, anything) arrive at least once per
  // interval, so silence for ping_interval × max_pings_out means it is gone:
  // detected within that bound at both ends, checked on every tick. While we
  // hold reading for the predecessor the silence is ours, bounded by its
  // retirement.
  const int64_t silence = now - last_read_ms();
  if (!held_ && silence >= o.ping_interval_ms * o.max_pings_out) {
    LOG(WARNING) << Describe() << ": nothing received for " << silence << " ms (" << pings_out_
                 << " pings unanswered); stale";
    Close(CloseReason::kStaleConnection, false);
    return;
  }
  if (now - last_ping_ms_ >= o.ping_interval_ms) {
    ++pings_out_;
    last_ping_ms_ = ping_sent_ms_ = now;
    std::string ping;
    peer::EncodeEmpty(peer::FrameType::kPing, &ping);
    SendOwn(ping);
  }
}

std::string PeerLink::Describe() const {
  std::string who = peer_node_id_.empty() ? (expected_node_id_.empty() ? std::string("an unidentified peer")
                                                                        : "node " + expected_node_id_)
                                          : "node " + peer_node_id_;
  return "node " + options_.node_id + ": peer link " + std::to_string(id()) +
         (direction_ == Direction::kOutbound ? " to " : " from ") + who + " (" + remote_address() + ")";
}

void PeerLink::OnClose(CloseReason reason) {
  loop()->AssertInLoopThread();
  ReleaseSuccessor();  // nothing more will be delivered from here
  const bool was_active = node_ && node_->DropLinkIf(this);
  LOG(INFO) << Describe() << " down: " << CloseReasonText(reason)
            << (was_active ? "; the node's interest is withdrawn until it reconnects" : "");
  interest_->Detach(this);
  node_ = RefPtr<PeerNode>();  // breaks the node <-> link reference cycle
  delegate_->OnLinkClosed(this);
}

}  // namespace zmesh::server::mesh

#include "server/mesh/peer_link.h"

#include <glog/logging.h>

#include "server/event_loop.h"
#include "server/io_worker.h"
#include "server/mesh/local_interest.h"
#include "server/mesh/mesh.h"
#include "server/mesh/peer_auth.h"
#include "server/mesh/peer_node.h"
#include "server/server_context.h"

namespace zmesh::server::mesh {

namespace peer = proto::peer;

PeerLink::PeerLink(Mesh* mesh, IoWorker* worker, int fd, uint64_t id, std::string remote_address, Direction direction,
                   std::string expected_node_id, uint64_t dial_id)
    : Connection(Kind::kPeerLink, worker, fd, id, std::move(remote_address), mesh->options().peer_max_pending_bytes),
      mesh_(mesh),
      direction_(direction),
      expected_node_id_(std::move(expected_node_id)),
      dial_id_(dial_id),
      nonce_(NewNonce()),
      reader_(mesh->options().max_frame_bytes) {
  write_deadline_ms_ = mesh->options().write_deadline_ms;
  handshake_timeout_ms_ = mesh->options().handshake_timeout_ms;
}

PeerLink::~PeerLink() = default;

void PeerLink::SendFrame(std::string_view frame) { Enqueue(&frame, 1, 0, false, CloseReason::kPeerResync); }

void PeerLink::SendOwn(std::string_view frame) { SendFrame(frame); }

void PeerLink::OnStart() {
  last_ping_ms_ = created_ms();
  const MeshOptions& o = mesh_->options();
  peer::Hello hello;
  hello.node_id = o.node_id;
  hello.incarnation = o.incarnation;
  hello.nonce = nonce_;
  hello.peer_url = o.peer_url;
  hello.client_url = o.client_url;
  std::string frame;
  peer::EncodeHello(hello, &frame);
  SendOwn(frame);
}

void PeerLink::OnInput(std::string_view data) { Process(data); }

void PeerLink::Process(std::string_view in) {
  while (!in.empty() && !closing()) {
    if (state_ == State::kAuthenticated) {  // the mesh has not decided yet: keep it for later
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
    HandleFrame(frame);
  }
}

void PeerLink::ProtocolError(const std::string& what) {
  LOG(WARNING) << "peer link " << id() << " " << remote_address()
               << (peer_node_id_.empty() ? "" : " node=" + peer_node_id_) << ": protocol error: " << what;
  Close(CloseReason::kProtocolViolation, /*flush=*/false);
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
    default:
      break;
  }
  if (state_ == State::kHandshake) {
    HandleHandshake(f);
    return;
  }
  switch (f.type) {
    case peer::FrameType::kInterest:
      node_->ApplyInterest(this, f.interest);
      return;
    case peer::FrameType::kSyncBegin:
      node_->BeginSync(this);
      return;
    case peer::FrameType::kSyncEnd: {
      const bool consistent = node_->EndSync(this, f.digest);
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
        mesh_->OnLinkSynced(this);
      }
      return;
    }
    case peer::FrameType::kDigest:
      // Anti-entropy: the digest reflects everything the peer sent before it
      // on this link, so a mismatch is a real divergence.
      if (node_->IsActive(this) && !resync_requested_ && !node_->DigestMatches(f.digest)) {
        LOG(WARNING) << "peer " << peer_node_id_ << ": interest digest differs from what it announced; resyncing";
        std::string resync;
        peer::EncodeEmpty(peer::FrameType::kResync, &resync);
        SendOwn(resync);
        resync_requested_ = true;
        mesh_->CountRepair();
      }
      return;
    case peer::FrameType::kResync:
      mesh_->interest()->SendSnapshot(this);
      return;
    case peer::FrameType::kMsg:
      HandleMsg(f.msg);
      return;
    case peer::FrameType::kRetire:
      if (state_ == State::kRetiring) {
        Close(CloseReason::kDuplicatePeer, /*flush=*/true);
      } else {
        peer_retired_ = true;  // it switched to another link; we follow when the mesh sees it
      }
      return;
    case peer::FrameType::kLeaving:
      mesh_->OnPeerLeaving(this, f.leaving.drain_ms);
      return;
    case peer::FrameType::kHello:
    case peer::FrameType::kAuth:
    case peer::FrameType::kPing:
    case peer::FrameType::kPong:
      ProtocolError("handshake frame after the handshake");
      return;
  }
}

void PeerLink::HandleHandshake(const peer::Frame& f) {
  const MeshOptions& o = mesh_->options();
  if (f.type == peer::FrameType::kHello && !got_hello_) {
    if (f.hello.version != peer::kProtocolVersion) {
      ProtocolError("peer protocol version " + std::to_string(f.hello.version) + ", we speak " +
                    std::to_string(peer::kProtocolVersion));
      return;
    }
    peer_node_id_ = std::string(f.hello.node_id);
    if (peer_node_id_ == o.node_id) {
      LOG(WARNING) << "peer link " << id() << " " << remote_address() << " leads to this node itself; closing";
      Close(CloseReason::kDuplicatePeer, false);
      return;
    }
    if (!expected_node_id_.empty() && peer_node_id_ != expected_node_id_) {
      LOG(WARNING) << "peer link " << id() << " dialled " << expected_node_id_ << " at " << remote_address()
                   << " but reached " << peer_node_id_ << "; closing";
      Close(CloseReason::kDuplicatePeer, false);
      return;
    }
    peer_incarnation_ = f.hello.incarnation;
    peer_nonce_ = std::string(f.hello.nonce);
    peer_client_url_ = std::string(f.hello.client_url);
    peer_peer_url_ = std::string(f.hello.peer_url);
    got_hello_ = true;
    std::string auth;
    peer::EncodeAuth(PeerProof(o.secret, o.node_id, nonce_, peer_node_id_, peer_nonce_), &auth);
    SendOwn(auth);
    return;
  }
  if (f.type == peer::FrameType::kAuth && got_hello_) {
    if (!VerifyPeerProof(o.secret, f.mac, peer_node_id_, peer_nonce_, o.node_id, nonce_)) {
      LOG(WARNING) << "peer " << remote_address() << " claiming to be node " << peer_node_id_
                   << " failed authentication (wrong or missing cluster secret); refused";
      Close(CloseReason::kAuthenticationViolation, false);
      return;
    }
    state_ = State::kAuthenticated;
    PauseReading(kPauseActivation);
    mesh_->OnLinkAuthenticated(this);
    return;
  }
  LOG(WARNING) << "peer link " << id() << " " << remote_address() << ": unexpected frame "
               << static_cast<int>(f.type) << " during the handshake; refused";
  Close(CloseReason::kAuthenticationViolation, false);
}

void PeerLink::HandleMsg(const peer::Msg& msg) {
  CountIn(msg.payload.size());
  WorkerStats& stats = worker()->stats();
  stats.Add(stats.in_msgs, 1);
  stats.Add(stats.in_bytes, msg.payload.size());
  Message m{msg.subject, msg.reply, msg.payload, msg.header_size};
  mesh_->ctx()->router.PublishFromPeer(worker(), m, msg.queues);
}

void PeerLink::Activate(RefPtr<PeerNode> node) {
  if (closing() || state_ != State::kAuthenticated) return;
  node_ = std::move(node);
  state_ = State::kActive;
  RefPtr<PeerLink> old = node_->SwapLink(this);
  mesh_->interest()->Attach(this, old.get());
  if (old) old->loop()->QueueInLoop([old] { old->Retire(); });
  ResumeReading(kPauseActivation);
  std::string stash;
  stash.swap(stashed_input_);
  Process(stash);
}

void PeerLink::Retire() {
  if (closing()) return;
  if (state_ != State::kActive) {  // never carried traffic: just drop it
    Close(CloseReason::kDuplicatePeer, false);
    return;
  }
  state_ = State::kRetiring;
  retire_since_ms_ = MonotonicMs();
  std::string retire;
  peer::EncodeEmpty(peer::FrameType::kRetire, &retire);
  SendOwn(retire);
  if (peer_retired_) Close(CloseReason::kDuplicatePeer, /*flush=*/true);
}

void PeerLink::OnTick(int64_t now) {
  Connection::OnTick(now);
  if (closing()) return;
  const MeshOptions& o = mesh_->options();
  if ((state_ == State::kHandshake || state_ == State::kAuthenticated) &&
      now - created_ms() >= o.handshake_timeout_ms) {
    LOG(WARNING) << "peer link " << id() << " " << remote_address() << ": no complete handshake within "
                 << o.handshake_timeout_ms << " ms";
    Close(CloseReason::kAuthenticationTimeout, false);
    return;
  }
  if (state_ == State::kRetiring && now - retire_since_ms_ >= o.handshake_timeout_ms) {
    Close(CloseReason::kDuplicatePeer, true);
    return;
  }
  // Fixed-interval pings whatever the traffic, so a peer that vanished while
  // we were busy writing to it is still noticed (SPEC §4). A live peer's
  // bytes (its own pings, our pongs, anything) arrive at least once per
  // interval, so silence for ping_interval × max_pings_out means it is gone:
  // detected within that bound at both ends, checked on every tick.
  const int64_t silence = now - last_read_ms();
  if (silence >= o.ping_interval_ms * o.max_pings_out) {
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
  std::string who = peer_node_id_.empty() ? std::string("an unidentified peer") : "node " + peer_node_id_;
  return "node " + mesh_->options().node_id + ": peer link " + std::to_string(id()) +
         (direction_ == Direction::kOutbound ? " to " : " from ") + who + " (" + remote_address() + ")";
}

void PeerLink::OnClose(CloseReason reason) {
  const bool was_active = node_ && node_->DropLinkIf(this);
  LOG(INFO) << Describe() << " down: " << CloseReasonText(reason)
            << (was_active ? "; the node's interest is withdrawn until it reconnects" : "");
  mesh_->interest()->Detach(this);
  node_ = RefPtr<PeerNode>();  // breaks the node <-> link reference cycle
  mesh_->OnLinkClosed(this);
}

}  // namespace zmesh::server::mesh

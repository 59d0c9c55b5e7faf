#pragma once

// The zmesh peer protocol: frames exchanged between mesh nodes on the peer
// port. Its full description (handshake, authentication, interest sync,
// anti-entropy, forwarding, link retirement) is docs/peer-protocol.md; this
// header is the codec.
//
// Every frame is  u32 length | u8 type | body  (little endian; `length`
// counts type + body). Strings are u16 length + bytes; a payload is u32
// length + bytes. A frame longer than the reader's limit, or whose body does
// not decode exactly, is a protocol error: the link is closed.
//
// Thread safety: the encoders are pure functions; a FrameReader belongs to
// one link and is used by its owning thread.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/name_bounds.h"

namespace zmesh::proto::peer {

// 2: links run TLS 1.3 (PSK or certificates); HELLO has no nonce and there
// is no AUTH frame. Version 1 (plaintext, HMAC challenge-response) is refused.
inline constexpr uint16_t kProtocolVersion = 2;
inline constexpr size_t kFrameHeaderBytes = 5;
// Strings are u16-length-prefixed: nothing longer can cross a link.
inline constexpr size_t kMaxStringBytes = kMaxWireStringBytes;
// A node id (--node_id) is at most this long.
inline constexpr size_t kMaxNodeIdBytes = 255;
// The queue names one MSG frame lists take at most this many bytes (u16
// length + name each), or one name if that alone is longer. The receiver's
// frame limit leaves 64 KiB beyond the payload and the control lines, so a
// message chosen for any number of groups on a peer never makes a frame that
// peer refuses: it goes out as one MSG and as many MSG_QUEUES as it needs.
inline constexpr size_t kMaxQueueListBytes = 60 * 1024;

enum class FrameType : uint8_t {
  kHello = 0x01,      // version, node id, incarnation, urls
  // 0x02 was AUTH (version 1)
  kPing = 0x03,
  kPong = 0x04,
  kRefuse = 0x05,     // reason: the sender will not use this link (handshake only)
  kInterest = 0x10,     // subject, queue, count (absolute; 0 removes), seq
  kSyncBegin = 0x11,    // a full interest snapshot follows
  kSyncEnd = 0x12,      // digest, entries, seq: the snapshot is complete
  kDigest = 0x13,       // digest, entries of the sender's interest at this point of the stream
  kResync = 0x14,       // asks the receiver for a full snapshot
  kInterestAck = 0x15,  // seq: every interest change up to it has been applied
  kMsg = 0x20,        // a message for the receiver's local subscribers
  kMsgQueues = 0x21,  // the same message for more of the listed groups only (no plain subscriber)
  kRetire = 0x30,     // the sender sends nothing more on this link
  kLeaving = 0x31,    // the sender left the mesh (znode deleted) and drains its clients for up to N ms
  // Planned client moves (docs/design-lossless-moves.md); sent only to nodes
  // whose znode announces "moves".
  // token: the sender's cut for a move (what it forwarded before precedes
  // it); cut yours. To nodes that take QUEUE_SWITCH it also lists, per
  // node, the interest sequence number the sender had applied at its cut:
  // the receiver's MARK waits until it has applied as much.
  kCut = 0x32,
  kMark = 0x33,  // token: the sender has read your CUT (its own CUT precedes this)
  kLoad = 0x34,  // clients: the sender's client connections (rebalancing), when it changes
  // An INTEREST change of a queue group's member count made by a moving
  // client's queue member, with the move's token and what it means:
  // LATENT (the new end's member: keep it out of picks until the old end
  // releases its own) or RELEASE (the old end's member is gone).
  kQueueMove = 0x35,  // subject, queue, count, seq (as INTEREST), token, kind
  // The sender counts the receiver's latent member of (subject, queue) for
  // move `token` in its picks from this point of its stream on: the queue
  // messages it sent before were chosen for the receiver's other members.
  kQueueSwitch = 0x36,  // token, subject, queue
};

enum class QueueMoveKind : uint8_t { kLatent = 1, kRelease = 2 };

struct Hello {
  uint16_t version = kProtocolVersion;
  std::string_view node_id;
  uint64_t incarnation = 0;  // random per process start; the znode names the live one
  std::string_view peer_url;
  std::string_view client_url;
};

// Interest changes carry the sender's interest sequence number (one counter
// per node over all its changes, increasing on every link); the receiver
// acknowledges the highest one it has applied (INTEREST_ACK), which is what
// the interest barrier waits for (docs/peer-protocol.md).
struct Interest {
  std::string_view subject;
  std::string_view queue;  // empty for plain interest
  uint32_t count = 0;      // plain: 1 present / 0 gone; queue: member count
  uint64_t seq = 0;        // the change's sequence number (in a snapshot: the snapshot's)
};

struct Digest {
  uint64_t digest = 0;
  uint64_t entries = 0;
  uint64_t seq = 0;  // SYNC_END: every change up to it is in the snapshot (DIGEST: 0)
};

struct Leaving {
  uint64_t drain_ms = 0;  // keep the link at most this long
};

// A node's interest changes applied up to `seq` (CUT).
struct Applied {
  std::string_view node_id;
  uint64_t seq = 0;
};

struct Msg {
  std::string_view subject;
  std::string_view reply;
  int32_t header_size = -1;
  std::vector<std::string_view> queues;  // groups the sender chose this node for
  std::string_view payload;
  bool queues_only = false;  // MSG_QUEUES: a continuation, for the listed groups only
};

// One decoded frame; views valid until the next FrameReader::Next().
struct Frame {
  FrameType type = FrameType::kPing;
  Hello hello;
  std::string_view reason;  // REFUSE
  Interest interest;
  Digest digest;
  Leaving leaving;
  Msg msg;
  uint64_t ack_seq = 0;  // INTEREST_ACK
  uint64_t move_token = 0;  // CUT, MARK, QUEUE_MOVE, QUEUE_SWITCH (its group in `interest`)
  QueueMoveKind queue_move = QueueMoveKind::kLatent;  // QUEUE_MOVE (its change is in `interest`)
  uint64_t load_clients = 0;  // LOAD
  std::vector<Applied> cut_applied;  // CUT (empty in the short form)
};

class FrameReader {
 public:
  enum class Status : uint8_t { kFrame, kNeedMore, kError };

  explicit FrameReader(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

  // Consumes bytes from the front of *input; returns one frame, kNeedMore
  // once *input is empty, or kError (see error()).
  Status Next(std::string_view* input, Frame* frame);

  const std::string& error() const { return error_; }
  size_t buffered_bytes() const { return buf_.size(); }

 private:
  bool Decode(std::string_view body, uint8_t type, Frame* frame);

  const size_t max_frame_bytes_;
  std::string buf_;  // a partial frame
  bool release_ = false;
  std::string error_;
};

// --- encoders: each appends one whole frame to *out ---
void EncodeHello(const Hello& hello, std::string* out);
void EncodeRefuse(std::string_view reason, std::string* out);
void EncodeEmpty(FrameType type, std::string* out);  // PING, PONG, SYNC_BEGIN, RESYNC, RETIRE
void EncodeInterest(const Interest& interest, std::string* out);
void EncodeQueueMove(const Interest& interest, uint64_t token, QueueMoveKind kind, std::string* out);
void EncodeQueueSwitch(uint64_t token, std::string_view subject, std::string_view queue, std::string* out);
void EncodeDigest(FrameType type, const Digest& digest, std::string* out);  // SYNC_END, DIGEST
void EncodeLeaving(const Leaving& leaving, std::string* out);
// CUT (the short form) or MARK for a move.
void EncodeMoveFrame(FrameType type, uint64_t token, std::string* out);
// CUT with what the sender had applied from each node (at most 65,535).
void EncodeCut(uint64_t token, const std::vector<Applied>& applied, std::string* out);
void EncodeLoad(uint64_t clients, std::string* out);
void EncodeInterestAck(uint64_t seq, std::string* out);

// --- validation: peer input is checked like client input (SPEC §3) ---

// Would a message with this subject and reply cross a link intact? A literal
// subject (tokens, no wildcard, no whitespace or control characters) and an
// empty reply or one without whitespace or control characters, each short
// enough for the wire. The sender forwards nothing else, so a client cannot
// make a frame that the receiver refuses.
bool IsForwardable(std::string_view subject, std::string_view reply);
// A queue group name: non-empty, no whitespace or control characters, fits the wire.
bool IsValidQueueName(std::string_view queue);
// Can this interest (subject, queue; queue empty for plain) be announced so
// that every receiver accepts it? The announcing side checks the same rule.
bool IsAnnounceable(std::string_view subject, std::string_view queue);
// Checks what a decoded frame carries beyond its framing: subjects, replies,
// queue names, counts. False with the reason in *why: a protocol error.
// `bounds`: this node's name bounds (--max_subject_length and friends); the
// one-argument form checks the wire limits only.
bool ValidateFrame(const Frame& frame, const NameBounds& bounds, std::string* why);
inline bool ValidateFrame(const Frame& frame, std::string* why) { return ValidateFrame(frame, NameBounds(), why); }

// A MSG frame without its payload bytes: the caller writes *header then the
// payload, so the payload is copied once, straight into the link's buffer.
// `queues_only` makes it a MSG_QUEUES continuation (the same body).
void EncodeMsgHeader(std::string_view subject, std::string_view reply, int32_t header_size,
                     const std::string_view* queues, size_t queue_count, size_t payload_size, std::string* header,
                     bool queues_only = false);

// The headers of every frame one message takes to a peer chosen for
// `queues`: one MSG (with the first groups), then MSG_QUEUES continuations
// until every group is listed exactly once, each list within
// kMaxQueueListBytes. Appends them to *headers; header_ends gets where each
// ends. The caller writes header, payload, header, payload, ...
void EncodeMsgHeaders(std::string_view subject, std::string_view reply, int32_t header_size,
                      const std::string_view* queues, size_t queue_count, size_t payload_size, std::string* headers,
                      std::vector<size_t>* header_ends);

// How many of `queues` (from the front) one MSG frame lists: as many as fit
// in `budget_bytes` of list entries, and at least one when there are any.
size_t QueuesInFrame(const std::string_view* queues, size_t queue_count, size_t budget_bytes = kMaxQueueListBytes);

}  // namespace zmesh::proto::peer

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

namespace zmesh::proto::peer {

// 2: links run TLS 1.3 (PSK or certificates); HELLO has no nonce and there
// is no AUTH frame. Version 1 (plaintext, HMAC challenge-response) is refused.
inline constexpr uint16_t kProtocolVersion = 2;
inline constexpr size_t kFrameHeaderBytes = 5;
// Strings are u16-length-prefixed: nothing longer can cross a link.
inline constexpr size_t kMaxStringBytes = 65535;

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
  kRetire = 0x30,     // the sender sends nothing more on this link
  kLeaving = 0x31,    // the sender left the mesh (znode deleted) and drains its clients for up to N ms
};

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

struct Msg {
  std::string_view subject;
  std::string_view reply;
  int32_t header_size = -1;
  std::vector<std::string_view> queues;  // groups the sender chose this node for
  std::string_view payload;
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
void EncodeDigest(FrameType type, const Digest& digest, std::string* out);  // SYNC_END, DIGEST
void EncodeLeaving(const Leaving& leaving, std::string* out);
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
bool ValidateFrame(const Frame& frame, std::string* why);

// A MSG frame without its payload bytes: the caller writes *header then the
// payload, so the payload is copied once, straight into the link's buffer.
void EncodeMsgHeader(std::string_view subject, std::string_view reply, int32_t header_size,
                     const std::string_view* queues, size_t queue_count, size_t payload_size, std::string* header);

}  // namespace zmesh::proto::peer

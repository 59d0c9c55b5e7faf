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

inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kNonceBytes = 16;
inline constexpr size_t kMacBytes = 32;  // HMAC-SHA256
inline constexpr size_t kFrameHeaderBytes = 5;

enum class FrameType : uint8_t {
  kHello = 0x01,      // version, node id, incarnation, nonce, urls
  kAuth = 0x02,       // HMAC over both nonces and both ids
  kPing = 0x03,
  kPong = 0x04,
  kInterest = 0x10,   // subject, queue, count (absolute; 0 removes)
  kSyncBegin = 0x11,  // a full interest snapshot follows
  kSyncEnd = 0x12,    // digest, entries: the snapshot is complete
  kDigest = 0x13,     // digest, entries of the sender's interest at this point of the stream
  kResync = 0x14,     // asks the receiver for a full snapshot
  kMsg = 0x20,        // a message for the receiver's local subscribers
  kRetire = 0x30,     // the sender sends nothing more on this link
  kLeaving = 0x31,    // the sender left the mesh (znode deleted) and drains its clients for up to N ms
};

struct Hello {
  uint16_t version = kProtocolVersion;
  std::string_view node_id;
  uint64_t incarnation = 0;  // random per process start
  std::string_view nonce;    // kNonceBytes
  std::string_view peer_url;
  std::string_view client_url;
};

struct Interest {
  std::string_view subject;
  std::string_view queue;  // empty for plain interest
  uint32_t count = 0;      // plain: 1 present / 0 gone; queue: member count
};

struct Digest {
  uint64_t digest = 0;
  uint64_t entries = 0;
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
  std::string_view mac;
  Interest interest;
  Digest digest;
  Leaving leaving;
  Msg msg;
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
void EncodeAuth(std::string_view mac, std::string* out);
void EncodeEmpty(FrameType type, std::string* out);  // PING, PONG, SYNC_BEGIN, RESYNC, RETIRE
void EncodeInterest(const Interest& interest, std::string* out);
void EncodeDigest(FrameType type, const Digest& digest, std::string* out);  // SYNC_END, DIGEST
void EncodeLeaving(const Leaving& leaving, std::string* out);

// A MSG frame without its payload bytes: the caller writes *header then the
// payload, so the payload is copied once, straight into the link's buffer.
void EncodeMsgHeader(std::string_view subject, std::string_view reply, int32_t header_size,
                     const std::string_view* queues, size_t queue_count, size_t payload_size, std::string* header);

}  // namespace zmesh::proto::peer

#include "proto/peer_protocol.h"

#include <algorithm>
#include <cstring>

#include "proto/subject.h"

namespace zmesh::proto::peer {
namespace {

void PutU8(uint8_t v, std::string* out) { out->push_back(static_cast<char>(v)); }
void PutU16(uint16_t v, std::string* out) {
  char b[2] = {static_cast<char>(v), static_cast<char>(v >> 8)};
  out->append(b, 2);
}
void PutU32(uint32_t v, std::string* out) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 4);
}
void PutU64(uint64_t v, std::string* out) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 8);
}
void PutStr(std::string_view s, std::string* out) {
  PutU16(static_cast<uint16_t>(s.size()), out);
  out->append(s);
}

// Starts a frame: reserves the length, writes the type; Finish fills the length.
size_t Begin(FrameType type, std::string* out) {
  const size_t at = out->size();
  PutU32(0, out);
  PutU8(static_cast<uint8_t>(type), out);
  return at;
}
void Finish(size_t at, size_t extra, std::string* out) {
  const uint32_t len = static_cast<uint32_t>(out->size() - at - 4 + extra);
  for (int i = 0; i < 4; ++i) (*out)[at + i] = static_cast<char>(len >> (8 * i));
}

// Bounds-checked little-endian reader over one frame body.
class Cursor {
 public:
  explicit Cursor(std::string_view b) : b_(b) {}
  bool U8(uint8_t* v) { return Fixed(v, 1); }
  bool U16(uint16_t* v) { return Fixed(v, 2); }
  bool U32(uint32_t* v) { return Fixed(v, 4); }
  bool U64(uint64_t* v) { return Fixed(v, 8); }
  bool Str(std::string_view* s) {
    uint16_t n;
    return U16(&n) && Bytes(n, s);
  }
  bool Bytes(size_t n, std::string_view* s) {
    if (b_.size() < n) return false;
    *s = b_.substr(0, n);
    b_.remove_prefix(n);
    return true;
  }
  bool done() const { return b_.empty(); }

 private:
  template <typename T>
  bool Fixed(T* v, size_t n) {
    if (b_.size() < n) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i) x |= static_cast<uint64_t>(static_cast<uint8_t>(b_[i])) << (8 * i);
    *v = static_cast<T>(x);
    b_.remove_prefix(n);
    return true;
  }
  std::string_view b_;
};

uint32_t ReadLength(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

}  // namespace

void EncodeHello(const Hello& h, std::string* out) {
  const size_t at = Begin(FrameType::kHello, out);
  PutU16(h.version, out);
  PutStr(h.node_id, out);
  PutU64(h.incarnation, out);
  PutStr(h.peer_url, out);
  PutStr(h.client_url, out);
  Finish(at, 0, out);
}

void EncodeRefuse(std::string_view reason, std::string* out) {
  const size_t at = Begin(FrameType::kRefuse, out);
  PutStr(reason.substr(0, 1024), out);
  Finish(at, 0, out);
}

void EncodeEmpty(FrameType type, std::string* out) { Finish(Begin(type, out), 0, out); }

void EncodeInterest(const Interest& i, std::string* out) {
  const size_t at = Begin(FrameType::kInterest, out);
  PutStr(i.subject, out);
  PutStr(i.queue, out);
  PutU32(i.count, out);
  PutU64(i.seq, out);
  Finish(at, 0, out);
}

void EncodeQueueMove(const Interest& i, uint64_t token, QueueMoveKind kind, std::string* out) {
  const size_t at = Begin(FrameType::kQueueMove, out);
  PutStr(i.subject, out);
  PutStr(i.queue, out);
  PutU32(i.count, out);
  PutU64(i.seq, out);
  PutU64(token, out);
  out->push_back(static_cast<char>(kind));
  Finish(at, 0, out);
}

void EncodeQueueSwitch(uint64_t token, std::string_view subject, std::string_view queue, std::string* out) {
  const size_t at = Begin(FrameType::kQueueSwitch, out);
  PutU64(token, out);
  PutStr(subject, out);
  PutStr(queue, out);
  Finish(at, 0, out);
}

void EncodeDigest(FrameType type, const Digest& d, std::string* out) {
  const size_t at = Begin(type, out);
  PutU64(d.digest, out);
  PutU64(d.entries, out);
  if (type == FrameType::kSyncEnd) PutU64(d.seq, out);
  Finish(at, 0, out);
}

void EncodeInterestAck(uint64_t seq, std::string* out) {
  const size_t at = Begin(FrameType::kInterestAck, out);
  PutU64(seq, out);
  Finish(at, 0, out);
}

void EncodeLeaving(const Leaving& l, std::string* out) {
  const size_t at = Begin(FrameType::kLeaving, out);
  PutU64(l.drain_ms, out);
  Finish(at, 0, out);
}

void EncodeMoveFrame(FrameType type, uint64_t token, std::string* out) {
  const size_t at = Begin(type, out);
  PutU64(token, out);
  Finish(at, 0, out);
}

void EncodeCut(uint64_t token, const std::vector<Applied>& applied, std::string* out) {
  const size_t at = Begin(FrameType::kCut, out);
  PutU64(token, out);
  const size_t n = std::min<size_t>(applied.size(), UINT16_MAX);
  PutU16(static_cast<uint16_t>(n), out);
  for (size_t i = 0; i < n; ++i) {
    PutStr(applied[i].node_id, out);
    PutU64(applied[i].seq, out);
  }
  Finish(at, 0, out);
}

void EncodeLoad(uint64_t clients, std::string* out) {
  const size_t at = Begin(FrameType::kLoad, out);
  PutU64(clients, out);
  Finish(at, 0, out);
}

void EncodeMsgHeader(std::string_view subject, std::string_view reply, int32_t header_size,
                     const std::string_view* queues, size_t queue_count, size_t payload_size, std::string* header,
                     bool queues_only) {
  const size_t at = Begin(queues_only ? FrameType::kMsgQueues : FrameType::kMsg, header);
  PutStr(subject, header);
  PutStr(reply, header);
  PutU32(static_cast<uint32_t>(header_size), header);
  PutU16(static_cast<uint16_t>(queue_count), header);
  for (size_t i = 0; i < queue_count; ++i) PutStr(queues[i], header);
  PutU32(static_cast<uint32_t>(payload_size), header);
  Finish(at, payload_size, header);
}

void EncodeMsgHeaders(std::string_view subject, std::string_view reply, int32_t header_size,
                      const std::string_view* queues, size_t queue_count, size_t payload_size, std::string* headers,
                      std::vector<size_t>* header_ends) {
  size_t done = 0;
  do {
    const size_t n = QueuesInFrame(queues + done, queue_count - done);
    EncodeMsgHeader(subject, reply, header_size, queues + done, n, payload_size, headers, /*queues_only=*/done != 0);
    header_ends->push_back(headers->size());
    done += n;
  } while (done < queue_count);
}

size_t QueuesInFrame(const std::string_view* queues, size_t queue_count, size_t budget_bytes) {
  size_t used = 0;
  for (size_t i = 0; i < queue_count; ++i) {
    used += 2 + queues[i].size();
    if (used > budget_bytes) return i == 0 ? 1 : i;
  }
  return queue_count;
}

namespace {

// Whitespace or a control character: what would let a string break out of a
// client protocol line, or hide in a log.
bool HasUnsafeByte(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

bool IsForwardable(std::string_view subject, std::string_view reply) {
  return subject.size() <= kMaxStringBytes && reply.size() <= kMaxStringBytes && IsValidLiteralSubject(subject) &&
         !HasUnsafeByte(subject) && !HasUnsafeByte(reply);
}

bool IsValidQueueName(std::string_view queue) {
  return !queue.empty() && queue.size() <= kMaxStringBytes && !HasUnsafeByte(queue);
}

bool IsAnnounceable(std::string_view subject, std::string_view queue) {
  return subject.size() <= kMaxStringBytes && IsValidSubject(subject) && !HasUnsafeByte(subject) &&
         (queue.empty() || IsValidQueueName(queue));
}

bool ValidateFrame(const Frame& f, const NameBounds& bounds, std::string* why) {
  switch (f.type) {
    case FrameType::kQueueMove:
    case FrameType::kQueueSwitch:
      if (f.interest.queue.empty()) {
        *why = "QUEUE_MOVE or QUEUE_SWITCH without a queue group";
        return false;
      }
      [[fallthrough]];
    case FrameType::kInterest:
      if (!IsAnnounceable(f.interest.subject, f.interest.queue)) {
        *why = "INTEREST with an invalid subject or queue name";
        return false;
      }
      if (BoundViolation v = CheckSubscription(f.interest.subject, f.interest.queue, bounds);
          v != BoundViolation::kNone) {
        *why = "INTEREST beyond this node's name bounds (" + ViolationText(v, bounds, false) + ")";
        return false;
      }
      if (f.interest.queue.empty() && f.interest.count > 1) {
        *why = "INTEREST with a plain count of " + std::to_string(f.interest.count);
        return false;
      }
      return true;
    case FrameType::kMsg:
    case FrameType::kMsgQueues:
      if (!IsForwardable(f.msg.subject, f.msg.reply)) {
        *why = "MSG with an invalid subject or reply subject";
        return false;
      }
      if (BoundViolation v = CheckPublish(f.msg.subject, f.msg.reply, bounds); v != BoundViolation::kNone) {
        *why = "MSG beyond this node's name bounds (" + ViolationText(v, bounds, true) + ")";
        return false;
      }
      for (std::string_view q : f.msg.queues) {
        if (!IsValidQueueName(q)) {
          *why = "MSG naming an invalid queue group";
          return false;
        }
        if (q.size() > bounds.max_queue_bytes) {
          *why = "MSG beyond this node's name bounds (" + ViolationText(BoundViolation::kQueueBytes, bounds, false) + ")";
          return false;
        }
      }
      return true;
    case FrameType::kCut:
      for (const Applied& a : f.cut_applied) {
        if (HasUnsafeByte(a.node_id) || a.node_id.size() > kMaxNodeIdBytes) {
          *why = "CUT naming an invalid node id";
          return false;
        }
      }
      return true;
    case FrameType::kHello:
      if (f.hello.version == kProtocolVersion &&
          (HasUnsafeByte(f.hello.node_id) || HasUnsafeByte(f.hello.peer_url) || HasUnsafeByte(f.hello.client_url))) {
        *why = "HELLO with whitespace or control characters in an id or address";
        return false;
      }
      return true;
    default:
      return true;
  }
}

bool FrameReader::Decode(std::string_view body, uint8_t type, Frame* f) {
  Cursor c(body);
  f->type = static_cast<FrameType>(type);
  switch (f->type) {
    case FrameType::kHello:
      // The version comes first in every version: a v1 HELLO decodes far
      // enough to be named in the log (its remaining fields differ).
      if (!c.U16(&f->hello.version)) return false;
      if (f->hello.version != kProtocolVersion) return true;
      return c.Str(&f->hello.node_id) && c.U64(&f->hello.incarnation) && c.Str(&f->hello.peer_url) &&
             c.Str(&f->hello.client_url) && c.done() && !f->hello.node_id.empty();
    case FrameType::kRefuse:
      return c.Str(&f->reason) && c.done();
    case FrameType::kPing:
    case FrameType::kPong:
    case FrameType::kSyncBegin:
    case FrameType::kResync:
    case FrameType::kRetire:
      return c.done();
    case FrameType::kInterest:
      return c.Str(&f->interest.subject) && c.Str(&f->interest.queue) && c.U32(&f->interest.count) &&
             c.U64(&f->interest.seq) && c.done() && !f->interest.subject.empty();
    case FrameType::kQueueMove: {
      uint8_t kind = 0;
      if (!c.Str(&f->interest.subject) || !c.Str(&f->interest.queue) || !c.U32(&f->interest.count) ||
          !c.U64(&f->interest.seq) || !c.U64(&f->move_token) || !c.U8(&kind) || !c.done() ||
          f->interest.subject.empty()) {
        return false;
      }
      if (kind != static_cast<uint8_t>(QueueMoveKind::kLatent) && kind != static_cast<uint8_t>(QueueMoveKind::kRelease)) {
        return false;
      }
      f->queue_move = static_cast<QueueMoveKind>(kind);
      return true;
    }
    case FrameType::kQueueSwitch:
      f->interest.count = 0;
      f->interest.seq = 0;
      return c.U64(&f->move_token) && c.Str(&f->interest.subject) && c.Str(&f->interest.queue) && c.done() &&
             !f->interest.subject.empty();
    case FrameType::kSyncEnd:
      return c.U64(&f->digest.digest) && c.U64(&f->digest.entries) && c.U64(&f->digest.seq) && c.done();
    case FrameType::kDigest:
      f->digest.seq = 0;
      return c.U64(&f->digest.digest) && c.U64(&f->digest.entries) && c.done();
    case FrameType::kInterestAck:
      return c.U64(&f->ack_seq) && c.done();
    case FrameType::kLeaving:
      return c.U64(&f->leaving.drain_ms) && c.done();
    case FrameType::kCut: {
      f->cut_applied.clear();
      if (!c.U64(&f->move_token)) return false;
      if (c.done()) return true;  // the short form
      uint16_t n = 0;
      if (!c.U16(&n)) return false;
      for (uint16_t i = 0; i < n; ++i) {
        Applied a;
        if (!c.Str(&a.node_id) || !c.U64(&a.seq) || a.node_id.empty()) return false;
        f->cut_applied.push_back(a);
      }
      return c.done();
    }
    case FrameType::kMark:
      return c.U64(&f->move_token) && c.done();
    case FrameType::kLoad:
      return c.U64(&f->load_clients) && c.done();
    case FrameType::kMsg:
    case FrameType::kMsgQueues: {
      f->msg.queues_only = f->type == FrameType::kMsgQueues;
      uint32_t hdr = 0, size = 0;
      uint16_t nq = 0;
      if (!c.Str(&f->msg.subject) || !c.Str(&f->msg.reply) || !c.U32(&hdr) || !c.U16(&nq)) return false;
      if (f->msg.queues_only && nq == 0) return false;  // a continuation names at least one group
      f->msg.header_size = static_cast<int32_t>(hdr);
      f->msg.queues.clear();
      for (uint16_t i = 0; i < nq; ++i) {
        std::string_view q;
        if (!c.Str(&q)) return false;
        f->msg.queues.push_back(q);
      }
      if (!c.U32(&size) || !c.Bytes(size, &f->msg.payload) || !c.done()) return false;
      return !f->msg.subject.empty() && f->msg.header_size >= -1 &&
             f->msg.header_size <= static_cast<int64_t>(f->msg.payload.size());
    }
  }
  return false;  // unknown type
}

FrameReader::Status FrameReader::Next(std::string_view* input, Frame* frame) {
  if (release_) {  // the previous frame pointed into buf_
    buf_.clear();
    if (buf_.capacity() > 64 * 1024) std::string().swap(buf_);
    release_ = false;
  }
  if (!error_.empty()) return Status::kError;
  // Fast path: a whole frame at the front of the input, nothing buffered.
  if (buf_.empty() && input->size() >= kFrameHeaderBytes) {
    const uint32_t len = ReadLength(input->data());
    if (len == 0 || len > max_frame_bytes_) {
      error_ = "frame length " + std::to_string(len) + " out of range";
      return Status::kError;
    }
    if (input->size() >= 4 + static_cast<size_t>(len)) {
      const uint8_t type = static_cast<uint8_t>((*input)[4]);
      std::string_view body = input->substr(5, len - 1);
      input->remove_prefix(4 + len);
      if (!Decode(body, type, frame)) {
        error_ = "malformed frame of type " + std::to_string(type);
        return Status::kError;
      }
      return Status::kFrame;
    }
  }
  // Slow path: accumulate the header, then exactly one frame. The length is
  // checked as soon as its 4 bytes are here, before buffering any body.
  while (true) {
    size_t want = 4;
    if (buf_.size() >= 4) {
      const uint32_t len = ReadLength(buf_.data());
      if (len == 0 || len > max_frame_bytes_) {
        error_ = "frame length " + std::to_string(len) + " out of range";
        return Status::kError;
      }
      want = 4 + static_cast<size_t>(len);
      if (buf_.capacity() < want) buf_.reserve(want);
    }
    if (buf_.size() == want && want > 4) {
      release_ = true;
      if (!Decode(std::string_view(buf_).substr(5), static_cast<uint8_t>(buf_[4]), frame)) {
        error_ = "malformed frame of type " + std::to_string(static_cast<uint8_t>(buf_[4]));
        return Status::kError;
      }
      return Status::kFrame;
    }
    if (input->empty()) break;
    const size_t take = std::min(want - buf_.size(), input->size());
    buf_.append(input->data(), take);
    input->remove_prefix(take);
  }
  return Status::kNeedMore;
}

}  // namespace zmesh::proto::peer

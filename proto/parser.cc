#include "proto/parser.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace zmesh::proto {
namespace {

constexpr size_t kErrorContextBytes = 64;
// A buffer that grew past this for one large operation is released afterwards,
// so an idle connection does not keep it.
constexpr size_t kKeepBufferBytes = 1024;

char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool TakesSeparatedArg(OpType t) {
  switch (t) {
    case OpType::kPub:
    case OpType::kHPub:
    case OpType::kMsg:
    case OpType::kHMsg:
    case OpType::kSub:
    case OpType::kUnsub:
    case OpType::kErr:
    case OpType::kMove:
    case OpType::kMoved:
      return true;
    default:
      return false;
  }
}

void ReleaseIfLarge(std::string* buf) {
  if (buf->capacity() > kKeepBufferBytes) {
    std::string().swap(*buf);
  } else {
    buf->clear();
  }
}

}  // namespace

size_t SplitArgs(std::string_view arg, std::string_view* out, size_t max) {
  // nats-server's splitArg: fields separated by ' ', '\t', '\r' or '\n'.
  static constexpr auto kBlank = [] {
    std::array<bool, 256> t{};
    t[' '] = t['\t'] = t['\r'] = t['\n'] = true;
    return t;
  }();
  const char* p = arg.data();
  const char* const end = p + arg.size();
  size_t n = 0;
  while (true) {
    while (p < end && kBlank[static_cast<uint8_t>(*p)]) ++p;
    if (p == end) return n;
    const char* start = p;
    while (p < end && !kBlank[static_cast<uint8_t>(*p)]) ++p;
    if (n < max) out[n] = std::string_view(start, static_cast<size_t>(p - start));
    ++n;
  }
}

int64_t ParseSize(std::string_view d) {
  constexpr size_t kMaxDigits = 9;
  if (d.empty() || d.size() > kMaxDigits) return -1;
  int64_t n = 0;
  for (char c : d) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

ParseStatus Parser::Fail(ParseError error, std::string_view context) {
  error_ = error;
  error_context_.assign(context.substr(0, kErrorContextBytes));
  return ParseStatus::kError;
}

void Parser::Reset() {
  state_ = State::kOpStart;
  keyword_ = nullptr;
  keyword_pos_ = 0;
  arg_pinned_ = false;
  payload_size_ = 0;
}

ParseStatus Parser::StartKeyword(char c) {
  keyword_pos_ = 1;
  switch (Upper(c)) {
    case 'P':
      keyword_ = nullptr;  // PUB, PING or PONG: decided by the next byte
      op_type_ = OpType::kPing;
      break;
    case 'H':
      keyword_ = role_ == Role::kServer ? "HPUB" : "HMSG";
      op_type_ = role_ == Role::kServer ? OpType::kHPub : OpType::kHMsg;
      break;
    case 'M':
      keyword_ = nullptr;  // MSG (to a client), MOVE (to a server) or MOVED: the next byte decides
      op_type_ = OpType::kMsg;
      break;
    case 'S':
      if (role_ == Role::kClient) return Fail(ParseError::kUnknownOp, std::string_view(&c, 1));
      keyword_ = "SUB";
      op_type_ = OpType::kSub;
      break;
    case 'U':
      if (role_ == Role::kClient) return Fail(ParseError::kUnknownOp, std::string_view(&c, 1));
      keyword_ = "UNSUB";
      op_type_ = OpType::kUnsub;
      break;
    case 'C':
      if (role_ == Role::kClient) return Fail(ParseError::kUnknownOp, std::string_view(&c, 1));
      keyword_ = "CONNECT";
      op_type_ = OpType::kConnect;
      break;
    case 'I':
      keyword_ = "INFO";
      op_type_ = OpType::kInfo;
      break;
    case '+':
      keyword_ = "+OK";
      op_type_ = OpType::kOk;
      break;
    case '-':
      keyword_ = "-ERR";
      op_type_ = OpType::kErr;
      break;
    default:
      return Fail(ParseError::kUnknownOp, std::string_view(&c, 1));
  }
  state_ = State::kKeyword;
  return ParseStatus::kNeedMore;
}

ParseStatus Parser::Next(std::string_view* input, Op* op) {
  // The previous op may have pointed into our buffers; they are free now.
  if (state_ == State::kOpStart) {
    if (!arg_buf_.empty()) ReleaseIfLarge(&arg_buf_);
    if (!msg_buf_.empty()) ReleaseIfLarge(&msg_buf_);
  }
  if (error_ != ParseError::kNone) return ParseStatus::kError;

  while (!input->empty()) {
    switch (state_) {
      case State::kOpStart: {
        // Fast path for the operation that dominates each direction.
        const char* fast = role_ == Role::kServer ? "PUB " : "MSG ";
        if (input->size() >= 4 && std::memcmp(input->data(), fast, 4) == 0) {
          op_type_ = role_ == Role::kServer ? OpType::kPub : OpType::kMsg;
          state_ = State::kSpace;
          input->remove_prefix(4);
          break;
        }
        if (StartKeyword(input->front()) == ParseStatus::kError) return ParseStatus::kError;
        input->remove_prefix(1);
        break;
      }

      case State::kKeyword: {
        const char c = Upper(input->front());
        if (keyword_ == nullptr && op_type_ == OpType::kMsg) {  // after 'M'
          if (c == 'S' && role_ == Role::kClient) {
            keyword_ = "MSG";
          } else if (c == 'O') {
            keyword_ = role_ == Role::kServer ? "MOVE" : "MOVED";
            op_type_ = role_ == Role::kServer ? OpType::kMove : OpType::kMoved;
          } else {
            return Fail(ParseError::kUnknownOp, input->substr(0, 1));
          }
        } else if (keyword_ == nullptr) {  // after 'P'
          if (c == 'U' && role_ == Role::kServer) {
            keyword_ = "PUB", op_type_ = OpType::kPub;
          } else if (c == 'I') {
            keyword_ = "PING", op_type_ = OpType::kPing;
          } else if (c == 'O') {
            keyword_ = "PONG", op_type_ = OpType::kPong;
          } else {
            return Fail(ParseError::kUnknownOp, input->substr(0, 1));
          }
        } else if (c != keyword_[keyword_pos_]) {
          return Fail(ParseError::kUnknownOp, input->substr(0, kErrorContextBytes));
        }
        input->remove_prefix(1);
        if (keyword_[++keyword_pos_] == '\0') {
          const bool skip = op_type_ == OpType::kPing || op_type_ == OpType::kPong || op_type_ == OpType::kOk;
          state_ = skip ? State::kSkipLine : State::kAfterKeyword;
        }
        break;
      }

      case State::kAfterKeyword:
        if (TakesSeparatedArg(op_type_)) {
          // PUB and friends need a blank after the name; CONNECT and INFO do not.
          if (!IsBlank(input->front())) return Fail(ParseError::kUnknownOp, input->substr(0, kErrorContextBytes));
          input->remove_prefix(1);
        }
        state_ = State::kSpace;
        break;

      case State::kSpace: {
        const size_t n = std::min(input->find_first_not_of(" \t"), input->size());
        input->remove_prefix(n);
        if (input->empty()) break;
        // As in nats-server, the first byte of the argument is taken without
        // being interpreted, even if it is '\r' or '\n'.
        const std::string_view rest = input->substr(1);
        const char* nl = static_cast<const char*>(std::memchr(rest.data(), '\n', rest.size()));
        if (nl != nullptr) {
          std::string_view arg(input->data(), static_cast<size_t>(nl - input->data()));
          input->remove_prefix(arg.size() + 1);
          return FinishArg(arg, input, op);
        }
        arg_buf_.assign(input->data(), input->size());
        input->remove_prefix(input->size());
        state_ = State::kArg;
        if (arg_buf_.size() > limits_.max_control_line) return Fail(ParseError::kMaxControlLine, arg_buf_);
        break;
      }

      case State::kArg: {  // only reached with a split argument in arg_buf_
        const char* nl = static_cast<const char*>(std::memchr(input->data(), '\n', input->size()));
        const size_t take = nl ? static_cast<size_t>(nl - input->data()) : input->size();
        if (arg_buf_.size() + take > limits_.max_control_line + 1) {  // +1: a '\r' that will be dropped
          arg_buf_.append(input->data(), std::min(take, kErrorContextBytes));
          return Fail(ParseError::kMaxControlLine, arg_buf_);
        }
        arg_buf_.append(input->data(), take);
        input->remove_prefix(nl ? take + 1 : take);
        if (nl) {
          arg_pinned_ = true;
          return FinishArg(arg_buf_, input, op);
        }
        if (arg_buf_.size() > limits_.max_control_line) return Fail(ParseError::kMaxControlLine, arg_buf_);
        break;
      }

      case State::kSkipLine: {
        const size_t nl = input->find('\n');
        if (nl == std::string_view::npos) {
          input->remove_prefix(input->size());
          break;
        }
        input->remove_prefix(nl + 1);
        *op = Op{};
        op->type = op_type_;
        Reset();
        return ParseStatus::kOp;
      }

      case State::kPayload: {
        const size_t want = static_cast<size_t>(payload_size_) + 2;
        const size_t take = std::min(want - msg_buf_.size(), input->size());
        msg_buf_.append(input->data(), take);
        input->remove_prefix(take);
        if (msg_buf_.size() == want - 1 && msg_buf_[want - 2] != '\r') {
          return Fail(ParseError::kUnknownOp, std::string_view(msg_buf_).substr(want - 2));
        }
        if (msg_buf_.size() < want) break;
        if (msg_buf_[want - 2] != '\r' || msg_buf_[want - 1] != '\n') {
          return Fail(ParseError::kUnknownOp, std::string_view(msg_buf_).substr(want - 2));
        }
        *op = pending_;
        op->payload = std::string_view(msg_buf_.data(), static_cast<size_t>(payload_size_));
        Reset();  // buffers are released at the next call, after the caller used the views
        return ParseStatus::kOp;
      }
    }
  }
  return ParseStatus::kNeedMore;
}

ParseStatus Parser::FinishArg(std::string_view arg, std::string_view* input, Op* op) {
  // nats-server drops the last byte when a '\r' was seen after the first one.
  if (arg.size() > 1 && std::memchr(arg.data() + 1, '\r', arg.size() - 1) != nullptr) arg.remove_suffix(1);
  if (arg.size() > limits_.max_control_line) return Fail(ParseError::kMaxControlLine, arg);

  pending_ = Op{};
  pending_.type = op_type_;
  pending_.arg = arg;
  ParseStatus st = ParseStatus::kOp;
  switch (op_type_) {
    case OpType::kPub:
      st = ParsePubArgs(arg, false);
      break;
    case OpType::kHPub:
      if (!headers_allowed_) return Fail(ParseError::kHeadersNotSupported, arg);
      st = ParsePubArgs(arg, true);
      break;
    case OpType::kMsg:
      st = ParseMsgArgs(arg, false);
      break;
    case OpType::kHMsg:
      st = ParseMsgArgs(arg, true);
      break;
    case OpType::kSub:
      st = ParseSubArgs(arg);
      break;
    case OpType::kUnsub:
      st = ParseUnsubArgs(arg);
      break;
    default:  // CONNECT, INFO, -ERR: the argument is the whole operation
      break;
  }
  if (st == ParseStatus::kError) return st;

  const bool has_payload = op_type_ == OpType::kPub || op_type_ == OpType::kHPub || op_type_ == OpType::kMsg ||
                           op_type_ == OpType::kHMsg;
  if (!has_payload) {
    *op = pending_;
    Reset();
    return ParseStatus::kOp;
  }

  // Zero-copy when the whole payload and its CRLF are already here.
  const size_t want = static_cast<size_t>(payload_size_) + 2;
  // nats-server rejects a wrong byte after the payload as soon as it arrives.
  if (input->size() == want - 1 && (*input)[want - 2] != '\r') {
    return Fail(ParseError::kUnknownOp, input->substr(want - 2));
  }
  if (input->size() >= want) {
    if ((*input)[want - 2] != '\r' || (*input)[want - 1] != '\n') {
      return Fail(ParseError::kUnknownOp, input->substr(want - 2, kErrorContextBytes));
    }
    *op = pending_;
    op->payload = input->substr(0, static_cast<size_t>(payload_size_));
    input->remove_prefix(want);
    Reset();
    return ParseStatus::kOp;
  }
  if (!arg_pinned_) PinArgs();
  msg_buf_.reserve(want);
  msg_buf_.assign(input->data(), input->size());
  input->remove_prefix(input->size());
  state_ = State::kPayload;
  return ParseStatus::kNeedMore;
}

void Parser::PinArgs() {
  // Rebase every view of pending_ from the input onto a copy in arg_buf_.
  const std::string_view arg = pending_.arg;
  arg_buf_.assign(arg.data(), arg.size());
  auto rebase = [&](std::string_view v) {
    if (v.empty()) return v;
    return std::string_view(arg_buf_.data() + (v.data() - arg.data()), v.size());
  };
  pending_.arg = arg_buf_;
  pending_.subject = rebase(pending_.subject);
  pending_.reply = rebase(pending_.reply);
  pending_.sid = rebase(pending_.sid);
  arg_pinned_ = true;
}

ParseStatus Parser::CheckPayloadSize() {
  if (limits_.max_payload >= 0 && payload_size_ > limits_.max_payload) {
    return Fail(ParseError::kMaxPayload, pending_.arg);
  }
  return ParseStatus::kOp;
}

ParseStatus Parser::ParsePubArgs(std::string_view arg, bool with_headers) {
  std::string_view a[4];
  const size_t n = SplitArgs(arg, a, 4);
  const size_t fixed = with_headers ? 3 : 2;  // subject [reply] [hdr] size
  if (n != fixed && n != fixed + 1) return Fail(ParseError::kBadArguments, arg);
  pending_.subject = a[0];
  if (n == fixed + 1) pending_.reply = a[1];
  payload_size_ = ParseSize(a[n - 1]);
  // Same order of checks as nats-server: header size, total size, their relation.
  if (with_headers) {
    pending_.header_size = ParseSize(a[n - 2]);
    if (pending_.header_size < 0) return Fail(ParseError::kBadArguments, arg);
  }
  if (payload_size_ < 0) return Fail(ParseError::kBadArguments, arg);
  if (with_headers && pending_.header_size > payload_size_) return Fail(ParseError::kBadArguments, arg);
  return CheckPayloadSize();
}

ParseStatus Parser::ParseMsgArgs(std::string_view arg, bool with_headers) {
  std::string_view a[5];
  const size_t n = SplitArgs(arg, a, 5);
  const size_t fixed = with_headers ? 4 : 3;  // subject sid [reply] [hdr] size
  if (n != fixed && n != fixed + 1) return Fail(ParseError::kBadArguments, arg);
  pending_.subject = a[0];
  pending_.sid = a[1];
  if (n == fixed + 1) pending_.reply = a[2];
  payload_size_ = ParseSize(a[n - 1]);
  if (with_headers) {
    pending_.header_size = ParseSize(a[n - 2]);
    if (pending_.header_size < 0 || pending_.header_size > payload_size_) return Fail(ParseError::kBadArguments, arg);
  }
  if (payload_size_ < 0) return Fail(ParseError::kBadArguments, arg);
  return CheckPayloadSize();
}

ParseStatus Parser::ParseSubArgs(std::string_view arg) {
  std::string_view a[3];
  const size_t n = SplitArgs(arg, a, 3);
  if (n == 2) {
    pending_.subject = a[0];
    pending_.sid = a[1];
  } else if (n == 3) {
    pending_.subject = a[0];
    pending_.queue = a[1];
    pending_.sid = a[2];
  } else {
    return Fail(ParseError::kBadArguments, arg);
  }
  return ParseStatus::kOp;
}

ParseStatus Parser::ParseUnsubArgs(std::string_view arg) {
  std::string_view a[2];
  const size_t n = SplitArgs(arg, a, 2);
  if (n != 1 && n != 2) return Fail(ParseError::kBadArguments, arg);
  pending_.sid = a[0];
  if (n == 2) pending_.max_msgs = ParseSize(a[1]);
  return ParseStatus::kOp;
}

}  // namespace zmesh::proto

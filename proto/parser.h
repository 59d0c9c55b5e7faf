#pragma once

// Incremental parser for the NATS text protocol, used by the server (reading
// what clients send) and by the client library (reading what servers send).
//
// It mirrors nats-server's parser.go state by state where clients can tell the
// difference: operations are case-insensitive, a '\r' before '\n' is optional,
// PING/PONG/+OK ignore anything up to the newline, the first byte after an
// operation's separator always belongs to its argument, the control line limit
// applies to the argument, and a payload must be followed by CRLF. Parsing state
// lives in the object, so input split at any byte parses exactly as if it had
// arrived in one piece.
//
// Memory: a complete operation inside the input is returned zero-copy; only a
// partial one is copied into the parser, bounded by max_control_line for the
// control line and by max_payload + 2 for the payload.
//
// Thread safety: none; one parser per connection, used by its owning thread.

#include <cstdint>
#include <string>
#include <string_view>

namespace zmesh::proto {

enum class OpType : uint8_t {
  kConnect,  // arg = JSON
  kInfo,     // arg = JSON
  kPub,      // subject, reply, payload
  kHPub,     // subject, reply, header_size, payload (headers + body)
  kMsg,      // subject, sid, reply, payload
  kHMsg,     // subject, sid, reply, header_size, payload
  kSub,      // subject, queue, sid
  kUnsub,    // sid, max_msgs
  kPing,
  kPong,
  kOk,
  kErr,      // arg = the text after "-ERR ", quotes included
  // zmesh planned moves (docs/design-lossless-moves.md); arg = the token.
  kMove,   // client -> its old node: cut over to the new connection
  kMoved,  // old node -> client: nothing more comes on this connection
};

// One parsed operation. Views point into the caller's input or into the
// parser's own buffers and stay valid until the next call to Next().
struct Op {
  OpType type = OpType::kPing;
  std::string_view arg;      // the raw argument (whole control line after the op name)
  std::string_view subject;
  std::string_view reply;
  std::string_view queue;
  std::string_view sid;
  int64_t max_msgs = -1;     // UNSUB: -1 when absent or not a number (as nats-server)
  int64_t header_size = -1;  // HPUB/HMSG: bytes of headers at the start of payload
  std::string_view payload;  // HPUB/HMSG: headers followed by the body; no trailing CRLF
};

enum class ParseStatus : uint8_t {
  kOp,        // *op holds one operation
  kNeedMore,  // all input consumed; a partial operation is buffered
  kError,     // see error(); the connection must be closed
};

enum class ParseError : uint8_t {
  kNone,
  kUnknownOp,          // -ERR 'Unknown Protocol Operation', then close
  kMaxControlLine,     // -ERR 'maximum control line exceeded', then close
  kMaxPayload,         // -ERR 'Maximum Payload Violation', then close
  kBadArguments,       // malformed arguments: nats-server closes without a word
  kHeadersNotSupported,// HPUB before the client asked for headers: closed silently
};

class Parser {
 public:
  enum class Role : uint8_t {
    kServer,  // reads what a client sends: CONNECT PUB HPUB SUB UNSUB PING PONG INFO +OK -ERR
    kClient,  // reads what a server sends: INFO MSG HMSG PING PONG +OK -ERR
  };
  struct Limits {
    size_t max_control_line = 4096;
    int64_t max_payload = 1 << 20;  // a negative value means no limit
  };

  Parser(Role role, Limits limits) : role_(role), limits_(limits) {}

  // Consumes bytes from the front of *input. Returns kOp with one operation,
  // kNeedMore once *input is empty, or kError (see error()).
  ParseStatus Next(std::string_view* input, Op* op);

  // True between operations: the next byte starts an operation name. The
  // server uses it to refuse anything but CONNECT before authentication.
  bool AtOpStart() const { return state_ == State::kOpStart; }

  ParseError error() const { return error_; }
  // The argument or bytes that caused the error, for logs (bounded).
  const std::string& error_context() const { return error_context_; }

  void set_limits(Limits limits) { limits_ = limits; }
  void set_headers_allowed(bool allowed) { headers_allowed_ = allowed; }

  // Bytes held for a partial operation (for memory accounting and tests).
  size_t buffered_bytes() const { return arg_buf_.size() + msg_buf_.size(); }

 private:
  enum class State : uint8_t {
    kOpStart,
    kKeyword,      // matching the rest of keyword_
    kAfterKeyword, // keyword done; needs a separator (PUB, SUB, ...) or none (CONNECT, INFO)
    kSpace,        // skipping blanks before the argument
    kArg,          // inside the argument, until '\n'
    kSkipLine,     // PING, PONG, +OK: ignore everything up to '\n'
    kPayload,      // collecting payload + CRLF into msg_buf_
  };

  ParseStatus Fail(ParseError error, std::string_view context);
  ParseStatus StartKeyword(char c);
  // Parses the complete argument of op_; on success moves to the payload or
  // finishes the op. Returns kOp, kNeedMore (payload pending) or kError.
  ParseStatus FinishArg(std::string_view arg, std::string_view* input, Op* op);
  ParseStatus ParsePubArgs(std::string_view arg, bool with_headers);
  ParseStatus ParseMsgArgs(std::string_view arg, bool with_headers);
  ParseStatus ParseSubArgs(std::string_view arg);
  ParseStatus ParseUnsubArgs(std::string_view arg);
  ParseStatus CheckPayloadSize();
  // Copies the pending op's arguments into arg_buf_ so that they survive the
  // caller's input buffer while the payload arrives in later reads.
  void PinArgs();
  void Reset();

  Role role_;
  Limits limits_;
  bool headers_allowed_ = true;
  State state_ = State::kOpStart;
  OpType op_type_ = OpType::kPing;
  const char* keyword_ = nullptr;  // upper-case keyword being matched
  uint8_t keyword_pos_ = 0;
  bool arg_pinned_ = false;        // pending_'s views point into arg_buf_
  int64_t payload_size_ = 0;
  Op pending_;                     // the op whose payload is being collected
  std::string arg_buf_;            // argument split across inputs
  std::string msg_buf_;            // payload split across inputs
  ParseError error_ = ParseError::kNone;
  std::string error_context_;
};

// Splits a control-line argument on blanks the way nats-server's splitArg
// does (' ', '\t', '\r', '\n'). Returns the number of fields found, which may
// exceed `max`; only the first `max` are stored.
size_t SplitArgs(std::string_view arg, std::string_view* out, size_t max);

// nats-server's parseSize: 1 to 9 decimal digits, else -1.
int64_t ParseSize(std::string_view digits);

}  // namespace zmesh::proto

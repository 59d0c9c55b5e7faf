// Malformed and edge-case client input, answered the way nats-server 2.9.10
// answers it. Each case is data: the bytes a client sends after INFO (after an
// optional CONNECT handshake), the reply lines nats-server sends (regexes, in
// order), and whether it then closes the connection or keeps it open (proved
// by PING -> PONG). Every expectation below was characterised by running
// nats-server 2.9.10; the `_vs_nats` ctest entry re-validates the table
// against it, the `_zmesh` entry holds zmesh-server to it.
//
// Why it matters: standard NATS clients were written against nats-server, so
// what they see on bad input (an -ERR they treat as fatal, a silent close they
// reconnect after, an -ERR they only log) decides how they recover.
//
// Notable nats-server behaviour encoded here:
//  - Argument errors in PUB/HPUB/SUB/UNSUB/CONNECT (wrong count, bad size, bad
//    JSON) close the connection *silently*: no -ERR at all. Only a bad
//    operation name gets -ERR 'Unknown Protocol Operation'.
//  - Before CONNECT a client is verbose and pedantic: every op gets +OK.
//  - PING matches on "PING" and ignores everything up to the newline.
//  - Control lines may end in a bare LF; a payload must end in CRLF.
//  - Pedantic mode reports a wildcard publish subject but still delivers it.

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/test_users.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using namespace std::string_literals;
using std::chrono::milliseconds;

// Limits of the kLimits server: small, so cases can exceed them cheaply.
constexpr int kMaxPayload = 1024;
constexpr int kMaxControlLine = 256;
constexpr int kMaxSubs = 3;
constexpr int kMaxConnections = 2;

constexpr milliseconds kReplyTimeout{2000};
// Between input chunks the server must stay silent for this long (and the
// pause makes the chunks arrive in separate reads).
constexpr milliseconds kSplitPause{50};

// The server a case runs against; one server per profile is shared by all
// cases of that profile.
enum class Profile {
  kLimits,          // max_payload 1024, max_control_line 256, max_subs 3
  kAuth,            // users configured: auth required
  kMaxConnections,  // max_connections 2
};

enum class After { kOpen, kClosed };

struct CompatCase {
  std::string name;
  Profile profile = Profile::kLimits;
  // CONNECT JSON sent (then PING, expecting [+OK] PONG) before `input`;
  // empty: `input` follows INFO directly.
  std::string connect;
  // Sent in order; the server must say nothing between chunks.
  std::vector<std::string> input;
  // Regexes for the complete reply lines, in order.
  std::vector<std::string> expect;
  After after = After::kOpen;
  // Connections to open and hold before the case's own (max_connections).
  int hold = 0;
};

// gtest prints the case name instead of a byte dump.
void PrintTo(const CompatCase& c, std::ostream* os) { *os << c.name; }

// Regex matching `s` literally.
std::string Lit(const std::string& s) {
  static const std::regex kSpecial(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(s, kSpecial, R"(\$&)");
}

const std::string kPlain = R"({"verbose":false,"pedantic":false})";
const std::string kHeaders = R"({"verbose":false,"pedantic":false,"headers":true})";
const std::string kVerbose = R"({"verbose":true,"pedantic":false})";
const std::string kPedantic = R"({"verbose":false,"pedantic":true})";

const std::string kOk = Lit("+OK");
const std::string kPong = "PONG";
const std::string kUnknownOp = Lit("-ERR 'Unknown Protocol Operation'");
const std::string kMaxPayloadErr = Lit("-ERR 'Maximum Payload Violation'");
const std::string kMaxControlLineErr = Lit("-ERR 'maximum control line exceeded'");
const std::string kInvalidSubject = Lit("-ERR 'Invalid Subject'");
const std::string kInvalidPubSubject = Lit("-ERR 'Invalid Publish Subject'");
const std::string kAuthViolation = Lit("-ERR 'Authorization Violation'");
const std::string kMaxSubsErr = Lit("-ERR 'maximum subscriptions exceeded'");
const std::string kMaxConnErr = Lit("-ERR 'maximum connections exceeded'");

std::string Repeat(char c, int n) { return std::string(static_cast<std::size_t>(n), c); }

// Cases name only the fields they need; the rest keep their defaults. GCC's
// -Wmissing-field-initializers flags that for designated initializers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
std::vector<CompatCase> Cases() {
  const std::string auth_ok = R"({"verbose":false,"pedantic":false,"user":"alice","pass":"alice-pw"})";
  // A SUB whose argument ("<subject> 1") is exactly `n` bytes long.
  auto sub_with_arg_len = [](int n) { return "SUB " + Repeat('a', n - 2) + " 1\r\n"; };
  return {
      // ---- Operation names -------------------------------------------------
      // Unknown op: -ERR then close. The most basic framing error.
      {.name = "UnknownOperation", .input = {"FOO bar\r\n"}, .expect = {kUnknownOp},
       .after = After::kClosed},
      // Binary garbage: same answer; nothing may crash or hang on it.
      {.name = "GarbageBytes", .input = {"\x00\x01\x02\xff\r\n"s}, .expect = {kUnknownOp},
       .after = After::kClosed},
      // The parser rejects at the first impossible byte, without waiting for a
      // newline: a client that never sends one cannot park a connection.
      {.name = "GarbageWithoutNewline", .input = {"\xde\xad\xbe\xef"}, .expect = {kUnknownOp},
       .after = After::kClosed},
      // An empty line is not a no-op: Unknown Protocol Operation.
      {.name = "EmptyLine", .connect = kPlain, .input = {"\r\n"}, .expect = {kUnknownOp},
       .after = After::kClosed},
      // Operation names are case-insensitive.
      {.name = "LowercasePing", .input = {"ping\r\n"}, .expect = {kPong}},
      {.name = "MixedCasePing", .input = {"PiNg\r\n"}, .expect = {kPong}},
      {.name = "LowercaseConnectSubPub",
       .input = {"connect {\"verbose\":false}\r\nsub foo 1\r\npub foo 2\r\nhi\r\n"},
       .expect = {"MSG foo 1 2", "hi"}},
      {.name = "MixedCaseSubPub", .connect = kPlain, .input = {"SuB foo 1\r\nPuB foo 2\r\nhi\r\n"},
       .expect = {"MSG foo 1 2", "hi"}},
      // A CR inside an operation name is a framing error.
      {.name = "CarriageReturnInsideOp", .connect = kPlain, .input = {"PI\rNG\r\n"},
       .expect = {kUnknownOp}, .after = After::kClosed},

      // ---- PUB arguments ---------------------------------------------------
      // "PUB" with no argument at all fails in the op parser: Unknown Protocol
      // Operation. All the cases after it fail in argument processing, which
      // nats-server answers by closing the connection without any -ERR.
      {.name = "PubNoArgs", .connect = kPlain, .input = {"PUB\r\n"}, .expect = {kUnknownOp},
       .after = After::kClosed},
      {.name = "PubOnlySpace", .connect = kPlain, .input = {"PUB \r\n"},
       .after = After::kClosed},
      {.name = "PubTooFewArgs", .connect = kPlain, .input = {"PUB foo\r\n"},
       .after = After::kClosed},
      {.name = "PubTooManyArgs", .connect = kPlain, .input = {"PUB foo bar baz 2\r\nhi\r\n"},
       .after = After::kClosed},
      {.name = "PubEmptySubject", .connect = kPlain, .input = {"PUB  2\r\nhi\r\n"},
       .after = After::kClosed},
      {.name = "PubNonNumericSize", .connect = kPlain, .input = {"PUB foo abc\r\n"},
       .after = After::kClosed},
      {.name = "PubNegativeSize", .connect = kPlain, .input = {"PUB foo -1\r\n"},
       .after = After::kClosed},
      {.name = "PubPlusSignSize", .connect = kPlain, .input = {"PUB foo +2\r\nhi\r\n"},
       .after = After::kClosed},
      // Ten digits do not parse as a size at all (nats-server reads at most 9),
      // so this is a silent close, not a payload violation.
      {.name = "PubTenDigitSize", .connect = kPlain, .input = {"PUB foo 1234567890\r\n"},
       .after = After::kClosed},
      // Nine digits parse, and exceed max_payload.
      {.name = "PubNineDigitSize", .connect = kPlain, .input = {"PUB foo 999999999\r\n"},
       .expect = {kMaxPayloadErr}, .after = After::kClosed},
      // One byte over max_payload: rejected on the control line, before any
      // payload is buffered.
      {.name = "PubOverMaxPayload", .connect = kPlain,
       .input = {"PUB foo " + std::to_string(kMaxPayload + 1) + "\r\n"},
       .expect = {kMaxPayloadErr}, .after = After::kClosed},
      // Exactly max_payload is allowed.
      {.name = "PubAtMaxPayload", .connect = kPlain,
       .input = {"SUB foo 1\r\nPUB foo " + std::to_string(kMaxPayload) + "\r\n" +
                 Repeat('x', kMaxPayload) + "\r\n"},
       .expect = {"MSG foo 1 " + std::to_string(kMaxPayload), Repeat('x', kMaxPayload)}},
      // A zero-length payload is a valid message.
      {.name = "PubZeroPayload", .connect = kPlain, .input = {"SUB foo 1\r\nPUB foo 0\r\n\r\n"},
       .expect = {"MSG foo 1 0", ""}},
      // Leading zeros parse; nats-server even echoes the size digits as sent
      // ("MSG foo 1 002"), which no client can tell from "2".
      {.name = "PubLeadingZeroSize", .connect = kPlain,
       .input = {"SUB foo 1\r\nPUB foo 002\r\nhi\r\n"}, .expect = {"MSG foo 1 0*2", "hi"}},
      // Payload shorter than announced: the next line is eaten as payload and
      // the byte after it is not CRLF.
      {.name = "PubPayloadShorterThanSize", .connect = kPlain,
       .input = {"PUB foo 5\r\nhi\r\nPING\r\n"}, .expect = {kUnknownOp}, .after = After::kClosed},
      // Payload longer than announced: no CRLF where the payload should end.
      {.name = "PubPayloadLongerThanSize", .connect = kPlain, .input = {"PUB foo 2\r\nhello\r\n"},
       .expect = {kUnknownOp}, .after = After::kClosed},
      // A payload must end with CRLF; a bare LF there is a framing error
      // (unlike control lines, below).
      {.name = "PubPayloadBareLf", .connect = kPlain, .input = {"SUB foo 1\r\nPUB foo 2\r\nhi\n"},
       .expect = {kUnknownOp}, .after = After::kClosed},
      // Reply subjects are not validated, not even in pedantic mode.
      {.name = "PubInvalidReplySubject", .connect = kPedantic,
       .input = {"SUB foo 1\r\nPUB foo bar..baz 2\r\nhi\r\n"},
       .expect = {"MSG foo 1 bar\\.\\.baz 2", "hi"}},
      // Non-pedantic: an invalid publish subject is accepted and matches
      // nothing (a ">" subscriber gets nothing), connection stays open.
      {.name = "PubInvalidSubjectNonPedantic", .connect = kPlain,
       .input = {"SUB > 1\r\nPUB foo..bar 2\r\nhi\r\n"}},
      {.name = "PubLeadingDotNonPedantic", .connect = kPlain,
       .input = {"SUB > 1\r\nPUB .foo 2\r\nhi\r\n"}},
      // ...while a wildcard publish subject is valid, only not literal: it is
      // routed like a literal subject (">" matches "foo.>").
      {.name = "PubWildcardSubjectNonPedantic", .connect = kPlain,
       .input = {"SUB > 1\r\nPUB foo.> 2\r\nhi\r\n"}, .expect = {"MSG foo\\.> 1 2", "hi"}},

      // ---- Control line length (max_control_line 256) ------------------------
      // The limit applies to the argument after the op name: 256 bytes pass...
      {.name = "ControlLineArgAtLimit", .connect = kPlain,
       .input = {sub_with_arg_len(kMaxControlLine)}},
      // ...257 do not: -ERR and close.
      {.name = "ControlLineOverLimit", .connect = kPlain,
       .input = {sub_with_arg_len(kMaxControlLine + 1)}, .expect = {kMaxControlLineErr},
       .after = After::kClosed},
      {.name = "ControlLineOverLimitPub", .connect = kPlain,
       .input = {"PUB " + Repeat('a', 300) + " 2\r\nhi\r\n"}, .expect = {kMaxControlLineErr},
       .after = After::kClosed},
      // The same line split across two reads: the parser keeps its state
      // between reads and still counts the whole argument.
      {.name = "ControlLineOverLimitSplit", .connect = kPlain,
       .input = {"SUB " + Repeat('a', 200), Repeat('a', 100) + " 1\r\n"},
       .expect = {kMaxControlLineErr}, .after = After::kClosed},
      // No newline at all: rejected once the buffered argument is too long,
      // so an endless line cannot make the server buffer without bound.
      {.name = "ControlLineOverLimitNoNewline", .connect = kPlain,
       .input = {"SUB " + Repeat('a', 300)}, .expect = {kMaxControlLineErr},
       .after = After::kClosed},
      // CONNECT is held to the limit too.
      {.name = "ConnectOverControlLine",
       .input = {"CONNECT {\"verbose\":false,\"name\":\"" + Repeat('n', 400) + "\"}\r\n"},
       .expect = {kMaxControlLineErr}, .after = After::kClosed},

      // ---- SUB -------------------------------------------------------------
      {.name = "SubNoArgs", .connect = kPlain, .input = {"SUB\r\n"}, .expect = {kUnknownOp},
       .after = After::kClosed},
      // Missing sid / too many args: silent close.
      {.name = "SubTooFewArgs", .connect = kPlain, .input = {"SUB foo\r\n"},
       .after = After::kClosed},
      {.name = "SubTooManyArgs", .connect = kPlain, .input = {"SUB foo q 1 x\r\n"},
       .after = After::kClosed},
      // Invalid subjects: -ERR 'Invalid Subject', and the connection stays up
      // (clients report it asynchronously and carry on).
      {.name = "SubEmptyToken", .connect = kPlain, .input = {"SUB foo..bar 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubLeadingDot", .connect = kPlain, .input = {"SUB .foo 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubTrailingDot", .connect = kPlain, .input = {"SUB foo. 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubFullWildcardNotLast", .connect = kPlain, .input = {"SUB foo.>.bar 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubFullWildcardFirst", .connect = kPlain, .input = {"SUB >.foo 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubTwoFullWildcards", .connect = kPlain, .input = {"SUB foo.>.> 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubOnlyDot", .connect = kPlain, .input = {"SUB . 1\r\n"},
       .expect = {kInvalidSubject}},
      {.name = "SubOnlyFullWildcard", .connect = kPlain, .input = {"SUB > 1\r\n"}},
      // Wildcards only: "*.>" is valid and matches any subject of 2+ tokens.
      {.name = "SubOnlyWildcards", .connect = kPlain,
       .input = {"SUB *.> 1\r\nPUB a 1\r\nx\r\nPUB a.b 1\r\ny\r\n"},
       .expect = {"MSG a\\.b 1 1", "y"}},
      // ">" or "*" inside a longer token is a literal character, not a
      // wildcard: "foo>" subscribes to the literal subject "foo>".
      {.name = "SubWildcardGluedToToken", .connect = kPlain,
       .input = {"SUB foo> 1\r\nSUB foo* 2\r\nPUB foo> 2\r\nhi\r\n"},
       .expect = {"MSG foo> 1 2", "hi"}},
      // The sid is any token, not a number.
      {.name = "SubAlphanumericSid", .connect = kPlain,
       .input = {"SUB foo abc\r\nPUB foo 2\r\nhi\r\n"}, .expect = {"MSG foo abc 2", "hi"}},
      // A second SUB with a sid in use is ignored: "bar" gets nothing.
      {.name = "SubDuplicateSid", .connect = kPlain,
       .input = {"SUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nb\r\nPUB foo 1\r\na\r\n"},
       .expect = {"MSG foo 1 1", "a"}},
      // Queue group names are not validated.
      {.name = "SubOddQueueName", .connect = kPlain,
       .input = {"SUB foo q..x 1\r\nPUB foo 2\r\nhi\r\n"}, .expect = {"MSG foo 1 2", "hi"}},
      // Tabs and runs of spaces separate arguments; a trailing space is fine.
      {.name = "ArgumentWhitespace", .connect = kPlain,
       .input = {"SUB\tfoo\t1\r\nPUB   foo    2 \r\nhi\r\n"}, .expect = {"MSG foo 1 2", "hi"}},
      // max_subs 3: the 4th SUB gets -ERR, the connection stays open.
      {.name = "MaxSubscriptions", .connect = kPlain,
       .input = {"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\n"}, .expect = {kMaxSubsErr}},
      // Verbose: +OK for each accepted SUB, only -ERR for the rejected one.
      {.name = "MaxSubscriptionsVerbose", .connect = kVerbose,
       .input = {"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\n"},
       .expect = {kOk, kOk, kOk, kMaxSubsErr}},

      // ---- UNSUB -----------------------------------------------------------
      {.name = "UnsubNoArgs", .connect = kPlain, .input = {"UNSUB\r\n"}, .expect = {kUnknownOp},
       .after = After::kClosed},
      {.name = "UnsubTooManyArgs", .connect = kPlain, .input = {"UNSUB 1 2 3\r\n"},
       .after = After::kClosed},
      // An unknown sid is silently ignored.
      {.name = "UnsubUnknownSid", .connect = kPlain, .input = {"UNSUB 99\r\n"}},
      // A max that is not a positive number removes the subscription at once,
      // like a plain UNSUB: no message is delivered afterwards.
      {.name = "UnsubNonNumericMax", .connect = kPlain,
       .input = {"SUB foo 1\r\nUNSUB 1 abc\r\nPUB foo 2\r\nhi\r\n"}},
      {.name = "UnsubZeroMax", .connect = kPlain,
       .input = {"SUB foo 1\r\nUNSUB 1 0\r\nPUB foo 2\r\nhi\r\n"}},

      // ---- HPUB ------------------------------------------------------------
      // Headers were not announced (no CONNECT at all / headers:false): the
      // connection is closed without -ERR.
      {.name = "HpubBeforeConnect", .input = {"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"},
       .after = After::kClosed},
      {.name = "HpubWithoutHeadersSupport", .connect = kPlain,
       .input = {"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"}, .after = After::kClosed},
      // Header size larger than the total size: silent close.
      {.name = "HpubHeaderSizeOverTotal", .connect = kHeaders,
       .input = {"HPUB foo 14 12\r\nNATS/1.0\r\n\r\nhi\r\n"}, .after = After::kClosed},
      {.name = "HpubMissingTotalSize", .connect = kHeaders, .input = {"HPUB foo 12\r\n"},
       .after = After::kClosed},
      // The total (headers + payload) is held to max_payload.
      {.name = "HpubOverMaxPayload", .connect = kHeaders,
       .input = {"HPUB foo 12 " + std::to_string(kMaxPayload + 1) + "\r\n"},
       .expect = {kMaxPayloadErr}, .after = After::kClosed},
      // The header block is passed through unparsed, even if it is not
      // "NATS/1.0": routing only needs the sizes.
      {.name = "HpubOpaqueHeaderBlock", .connect = kHeaders,
       .input = {"SUB foo 1\r\nHPUB foo 4 6\r\nabcdhi\r\n"}, .expect = {"HMSG foo 1 4 6", "abcdhi"}},
      // A zero-length header block is delivered as a plain MSG.
      {.name = "HpubZeroHeaderSize", .connect = kHeaders,
       .input = {"SUB foo 1\r\nHPUB foo 0 2\r\nhi\r\n"}, .expect = {"MSG foo 1 2", "hi"}},

      // ---- CONNECT ---------------------------------------------------------
      // Anything json.Unmarshal rejects closes the connection silently.
      {.name = "ConnectInvalidJson", .input = {"CONNECT {bad\r\n"}, .after = After::kClosed},
      {.name = "ConnectNoArgument", .input = {"CONNECT\r\n"}, .after = After::kClosed},
      {.name = "ConnectJsonArray", .input = {"CONNECT []\r\n"}, .after = After::kClosed},
      {.name = "ConnectTrailingJunk", .input = {"CONNECT {\"verbose\":false} junk\r\n"},
       .after = After::kClosed},
      {.name = "ConnectVerboseWrongType", .input = {"CONNECT {\"verbose\":\"yes\"}\r\n"},
       .after = After::kClosed},
      {.name = "ConnectUserWrongType", .input = {"CONNECT {\"user\":5}\r\n"},
       .after = After::kClosed},
      {.name = "ConnectProtocolWrongType", .input = {"CONNECT {\"protocol\":\"1\"}\r\n"},
       .after = After::kClosed},
      // An integer Go's int cannot hold fails decoding, like a wrong type.
      {.name = "ConnectProtocolOverflow", .input = {"CONNECT {\"protocol\":18446744073709551615}\r\n"},
       .after = After::kClosed},
      // JSON null changes nothing: still verbose (the pre-CONNECT default), so +OK.
      {.name = "ConnectJsonNull", .input = {"CONNECT null\r\n"}, .expect = {kOk}},
      // Protocol versions other than 0 and 1 are refused with an -ERR.
      {.name = "ConnectProtocol2", .input = {"CONNECT {\"verbose\":false,\"protocol\":2}\r\n"},
       .expect = {Lit("-ERR 'invalid client protocol'")}, .after = After::kClosed},
      {.name = "ConnectProtocolNegative",
       .input = {"CONNECT {\"verbose\":false,\"protocol\":-1}\r\n"},
       .expect = {Lit("-ERR 'invalid client protocol'")}, .after = After::kClosed},
      {.name = "ConnectNoRespondersWithoutHeaders",
       .input = {"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n"},
       .expect = {Lit("-ERR 'no responders requires headers support'")},
       .after = After::kClosed},
      // Unknown fields are ignored (clients add fields over time).
      {.name = "ConnectUnknownField", .input = {"CONNECT {\"zzz\":1,\"verbose\":false}\r\n"}},
      // A second CONNECT is accepted.
      {.name = "ConnectTwice", .connect = kPlain, .input = {"CONNECT " + kPlain + "\r\n"}},

      // ---- PING / PONG and line endings ------------------------------------
      // PING ignores whatever follows it on the line.
      {.name = "PingWithJunk", .input = {"PING junk\r\n"}, .expect = {kPong}},
      {.name = "PingGluedJunk", .input = {"PINGX\r\n"}, .expect = {kPong}},
      {.name = "PongWithJunk", .connect = kPlain, .input = {"PONG junk\r\n"}},
      // PING split across reads.
      {.name = "PingSplit", .input = {"PI", "NG\r\n"}, .expect = {kPong}},
      // Control lines may end in a bare LF.
      {.name = "BareLfPing", .input = {"PING\n"}, .expect = {kPong}},
      {.name = "BareLfControlLines",
       .input = {"CONNECT {\"verbose\":false}\nSUB foo 1\nPUB foo 2\nhi\r\n"},
       .expect = {"MSG foo 1 2", "hi"}},

      // ---- Server-to-client operations sent by a client --------------------
      // +OK and INFO from a client are ignored...
      {.name = "ClientSendsOk", .connect = kPlain, .input = {"+OK\r\n"}},
      {.name = "ClientSendsInfo", .connect = kPlain, .input = {"INFO {}\r\n"}},
      // ...-ERR from a client closes the connection, silently...
      {.name = "ClientSendsErr", .connect = kPlain, .input = {"-ERR 'x'\r\n"},
       .after = After::kClosed},
      // ...MSG and HMSG are unknown operations for a client.
      {.name = "ClientSendsMsg", .connect = kPlain, .input = {"MSG foo 1 2\r\nhi\r\n"},
       .expect = {kUnknownOp}, .after = After::kClosed},
      {.name = "ClientSendsHmsg", .connect = kHeaders, .input = {"HMSG foo 1 12 14\r\n"},
       .expect = {kUnknownOp}, .after = After::kClosed},

      // ---- Verbose and pedantic --------------------------------------------
      // Before CONNECT a client is verbose: +OK for SUB and for PUB (the +OK
      // comes before the delivered message), none for PING.
      {.name = "VerboseBeforeConnect", .input = {"SUB foo 1\r\nPUB foo 2\r\nhi\r\n"},
       .expect = {kOk, kOk, "MSG foo 1 2", "hi"}},
      // Verbose after CONNECT: +OK for CONNECT, SUB, PUB, UNSUB (even of an
      // unknown sid); none for PONG.
      {.name = "VerboseOps", .input = {"CONNECT " + kVerbose + "\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nUNSUB 42\r\nPONG\r\n"},
       .expect = {kOk, kOk, kOk, "MSG foo 1 2", "hi", kOk, kOk}},
      // A rejected op gets only the -ERR, no +OK.
      {.name = "VerboseInvalidSubject", .connect = kVerbose, .input = {"SUB foo..bar 1\r\n"},
       .expect = {kInvalidSubject}},
      // Pedantic: a wildcard publish subject gets -ERR 'Invalid Publish
      // Subject' -- and nats-server 2.9 still delivers the message (to a
      // subscriber whose subject matches the wildcard tokens literally).
      {.name = "PedanticWildcardPublish", .connect = kPedantic,
       .input = {"SUB foo.* 1\r\nSUB foo.bar 2\r\nPUB foo.* 2\r\nhi\r\n"},
       .expect = {kInvalidPubSubject, "MSG foo\\.\\* 1 2", "hi"}},
      {.name = "PedanticFullWildcardPublish", .connect = kPedantic,
       .input = {"PUB foo.> 2\r\nhi\r\n"}, .expect = {kInvalidPubSubject}},
      {.name = "PedanticInvalidPublishSubject", .connect = kPedantic,
       .input = {"PUB foo..bar 2\r\nhi\r\n"}, .expect = {kInvalidPubSubject}},
      // Before CONNECT a client is pedantic and verbose: -ERR, then the +OK.
      {.name = "PedanticBeforeConnect", .input = {"PUB foo.* 2\r\nhi\r\n"},
       .expect = {kInvalidPubSubject, kOk}},
      // Not pedantic: a wildcard publish is accepted silently and matches a
      // subscription on the same literal tokens.
      {.name = "NonPedanticWildcardPublish", .connect = kPlain,
       .input = {"SUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\n"}, .expect = {"MSG foo\\.\\* 1 2", "hi"}},

      // ---- Authorization required (users configured) -----------------------
      // Any op before CONNECT -- even PING, even an unknown op -- is an
      // Authorization Violation, then close.
      {.name = "AuthPubBeforeConnect", .profile = Profile::kAuth,
       .input = {"PUB foo 2\r\nhi\r\n"}, .expect = {kAuthViolation}, .after = After::kClosed},
      {.name = "AuthSubBeforeConnect", .profile = Profile::kAuth, .input = {"SUB foo 1\r\n"},
       .expect = {kAuthViolation}, .after = After::kClosed},
      {.name = "AuthPingBeforeConnect", .profile = Profile::kAuth, .input = {"PING\r\n"},
       .expect = {kAuthViolation}, .after = After::kClosed},
      {.name = "AuthUnknownOpBeforeConnect", .profile = Profile::kAuth, .input = {"FOO\r\n"},
       .expect = {kAuthViolation}, .after = After::kClosed},
      {.name = "AuthConnectWithoutCredentials", .profile = Profile::kAuth,
       .input = {"CONNECT {\"verbose\":false}\r\n"}, .expect = {kAuthViolation},
       .after = After::kClosed},
      {.name = "AuthConnectWrongPassword", .profile = Profile::kAuth,
       .input = {"CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"nope\"}\r\n"},
       .expect = {kAuthViolation}, .after = After::kClosed},
      {.name = "AuthConnectUnknownUser", .profile = Profile::kAuth,
       .input = {"CONNECT {\"verbose\":false,\"user\":\"mallory\",\"pass\":\"alice-pw\"}\r\n"},
       .expect = {kAuthViolation}, .after = After::kClosed},
      // Verbose is the default: a good CONNECT without "verbose" gets +OK.
      {.name = "AuthConnectGoodDefaultVerbose", .profile = Profile::kAuth,
       .input = {"CONNECT {\"user\":\"alice\",\"pass\":\"alice-pw\"}\r\n"}, .expect = {kOk}},
      // After a good login, malformed input is answered as without auth.
      {.name = "AuthAfterLoginUnknownOp", .profile = Profile::kAuth, .connect = auth_ok,
       .input = {"FOO\r\n"}, .expect = {kUnknownOp}, .after = After::kClosed},

      // ---- Max connections ---------------------------------------------------
      // With max_connections connections open, a new one still gets INFO, then
      // -ERR 'maximum connections exceeded' and a close.
      {.name = "MaxConnections", .profile = Profile::kMaxConnections, .expect = {kMaxConnErr},
       .after = After::kClosed, .hold = kMaxConnections},
  };
}
#pragma GCC diagnostic pop

class ProtocolCompatTest : public ::testing::TestWithParam<CompatCase> {
 protected:
  static void TearDownTestSuite() { servers_.clear(); }

  // The shared server for `profile`, started on first use.
  static ServerUnderTest* ServerFor(Profile profile) {
    auto it = servers_.find(profile);
    if (it != servers_.end()) return it->second.get();
    ServerOptions options;
    switch (profile) {
      case Profile::kLimits:
        options.max_payload = kMaxPayload;
        options.max_control_line = kMaxControlLine;
        options.max_subs = kMaxSubs;
        break;
      case Profile::kAuth:
        options.users = {MakeUser(kAliceUser, kAliceHash)};
        break;
      case Profile::kMaxConnections:
        options.max_connections = kMaxConnections;
        break;
    }
    auto server = std::make_unique<ServerUnderTest>();
    if (!server->Start(options)) return nullptr;
    return servers_.emplace(profile, std::move(server)).first->second.get();
  }

  static std::map<Profile, std::unique_ptr<ServerUnderTest>> servers_;
};

std::map<Profile, std::unique_ptr<ServerUnderTest>> ProtocolCompatTest::servers_;

// Opens a connection that completes a PING/PONG exchange and stays open.
// Retries (bounded) while the server still counts a connection that was just
// closed -- the start-up probe or a previous case's holder.
std::unique_ptr<RawClient> HoldConnection(uint16_t port) {
  std::unique_ptr<RawClient> held;
  WaitFor(milliseconds(5000), [&] {
    auto c = std::make_unique<RawClient>();
    c->set_name("holder");
    if (!c->Dial(port)) return false;
    c->TrySend("PING\r\n");
    std::optional<std::string> line;
    do {
      line = c->ReadLine(milliseconds(2000));
    } while (line && line->starts_with("INFO "));
    if (line != "PONG") return false;
    held = std::move(c);
    return true;
  }, milliseconds(20));
  return held;
}

TEST_P(ProtocolCompatTest, AnswersLikeNatsServer) {
  const CompatCase& c = GetParam();
  ServerUnderTest* server = ServerFor(c.profile);
  ASSERT_NE(server, nullptr);
  SCOPED_TRACE("target " + std::string(TargetName(server->target())));

  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < c.hold; ++i) {
    held.push_back(HoldConnection(server->port()));
    ASSERT_NE(held.back(), nullptr) << "could not hold connection " << i;
  }

  RawClient client;
  client.set_name(c.name);
  ASSERT_TRUE(client.Dial(server->port()));
  ASSERT_TRUE(client.ExpectInfo(kReplyTimeout));
  if (!c.connect.empty()) {
    ASSERT_TRUE(client.Send("CONNECT " + c.connect + "\r\nPING\r\n"));
    if (c.connect.find("\"verbose\":true") != std::string::npos) {
      ASSERT_TRUE(client.ExpectLine(kOk, kReplyTimeout));
    }
    ASSERT_TRUE(client.ExpectLine(kPong, kReplyTimeout));
  }
  for (std::size_t i = 0; i < c.input.size(); ++i) {
    if (i > 0) {
      ASSERT_TRUE(client.ExpectSilence(kSplitPause)) << "after chunk " << i;
    }
    // The server may already have closed the connection: not a failure here.
    client.TrySend(c.input[i]);
  }
  for (const std::string& regex : c.expect) {
    ASSERT_TRUE(client.ExpectLine(regex, kReplyTimeout));
  }
  if (c.after == After::kOpen) {
    ASSERT_TRUE(client.Send("PING\r\n")) << "connection should still be open";
    EXPECT_TRUE(client.ExpectLine(kPong, kReplyTimeout)) << "connection should still be open";
  } else {
    EXPECT_TRUE(client.ExpectClosed(kReplyTimeout));
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ProtocolCompatTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<CompatCase>& info) {
                           return info.param.name;
                         });

TEST(ProtocolCompatTableTest, HasAtLeastFortyCases) { EXPECT_GE(Cases().size(), 40u); }

}  // namespace
}  // namespace zmesh::testing

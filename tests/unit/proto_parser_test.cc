// The NATS protocol parser: each input is fed whole, then split in two at
// every byte offset, then one byte at a time; all three must produce the same
// operations (or the same error), as nats-server's parser does.
#include "proto/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zmesh::proto {
namespace {

// A parsed op in a comparable, owning form.
struct Parsed {
  OpType type;
  std::string arg, subject, reply, queue, sid, payload;
  int64_t max_msgs, header_size;
  bool operator==(const Parsed&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Parsed& p) {
  return os << "{type=" << static_cast<int>(p.type) << " subject=" << p.subject << " reply=" << p.reply
            << " queue=" << p.queue << " sid=" << p.sid << " payload=" << p.payload << " arg=" << p.arg
            << " max=" << p.max_msgs << " hdr=" << p.header_size << "}";
}

struct Outcome {
  std::vector<Parsed> ops;
  ParseError error = ParseError::kNone;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  os << "error=" << static_cast<int>(o.error) << " ops=[";
  for (const auto& p : o.ops) os << p << " ";
  return os << "]";
}

Parser::Limits DefaultLimits() { return {4096, 1 << 20}; }

// Feeds `chunks` in order to a fresh parser.
Outcome Feed(const std::vector<std::string>& chunks, Parser::Role role = Parser::Role::kServer,
             Parser::Limits limits = DefaultLimits()) {
  Parser parser(role, limits);
  Outcome out;
  for (const std::string& chunk : chunks) {
    std::string_view in(chunk);
    while (!in.empty()) {
      Op op;
      const ParseStatus st = parser.Next(&in, &op);
      if (st == ParseStatus::kError) {
        out.error = parser.error();
        return out;
      }
      if (st == ParseStatus::kNeedMore) break;
      out.ops.push_back({op.type, std::string(op.arg), std::string(op.subject), std::string(op.reply),
                         std::string(op.queue), std::string(op.sid), std::string(op.payload), op.max_msgs,
                         op.header_size});
    }
  }
  return out;
}

// Whole, split at every offset, and byte by byte must agree.
Outcome FeedAllSplits(const std::string& input, Parser::Role role = Parser::Role::kServer,
                      Parser::Limits limits = DefaultLimits()) {
  const Outcome whole = Feed({input}, role, limits);
  for (size_t i = 1; i < input.size(); ++i) {
    EXPECT_EQ(Feed({input.substr(0, i), input.substr(i)}, role, limits), whole) << "split at " << i;
  }
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  EXPECT_EQ(Feed(bytes, role, limits), whole) << "byte by byte";
  return whole;
}

TEST(ParserTest, PubWithAndWithoutReply) {
  Outcome o = FeedAllSplits("PUB foo 5\r\nhello\r\nPUB foo.bar _INBOX.1 2\r\nhi\r\n");
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 2u);
  EXPECT_EQ(o.ops[0].type, OpType::kPub);
  EXPECT_EQ(o.ops[0].subject, "foo");
  EXPECT_EQ(o.ops[0].reply, "");
  EXPECT_EQ(o.ops[0].payload, "hello");
  EXPECT_EQ(o.ops[1].subject, "foo.bar");
  EXPECT_EQ(o.ops[1].reply, "_INBOX.1");
  EXPECT_EQ(o.ops[1].payload, "hi");
}

TEST(ParserTest, EmptyPayloadAndBinaryPayload) {
  std::string binary("a\r\n\0b", 5);
  Outcome o = FeedAllSplits("PUB x 0\r\n\r\nPUB y 5\r\n" + binary + "\r\n");
  ASSERT_EQ(o.ops.size(), 2u);
  EXPECT_EQ(o.ops[0].payload, "");
  EXPECT_EQ(o.ops[1].payload, binary);
}

TEST(ParserTest, CaseInsensitiveOpsAndTabs) {
  Outcome o = FeedAllSplits("pub\tfoo\t\t3\r\nabc\r\nsUb foo  1\r\nPiNg\r\npong\r\nUnSuB 1 5\r\n");
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 5u);
  EXPECT_EQ(o.ops[0].payload, "abc");
  EXPECT_EQ(o.ops[1].type, OpType::kSub);
  EXPECT_EQ(o.ops[1].sid, "1");
  EXPECT_EQ(o.ops[2].type, OpType::kPing);
  EXPECT_EQ(o.ops[3].type, OpType::kPong);
  EXPECT_EQ(o.ops[4].type, OpType::kUnsub);
  EXPECT_EQ(o.ops[4].max_msgs, 5);
}

TEST(ParserTest, BareNewlineEndsLines) {
  Outcome o = FeedAllSplits("SUB foo 1\nPUB foo 2\nhi\r\nPING\n");
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 3u);
  EXPECT_EQ(o.ops[0].sid, "1");
  EXPECT_EQ(o.ops[1].payload, "hi");
}

TEST(ParserTest, QueueSubscription) {
  Outcome o = FeedAllSplits("SUB foo.* workers 42\r\n");
  ASSERT_EQ(o.ops.size(), 1u);
  EXPECT_EQ(o.ops[0].subject, "foo.*");
  EXPECT_EQ(o.ops[0].queue, "workers");
  EXPECT_EQ(o.ops[0].sid, "42");
}

TEST(ParserTest, GoClientSpacing) {
  // nats.go writes "SUB subj  sid" (empty queue) and "UNSUB sid " (trailing blank).
  Outcome o = FeedAllSplits("SUB foo  7\r\nUNSUB 7 \r\n");
  ASSERT_EQ(o.ops.size(), 2u);
  EXPECT_EQ(o.ops[0].queue, "");
  EXPECT_EQ(o.ops[0].sid, "7");
  EXPECT_EQ(o.ops[1].sid, "7");
  EXPECT_EQ(o.ops[1].max_msgs, -1);
}

TEST(ParserTest, HPubCarriesHeaderSize) {
  const std::string hdr = "NATS/1.0\r\nA: b\r\n\r\n";
  const std::string msg = "HPUB foo rep " + std::to_string(hdr.size()) + " " + std::to_string(hdr.size() + 4) +
                          "\r\n" + hdr + "body\r\n";
  Outcome o = FeedAllSplits(msg);
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 1u);
  EXPECT_EQ(o.ops[0].type, OpType::kHPub);
  EXPECT_EQ(o.ops[0].reply, "rep");
  EXPECT_EQ(o.ops[0].header_size, static_cast<int64_t>(hdr.size()));
  EXPECT_EQ(o.ops[0].payload, hdr + "body");
}

TEST(ParserTest, HPubRefusedWhenHeadersNotAllowed) {
  Parser p(Parser::Role::kServer, DefaultLimits());
  p.set_headers_allowed(false);
  std::string_view in = "HPUB foo 2 2\r\nab\r\n";
  Op op;
  EXPECT_EQ(p.Next(&in, &op), ParseStatus::kError);
  EXPECT_EQ(p.error(), ParseError::kHeadersNotSupported);
}

TEST(ParserTest, ConnectAndInfoArgumentsNeedNoBlank) {
  Outcome o = FeedAllSplits("CONNECT {\"verbose\":false}\r\nCONNECT{}\r\nINFO {}\r\n");
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 3u);
  EXPECT_EQ(o.ops[0].arg, "{\"verbose\":false}");
  EXPECT_EQ(o.ops[1].arg, "{}");
  EXPECT_EQ(o.ops[2].type, OpType::kInfo);
}

TEST(ParserTest, PingIgnoresTrailingBytes) {
  Outcome o = FeedAllSplits("PING whatever\r\nPONGx\r\n+OKjunk\r\n");
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 3u);
  EXPECT_EQ(o.ops[0].type, OpType::kPing);
  EXPECT_EQ(o.ops[1].type, OpType::kPong);
  EXPECT_EQ(o.ops[2].type, OpType::kOk);
}

TEST(ParserTest, UnknownOperations) {
  for (const char* bad : {"FOO\r\n", "PUX foo 1\r\n", "PUBfoo 1\r\n", "MSG foo 1 1\r\nx\r\n", "\r\n", " PING\r\n",
                          "RS+ x\r\n", "SUBX\r\n", "HMSG x 1 0 0\r\n",
                          "UNSUB\r\n" /* the op name must be followed by a blank */}) {
    Outcome o = FeedAllSplits(bad);
    EXPECT_EQ(o.error, ParseError::kUnknownOp) << bad;
  }
}

// zmesh's planned-move ops: MOVE goes to a server, MOVED to a client, and
// neither disturbs the ops that share their first letter.
TEST(ParserTest, MoveAndMovedShareTheirFirstLetterWithMsg) {
  Outcome server = FeedAllSplits("MOVE 0123abcd\r\nPING\r\nmove 9f\r\n");
  ASSERT_EQ(server.error, ParseError::kNone);
  ASSERT_EQ(server.ops.size(), 3u);
  EXPECT_EQ(server.ops[0].type, OpType::kMove);
  EXPECT_EQ(server.ops[0].arg, "0123abcd");
  EXPECT_EQ(server.ops[1].type, OpType::kPing);
  EXPECT_EQ(server.ops[2].arg, "9f");
  Outcome client = FeedAllSplits("MSG a 1 2\r\nhi\r\nMOVED 0123abcd\r\nPONG\r\nMSG b 1 0\r\n\r\n", Parser::Role::kClient);
  ASSERT_EQ(client.error, ParseError::kNone);
  ASSERT_EQ(client.ops.size(), 4u);
  EXPECT_EQ(client.ops[0].type, OpType::kMsg);
  EXPECT_EQ(client.ops[1].type, OpType::kMoved);
  EXPECT_EQ(client.ops[1].arg, "0123abcd");
  EXPECT_EQ(client.ops[2].type, OpType::kPong);
  EXPECT_EQ(client.ops[3].subject, "b");
  for (const char* bad : {"MOVED x\r\n", "MOVE\r\n", "MX\r\n"}) {
    EXPECT_EQ(FeedAllSplits(bad).error, ParseError::kUnknownOp) << bad;
  }
  EXPECT_EQ(FeedAllSplits("MOVE x\r\n", Parser::Role::kClient).error, ParseError::kUnknownOp);
}

TEST(ParserTest, OpsBeforeAnErrorAreReturned) {
  Outcome o = FeedAllSplits("PING\r\nXYZ\r\n");
  ASSERT_EQ(o.ops.size(), 1u);
  EXPECT_EQ(o.error, ParseError::kUnknownOp);
}

TEST(ParserTest, MalformedArgumentsAreBadArguments) {
  for (const char* bad : {"PUB foo\r\n", "PUB foo bar baz 1\r\n", "PUB foo x\r\n", "PUB foo -1\r\n",
                          "PUB foo 1234567890\r\n", "SUB foo\r\n", "SUB a b c d\r\n", "UNSUB \r\n", "UNSUB 1 2 3\r\n",
                          "HPUB foo 5 3\r\n", "HPUB foo x 3\r\n", "PUB \r\n", "SUB \r\n"}) {
    Outcome o = FeedAllSplits(bad);
    EXPECT_EQ(o.error, ParseError::kBadArguments) << bad;
  }
}

TEST(ParserTest, PayloadMustEndWithCrLf) {
  EXPECT_EQ(FeedAllSplits("PUB foo 3\r\nabcd\r\n").error, ParseError::kUnknownOp);
  // The payload is "ab\r"; the next byte must be '\r' and is checked as soon
  // as it arrives (nats-server's MSG_END_R), without waiting for a second one.
  EXPECT_EQ(FeedAllSplits("PUB foo 3\r\nab\r\n").error, ParseError::kUnknownOp);
  EXPECT_EQ(FeedAllSplits("PUB foo 2\r\nhi\n").error, ParseError::kUnknownOp);
  EXPECT_EQ(FeedAllSplits("PUB foo 2\r\nhi\r").error, ParseError::kNone);  // waits for '\n'
  EXPECT_EQ(FeedAllSplits("PUB foo 3\r\nab\r\nX").error, ParseError::kUnknownOp);
}

TEST(ParserTest, MaxPayload) {
  Parser::Limits limits{4096, 10};
  EXPECT_EQ(FeedAllSplits("PUB foo 10\r\n0123456789\r\n", Parser::Role::kServer, limits).error, ParseError::kNone);
  EXPECT_EQ(FeedAllSplits("PUB foo 11\r\n", Parser::Role::kServer, limits).error, ParseError::kMaxPayload);
  EXPECT_EQ(FeedAllSplits("HPUB foo 2 11\r\n", Parser::Role::kServer, limits).error, ParseError::kMaxPayload);
}

TEST(ParserTest, MaxControlLineWholeAndSplit) {
  Parser::Limits limits{32, 1 << 20};
  const std::string ok = "SUB " + std::string(28, 'a') + " 1\r\n";  // argument of 30 bytes
  EXPECT_EQ(FeedAllSplits(ok, Parser::Role::kServer, limits).error, ParseError::kNone);
  const std::string long_line = "SUB " + std::string(40, 'a') + " 1\r\n";
  EXPECT_EQ(FeedAllSplits(long_line, Parser::Role::kServer, limits).error, ParseError::kMaxControlLine);
  // No newline at all: the buffered argument is bounded.
  Parser p(Parser::Role::kServer, limits);
  std::string endless = "PUB " + std::string(1000, 'x');
  std::string_view in(endless);
  Op op;
  EXPECT_EQ(p.Next(&in, &op), ParseStatus::kError);
  EXPECT_EQ(p.error(), ParseError::kMaxControlLine);
  EXPECT_LE(p.buffered_bytes(), 2048u);
}

TEST(ParserTest, PingWithoutNewlineBuffersNothing) {
  Parser p(Parser::Role::kServer, DefaultLimits());
  std::string junk = "PING" + std::string(100000, 'z');
  std::string_view in(junk);
  Op op;
  EXPECT_EQ(p.Next(&in, &op), ParseStatus::kNeedMore);
  EXPECT_EQ(p.buffered_bytes(), 0u);
}

TEST(ParserTest, LargeSplitPayloadIsCopiedOnce) {
  const std::string payload(200000, 'p');
  Outcome o = Feed({"PUB big 200000\r\n" + payload.substr(0, 1000), payload.substr(1000, 150000),
                    payload.substr(151000) + "\r\nPING\r\n"});
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 2u);
  EXPECT_EQ(o.ops[0].payload, payload);
  EXPECT_EQ(o.ops[0].subject, "big");
}

TEST(ParserTest, ClientRoleReadsServerOps) {
  const std::string input =
      "INFO {\"server_id\":\"x\"} \r\nMSG foo 1 5\r\nhello\r\nMSG foo 2 _INBOX.r 2\r\nhi\r\n"
      "HMSG foo 3 12 14\r\nNATS/1.0\r\n\r\nok\r\n+OK\r\n-ERR 'Stale Connection'\r\nPING\r\n";
  Outcome o = FeedAllSplits(input, Parser::Role::kClient);
  ASSERT_EQ(o.error, ParseError::kNone);
  ASSERT_EQ(o.ops.size(), 7u);
  EXPECT_EQ(o.ops[0].type, OpType::kInfo);
  EXPECT_EQ(o.ops[1].type, OpType::kMsg);
  EXPECT_EQ(o.ops[1].sid, "1");
  EXPECT_EQ(o.ops[1].payload, "hello");
  EXPECT_EQ(o.ops[2].reply, "_INBOX.r");
  EXPECT_EQ(o.ops[3].type, OpType::kHMsg);
  EXPECT_EQ(o.ops[3].header_size, 12);
  EXPECT_EQ(o.ops[3].payload, "NATS/1.0\r\n\r\nok");
  EXPECT_EQ(o.ops[4].type, OpType::kOk);
  EXPECT_EQ(o.ops[5].type, OpType::kErr);
  EXPECT_EQ(o.ops[5].arg, "'Stale Connection'");
  EXPECT_EQ(o.ops[6].type, OpType::kPing);
}

TEST(ParserTest, ClientRoleRejectsClientOps) {
  EXPECT_EQ(FeedAllSplits("PUB foo 1\r\nx\r\n", Parser::Role::kClient).error, ParseError::kUnknownOp);
  EXPECT_EQ(FeedAllSplits("SUB foo 1\r\n", Parser::Role::kClient).error, ParseError::kUnknownOp);
  EXPECT_EQ(FeedAllSplits("MSG foo 1\r\n", Parser::Role::kClient).error, ParseError::kBadArguments);
}

TEST(ParserTest, SplitArgsAndParseSize) {
  std::string_view out[4];
  EXPECT_EQ(SplitArgs("  a\tb  c ", out, 4), 3u);
  EXPECT_EQ(out[0], "a");
  EXPECT_EQ(out[2], "c");
  EXPECT_EQ(SplitArgs("a b c d e", out, 4), 5u);
  EXPECT_EQ(ParseSize("0"), 0);
  EXPECT_EQ(ParseSize("999999999"), 999999999);
  EXPECT_EQ(ParseSize("1000000000"), -1);
  EXPECT_EQ(ParseSize(""), -1);
  EXPECT_EQ(ParseSize("1a"), -1);
  EXPECT_EQ(ParseSize("-1"), -1);
}

}  // namespace
}  // namespace zmesh::proto

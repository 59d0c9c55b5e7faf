#include "proto/msg_framing.h"

#include <gtest/gtest.h>

#include "proto/parser.h"

namespace zmesh::proto {
namespace {

struct Decoded {
  OpType type;
  std::string subject, sid, reply, payload;
  int64_t header_size;
};

// Decodes exactly one operation with the client-side parser.
Decoded DecodeOne(const std::string& wire) {
  Parser p(Parser::Role::kClient, Parser::Limits{4096, 64 << 20});
  std::string_view in = wire;
  Op op;
  EXPECT_EQ(p.Next(&in, &op), ParseStatus::kOp) << wire;
  EXPECT_TRUE(in.empty()) << wire;
  return Decoded{op.type, std::string(op.subject), std::string(op.sid), std::string(op.reply), std::string(op.payload),
                 op.header_size};
}

std::string Join(const std::string_view* pieces, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.append(pieces[i]);
  return s;
}

TEST(ProtoMsgFramingTest, MsgRoundTrips) {
  for (const std::string reply : {"", "_INBOX.r"}) {
    for (const std::string& payload :
         {std::string(), std::string("hi"), std::string("a\r\nb"), std::string(70000, 'x')}) {
      std::string wire;
      AppendMsg(&wire, "foo.bar", "17", reply, payload);
      const Decoded d = DecodeOne(wire);
      EXPECT_EQ(d.type, OpType::kMsg);
      EXPECT_EQ(d.subject, "foo.bar");
      EXPECT_EQ(d.sid, "17");
      EXPECT_EQ(d.reply, reply);
      EXPECT_EQ(d.payload, payload);
    }
  }
  std::string wire;
  AppendMsg(&wire, "foo", "1", "r", "hi");
  EXPECT_EQ(wire, "MSG foo 1 r 2\r\nhi\r\n");
}

TEST(ProtoMsgFramingTest, HMsgRoundTrips) {
  const std::string headers = "NATS/1.0\r\nK: v\r\n\r\n";
  for (const std::string reply : {"", "r"}) {
    for (const std::string& body : {std::string(), std::string("data")}) {
      std::string wire;
      AppendHMsg(&wire, "h", "2", reply, headers, body);
      const Decoded d = DecodeOne(wire);
      EXPECT_EQ(d.type, OpType::kHMsg);
      EXPECT_EQ(d.subject, "h");
      EXPECT_EQ(d.sid, "2");
      EXPECT_EQ(d.reply, reply);
      EXPECT_EQ(d.header_size, static_cast<int64_t>(headers.size()));
      EXPECT_EQ(d.payload, headers + body);
    }
  }
  std::string wire;
  AppendHMsg(&wire, "_INBOX.x", "7", "", kNoRespondersHeaders, "");
  EXPECT_EQ(wire, "HMSG _INBOX.x 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
}

// The gathered pieces are the same bytes as the one-off encoders, per
// subscriber kind; headers are stripped for those that do not speak them.
TEST(ProtoMsgFramingTest, FramePiecesMatchTheEncoders) {
  const std::string headers = "NATS/1.0\r\nK: v\r\n\r\n";
  const std::string payload = headers + "body";
  for (const std::string reply : {"", "rep"}) {
    MsgFrame frame("s.t", reply, payload, static_cast<int64_t>(headers.size()));
    std::string_view pieces[MsgFrame::kMaxPieces];
    for (int round = 0; round < 2; ++round) {  // the cached control line is reused
      std::string expect_h, expect_plain;
      AppendHMsg(&expect_h, "s.t", "9", reply, headers, "body");
      AppendMsg(&expect_plain, "s.t", "10", reply, "body");
      EXPECT_EQ(Join(pieces, frame.Pieces(true, "9", pieces)), expect_h);
      EXPECT_EQ(frame.payload_size(true), payload.size());
      EXPECT_EQ(Join(pieces, frame.Pieces(false, "10", pieces)), expect_plain);
      EXPECT_EQ(frame.payload_size(false), 4u);
    }
  }
  // No headers (or a header size of 0): MSG for everyone.
  for (int64_t hs : {int64_t{-1}, int64_t{0}}) {
    MsgFrame frame("s", "", "xy", hs);
    std::string_view pieces[MsgFrame::kMaxPieces];
    EXPECT_EQ(Join(pieces, frame.Pieces(true, "1", pieces)), "MSG s 1 2\r\nxy\r\n");
    EXPECT_EQ(Join(pieces, frame.Pieces(false, "1", pieces)), "MSG s 1 2\r\nxy\r\n");
  }
}

// Split at every byte, the decoder sees the same operation.
TEST(ProtoMsgFramingTest, DecodesSplitAtEveryByte) {
  std::string wire;
  AppendHMsg(&wire, "a.b", "3", "r", "NATS/1.0\r\n\r\n", "xyz");
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    Parser p(Parser::Role::kClient, Parser::Limits{4096, 1024});
    std::string_view first(wire.data(), cut), second(wire.data() + cut, wire.size() - cut);
    Op op;
    ParseStatus st = p.Next(&first, &op);
    if (st == ParseStatus::kNeedMore) st = p.Next(&second, &op);
    ASSERT_EQ(st, ParseStatus::kOp) << cut;
    EXPECT_EQ(op.type, OpType::kHMsg);
    EXPECT_EQ(op.payload, "NATS/1.0\r\n\r\nxyz");
  }
}

}  // namespace
}  // namespace zmesh::proto

// The peer protocol: frames round-trip whole, split at every byte and byte by
// byte; malformed frames are errors, never crashes; what a frame carries is
// validated like client input; the interest digest is a set digest.
#include "proto/peer_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/mesh/interest_digest.h"

namespace zmesh::proto::peer {
namespace {

std::string AllFrames() {
  std::string out;
  EncodeHello({kProtocolVersion, "node-a", 42, "127.0.0.1:6222", "nats://127.0.0.1:4222"}, &out);
  EncodeRefuse("node id taken", &out);
  EncodeEmpty(FrameType::kPing, &out);
  EncodeInterest({"foo.*", "", 1, 7}, &out);
  EncodeInterest({"work", "g", 3, 8}, &out);
  EncodeEmpty(FrameType::kSyncBegin, &out);
  EncodeDigest(FrameType::kSyncEnd, {0x1234, 2, 9}, &out);
  const std::string_view queues[] = {"g", "h"};
  const std::string payload = "NATS/1.0\r\n\r\nbody";
  std::string header;
  EncodeMsgHeader("foo.bar", "_INBOX.1", 12, queues, 2, payload.size(), &header);
  out += header + payload;
  header.clear();
  EncodeMsgHeader("x", "", -1, nullptr, 0, 0, &header);
  out += header;
  EncodeEmpty(FrameType::kRetire, &out);
  EncodeInterestAck(0xfedcba9876543210ull, &out);
  EncodeDigest(FrameType::kDigest, {5, 6, 99}, &out);  // DIGEST carries no seq
  EncodeMoveFrame(FrameType::kCut, 0x0102030405060708ull, &out);
  EncodeMoveFrame(FrameType::kMark, 3, &out);
  EncodeLoad(17, &out);
  EncodeQueueMove({"jobs", "w", 2, 10}, 0xabcdull, QueueMoveKind::kRelease, &out);
  EncodeQueueSwitch(0xabcdull, "jobs.>", "w", &out);
  EncodeCut(9, {{"n1", 4}, {"node-2", 0xffffffffffull}}, &out);
  return out;
}

std::vector<std::string> Decode(const std::vector<std::string>& chunks, size_t limit = 1 << 20) {
  FrameReader reader(limit);
  std::vector<std::string> out;
  for (const std::string& c : chunks) {
    std::string_view in(c);
    while (!in.empty()) {
      Frame f;
      auto st = reader.Next(&in, &f);
      if (st == FrameReader::Status::kError) {
        out.push_back("ERROR");
        return out;
      }
      if (st == FrameReader::Status::kNeedMore) break;
      std::string d = std::to_string(static_cast<int>(f.type));
      switch (f.type) {
        case FrameType::kHello:
          d += std::string(f.hello.node_id) + "/" + std::to_string(f.hello.incarnation) + "/" +
               std::string(f.hello.peer_url) + "/" + std::string(f.hello.client_url);
          break;
        case FrameType::kRefuse:
          d += std::string(f.reason);
          break;
        case FrameType::kInterest:
          d += std::string(f.interest.subject) + "|" + std::string(f.interest.queue) + "|" +
               std::to_string(f.interest.count) + "#" + std::to_string(f.interest.seq);
          break;
        case FrameType::kSyncEnd:
        case FrameType::kDigest:
          d += std::to_string(f.digest.digest) + "/" + std::to_string(f.digest.entries) + "#" +
               std::to_string(f.digest.seq);
          break;
        case FrameType::kInterestAck:
          d += std::to_string(f.ack_seq);
          break;
        case FrameType::kCut:
        case FrameType::kMark:
          d += std::to_string(f.move_token);
          for (const Applied& a : f.cut_applied) d += "," + std::string(a.node_id) + "=" + std::to_string(a.seq);
          break;
        case FrameType::kLoad:
          d += std::to_string(f.load_clients);
          break;
        case FrameType::kQueueMove:
        case FrameType::kQueueSwitch:
          d += std::string(f.interest.subject) + "|" + std::string(f.interest.queue) + "|" +
               std::to_string(f.interest.count) + "#" + std::to_string(f.interest.seq) + "@" +
               std::to_string(f.move_token) +
               (f.type == FrameType::kQueueMove ? "/" + std::to_string(static_cast<int>(f.queue_move)) : "");
          break;
        case FrameType::kMsg:
        case FrameType::kMsgQueues:
          d += std::string(f.msg.subject) + "|" + std::string(f.msg.reply) + "|" +
               std::to_string(f.msg.header_size) + "|";
          for (auto q : f.msg.queues) d += std::string(q) + ",";
          d += "|" + std::string(f.msg.payload);
          break;
        default:
          break;
      }
      out.push_back(d);
    }
  }
  return out;
}

TEST(PeerProtocolTest, RoundTripAtEverySplit) {
  const std::string all = AllFrames();
  const auto whole = Decode({all});
  ASSERT_EQ(whole.size(), 18u);
  EXPECT_EQ(whole[0], "1node-a/42/127.0.0.1:6222/nats://127.0.0.1:4222");
  EXPECT_EQ(whole[1], "5node id taken");
  EXPECT_EQ(whole[3], "16foo.*||1#7");
  EXPECT_EQ(whole[4], "16work|g|3#8");
  EXPECT_EQ(whole[6], "18" + std::to_string(0x1234) + "/2#9");
  EXPECT_EQ(whole[10], "21" + std::to_string(0xfedcba9876543210ull));
  EXPECT_EQ(whole[11], "195/6#0");
  EXPECT_EQ(whole[12], "50" + std::to_string(0x0102030405060708ull));
  EXPECT_EQ(whole[13], "513");
  EXPECT_EQ(whole[14], "5217");
  EXPECT_EQ(whole[15], "53jobs|w|2#10@" + std::to_string(0xabcd) + "/2");
  EXPECT_EQ(whole[16], "54jobs.>|w|0#0@" + std::to_string(0xabcd));
  EXPECT_EQ(whole[17], "509,n1=4,node-2=" + std::to_string(0xffffffffffull));
  EXPECT_EQ(whole[7], "32foo.bar|_INBOX.1|12|g,h,|NATS/1.0\r\n\r\nbody");
  EXPECT_EQ(whole[8], "32x||-1||");
  for (size_t i = 1; i < all.size(); ++i) {
    ASSERT_EQ(Decode({all.substr(0, i), all.substr(i)}), whole) << "split at " << i;
  }
  std::vector<std::string> bytes;
  for (char c : all) bytes.emplace_back(1, c);
  EXPECT_EQ(Decode(bytes), whole);
}

TEST(PeerProtocolTest, MalformedFramesAreErrors) {
  auto frame = [](uint8_t type, std::string body) {
    std::string f;
    const uint32_t len = static_cast<uint32_t>(body.size() + 1);
    for (int i = 0; i < 4; ++i) f.push_back(static_cast<char>(len >> (8 * i)));
    f.push_back(static_cast<char>(type));
    return f + body;
  };
  EXPECT_EQ(Decode({std::string("\0\0\0\0", 4)}).back(), "ERROR");         // zero length
  EXPECT_EQ(Decode({std::string("\xff\xff\xff\x7f", 4)}).back(), "ERROR");  // over the limit
  EXPECT_EQ(Decode({frame(0x77, "")}).back(), "ERROR");                     // unknown type
  EXPECT_EQ(Decode({frame(0x03, "x")}).back(), "ERROR");                    // PING with a body
  EXPECT_EQ(Decode({frame(0x10, std::string("\x05\x00" "ab", 4))}).back(), "ERROR");  // string overruns
  EXPECT_EQ(Decode({frame(0x10, std::string("\x00\x00\x00\x00\x01\x00\x00\x00", 8) + std::string(8, '\0'))}).back(),
            "ERROR");  // empty subject
  EXPECT_EQ(Decode({frame(0x10, std::string("\x01\x00" "a" "\x00\x00\x01\x00\x00\x00", 9))}).back(),
            "ERROR");  // INTEREST without its seq
  std::string bad_hdr;
  EncodeMsgHeader("s", "", 10, nullptr, 0, 2, &bad_hdr);  // header size beyond the payload
  EXPECT_EQ(Decode({bad_hdr + "ab"}).back(), "ERROR");
  std::string empty_id;
  EncodeHello({kProtocolVersion, "", 1, "", ""}, &empty_id);
  EXPECT_EQ(Decode({empty_id}).back(), "ERROR");
  EXPECT_EQ(Decode({frame(0x02, std::string("\x20\x00", 2) + std::string(32, 'm'))}).back(), "ERROR");  // v1 AUTH
  std::string no_id;
  EncodeCut(1, {{"", 4}}, &no_id);
  EXPECT_EQ(Decode({no_id}).back(), "ERROR") << "a CUT naming no node";
  std::string no_subject;
  EncodeQueueSwitch(1, "", "w", &no_subject);
  EXPECT_EQ(Decode({no_subject}).back(), "ERROR");
  std::string short_switch;
  EncodeQueueSwitch(1, "jobs", "w", &short_switch);
  short_switch[0] = static_cast<char>(short_switch[0] - 1);  // one byte short of its queue name
  EXPECT_EQ(Decode({short_switch.substr(0, short_switch.size() - 1)}).back(), "ERROR");
}

// A version-1 HELLO (nonce, then AUTH) still decodes as far as its version,
// so that the link can say which version the other node speaks.
TEST(PeerProtocolTest, OldVersionHelloIsRecognised) {
  std::string v1;
  const uint32_t len = 1 + 2 + 3 + 8 + 18 + 2 + 2;
  for (int i = 0; i < 4; ++i) v1.push_back(static_cast<char>(len >> (8 * i)));
  v1 += std::string("\x01\x01\x00", 3) + std::string("\x01\x00" "a", 3) + std::string(8, '\x07') +
        std::string("\x10\x00", 2) + std::string(16, 'n') + std::string(4, '\0');
  FrameReader reader(1 << 20);
  std::string_view in(v1);
  Frame f;
  ASSERT_EQ(reader.Next(&in, &f), FrameReader::Status::kFrame);
  EXPECT_EQ(f.type, FrameType::kHello);
  EXPECT_EQ(f.hello.version, 1);
}

Frame MsgFrame(std::string_view subject, std::string_view reply, std::vector<std::string_view> queues = {}) {
  Frame f;
  f.type = FrameType::kMsg;
  f.msg.subject = subject;
  f.msg.reply = reply;
  f.msg.queues = std::move(queues);
  return f;
}

Frame InterestFrame(std::string_view subject, std::string_view queue, uint32_t count) {
  Frame f;
  f.type = FrameType::kInterest;
  f.interest = {subject, queue, count};
  return f;
}

TEST(PeerValidationTest, MessagesCarryOnlyWellFormedSubjectsAndReplies) {
  std::string why;
  EXPECT_TRUE(ValidateFrame(MsgFrame("orders.eu.1", "_INBOX.abc.1", {"workers"}), &why)) << why;
  EXPECT_TRUE(ValidateFrame(MsgFrame("x", ""), &why)) << why;
  // A reply with CR LF would be copied into clients' MSG lines as protocol.
  for (std::string_view reply : std::vector<std::string_view>{"a\r\nPUB x 1\r\n", "a b", "a\tb",
                                                              std::string_view("a\0b", 3), "a\x7f"}) {
    EXPECT_FALSE(ValidateFrame(MsgFrame("x", reply), &why)) << "reply " << reply;
  }
  for (std::string_view subject : {"", "a..b", ".a", "a.", "a.*", "a.>", ">", "a\r\nb", "a b", "a\x01"}) {
    EXPECT_FALSE(ValidateFrame(MsgFrame(subject, ""), &why)) << "subject " << subject;
  }
  EXPECT_FALSE(ValidateFrame(MsgFrame("x", "", {"ok", "bad group"}), &why));
  EXPECT_FALSE(ValidateFrame(MsgFrame("x", "", {""}), &why));
  // What the sending side checks is exactly what the receiver accepts.
  EXPECT_FALSE(IsForwardable("x", std::string(kMaxStringBytes + 1, 'r')));
  EXPECT_FALSE(IsForwardable(std::string(kMaxStringBytes + 1, 's'), ""));
}

TEST(PeerValidationTest, InterestCarriesOnlyValidSubjectsAndGroups) {
  std::string why;
  EXPECT_TRUE(ValidateFrame(InterestFrame("orders.*.>", "", 1), &why)) << why;
  EXPECT_TRUE(ValidateFrame(InterestFrame("orders.*", "", 0), &why)) << why;
  EXPECT_TRUE(ValidateFrame(InterestFrame("jobs", "workers", 12), &why)) << why;
  EXPECT_FALSE(ValidateFrame(InterestFrame("a.>.b", "", 1), &why));
  EXPECT_FALSE(ValidateFrame(InterestFrame("a\r\n", "", 1), &why));
  EXPECT_FALSE(ValidateFrame(InterestFrame("jobs", "w\nx", 1), &why));
  EXPECT_FALSE(ValidateFrame(InterestFrame("jobs", "", 2), &why)) << "a plain count is 0 or 1";
  EXPECT_TRUE(IsAnnounceable("a.b", ""));
  EXPECT_FALSE(IsAnnounceable("a.b", "has space"));
  EXPECT_FALSE(IsAnnounceable(std::string(kMaxStringBytes + 1, 'a'), ""));
}

TEST(PeerValidationTest, QueueMoveFramesNameAValidGroup) {
  std::string why;
  Frame sw;
  sw.type = FrameType::kQueueSwitch;
  sw.interest.subject = "jobs.*";
  sw.interest.queue = "workers";
  EXPECT_TRUE(ValidateFrame(sw, &why)) << why;
  sw.interest.queue = "";
  EXPECT_FALSE(ValidateFrame(sw, &why)) << "a switch to no queue group";
  sw.interest.queue = "w x";
  EXPECT_FALSE(ValidateFrame(sw, &why));
  sw.interest.queue = "workers";
  sw.interest.subject = "a.>.b";
  EXPECT_FALSE(ValidateFrame(sw, &why));
  Frame move = sw;
  move.type = FrameType::kQueueMove;
  move.interest.subject = "jobs";
  move.interest.queue = "";
  EXPECT_FALSE(ValidateFrame(move, &why)) << "a queue move of a plain subscription";
  Frame cut;
  cut.type = FrameType::kCut;
  cut.cut_applied = {{"n1", 3}};
  EXPECT_TRUE(ValidateFrame(cut, &why)) << why;
  cut.cut_applied = {{"n 1", 3}};
  EXPECT_FALSE(ValidateFrame(cut, &why));
  const std::string long_id(kMaxNodeIdBytes + 1, 'n');
  cut.cut_applied = {{long_id, 3}};
  EXPECT_FALSE(ValidateFrame(cut, &why)) << "a node id no node can have";
}

TEST(PeerValidationTest, HelloIdsAndAddressesHaveNoControlCharacters) {
  Frame f;
  f.type = FrameType::kHello;
  f.hello = {kProtocolVersion, "n1", 7, "127.0.0.1:6222", "nats://127.0.0.1:4222"};
  std::string why;
  EXPECT_TRUE(ValidateFrame(f, &why)) << why;
  f.hello.node_id = "n1\nforged log line";
  EXPECT_FALSE(ValidateFrame(f, &why));
}

TEST(PeerProtocolTest, FrameLimitIsEnforcedBeforeBuffering) {
  FrameReader reader(100);
  std::string big;
  EncodeInterest({std::string(200, 'a'), "", 1}, &big);
  std::string_view in(big.data(), 7);  // only the header has arrived
  Frame f;
  EXPECT_EQ(reader.Next(&in, &f), FrameReader::Status::kError);
  EXPECT_LE(reader.buffered_bytes(), 4u);
}

// A message chosen for many long-named groups on one peer: the frames it
// takes each fit the receiver's limit, the first is MSG (plain subscribers
// too), the rest MSG_QUEUES, and every group is listed exactly once.
TEST(PeerMsgSplitTest, ManyGroupsSplitIntoFramesTheReceiverAccepts) {
  constexpr size_t kMaxPayload = 1 << 20, kMaxControlLine = 4096;
  const size_t limit = kMaxPayload + 4 * kMaxControlLine + 64 * 1024;  // what server.cc gives the reader
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) names.push_back(std::to_string(i) + std::string(4000, 'q'));
  std::vector<std::string_view> queues(names.begin(), names.end());
  const std::string payload(kMaxPayload, 'p');
  const std::string subject(kMaxControlLine - 100, 's');  // as long as a PUB line allows
  std::string headers;
  std::vector<size_t> ends;
  EncodeMsgHeaders(subject, "_INBOX.r", -1, queues.data(), queues.size(), payload.size(), &headers, &ends);
  ASSERT_GT(ends.size(), 1u);
  std::string wire;
  size_t begin = 0;
  for (size_t end : ends) {
    wire.append(headers, begin, end - begin);
    wire += payload;
    begin = end;
  }
  FrameReader reader(limit);
  std::string_view in(wire);
  std::vector<std::string> seen;
  size_t frames = 0;
  while (!in.empty()) {
    Frame f;
    ASSERT_EQ(reader.Next(&in, &f), FrameReader::Status::kFrame) << reader.error();
    std::string why;
    ASSERT_TRUE(ValidateFrame(f, &why)) << why;
    EXPECT_EQ(f.type, frames == 0 ? FrameType::kMsg : FrameType::kMsgQueues);
    EXPECT_EQ(f.msg.queues_only, frames != 0);
    EXPECT_EQ(f.msg.subject, subject);
    EXPECT_EQ(f.msg.payload.size(), payload.size());
    size_t list_bytes = 0;
    for (std::string_view q : f.msg.queues) {
      seen.emplace_back(q);
      list_bytes += 2 + q.size();
    }
    EXPECT_LE(list_bytes, kMaxQueueListBytes);
    ++frames;
  }
  EXPECT_EQ(frames, ends.size());
  EXPECT_EQ(seen, names);  // each group once, in order
  // Today's single frame for the same message would have been refused.
  std::string single;
  EncodeMsgHeader(subject, "_INBOX.r", -1, queues.data(), queues.size(), payload.size(), &single);
  EXPECT_GT(single.size() + payload.size(), limit);
}

TEST(PeerMsgSplitTest, FewGroupsStayInOneFrame) {
  const std::string_view queues[] = {"a", "b", "c"};
  std::string headers;
  std::vector<size_t> ends;
  EncodeMsgHeaders("x", "", -1, queues, 3, 5, &headers, &ends);
  EXPECT_EQ(ends.size(), 1u);
  ends.clear();
  headers.clear();
  EncodeMsgHeaders("x", "", -1, nullptr, 0, 5, &headers, &ends);  // plain only
  EXPECT_EQ(ends.size(), 1u);
  EXPECT_EQ(QueuesInFrame(queues, 3, 6), 2u);    // 2 + 1 bytes each
  EXPECT_EQ(QueuesInFrame(queues, 3, 2), 1u);    // at least one, however long
  EXPECT_EQ(QueuesInFrame(queues, 0, 100), 0u);
}

TEST(PeerMsgSplitTest, ContinuationMustNameAGroup) {
  std::string header;
  EncodeMsgHeader("x", "", -1, nullptr, 0, 0, &header, /*queues_only=*/true);
  FrameReader reader(1 << 20);
  std::string_view in(header);
  Frame f;
  EXPECT_EQ(reader.Next(&in, &f), FrameReader::Status::kError);
}

TEST(PeerValidationTest, NameBoundsApplyToPeerInput) {
  const NameBounds bounds{16, 3, 8};
  std::string why;
  EXPECT_TRUE(ValidateFrame(MsgFrame("a.b.c", "_INBOX.1", {"workers"}), bounds, &why)) << why;
  EXPECT_FALSE(ValidateFrame(MsgFrame("a.b.c.d", ""), bounds, &why));
  EXPECT_NE(why.find("more than 3 tokens"), std::string::npos) << why;
  EXPECT_FALSE(ValidateFrame(MsgFrame(std::string(17, 'a'), ""), bounds, &why));
  EXPECT_FALSE(ValidateFrame(MsgFrame("a", std::string(17, 'r')), bounds, &why));
  EXPECT_FALSE(ValidateFrame(MsgFrame("a", "", {"ninebytes"}), bounds, &why));
  EXPECT_TRUE(ValidateFrame(InterestFrame("a.*.>", "eightbyt", 2), bounds, &why)) << why;
  EXPECT_FALSE(ValidateFrame(InterestFrame("a.*.>.b", "", 1), bounds, &why));
  EXPECT_FALSE(ValidateFrame(InterestFrame("a", "ninebytes", 1), bounds, &why));
  EXPECT_FALSE(ValidateFrame(InterestFrame(std::string(17, 'a'), "", 1), bounds, &why));
  // The one-argument form checks the wire only.
  EXPECT_TRUE(ValidateFrame(MsgFrame("a.b.c.d", "", {"ninebytes"}), &why)) << why;
}

TEST(InterestDigestTest, IsASetDigest) {
  using zmesh::server::mesh::InterestDigest;
  InterestDigest a, b;
  a.Add("foo", "", 1);
  a.Add("bar", "q", 2);
  b.Add("bar", "q", 2);
  b.Add("foo", "", 1);
  EXPECT_EQ(a, b);  // order does not matter
  b.Remove("bar", "q", 2);
  b.Add("bar", "q", 3);
  EXPECT_NE(a, b);  // a count change shows
  InterestDigest c, d;
  c.Add("ab", "c", 1);
  d.Add("a", "bc", 1);
  EXPECT_NE(c, d);  // field boundaries count
}

}  // namespace
}  // namespace zmesh::proto::peer

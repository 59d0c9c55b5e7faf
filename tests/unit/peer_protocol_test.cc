// The peer protocol: frames round-trip whole, split at every byte and byte by
// byte; malformed frames are errors, never crashes; the authentication proof
// binds secret, nonces, ids and direction; the interest digest is a set digest.
#include "proto/peer_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/mesh/interest_digest.h"
#include "server/mesh/peer_auth.h"

namespace zmesh::proto::peer {
namespace {

std::string AllFrames() {
  std::string out;
  const std::string nonce(kNonceBytes, 'n');
  EncodeHello({kProtocolVersion, "node-a", 42, nonce, "127.0.0.1:6222", "nats://127.0.0.1:4222"}, &out);
  EncodeAuth(std::string(kMacBytes, 'm'), &out);
  EncodeEmpty(FrameType::kPing, &out);
  EncodeInterest({"foo.*", "", 1}, &out);
  EncodeInterest({"work", "g", 3}, &out);
  EncodeEmpty(FrameType::kSyncBegin, &out);
  EncodeDigest(FrameType::kSyncEnd, {0x1234, 2}, &out);
  const std::string_view queues[] = {"g", "h"};
  const std::string payload = "NATS/1.0\r\n\r\nbody";
  std::string header;
  EncodeMsgHeader("foo.bar", "_INBOX.1", 12, queues, 2, payload.size(), &header);
  out += header + payload;
  header.clear();
  EncodeMsgHeader("x", "", -1, nullptr, 0, 0, &header);
  out += header;
  EncodeEmpty(FrameType::kRetire, &out);
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
        case FrameType::kAuth:
          d += std::string(f.mac);
          break;
        case FrameType::kInterest:
          d += std::string(f.interest.subject) + "|" + std::string(f.interest.queue) + "|" +
               std::to_string(f.interest.count);
          break;
        case FrameType::kSyncEnd:
        case FrameType::kDigest:
          d += std::to_string(f.digest.digest) + "/" + std::to_string(f.digest.entries);
          break;
        case FrameType::kMsg:
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
  ASSERT_EQ(whole.size(), 10u);
  EXPECT_EQ(whole[0], "1node-a/42/127.0.0.1:6222/nats://127.0.0.1:4222");
  EXPECT_EQ(whole[3], "16foo.*||1");
  EXPECT_EQ(whole[4], "16work|g|3");
  EXPECT_EQ(whole[6], "18" + std::to_string(0x1234) + "/2");
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
  EXPECT_EQ(Decode({frame(0x10, std::string("\x00\x00\x00\x00\x01\x00\x00\x00", 8))}).back(), "ERROR");  // empty subject
  std::string bad_hdr;
  EncodeMsgHeader("s", "", 10, nullptr, 0, 2, &bad_hdr);  // header size beyond the payload
  EXPECT_EQ(Decode({bad_hdr + "ab"}).back(), "ERROR");
  std::string bad_nonce;
  EncodeHello({kProtocolVersion, "a", 1, "short", "", ""}, &bad_nonce);
  EXPECT_EQ(Decode({bad_nonce}).back(), "ERROR");
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

TEST(PeerAuthTest, ProofBindsEverything) {
  using namespace zmesh::server::mesh;
  const std::string na = NewNonce(), nb = NewNonce();
  EXPECT_NE(na, nb);
  const std::string proof = PeerProof("secret", "a", na, "b", nb);
  EXPECT_EQ(proof.size(), kMacBytes);
  EXPECT_TRUE(VerifyPeerProof("secret", proof, "a", na, "b", nb));
  EXPECT_FALSE(VerifyPeerProof("other", proof, "a", na, "b", nb));   // wrong secret
  EXPECT_FALSE(VerifyPeerProof("secret", proof, "b", nb, "a", na));  // reflected back
  EXPECT_FALSE(VerifyPeerProof("secret", proof, "a", na, "b", NewNonce()));  // replayed on another link
  EXPECT_FALSE(VerifyPeerProof("secret", proof, "c", na, "b", nb));
  EXPECT_FALSE(VerifyPeerProof("secret", proof.substr(1), "a", na, "b", nb));
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

// The znode JSON codec (SPEC §3): what servers write and servers and clients read.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "zk/registry.h"

namespace zmesh::zk {
namespace {

NodeInfo Sample() {
  return NodeInfo{"node-1", "nats://10.0.0.1:4222", "10.0.0.1:6222", "0.1.0", 1700000000123, 18446744073709551557ull};
}

TEST(NodeInfoTest, RoundTrips) {
  const NodeInfo node = Sample();
  std::optional<NodeInfo> decoded = DecodeNodeInfo(EncodeNodeInfo(node));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, node);
}

// What a node takes part in: the release before QUEUE_SWITCH reads "moves"
// and ignores "queue_switch"; a node that lacks either is sent neither.
TEST(NodeInfoTest, MoveCapabilitiesRoundTripAndDefaultToAbsent) {
  NodeInfo node = Sample();
  node.moves = true;
  node.queue_switch = true;
  const std::string json = EncodeNodeInfo(node);
  EXPECT_NE(json.find(R"("moves":true,"queue_switch":true)"), std::string::npos) << json;
  std::optional<NodeInfo> decoded = DecodeNodeInfo(json);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_TRUE(decoded->moves);
  EXPECT_TRUE(decoded->queue_switch);
  decoded = DecodeNodeInfo(R"({"id":"a","client_url":"nats://h:1","peer_url":"h:2","moves":true})");
  ASSERT_TRUE(decoded.has_value());
  EXPECT_TRUE(decoded->moves);
  EXPECT_FALSE(decoded->queue_switch);
}

TEST(NodeInfoTest, UsesTheSpecFieldNamesInSpecOrder) {
  const std::string json = EncodeNodeInfo(Sample());
  EXPECT_EQ(json,
            R"({"id":"node-1","client_url":"nats://10.0.0.1:4222","peer_url":"10.0.0.1:6222",)"
            R"("version":"0.1.0","started_ms":1700000000123,"incarnation":18446744073709551557})");
  nlohmann::json parsed = nlohmann::json::parse(json);
  EXPECT_TRUE(parsed["started_ms"].is_number_integer());
  // The full 64 bits survive: the incarnation is what owns the node id.
  EXPECT_EQ(parsed["incarnation"].get<uint64_t>(), 18446744073709551557ull);
}

TEST(NodeInfoTest, IgnoresUnknownFieldsAndToleratesMissingOptionalOnes) {
  std::optional<NodeInfo> node = DecodeNodeInfo(
      R"({"peer_url":"h:2","id":"a","client_url":"nats://h:1","future":{"x":[1,2]}})");
  ASSERT_TRUE(node.has_value());
  EXPECT_EQ(node->id, "a");
  EXPECT_EQ(node->client_url, "nats://h:1");
  EXPECT_EQ(node->peer_url, "h:2");
  EXPECT_EQ(node->version, "");
  EXPECT_EQ(node->started_ms, 0);
  EXPECT_EQ(node->incarnation, 0u);
}

TEST(NodeInfoTest, ToleratesOptionalFieldsOfAnotherType) {
  std::optional<NodeInfo> node = DecodeNodeInfo(
      R"({"id":"a","client_url":"nats://h:1","peer_url":"h:2","version":3,"started_ms":"x","incarnation":-5})");
  ASSERT_TRUE(node.has_value());
  EXPECT_EQ(node->version, "");
  EXPECT_EQ(node->started_ms, 0);
  EXPECT_EQ(node->incarnation, 0u);
}

TEST(NodeInfoTest, RejectsWhatIsNotANodeDescription) {
  for (const char* bad : {
           "",
           "null",
           "[]",
           "\"node\"",
           "{",
           "{}",
           "not json at all",
           R"({"client_url":"nats://h:1","peer_url":"h:2"})",
           R"({"id":"a","peer_url":"h:2"})",
           R"({"id":"a","client_url":"nats://h:1"})",
           R"({"id":1,"client_url":"nats://h:1","peer_url":"h:2"})",
           R"({"id":"a","client_url":null,"peer_url":"h:2"})",
           R"({"id":"","client_url":"nats://h:1","peer_url":"h:2"})",
           R"({"id":"a","client_url":"nats://h:1","peer_url":"h:2"} trailing)",
       }) {
    EXPECT_FALSE(DecodeNodeInfo(bad).has_value()) << bad;
  }
  const std::string binary("\x00\xff\xfe{\"id\"", 8);
  EXPECT_FALSE(DecodeNodeInfo(binary).has_value());
}

TEST(NodeInfoTest, InvalidUtf8NeitherThrowsNorBreaksTheJson) {
  NodeInfo node = Sample();
  node.version = "bad\xff\xfe";
  std::string json;
  ASSERT_NO_THROW(json = EncodeNodeInfo(node));
  std::optional<NodeInfo> decoded = DecodeNodeInfo(json);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->id, node.id);
  EXPECT_FALSE(DecodeNodeInfo("{\"id\":\"\xff\",\"client_url\":\"a\",\"peer_url\":\"b\"}"));
}

}  // namespace
}  // namespace zmesh::zk

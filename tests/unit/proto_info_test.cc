#include "proto/info.h"

#include <gtest/gtest.h>

#include <limits>

namespace zmesh::proto {
namespace {

Info Full() {
  Info i;
  i.server_id = "NABC";
  i.server_name = "n\"1\\";
  i.version = "2.9.10";
  i.proto = 1;
  i.host = "0.0.0.0";
  i.port = 4222;
  i.headers = true;
  i.auth_required = true;
  i.tls_required = true;
  i.tls_verify = true;
  i.tls_available = true;
  i.max_payload = 1 << 20;
  i.client_id = 7;
  i.client_ip = "127.0.0.1";
  i.connect_urls = std::vector<std::string>{"10.0.0.1:4222", "10.0.0.2:4222"};
  i.lame_duck = true;
  i.zmesh_version = "0.1.0";
  return i;
}

std::string JsonOf(const std::string& line) {
  EXPECT_EQ(line.rfind("INFO ", 0), 0u) << line;
  EXPECT_TRUE(line.ends_with("} \r\n")) << line;
  return line.substr(5, line.size() - 5 - 3);
}

TEST(ProtoInfoTest, RoundTrips) {
  for (Info info : {Info(), Full()}) {
    Info decoded;
    std::string error;
    ASSERT_TRUE(DecodeInfo(EncodeInfoJson(info), &decoded, &error)) << error;
    EXPECT_EQ(decoded, info) << EncodeInfoJson(info);
    ASSERT_TRUE(DecodeInfo(JsonOf(EncodeInfoLine(info)), &decoded, &error)) << error;
    EXPECT_EQ(decoded, info);
  }
  // Announced but empty stays distinct from absent.
  Info empty_urls;
  empty_urls.connect_urls.emplace();
  Info decoded;
  std::string error;
  ASSERT_TRUE(DecodeInfo(EncodeInfoJson(empty_urls), &decoded, &error));
  EXPECT_EQ(decoded, empty_urls);
}

// The server's INFO, byte for byte: nats-server's field order and omitempty
// rules, zmesh_version last (protocol_compat compares against nats-server).
TEST(ProtoInfoTest, ServerLineIsExact) {
  Info i;
  i.server_id = "NID";
  i.server_name = "n1";
  i.version = "2.9.10";
  i.proto = 1;
  i.host = "127.0.0.1";
  i.port = 4222;
  i.headers = true;
  i.max_payload = 1048576;
  i.zmesh_version = "0.1.0";
  const InfoLineParts parts = EncodeInfoLineParts(i);
  EXPECT_EQ(JoinInfoLine(parts, 5, "10.1.2.3"),
            "INFO {\"server_id\":\"NID\",\"server_name\":\"n1\",\"version\":\"2.9.10\",\"proto\":1,"
            "\"host\":\"127.0.0.1\",\"port\":4222,\"headers\":true,\"max_payload\":1048576,"
            "\"client_id\":5,\"client_ip\":\"10.1.2.3\",\"zmesh_version\":\"0.1.0\"} \r\n");
  i.auth_required = true;
  i.tls_required = true;
  i.tls_verify = true;
  i.connect_urls = std::vector<std::string>{"a:1", "b:2"};
  i.lame_duck = true;
  EXPECT_EQ(EncodeInfoLine(i),
            "INFO {\"server_id\":\"NID\",\"server_name\":\"n1\",\"version\":\"2.9.10\",\"proto\":1,"
            "\"host\":\"127.0.0.1\",\"port\":4222,\"headers\":true,\"auth_required\":true,\"tls_required\":true,"
            "\"tls_verify\":true,\"max_payload\":1048576,\"connect_urls\":[\"a:1\",\"b:2\"],\"ldm\":true,"
            "\"zmesh_version\":\"0.1.0\"} \r\n");
  i.client_id = 9;
  i.client_ip = "::1";
  EXPECT_EQ(EncodeInfoLine(i), JoinInfoLine(EncodeInfoLineParts(i), 9, "::1"));
}

TEST(ProtoInfoTest, ToleratesWrongTypesAndUnknownFields) {
  Info info;
  std::string error;
  ASSERT_TRUE(DecodeInfo(
      R"({"server_id":"x","headers":true,"max_payload":1024,"tls_required":true,"ldm":true,"connect_urls":["a:1",5,"b:2"],"nonce":"zz","cluster":{"a":[1]}})",
      &info, &error));
  EXPECT_EQ(info.server_id, "x");
  EXPECT_TRUE(info.headers);
  EXPECT_TRUE(info.tls_required);
  EXPECT_TRUE(info.lame_duck);
  EXPECT_EQ(info.max_payload, 1024);
  EXPECT_EQ(info.connect_urls, (std::vector<std::string>{"a:1", "b:2"}));
  ASSERT_TRUE(DecodeInfo(
      R"({"server_id":1,"headers":"yes","max_payload":"big","proto":1.5,"port":[],"client_id":-3,"ldm":1,"connect_urls":{}})",
      &info, &error));
  EXPECT_EQ(info, Info());
}

TEST(ProtoInfoTest, HugeValuesCountAsAbsent) {
  Info info;
  std::string error;
  ASSERT_TRUE(DecodeInfo(R"({"max_payload":99999999999999999999999,"port":4294967296,"proto":-4294967296})", &info,
                         &error));
  EXPECT_EQ(info.max_payload, -1);
  EXPECT_EQ(info.port, 0);
  EXPECT_EQ(info.proto, 0);
  ASSERT_TRUE(DecodeInfo(R"({"max_payload":9223372036854775808,"client_id":18446744073709551615})", &info, &error));
  EXPECT_EQ(info.max_payload, -1);
  EXPECT_EQ(info.client_id, std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(DecodeInfo(R"({"max_payload":9223372036854775807,"port":-1})", &info, &error));
  EXPECT_EQ(info.max_payload, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(info.port, -1);
  // A long list and long strings are just data.
  std::string many = "{\"connect_urls\":[";
  for (int i = 0; i < 10000; ++i) many += (i ? ",\"h:" : "\"h:") + std::to_string(i) + "\"";
  many += "],\"server_name\":\"" + std::string(1 << 20, 'x') + "\"}";
  ASSERT_TRUE(DecodeInfo(many, &info, &error));
  EXPECT_EQ(info.connect_urls->size(), 10000u);
  EXPECT_EQ(info.server_name.size(), size_t{1} << 20);
}

TEST(ProtoInfoTest, RejectsWhatIsNotAnObject) {
  Info info = Full();
  std::string error;
  for (const std::string& bad :
       {std::string("nope"), std::string("[1]"), std::string(""), std::string("null"), std::string("\"s\""),
        std::string("{\"a\":1"), std::string("{\"a\":1}}"), std::string(100000, '{'), std::string(100000, '['),
        std::string("{\"server_id\":\"\xff\"}"), std::string("{\"a\":\0}", 7)}) {
    error.clear();
    EXPECT_FALSE(DecodeInfo(bad, &info, &error)) << bad.substr(0, 20);
    EXPECT_FALSE(error.empty());
  }
  EXPECT_EQ(info, Full());  // untouched on failure
  // Deep nesting inside a valid object is parsed (and freed) without recursion trouble.
  std::string deep = "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_TRUE(DecodeInfo(deep, &info, &error));
}

TEST(ProtoInfoTest, EncodingNeverThrowsOnInvalidUtf8) {
  Info i;
  i.server_name = "bad\xff\xfe";
  i.client_ip = "\xc3";
  i.connect_urls = std::vector<std::string>{"\x80:1"};
  std::string line;
  ASSERT_NO_THROW(line = EncodeInfoLine(i));
  Info decoded;
  std::string error;
  EXPECT_TRUE(DecodeInfo(JsonOf(line), &decoded, &error)) << error;
}

}  // namespace
}  // namespace zmesh::proto

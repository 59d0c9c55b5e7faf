#include "proto/connect.h"

#include <gtest/gtest.h>

#include <limits>

namespace zmesh::proto {
namespace {

ConnectOptions Full() {
  ConnectOptions c;
  c.verbose = false;
  c.pedantic = true;
  c.tls_required = false;
  c.auth_token = "tok";
  c.user = "a\"b";
  c.pass = "p\\w\n";
  c.name = "client \xe2\x9c\x93";
  c.lang = "cpp";
  c.version = "0.1.0";
  c.protocol = 1;
  c.echo = false;
  c.headers = true;
  c.no_responders = true;
  c.sig = "s";
  c.jwt = "j";
  c.nkey = "n";
  c.account = "acc";
  c.new_account = false;
  return c;
}

TEST(ProtoConnectTest, RoundTrips) {
  for (const ConnectOptions& c : {ConnectOptions(), Full()}) {
    ConnectOptions decoded;
    ASSERT_TRUE(DecodeConnect(EncodeConnect(c), &decoded)) << EncodeConnect(c);
    EXPECT_EQ(decoded, c) << EncodeConnect(c);
  }
  ConnectOptions big;
  big.protocol = std::numeric_limits<int64_t>::min();
  big.name = std::string(1 << 20, 'n');
  ConnectOptions decoded;
  ASSERT_TRUE(DecodeConnect(EncodeConnect(big), &decoded));
  EXPECT_EQ(decoded, big);
}

// What our client sends: keys sorted, credentials escaped, unset fields left out.
TEST(ProtoConnectTest, EncodingIsExact) {
  ConnectOptions c;
  c.verbose = false;
  c.pedantic = false;
  c.tls_required = false;
  c.name = "";
  c.lang = "cpp";
  c.version = "0.1.0";
  c.protocol = 1;
  c.echo = true;
  c.headers = true;
  c.no_responders = true;
  EXPECT_EQ(EncodeConnect(c),
            R"({"echo":true,"headers":true,"lang":"cpp","name":"","no_responders":true,"pedantic":false,)"
            R"("protocol":1,"tls_required":false,"verbose":false,"version":"0.1.0"})");
  c.user = "a\"b";
  c.pass = "p\\w\n";
  const std::string json = EncodeConnect(c);
  EXPECT_NE(json.find(R"("user":"a\"b")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("pass":"p\\w\n")"), std::string::npos) << json;
  EXPECT_EQ(EncodeConnect(ConnectOptions()), "{}");
}

TEST(ProtoConnectTest, DecodesLikeGo) {
  ConnectOptions c;
  // Case-insensitive names, unknown fields ignored, null leaves a field unset.
  ASSERT_TRUE(DecodeConnect(R"({"VERBOSE":true,"Echo":false,"whatever":[1,{"x":2}],"name":null,"Protocol":1})", &c));
  EXPECT_EQ(c.verbose, true);
  EXPECT_EQ(c.echo, false);
  EXPECT_EQ(c.protocol, 1);
  EXPECT_FALSE(c.name.has_value());
  EXPECT_FALSE(c.pedantic.has_value());
  // `null` is an empty set of options.
  c = Full();
  ASSERT_TRUE(DecodeConnect("null", &c));
  EXPECT_EQ(c, ConnectOptions());
  ASSERT_TRUE(DecodeConnect(" {} ", &c));
  EXPECT_EQ(c, ConnectOptions());
  // Two spellings of one field: the later in key order wins; a null does not overwrite.
  ASSERT_TRUE(DecodeConnect(R"({"VERBOSE":true,"verbose":false})", &c));
  EXPECT_EQ(c.verbose, false);
  ASSERT_TRUE(DecodeConnect(R"({"VERBOSE":true,"verbose":null})", &c));
  EXPECT_EQ(c.verbose, true);
}

TEST(ProtoConnectTest, WrongTypesFailTheWholeConnect) {
  for (const char* bad : {
           R"({"verbose":1})", R"({"verbose":"true"})", R"({"user":5})", R"({"pass":false})",
           R"({"name":["n"]})", R"({"protocol":"1"})", R"({"protocol":1.0})", R"({"protocol":1.5})",
           R"({"headers":{}})", R"({"echo":0})", R"({"new_account":"yes"})", R"({"Account":1})",
           // Integers Go's int cannot hold.
           R"({"protocol":9223372036854775808})", R"({"protocol":18446744073709551615})",
           R"({"protocol":-9223372036854775809})", R"({"protocol":1e400})",
       }) {
    ConnectOptions c = Full();
    EXPECT_FALSE(DecodeConnect(bad, &c)) << bad;
    EXPECT_EQ(c, Full()) << bad;  // untouched on failure
  }
  ConnectOptions c;
  ASSERT_TRUE(DecodeConnect(R"({"protocol":9223372036854775807})", &c));
  EXPECT_EQ(c.protocol, std::numeric_limits<int64_t>::max());
  ASSERT_TRUE(DecodeConnect(R"({"protocol":-9223372036854775808})", &c));
  EXPECT_EQ(c.protocol, std::numeric_limits<int64_t>::min());
}

TEST(ProtoConnectTest, RejectsInvalidJsonWithoutThrowing) {
  for (const std::string& bad :
       {std::string(""), std::string("{"), std::string("{\"verbose\":true"), std::string("[]"), std::string("1"),
        std::string("\"x\""), std::string("true"), std::string("{\"a\":1}x"), std::string(100000, '{'),
        std::string(100000, '['), std::string("{\"name\":\"\xff\"}"), std::string("{'verbose':true}"),
        std::string("{\"a\":\0}", 7)}) {
    ConnectOptions c;
    EXPECT_FALSE(DecodeConnect(bad, &c)) << bad.substr(0, 20);
  }
}

TEST(ProtoConnectTest, EncodingNeverThrowsOnInvalidUtf8) {
  ConnectOptions c;
  c.name = "bad\xff utf8";
  c.pass = "\xc3";
  std::string json;
  ASSERT_NO_THROW(json = EncodeConnect(c));
  ConnectOptions decoded;
  ASSERT_TRUE(DecodeConnect(json, &decoded)) << json;
  EXPECT_TRUE(decoded.name.has_value());
}

}  // namespace
}  // namespace zmesh::proto

// The pure parts of monitoring (server/monitor/): query parsing, nats-server's
// time texts, Prometheus escaping, and /connz sorting and paging. The HTTP
// server itself is covered by tests/integration/monitor_test.cc.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/monitor/connz.h"
#include "server/monitor/endpoints.h"
#include "server/monitor/format.h"
#include "server/monitor/prometheus_text.h"
#include "server/monitor/query.h"

namespace zmesh::server::monitor {
namespace {

TEST(MonitorQueryTest, DecodesAndBoundsIntegers) {
  Query q;
  ASSERT_TRUE(q.Parse("test=foo.%3E&subs&limit=99999&offset=-4&name=a+b&x=1&x=2"));
  EXPECT_EQ(q.Get("test"), "foo.>");
  EXPECT_TRUE(q.Flag("subs"));  // a key without '=' is a flag
  EXPECT_FALSE(q.Flag("missing"));
  EXPECT_EQ(q.Get("name"), "a b");
  EXPECT_EQ(q.Get("x"), "1");  // the first value wins
  int64_t v = 0;
  std::string error;
  ASSERT_TRUE(q.Int("limit", 5, 1, 100, &v, &error));
  EXPECT_EQ(v, 100);
  ASSERT_TRUE(q.Int("offset", 5, 0, 100, &v, &error));
  EXPECT_EQ(v, 0);
  ASSERT_TRUE(q.Int("absent", 5, 0, 100, &v, &error));
  EXPECT_EQ(v, 5);
  EXPECT_FALSE(q.Int("name", 5, 0, 100, &v, &error));
  EXPECT_NE(error.find("name"), std::string::npos);
  EXPECT_FALSE(Query().Parse("a=%zz"));
  EXPECT_FALSE(Query().Parse("a=%4"));
  EXPECT_TRUE(Query().Parse(nullptr));
}

TEST(MonitorFormatTest, TimesReadLikeNatsServer) {
  EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(Rfc3339(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(UptimeString(-5), "0s");
  EXPECT_EQ(UptimeString(4999), "4s");
  EXPECT_EQ(UptimeString((3 * 60 + 4) * 1000), "3m4s");
  EXPECT_EQ(UptimeString(((2 * 60 + 3) * 60 + 4) * 1000), "2h3m4s");
  EXPECT_EQ(UptimeString((((366LL * 24 + 2) * 60 + 3) * 60 + 4) * 1000), "1y1d2h3m4s");
}

TEST(MonitorPrometheusTest, EscapesLabelsAndFormatsValues) {
  EXPECT_EQ(PrometheusText::EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(PrometheusText::FormatValue(42), "42");
  EXPECT_EQ(PrometheusText::FormatValue(0.25), "0.25");
  EXPECT_EQ(PrometheusText::FormatValue(1e300), "1e+300");
  PrometheusText m;
  m.Family("zmesh_peer_rtt_seconds", PrometheusText::Type::kGauge, "RTT\nof a link");
  m.Sample("zmesh_peer_rtt_seconds", 0.002, {{"peer", "odd\"id"}});
  EXPECT_EQ(m.text(),
            "# HELP zmesh_peer_rtt_seconds RTT\\nof a link\n"
            "# TYPE zmesh_peer_rtt_seconds gauge\n"
            "zmesh_peer_rtt_seconds{peer=\"odd\\\"id\"} 0.002\n");
}

std::vector<ConnectionInfo> SomeConnections() {
  std::vector<ConnectionInfo> v;
  for (uint64_t cid : {4, 1, 3, 2, 5}) {
    ConnectionInfo c;
    c.cid = cid;
    c.start_unix_ms = 1000 * static_cast<int64_t>(cid);
    c.last_activity_unix_ms = 10000;
    c.out_msgs = cid % 3;  // 4->1, 1->1, 3->0, 2->2, 5->2
    v.push_back(c);
  }
  v[2].closed = true;  // cid 3
  v[2].stop_unix_ms = 9000;
  v[2].reason = "Client Closed";
  return v;
}

std::vector<uint64_t> Cids(const nlohmann::json& connz) {
  std::vector<uint64_t> out;
  for (const auto& c : connz["connections"]) out.push_back(c["cid"].get<uint64_t>());
  return out;
}

TEST(MonitorConnzTest, SortsThenPages) {
  ConnzOptions o;
  o.sort = "msgs_to";
  o.limit = 2;
  nlohmann::json j = BuildConnz(o, SomeConnections(), "NSERVER", 20000);
  EXPECT_EQ(Cids(j), (std::vector<uint64_t>{2, 5}));  // largest first, ties by cid
  EXPECT_EQ(j["total"], 5);
  EXPECT_EQ(j["num_connections"], 2);
  o.offset = 2;
  EXPECT_EQ(Cids(BuildConnz(o, SomeConnections(), "NSERVER", 20000)), (std::vector<uint64_t>{1, 4}));
  o.offset = 4;
  EXPECT_EQ(Cids(BuildConnz(o, SomeConnections(), "NSERVER", 20000)), (std::vector<uint64_t>{3}));
  o.offset = 9;
  j = BuildConnz(o, SomeConnections(), "NSERVER", 20000);
  EXPECT_TRUE(j["connections"].empty());
  EXPECT_EQ(j["num_connections"], 0);

  o = ConnzOptions();
  j = BuildConnz(o, SomeConnections(), "NSERVER", 20000);
  EXPECT_EQ(Cids(j), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  const auto& closed = j["connections"][2];
  EXPECT_EQ(closed["reason"], "Client Closed");
  EXPECT_EQ(closed["uptime"], "6s");  // start 3 s, stop 9 s
  EXPECT_FALSE(j["connections"][0].contains("reason"));
  EXPECT_EQ(j["connections"][0]["uptime"], "19s");
  EXPECT_EQ(j["connections"][0]["idle"], "10s");

  o.cid = 4;
  EXPECT_EQ(Cids(BuildConnz(o, SomeConnections(), "NSERVER", 20000)), (std::vector<uint64_t>{4}));
}

TEST(MonitorConnzTest, SubjectListsSayWhenCut) {
  ConnzOptions o;
  o.subs = true;
  o.limit = 2;
  size_t total = 0;
  std::vector<ConnectionInfo> page = SelectConnzPage(o, SomeConnections(), 20000, &total);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(total, 5u);
  page[0].subscriptions = 3000;
  page[0].subjects = {"a", "b"};
  page[0].subjects_truncated = true;
  page[1].subscriptions = 1;
  page[1].subjects = {"c"};
  const nlohmann::json j = RenderConnz(o, page, total, "NSERVER", 20000);
  EXPECT_EQ(Cids(j), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(j["total"], 5);
  EXPECT_EQ(j["connections"][0]["subscriptions"], 3000);  // the exact count
  EXPECT_EQ(j["connections"][0]["subscriptions_list"].size(), 2u);
  EXPECT_EQ(j["connections"][0]["subscriptions_list_truncated"], true);
  EXPECT_FALSE(j["connections"][1].contains("subscriptions_list_truncated"));
  o.subs = false;
  EXPECT_FALSE(RenderConnz(o, page, total, "NSERVER", 20000)["connections"][0].contains("subscriptions_list"));
}

TEST(MonitorConnzTest, ParsesNatsServerOptions) {
  Query q;
  ConnzOptions o;
  std::string error;
  ASSERT_TRUE(q.Parse("sort=bytes_to&state=all&subs=1&limit=0&offset=3"));
  ASSERT_TRUE(ParseConnzOptions(q, &o, &error)) << error;
  EXPECT_EQ(o.sort, "bytes_to");
  EXPECT_EQ(o.state, ConnzOptions::State::kAll);
  EXPECT_TRUE(o.subs);
  EXPECT_EQ(o.limit, kDefaultListLimit);
  EXPECT_EQ(o.offset, 3);
  ASSERT_TRUE(q.Parse("limit=123456789"));
  ASSERT_TRUE(ParseConnzOptions(q, &o, &error));
  EXPECT_EQ(o.limit, kMaxListLimit);
  for (const char* bad : {"sort=size", "state=half", "sort=reason", "offset=x"}) {
    ASSERT_TRUE(q.Parse(bad));
    EXPECT_FALSE(ParseConnzOptions(q, &o, &error)) << bad;
  }
  ASSERT_TRUE(q.Parse("sort=reason&state=closed"));
  EXPECT_TRUE(ParseConnzOptions(q, &o, &error)) << error;
}

}  // namespace
}  // namespace zmesh::server::monitor

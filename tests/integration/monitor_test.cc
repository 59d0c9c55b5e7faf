// Monitoring over HTTP (SPEC §7, --http_listen): a real zmesh-server, driven
// by raw NATS-protocol clients, queried with a tiny blocking HTTP/1.0 client.
// Every assertion is on values the traffic of the test produced.
//
//  - MonitorTest: one standalone node per test (fresh counters).
//  - MonitorMeshTest: two nodes in a private ZooKeeper; /healthz and /peerz
//    once the mesh formed, and 503 on the survivor while a killed peer's
//    znode lingers.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"
#include "tests/support/zookeeper_server.h"

namespace zmesh::testing {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// --- A blocking HTTP/1.0 client -------------------------------------------

struct HttpResult {
  bool ok = false;  // a complete response arrived
  int status = 0;
  std::string headers;  // raw header block: "\r\nName: value\r\n..."
  std::string body;
  std::string error;

  // The value of header `name` (a lower-case name; matched case-insensitively).
  std::optional<std::string> Header(const std::string& name) const {
    const std::string key = "\r\n" + name + ":";
    const size_t at = Lower(headers).find(key);
    if (at == std::string::npos) return std::nullopt;
    const size_t begin = headers.find_first_not_of(' ', at + key.size());
    const size_t end = headers.find("\r\n", begin);
    return headers.substr(begin, end - begin);
  }

  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
};

// HTTP/1.0: the server closes the connection after the response, so the
// response is everything until EOF.
HttpResult HttpRequest(uint16_t port, const std::string& method, const std::string& target,
                       milliseconds timeout = milliseconds(5000)) {
  HttpResult r;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    r.error = "connect to port " + std::to_string(port) + " failed";
    if (fd >= 0) ::close(fd);
    return r;
  }
  const std::string request = method + " " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    r.error = "send failed";
    ::close(fd);
    return r;
  }
  std::string raw;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool eof = false;
  while (!eof && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      eof = true;
    } else {
      raw.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  const size_t split = raw.find("\r\n\r\n");
  if (!eof || split == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) {
    r.error = "incomplete response: " + raw.substr(0, 300);
    return r;
  }
  r.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  r.headers = raw.substr(raw.find("\r\n"), split - raw.find("\r\n")) + "\r\n";
  r.body = raw.substr(split + 4);
  r.ok = true;
  return r;
}

// GET `target`, expecting `status` and a JSON body.
json GetJson(uint16_t port, const std::string& target, int status = 200) {
  const HttpResult r = HttpRequest(port, "GET", target);
  EXPECT_TRUE(r.ok) << target << ": " << r.error;
  EXPECT_EQ(r.status, status) << target << ": " << r.body;
  EXPECT_EQ(r.Header("content-type").value_or(""), "application/json") << target;
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << target << " is not JSON: " << r.body;
  return j;
}

// --- Prometheus text format 0.0.4 -----------------------------------------

struct Scrape {
  std::map<std::string, double> samples;     // "name{labels}" -> value
  std::map<std::string, std::string> types;  // family -> counter|gauge
};

// Parses the exposition, failing the test on any line that does not match
// the format or a sample whose family was not declared before it.
Scrape ParseExposition(const std::string& text) {
  static const std::string kName = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  static const std::string kLabel = "[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\"";
  static const std::regex kHelp("# HELP (" + kName + ") .*");
  static const std::regex kType("# TYPE (" + kName + ") (counter|gauge|histogram|summary|untyped)");
  static const std::regex kSample("(" + kName + ")(\\{" + kLabel + "(?:," + kLabel + ")*\\})? " +
                                  "(-?[0-9]+(?:\\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|[+-]Inf)");
  Scrape s;
  std::set<std::string> helped;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      EXPECT_TRUE(helped.insert(m[1]).second) << "HELP twice for " << m[1];
    } else if (std::regex_match(line, m, kType)) {
      EXPECT_TRUE(helped.count(m[1])) << "TYPE before HELP for " << m[1];
      EXPECT_TRUE(s.types.emplace(m[1], m[2]).second) << "TYPE twice for " << m[1];
      // Prometheus conventions: counters and only counters end in _total.
      const bool total = std::string(m[1]).ends_with("_total");
      EXPECT_EQ(total, m[2] == "counter") << line;
    } else if (std::regex_match(line, m, kSample)) {
      // A histogram's samples are <family>_bucket, _sum and _count.
      std::string family = m[1];
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string base = family.substr(0, family.size() - std::min(family.size(), std::strlen(suffix)));
        if (family.ends_with(suffix) && s.types.count(base) && s.types[base] == "histogram") family = base;
      }
      EXPECT_TRUE(s.types.count(family)) << "sample of an undeclared family: " << line;
      const std::string key = std::string(m[1]) + std::string(m[2]);
      EXPECT_TRUE(s.samples.emplace(key, std::stod(m[3])).second) << "duplicate series " << key;
    } else {
      ADD_FAILURE() << "line " << n << " is not exposition format: '" << line << "'";
    }
  }
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  return s;
}

Scrape GetMetrics(uint16_t port) {
  const HttpResult r = HttpRequest(port, "GET", "/metrics");
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type").value_or(""), "text/plain; version=0.0.4; charset=utf-8");
  return ParseExposition(r.body);
}

// --- Standalone node ------------------------------------------------------

class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.use_ports_file = true;
    o.extra_args = {"--http_listen=127.0.0.1:0"};
    // Small slow-consumer limits, so one test can produce a slow consumer
    // quickly; the other tests move a few bytes only.
    o.max_pending_bytes = 256 * 1024;
    o.write_deadline_ms = 1000;
    ASSERT_TRUE(server_.Start(o));
    http_ = server_.http_port();
    ASSERT_NE(http_, 0) << "no \"http\" in the ports file";
    // ServerUnderTest's readiness probe is a client connection too: let the
    // server see it closed, so each test starts from no open connection.
    ASSERT_TRUE(WaitFor(seconds(5), [&] {
      const json closed = GetJson(http_, "/connz?state=closed");
      return GetJson(http_, "/varz")["connections"] == 0 && closed["total"] == 1;
    }));
  }

  // A clean exit on SIGTERM: monitoring must not hang or crash the shutdown
  // (and under sanitizers, a report at exit fails here).
  void TearDown() override {
    const std::optional<int> status = server_.Stop();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeWaitStatus(*status);
  }

  std::unique_ptr<RawClient> Client(const std::string& name, int rcvbuf = 0) {
    auto c = std::make_unique<RawClient>();
    c->set_name(name);
    if (rcvbuf > 0) c->set_receive_buffer(rcvbuf);
    EXPECT_TRUE(c->Dial(server_.port()));
    EXPECT_TRUE(c->Connect({}, {}, json{{"name", name}, {"lang", "raw"}, {"version", "1.2.3"}}.dump()));
    return c;
  }

  static uint64_t Cid(const RawClient& c) { return c.info().value("client_id", uint64_t{0}); }

  // The /connz entry of `cid` in `connz`, or null.
  static json Entry(const json& connz, uint64_t cid) {
    for (const json& c : connz["connections"]) {
      if (c["cid"] == cid) return c;
    }
    return nullptr;
  }

  ServerUnderTest server_{Target::kZmesh};
  uint16_t http_ = 0;
};

TEST_F(MonitorTest, HealthzIsOkOnAStandaloneNode) {
  const json h = GetJson(http_, "/healthz");
  EXPECT_EQ(h, json({{"status", "ok"}}));
  const json p = GetJson(http_, "/peerz");
  EXPECT_EQ(p["peers"], json::array());
  EXPECT_EQ(p["registered"], false);
  EXPECT_EQ(p["healthy"], true);
  EXPECT_EQ(p["repairs"], 0);
  EXPECT_TRUE(p["server_id"].get<std::string>().starts_with("N"));
  EXPECT_FALSE(p["node_id"].get<std::string>().empty());
}

TEST_F(MonitorTest, VarzCountsFollowTraffic) {
  json v = GetJson(http_, "/varz");
  EXPECT_EQ(v["connections"], 0);
  EXPECT_EQ(v["in_msgs"], 0);
  EXPECT_EQ(v["out_msgs"], 0);
  EXPECT_EQ(v["subscriptions"], 0);
  EXPECT_EQ(v["port"], server_.port());
  EXPECT_EQ(v["http_port"], http_);
  EXPECT_EQ(v["version"], "2.9.10");
  EXPECT_GT(v["mem"].get<int64_t>(), 0);
  EXPECT_GE(v["cores"].get<int>(), 1);
  EXPECT_EQ(v["ping_interval"], int64_t{120000} * 1000000);  // nanoseconds, as nats-server
  EXPECT_EQ(v["max_pending"], 256 * 1024);
  EXPECT_EQ(v["mesh"]["standalone"], true);
  EXPECT_EQ(v["peers"], 0);
  // ServerUnderTest's readiness probe was a connection too.
  const uint64_t accepted_before = v["total_connections"].get<uint64_t>();

  auto sub = Client("sub");
  auto pub = Client("pub");
  ASSERT_TRUE(sub->Sub("foo.bar", "1"));
  ASSERT_TRUE(sub->Flush());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pub->Pub("foo.bar", "hello"));
  ASSERT_TRUE(pub->Flush());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(sub->ExpectMsg("foo.bar", "1", "hello"));

  // The counters are relaxed atomics written on the workers: poll briefly.
  ASSERT_TRUE(WaitFor(seconds(5), [&] {
    v = GetJson(http_, "/varz");
    return v["in_msgs"] == 5 && v["out_msgs"] == 5;
  })) << v.dump(2);
  EXPECT_EQ(v["in_bytes"], 25);
  EXPECT_EQ(v["out_bytes"], 25);
  EXPECT_EQ(v["connections"], 2);
  EXPECT_EQ(v["total_connections"], accepted_before + 2);
  EXPECT_EQ(v["subscriptions"], 1);
  EXPECT_EQ(v["slow_consumers"], 0);
  EXPECT_GE(v["http_req_stats"]["/varz"].get<int>(), 2);
}

TEST_F(MonitorTest, ConnzPagesAndSortsByMsgsTo) {
  // Three subscribers receive 1, 3 and 2 messages; the publisher none.
  auto a = Client("a"), b = Client("b"), c = Client("c");
  ASSERT_TRUE(a->Sub("x.a", "1"));
  ASSERT_TRUE(b->Sub("x.b", "1"));
  ASSERT_TRUE(c->Sub("x.c", "1"));
  for (auto* s : {a.get(), b.get(), c.get()}) ASSERT_TRUE(s->Flush());
  auto pub = Client("pub");
  for (auto [subject, n] : {std::pair{"x.a", 1}, {"x.b", 3}, {"x.c", 2}}) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(pub->Pub(subject, "m"));
  }
  ASSERT_TRUE(pub->Flush());
  ASSERT_TRUE(a->ExpectMsg("x.a", "1", "m"));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b->ExpectMsg("x.b", "1", "m"));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(c->ExpectMsg("x.c", "1", "m"));

  json page1;
  ASSERT_TRUE(WaitFor(seconds(5), [&] {
    page1 = GetJson(http_, "/connz?sort=msgs_to&limit=2&subs=1");
    return page1["connections"].size() == 2 && page1["connections"][0]["out_msgs"] == 3;
  })) << page1.dump(2);
  EXPECT_EQ(page1["total"], 4);
  EXPECT_EQ(page1["num_connections"], 2);
  EXPECT_EQ(page1["offset"], 0);
  EXPECT_EQ(page1["limit"], 2);
  EXPECT_TRUE(page1["server_id"].get<std::string>().starts_with("N"));
  const json& first = page1["connections"][0];
  EXPECT_EQ(first["name"], "b");
  EXPECT_EQ(first["cid"], Cid(*b));
  EXPECT_EQ(first["out_bytes"], 3);
  EXPECT_EQ(first["subscriptions"], 1);
  EXPECT_EQ(first["subscriptions_list"], json({"x.b"}));
  EXPECT_EQ(first["lang"], "raw");
  EXPECT_EQ(first["version"], "1.2.3");
  EXPECT_EQ(first["ip"], "127.0.0.1");
  EXPECT_EQ(first["port"], b->local_port());
  EXPECT_FALSE(first.contains("authorized_user"));  // no authentication
  EXPECT_FALSE(first.contains("stop"));
  for (const char* field : {"start", "last_activity"}) {
    EXPECT_TRUE(std::regex_match(first[field].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << field << " " << first[field];
  }
  EXPECT_TRUE(std::regex_match(first["uptime"].get<std::string>(), std::regex(R"((\d+[ydhm])*\d+s)")));
  EXPECT_EQ(page1["connections"][1]["name"], "c");
  EXPECT_EQ(page1["connections"][1]["out_msgs"], 2);

  const json page2 = GetJson(http_, "/connz?sort=msgs_to&limit=2&offset=2");
  ASSERT_EQ(page2["connections"].size(), 2u) << page2.dump(2);
  EXPECT_EQ(page2["num_connections"], 2);
  EXPECT_EQ(page2["total"], 4);
  EXPECT_EQ(page2["connections"][0]["name"], "a");
  EXPECT_EQ(page2["connections"][1]["name"], "pub");
  EXPECT_EQ(page2["connections"][1]["in_msgs"], 6);
  EXPECT_EQ(page2["connections"][1]["out_msgs"], 0);
  EXPECT_FALSE(page2["connections"][0].contains("subscriptions_list"));  // subs not asked for

  // Default order: by cid; past the end: an empty page.
  const json by_cid = GetJson(http_, "/connz");
  ASSERT_EQ(by_cid["connections"].size(), 4u);
  EXPECT_EQ(by_cid["limit"], 1024);
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_LT(by_cid["connections"][i - 1]["cid"].get<uint64_t>(), by_cid["connections"][i]["cid"].get<uint64_t>());
  }
  const json past = GetJson(http_, "/connz?offset=10");
  EXPECT_EQ(past["connections"], json::array());
  EXPECT_EQ(past["total"], 4);
  EXPECT_EQ(GetJson(http_, "/connz?cid=" + std::to_string(Cid(*c)))["connections"][0]["name"], "c");
  EXPECT_EQ(GetJson(http_, "/connz?limit=1000000")["limit"], 10000);  // capped

  EXPECT_EQ(GetJson(http_, "/connz?sort=bogus", 400)["error"], "invalid sorting option: 'bogus'");
  GetJson(http_, "/connz?limit=abc", 400);
  GetJson(http_, "/connz?state=sideways", 400);
  GetJson(http_, "/connz?sort=stop", 400);  // stop needs closed connections
}

TEST_F(MonitorTest, ClosedConnectionsKeepTheirReason) {
  auto stay = Client("stay");
  auto leaver = Client("leaver");
  ASSERT_TRUE(leaver->Sub("bye", "1"));
  ASSERT_TRUE(leaver->Flush());  // everything read: close() sends FIN, not RST
  const uint64_t cid = Cid(*leaver);
  leaver->Close();

  json closed;
  ASSERT_TRUE(WaitFor(seconds(5), [&] {
    closed = GetJson(http_, "/connz?state=closed");
    return !Entry(closed, cid).is_null();
  })) << closed.dump(2);
  const json e = Entry(closed, cid);
  EXPECT_EQ(e["reason"], "Client Closed");
  EXPECT_EQ(e["name"], "leaver");
  EXPECT_EQ(e["subscriptions"], 1);
  EXPECT_TRUE(e.contains("stop"));
  EXPECT_LE(e["start"].get<std::string>(), e["stop"].get<std::string>());

  const json open = GetJson(http_, "/connz");
  EXPECT_TRUE(Entry(open, cid).is_null());
  EXPECT_FALSE(Entry(open, Cid(*stay)).is_null());
  const json all = GetJson(http_, "/connz?state=all&sort=stop");
  // stay, leaver, and ServerUnderTest's readiness probe (closed earlier).
  EXPECT_EQ(all["total"], closed["total"].get<int>() + 1);
  EXPECT_EQ(all["connections"][0]["cid"], cid);  // the latest stop first
  EXPECT_FALSE(Entry(all, Cid(*stay)).is_null());
  EXPECT_EQ(GetJson(http_, "/varz")["connections"], 1);
}

TEST_F(MonitorTest, SlowConsumerIsCountedAndListedWithItsReason) {
  auto victim = Client("victim", /*rcvbuf=*/4096);
  ASSERT_TRUE(victim->Sub("flood", "1"));
  ASSERT_TRUE(victim->Flush());
  const uint64_t cid = Cid(*victim);
  auto pub = Client("flooder");

  // 512 KiB per send; the victim never reads, so past its kernel buffers and
  // 256 KiB pending (or 1 s without progress) the server cuts it.
  const std::string payload(8192, 'x');
  std::string batch;
  for (int i = 0; i < 64; ++i) batch += "PUB flood " + std::to_string(payload.size()) + "\r\n" + payload + "\r\n";
  json e;
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(pub->TrySend(batch)) << "the publisher must not be the one cut off";
    e = Entry(GetJson(http_, "/connz?state=closed&cid=" + std::to_string(cid)), cid);
    if (!e.is_null()) break;
  }
  ASSERT_FALSE(e.is_null()) << "the slow consumer was not closed";
  EXPECT_TRUE(e["reason"].get<std::string>().starts_with("Slow Consumer")) << e.dump();
  EXPECT_EQ(GetJson(http_, "/varz")["slow_consumers"], 1);
  EXPECT_EQ(GetMetrics(http_).samples["zmesh_slow_consumers_total"], 1);
  ASSERT_TRUE(pub->Flush(seconds(10)));
}

TEST_F(MonitorTest, SubszTestFindsMatchingSubscriptions) {
  auto c = Client("subs");
  ASSERT_TRUE(c->Sub("foo.*", "1"));
  ASSERT_TRUE(c->Sub("foo.bar", "2", "workers"));
  ASSERT_TRUE(c->Sub("other", "3"));
  ASSERT_TRUE(c->Flush());

  json s = GetJson(http_, "/subsz?test=foo.bar");
  EXPECT_EQ(s["num_subscriptions"], 3);
  EXPECT_EQ(s["test"], "foo.bar");
  EXPECT_EQ(s["matches"], json({{"local", 2}, {"remote", 0}, {"queue_groups", 1}}));
  EXPECT_TRUE(s.contains("num_cache"));
  EXPECT_FALSE(s.contains("subscriptions_list"));

  s = GetJson(http_, "/subsz?test=foo.bar&subs=1");
  ASSERT_EQ(s["subscriptions_list"].size(), 2u) << s.dump(2);
  EXPECT_EQ(s["total"], 2);
  std::set<std::string> subjects;
  for (const json& e : s["subscriptions_list"]) {
    subjects.insert(e["subject"].get<std::string>());
    EXPECT_EQ(e["cid"], Cid(*c));
    if (e["subject"] == "foo.bar") {
      EXPECT_EQ(e["qgroup"], "workers");
      EXPECT_EQ(e["sid"], "2");
    }
  }
  EXPECT_EQ(subjects, (std::set<std::string>{"foo.*", "foo.bar"}));

  EXPECT_EQ(GetJson(http_, "/subsz?test=nothing.here")["matches"]["local"], 0);
  GetJson(http_, "/subsz?test=foo.*", 400);  // a wildcard is not a message subject

  const json page = GetJson(http_, "/subsz?subs=1&limit=2");
  EXPECT_EQ(page["total"], 3);
  EXPECT_EQ(page["subscriptions_list"].size(), 2u);
  EXPECT_EQ(GetJson(http_, "/subsz?subs=1&offset=2&limit=2")["subscriptions_list"].size(), 1u);
}

TEST_F(MonitorTest, MetricsParseAndCountersOnlyGrow) {
  const Scrape before = GetMetrics(http_);
  EXPECT_EQ(before.samples.at("zmesh_up"), 1);
  EXPECT_EQ(before.samples.at("zmesh_healthy"), 1);
  EXPECT_EQ(before.samples.at("zmesh_connections"), 0);
  EXPECT_EQ(before.samples.at("zmesh_in_messages_total"), 0);
  EXPECT_EQ(before.samples.at("zmesh_peers{state=\"linked\"}"), 0);
  EXPECT_GT(before.samples.at("process_resident_memory_bytes"), 0);
  for (const char* family : {"zmesh_out_messages_total", "zmesh_in_bytes_total", "zmesh_out_bytes_total",
                             "zmesh_slow_consumers_total", "zmesh_auth_failures_total", "zmesh_auth_overloaded_total",
                             "zmesh_client_pending_bytes", "zmesh_pending_budget_cuts_total",
                             "zmesh_subscriptions",
                             "process_cpu_seconds_total", "process_start_time_seconds"}) {
    EXPECT_TRUE(before.types.count(family)) << family;
  }

  auto sub = Client("sub");
  ASSERT_TRUE(sub->Sub("m", "1"));
  ASSERT_TRUE(sub->Flush());
  auto pub = Client("pub");
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(pub->Pub("m", "1234"));
  ASSERT_TRUE(pub->Flush());
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(sub->ExpectMsg("m", "1", "1234"));

  Scrape after;
  ASSERT_TRUE(WaitFor(seconds(5), [&] {
    after = GetMetrics(http_);
    return after.samples["zmesh_out_messages_total"] == 7;
  }));
  EXPECT_EQ(after.samples["zmesh_in_messages_total"], 7);
  EXPECT_EQ(after.samples["zmesh_in_bytes_total"], 28);
  EXPECT_EQ(after.samples["zmesh_connections"], 2);
  EXPECT_EQ(after.samples["zmesh_accepted_connections_total"],
            before.samples.at("zmesh_accepted_connections_total") + 2);
  EXPECT_EQ(after.samples["zmesh_subscriptions"], 1);
  for (const auto& [series, value] : before.samples) {
    std::string family = series.substr(0, series.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!before.types.count(family) && family.ends_with(suffix)) family.resize(family.size() - std::strlen(suffix));
    }
    // Counters, and a histogram's buckets, sum and count, only grow.
    if (before.types.at(family) != "counter" && before.types.at(family) != "histogram") continue;
    ASSERT_TRUE(after.samples.count(series)) << series << " disappeared";
    EXPECT_GE(after.samples.at(series), value) << series << " went down";
  }
  EXPECT_GT(after.samples["zmesh_http_requests_total{path=\"/metrics\"}"],
            before.samples.at("zmesh_http_requests_total{path=\"/metrics\"}"));
}

TEST_F(MonitorTest, UnknownPathsAndMethods) {
  HttpResult r = HttpRequest(http_, "GET", "/nope");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 404);
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    r = HttpRequest(http_, method, "/varz");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.Header("allow").value_or(""), "GET, HEAD");
  }
  r = HttpRequest(http_, "HEAD", "/healthz");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.Header("content-length").value_or(""), std::to_string(GetJson(http_, "/healthz").dump(2).size() + 1));
  r = HttpRequest(http_, "GET", "/connz?offset=%zz");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 400);
  // The server is still fine after all that.
  EXPECT_EQ(GetJson(http_, "/healthz")["status"], "ok");
}

// --- Two-node mesh ----------------------------------------------------------

class MonitorMeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(zk_.Start(&error)) << error;
    std::string tmpl = ::testing::TempDir() + "zmesh_monitor_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ + "/secret") << "monitor-test-cluster-secret-0123456789\n";
  }
  void TearDown() override {
    for (auto& node : nodes_) {
      if (!node->process().Running()) continue;  // the one the test killed
      const std::optional<int> status = node->Stop();
      ASSERT_TRUE(status.has_value());
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeWaitStatus(*status);
    }
    nodes_.clear();
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }

  ServerUnderTest* StartNode(const std::string& id) {
    ServerOptions o;
    o.use_ports_file = true;
    o.extra_args = {"--http_listen=127.0.0.1:0",      "--zk=" + zk_.connect_string(),
                    "--zk_root=/zmesh/monitor_test", "--node_id=" + id,
                    "--cluster_secret_file=" + dir_ + "/secret", "--zk_session_timeout_ms=2000"};
    nodes_.push_back(std::make_unique<ServerUnderTest>(Target::kZmesh));
    if (!nodes_.back()->Start(o)) return nullptr;
    return nodes_.back().get();
  }

  // One peer, member, linked and synced, on both sides, and /healthz 200.
  static bool MeshFormed(uint16_t http) {
    const HttpResult h = HttpRequest(http, "GET", "/healthz");
    if (!h.ok || h.status != 200) return false;
    const json p = json::parse(HttpRequest(http, "GET", "/peerz").body, nullptr, false);
    return !p.is_discarded() && p["peers"].size() == 1 && p["peers"][0]["linked"] == true &&
           p["peers"][0]["synced"] == true && p["peers"][0]["member"] == true;
  }

  ZooKeeperServer zk_;
  std::string dir_;
  std::vector<std::unique_ptr<ServerUnderTest>> nodes_;
};

TEST_F(MonitorMeshTest, HealthzAndPeerzFollowTheMesh) {
  ServerUnderTest* a = StartNode("a");
  ASSERT_NE(a, nullptr);
  ServerUnderTest* b = StartNode("b");
  ASSERT_NE(b, nullptr);
  const uint16_t http_a = a->http_port(), http_b = b->http_port();
  ASSERT_NE(http_a, 0);
  ASSERT_NE(http_b, 0);
  ASSERT_TRUE(WaitFor(seconds(20), [&] { return MeshFormed(http_a) && MeshFormed(http_b); }, milliseconds(50)))
      << "a: " << HttpRequest(http_a, "GET", "/peerz").body << "\nb: " << HttpRequest(http_b, "GET", "/peerz").body;

  for (auto [self, other, http, other_port] : {std::tuple{"a", "b", http_a, b->port()},
                                                std::tuple{"b", "a", http_b, a->port()}}) {
    SCOPED_TRACE(self);
    const json p = GetJson(http, "/peerz");
    EXPECT_EQ(p["node_id"], self);
    EXPECT_EQ(p["registered"], true);
    EXPECT_EQ(p["healthy"], true);
    EXPECT_EQ(p["repairs"].get<int64_t>(), 0) << "a freshly formed mesh has nothing to repair";
    const json& peer = p["peers"][0];
    EXPECT_EQ(peer["security"], "tls1.3-psk");
    EXPECT_EQ(peer["node_id"], other);
    EXPECT_EQ(peer["client_url"], "nats://127.0.0.1:" + std::to_string(other_port));
    EXPECT_TRUE(peer["peer_url"].get<std::string>().starts_with("127.0.0.1:"));
    for (const char* field : {"outbound", "rtt_ms", "pending_bytes", "interest", "in_msgs", "out_msgs"}) {
      EXPECT_TRUE(peer.contains(field)) << field;
    }
    const json v = GetJson(http, "/varz");
    EXPECT_EQ(v["peers"], 1);
    EXPECT_EQ(v["mesh"]["standalone"], false);
    EXPECT_EQ(v["mesh"]["registered"], true);
    EXPECT_EQ(v["mesh"]["healthy"], true);
    EXPECT_EQ(v["mesh"]["members"], 2);
    const Scrape m = GetMetrics(http);
    EXPECT_EQ(m.samples.at("zmesh_peers{state=\"linked\"}"), 1);
    EXPECT_EQ(m.samples.at("zmesh_peers{state=\"synced\"}"), 1);
    EXPECT_EQ(m.samples.at("zmesh_peer_linked{peer=\"" + std::string(other) + "\"}"), 1);
    EXPECT_EQ(m.samples.at("zmesh_registered"), 1);
  }

  // Interest crosses the mesh: a subscription on b shows up as remote
  // interest in a's index.
  RawClient sub;
  ASSERT_TRUE(sub.Dial(b->port()));
  ASSERT_TRUE(sub.Connect());
  ASSERT_TRUE(sub.Sub("across.*", "1"));
  ASSERT_TRUE(sub.Flush());
  json match;
  ASSERT_TRUE(WaitFor(seconds(10), [&] {
    match = GetJson(http_a, "/subsz?test=across.mesh&subs=1");
    return match["matches"]["remote"] == 1;
  })) << match.dump(2);
  EXPECT_EQ(match["matches"]["local"], 0);
  EXPECT_EQ(match["subscriptions_list"][0]["remote"], true);
  EXPECT_EQ(match["subscriptions_list"][0]["node_id"], "b");
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return GetJson(http_a, "/peerz")["peers"][0]["interest"] == 1; }));

  // b dies: its link drops at once, its znode lingers until its ZooKeeper
  // session expires (2 s). Meanwhile a is a member short: 503.
  ASSERT_TRUE(b->process().Signal(SIGKILL));
  b->process().WaitExit(seconds(10));
  HttpResult h;
  ASSERT_TRUE(WaitFor(seconds(10), [&] {
    h = HttpRequest(http_a, "GET", "/healthz");
    return h.ok && h.status == 503;
  }, milliseconds(20))) << "a never reported the lost peer";
  const json unavailable = json::parse(h.body);
  EXPECT_EQ(unavailable["status"], "unavailable");
  EXPECT_EQ(unavailable["reason"], "peer b is not linked");
  // Then ZooKeeper forgets b and a is whole again.
  ASSERT_TRUE(WaitFor(seconds(20), [&] {
    h = HttpRequest(http_a, "GET", "/healthz");
    return h.ok && h.status == 200;
  }, milliseconds(50))) << h.body;
  const json p = GetJson(http_a, "/peerz");
  for (const json& peer : p["peers"]) EXPECT_EQ(peer["member"], false) << peer.dump();
  EXPECT_EQ(GetJson(http_a, "/varz")["mesh"]["members"], 1);
}

}  // namespace
}  // namespace zmesh::testing

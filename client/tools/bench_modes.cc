// The modes of `zmesh bench`, one function each, following meshbench's
// main.go step by step so the figures mean the same.

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "client/tools/bench.h"

namespace zmesh::cli::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Payload: publisher id (u32) | sequence (u64) | send time ns (u64, latency
// mode only); little endian, as meshbench.
constexpr size_t kHdrLen = 12;
constexpr size_t kStampLen = kHdrLen + 8;
constexpr auto kGrace = std::chrono::milliseconds(200);  // catch late duplicates

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void Put32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t Get64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t Get32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

bool Decode(std::string_view b, uint32_t* pub, uint64_t* seq) {
  if (b.size() < kHdrLen) return false;
  *pub = Get32(b.data());
  *seq = Get64(b.data() + 4);
  return true;
}

// One subscriber's view of the per-publisher sequence streams.
struct SubStats {
  std::vector<uint64_t> next;  // dispatcher thread only
  std::atomic<int64_t> received{0};
  std::atomic<int64_t> gaps{0};
  std::atomic<int64_t> backwards{0};
  std::atomic<int64_t> bad{0};
  std::atomic<int64_t> last{0};
  std::mutex mu;
  std::vector<int64_t> lat;
  bool stamped = false;

  void Handle(const Message& m) {
    const int64_t now = NowNs();
    uint32_t p = 0;
    uint64_t seq = 0;
    if (!Decode(m.data(), &p, &seq) || p >= next.size()) {
      bad.fetch_add(1);
      return;
    }
    const uint64_t exp = next[p];
    if (seq == exp) {
      ++next[p];
    } else if (seq > exp) {
      gaps.fetch_add(static_cast<int64_t>(seq - exp));
      next[p] = seq + 1;
    } else {
      backwards.fetch_add(1);
    }
    if (stamped && m.data().size() >= kStampLen) {
      std::lock_guard<std::mutex> lock(mu);
      lat.push_back(now - static_cast<int64_t>(Get64(m.data().data() + kHdrLen)));
    }
    received.fetch_add(1, std::memory_order_relaxed);
    last.store(now, std::memory_order_relaxed);
  }
};

using Throttle = std::function<std::string(int64_t)>;  // returns an error, empty = go on

// Sends cfg.msgs split over the publishers at cfg.rate in total, then flushes.
std::string Publish(const Config& cfg, const std::vector<std::unique_ptr<Client>>& pubs, bool stamp,
                    const Throttle& throttle) {
  std::vector<std::string> errs(pubs.size());
  std::vector<std::thread> threads;
  for (size_t p = 0; p < pubs.size(); ++p) {
    threads.emplace_back([&, p] {
      Client& nc = *pubs[p];
      std::string buf(static_cast<size_t>(cfg.size), '\0');
      const double rate = cfg.rate / static_cast<double>(pubs.size());
      const auto start = Clock::now();
      const int64_t n = Share(cfg.msgs, static_cast<int64_t>(pubs.size()), static_cast<int64_t>(p));
      for (int64_t seq = 0; seq < n; ++seq) {
        Pace(start, seq, rate);
        Put32(buf.data(), static_cast<uint32_t>(p));
        Put64(buf.data() + 4, static_cast<uint64_t>(seq));
        if (stamp) Put64(buf.data() + kHdrLen, static_cast<uint64_t>(NowNs()));
        Status st = nc.Publish(cfg.subject, buf);
        if (!st.ok()) {
          errs[p] = st.ToString();
          return;
        }
        if (throttle && seq % 64 == 63) {
          errs[p] = throttle(64);
          if (!errs[p].empty()) return;
        }
      }
      Status st = nc.Flush(std::chrono::duration_cast<std::chrono::milliseconds>(Secs(cfg.timeout)));
      if (!st.ok()) errs[p] = "flush: " + st.ToString();
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& e : errs) {
    if (!e.empty()) return e;
  }
  return {};
}

// Closed-loop flow control: block while more than --window-mb are in flight
// to the slowest subscriber.
Throttle Window(const Config& cfg, std::function<int64_t()> slowest, std::function<bool()> broken) {
  const auto limit = static_cast<int64_t>(cfg.window_mb * 1e6 /
                                          static_cast<double>(cfg.size + static_cast<int64_t>(cfg.subject.size()) + 32));
  auto sent = std::make_shared<std::atomic<int64_t>>(0);
  return [=](int64_t n) -> std::string {
    sent->fetch_add(n);
    const auto deadline = Clock::now() + Secs(cfg.timeout);
    while (sent->load() - slowest() > limit) {
      if (broken()) return "subscriber connection closed";
      if (Clock::now() > deadline) return "no progress within the window";
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return {};
  };
}

}  // namespace

bool RunPubSub(const Config& cfg, Report* r, Failures* fails, std::string* error) {
  const bool latency = cfg.mode == "latency";
  const size_t need = latency ? kStampLen : kHdrLen;
  if (static_cast<size_t>(cfg.size) < need) {
    *error = "--size must be at least " + std::to_string(need);
    return false;
  }
  // Declared before the connections: callbacks may run until those close.
  std::vector<std::unique_ptr<SubStats>> stats;
  std::vector<std::unique_ptr<Client>> sub_conns;
  if (!DialAll(cfg, cfg.sub_url, cfg.subs, "sub", &sub_conns, error)) return false;
  std::vector<std::shared_ptr<Subscription>> subs;
  for (auto& nc : sub_conns) {
    auto s = std::make_unique<SubStats>();
    s->next.assign(static_cast<size_t>(cfg.pubs), 0);
    s->stamped = latency;
    SubStats* raw = s.get();
    std::shared_ptr<Subscription> sub;
    Status st = nc->Subscribe(cfg.subject, [raw](Message m) { raw->Handle(m); }, &sub);
    if (st.ok()) st = nc->Flush(std::chrono::duration_cast<std::chrono::milliseconds>(Secs(cfg.timeout)));
    if (!st.ok()) {
      *error = "subscribe: " + st.ToString();
      return false;
    }
    stats.push_back(std::move(s));
    subs.push_back(std::move(sub));
  }
  std::vector<std::unique_ptr<Client>> pub_conns;
  if (!DialAll(cfg, cfg.pub_url, cfg.pubs, "pub", &pub_conns, error)) return false;
  if (!AwaitInterest(cfg, pub_conns, sub_conns, error)) return false;

  auto slowest = [&] {
    int64_t low = cfg.msgs;
    for (const auto& s : stats) low = std::min(low, s->received.load());
    return low;
  };
  Throttle throttle;
  if (cfg.window_mb > 0 && cfg.subs > 0) throttle = Window(cfg, slowest, [&] { return AnyClosed(sub_conns); });
  const auto start = Clock::now();
  const int64_t start_ns = NowNs();
  const std::string pub_err = Publish(cfg, pub_conns, latency, throttle);
  const double pub_elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t want = cfg.msgs;
  WaitUntil(cfg.timeout, [&] { return slowest() >= want || AnyClosed(sub_conns); });
  std::this_thread::sleep_for(kGrace);

  *fails = Closed(sub_conns, "sub");
  if (!pub_err.empty()) fails->push_back("publish: " + pub_err);
  int64_t delivered = 0;
  std::vector<int64_t> received;
  int64_t last = start_ns;
  for (size_t i = 0; i < stats.size(); ++i) {
    const SubStats& s = *stats[i];
    received.push_back(s.received.load());
    delivered += received.back();
    last = std::max(last, s.last.load());
    if (received.back() != want || s.gaps.load() != 0 || s.backwards.load() != 0 || s.bad.load() != 0) {
      fails->push_back("sub " + std::to_string(i) + ": received " + std::to_string(received.back()) + " of " +
                       std::to_string(want) + ", " + std::to_string(s.gaps.load()) + " skipped, " +
                       std::to_string(s.backwards.load()) + " duplicate/reordered, " + std::to_string(s.bad.load()) +
                       " undecodable");
    }
  }
  double elapsed = static_cast<double>(last - start_ns) / 1e9;
  if (cfg.subs == 0) elapsed = pub_elapsed;
  const double mb = static_cast<double>(cfg.size) / 1e6;
  Report& rep = *r;
  rep["pubs"] = cfg.pubs;
  rep["subs"] = cfg.subs;
  rep["size"] = cfg.size;
  rep["msgs"] = cfg.msgs;
  rep["rate"] = cfg.rate;
  rep["window_mb"] = cfg.window_mb;
  rep["pub_elapsed_s"] = pub_elapsed;
  rep["pub_msgs_per_s"] = static_cast<double>(cfg.msgs) / pub_elapsed;
  rep["pub_mb_per_s"] = static_cast<double>(cfg.msgs) * mb / pub_elapsed;
  rep["elapsed_s"] = elapsed;
  rep["delivered_msgs"] = delivered;
  rep["delivered_msgs_per_s"] = static_cast<double>(delivered) / elapsed;
  rep["delivered_mb_per_s"] = static_cast<double>(delivered) * mb / elapsed;
  rep["received"] = received;
  Logf("%s: %lld pub -> %lld sub, %lld x %lldB: publish %.0f msgs/s (%.1f MB/s) in %.2fs; delivered %lld = %.0f "
       "msgs/s (%.1f MB/s) in %.2fs",
       cfg.mode.c_str(), static_cast<long long>(cfg.pubs), static_cast<long long>(cfg.subs),
       static_cast<long long>(cfg.msgs), static_cast<long long>(cfg.size), rep["pub_msgs_per_s"].get<double>(),
       rep["pub_mb_per_s"].get<double>(), pub_elapsed, static_cast<long long>(delivered),
       rep["delivered_msgs_per_s"].get<double>(), rep["delivered_mb_per_s"].get<double>(), elapsed);
  if (latency) {
    std::vector<int64_t> lat;
    for (auto& s : stats) {
      std::lock_guard<std::mutex> lock(s->mu);
      lat.insert(lat.end(), s->lat.begin(), s->lat.end());
    }
    rep["latency_us"] = Summarize(cfg.mode + " one-way", &lat);
  }
  return true;
}

bool RunQueue(const Config& cfg, Report* r, Failures* fails, std::string* error) {
  if (static_cast<size_t>(cfg.size) < kHdrLen) {
    *error = "--size must be at least " + std::to_string(kHdrLen);
    return false;
  }
  // Deliveries per publisher and sequence; shared with callbacks.
  auto seen = std::make_shared<std::vector<std::vector<std::atomic<uint32_t>>>>();
  for (int64_t p = 0; p < cfg.pubs; ++p) seen->emplace_back(static_cast<size_t>(Share(cfg.msgs, cfg.pubs, p)));
  auto counts = std::make_shared<std::vector<std::atomic<int64_t>>>(static_cast<size_t>(cfg.members));
  auto total = std::make_shared<std::atomic<int64_t>>(0);
  auto bad = std::make_shared<std::atomic<int64_t>>(0);
  std::vector<std::unique_ptr<Client>> members;
  if (!DialAll(cfg, cfg.sub_url, cfg.members, "member", &members, error)) return false;
  std::vector<std::shared_ptr<Subscription>> subs;
  for (size_t i = 0; i < members.size(); ++i) {
    std::shared_ptr<Subscription> sub;
    Status st = members[i]->QueueSubscribe(cfg.subject, cfg.group, [=](Message m) {
      uint32_t p = 0;
      uint64_t seq = 0;
      if (!Decode(m.data(), &p, &seq) || p >= seen->size() || seq >= (*seen)[p].size()) {
        bad->fetch_add(1);
        return;
      }
      (*seen)[p][seq].fetch_add(1);
      (*counts)[i].fetch_add(1);
      total->fetch_add(1);
    }, &sub);
    if (st.ok()) st = members[i]->Flush(std::chrono::duration_cast<std::chrono::milliseconds>(Secs(cfg.timeout)));
    if (!st.ok()) {
      *error = "subscribe: " + st.ToString();
      return false;
    }
    subs.push_back(std::move(sub));
  }
  std::vector<std::unique_ptr<Client>> pub_conns;
  if (!DialAll(cfg, cfg.pub_url, cfg.pubs, "pub", &pub_conns, error)) return false;
  if (!AwaitInterest(cfg, pub_conns, members, error)) return false;

  const auto start = Clock::now();
  const std::string pub_err = Publish(cfg, pub_conns, false, nullptr);
  WaitUntil(cfg.timeout, [&] { return total->load() >= cfg.msgs || AnyClosed(members); });
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::this_thread::sleep_for(kGrace);

  int64_t lost = 0, dups = 0;
  for (auto& s : *seen) {
    for (auto& n : s) {
      const uint32_t v = n.load();
      if (v == 0) ++lost;
      if (v > 1) dups += v - 1;
    }
  }
  const double ideal = static_cast<double>(cfg.msgs) / static_cast<double>(cfg.members);
  std::vector<int64_t> per_member;
  std::vector<double> share_pct;
  double max_dev = 0;
  for (auto& c : *counts) {
    per_member.push_back(c.load());
    share_pct.push_back(100.0 * static_cast<double>(per_member.back()) / static_cast<double>(cfg.msgs));
    max_dev = std::max(max_dev, 100.0 * std::abs(static_cast<double>(per_member.back()) - ideal) / ideal);
  }
  *fails = Closed(members, "member");
  if (!pub_err.empty()) fails->push_back("publish: " + pub_err);
  if (lost != 0 || dups != 0 || bad->load() != 0 || total->load() != cfg.msgs) {
    fails->push_back("delivered " + std::to_string(total->load()) + " of " + std::to_string(cfg.msgs) + ": " +
                     std::to_string(lost) + " lost, " + std::to_string(dups) + " duplicates, " +
                     std::to_string(bad->load()) + " undecodable");
  }
  if (cfg.max_dev > 0 && max_dev > cfg.max_dev) {
    fails->push_back("member share deviates " + std::to_string(max_dev) + "% from M/K (limit " +
                     std::to_string(cfg.max_dev) + "%)");
  }
  Logf("queue: %lld msgs to %lld members of \"%s\": delivered %lld in %.2fs, max deviation from M/K %.1f%%",
       static_cast<long long>(cfg.msgs), static_cast<long long>(cfg.members), cfg.group.c_str(),
       static_cast<long long>(total->load()), elapsed, max_dev);
  Report& rep = *r;
  rep["pubs"] = cfg.pubs;
  rep["members"] = cfg.members;
  rep["msgs"] = cfg.msgs;
  rep["size"] = cfg.size;
  rep["delivered"] = total->load();
  rep["lost"] = lost;
  rep["duplicates"] = dups;
  rep["elapsed_s"] = elapsed;
  rep["per_member"] = per_member;
  rep["share_pct"] = share_pct;
  rep["max_dev_pct"] = max_dev;
  rep["member_urls"] = Spread(cfg.sub_url, cfg.members);
  return true;
}

bool RunReqRep(const Config& cfg, Report* r, Failures* fails, std::string* error) {
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(Secs(cfg.timeout));
  std::unique_ptr<Client> rsp = Connect(cfg, Spread(cfg.sub_url, 1)[0], "responder", error);
  if (rsp == nullptr) return false;
  Client* responder = rsp.get();
  std::shared_ptr<Subscription> sub;
  Status st = rsp->Subscribe(cfg.subject, [responder](Message m) { responder->Publish(m.reply(), m.data()); }, &sub);
  if (st.ok()) st = rsp->Flush(timeout);
  if (!st.ok()) {
    *error = "responder: " + st.ToString();
    return false;
  }
  std::unique_ptr<Client> req = Connect(cfg, Spread(cfg.pub_url, 1)[0], "requester", error);
  if (req == nullptr) return false;
  const std::string payload(static_cast<size_t>(cfg.size), '\0');
  Message reply;
  if (!WaitUntil(cfg.timeout, [&] { return req->Request(cfg.subject, payload, std::chrono::milliseconds(250), &reply).ok(); })) {
    *error = "responder not reachable";
    return false;
  }
  std::this_thread::sleep_for(Secs(cfg.settle));

  std::vector<int64_t> lat;
  lat.reserve(static_cast<size_t>(cfg.msgs));
  int64_t failed = 0;
  const auto start = Clock::now();
  for (int64_t i = 0; i < cfg.msgs; ++i) {
    Pace(start, i, cfg.rate);
    const auto t = Clock::now();
    st = req->Request(cfg.subject, payload, timeout, &reply);
    if (!st.ok()) {
      if (++failed == 1) Logf("reqrep: request %lld: %s", static_cast<long long>(i), st.ToString().c_str());
      continue;
    }
    lat.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count());
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed > 0) fails->push_back(std::to_string(failed) + " of " + std::to_string(cfg.msgs) + " requests failed");
  Logf("reqrep: %lld requests x %lldB in %.2fs = %.0f req/s", static_cast<long long>(cfg.msgs),
       static_cast<long long>(cfg.size), elapsed, static_cast<double>(cfg.msgs) / elapsed);
  Report& rep = *r;
  rep["msgs"] = cfg.msgs;
  rep["size"] = cfg.size;
  rep["rate"] = cfg.rate;
  rep["elapsed_s"] = elapsed;
  rep["req_per_s"] = static_cast<double>(cfg.msgs) / elapsed;
  rep["failed"] = failed;
  rep["latency_us"] = Summarize("reqrep round-trip", &lat);
  return true;
}

bool RunConns(const Config& cfg, Report* r, Failures* fails, std::string* error) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  auto start = Clock::now();
  std::vector<std::unique_ptr<Client>> conns;
  if (!DialAll(cfg, cfg.url, cfg.conns, "conn", &conns, error)) return false;
  const double connect_s = std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();
  // Sync subscriptions: nothing is published, and they need no dispatcher thread.
  std::vector<std::shared_ptr<Subscription>> subs;
  for (size_t i = 0; i < conns.size(); ++i) {
    for (int64_t j = 0; j < cfg.subs_per_conn; ++j) {
      std::shared_ptr<Subscription> sub;
      Status st = conns[i]->SubscribeSync(cfg.subject + "." + std::to_string(i) + "." + std::to_string(j), &sub);
      if (!st.ok()) {
        *error = st.ToString();
        return false;
      }
      subs.push_back(std::move(sub));
    }
  }
  for (auto& nc : conns) {
    Status st = nc->Flush(std::chrono::duration_cast<std::chrono::milliseconds>(Secs(cfg.timeout)));
    if (!st.ok()) {
      *error = "flush: " + st.ToString();
      return false;
    }
  }
  const double sub_s = std::chrono::duration<double>(Clock::now() - start).count();
  Logf("conns: %lld connections in %.2fs, %lld subscriptions in %.2fs; holding %.0fs",
       static_cast<long long>(cfg.conns), connect_s, static_cast<long long>(cfg.conns * cfg.subs_per_conn), sub_s,
       cfg.hold);
  std::this_thread::sleep_for(Secs(cfg.hold));
  Report& rep = *r;
  rep["conns"] = cfg.conns;
  rep["subs_per_conn"] = cfg.subs_per_conn;
  rep["connect_s"] = connect_s;
  rep["subscribe_s"] = sub_s;
  rep["hold_s"] = cfg.hold;
  for (size_t i = 0; i < conns.size(); ++i) {
    if (!conns[i]->connected()) {
      fails->push_back("connection " + std::to_string(i) + " dropped: " + conns[i]->last_error().ToString());
      break;
    }
  }
  if (cfg.server_pid > 0) {
    AddProcStatus(&rep, cfg.server_pid);
    Logf("conns: server pid %lld VmHWM %s kB, VmRSS %s kB", static_cast<long long>(cfg.server_pid),
         rep.value("server_vmhwm_kb", nlohmann::ordered_json()).dump().c_str(),
         rep.value("server_vmrss_kb", nlohmann::ordered_json()).dump().c_str());
  }
  return true;
}

}  // namespace zmesh::cli::bench

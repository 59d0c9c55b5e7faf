#include "client/tools/bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "client/tools/commands.h"
#include "client/tools/flags.h"

namespace zmesh::cli::bench {

std::atomic<int64_t>& AsyncErrors() {
  static std::atomic<int64_t> n{0};
  return n;
}

void Logf(const char* fmt, ...) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

std::chrono::steady_clock::duration Secs(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

std::unique_ptr<Client> Connect(const Config& cfg, const std::string& url, const std::string& name,
                                std::string* error) {
  Options o;
  const bool mesh = !cfg.mesh.zk.empty() || !cfg.mesh.servers.empty();
  if (mesh) {
    std::string err;
    if (!BuildOptions(cfg.mesh, &o, &err)) {
      *error = err;
      return nullptr;
    }
  } else {
    o.servers = {url};
    o.max_reconnect_attempts = 0;  // like meshbench's NoReconnect: a lost connection fails the run
    o.initial_connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeout * 1000));
  }
  if (!cfg.user.empty()) o.user = cfg.user;
  if (!cfg.pass.empty()) o.password = cfg.pass;
  o.name = "zmesh-bench-" + name;
  o.pending_msgs_limit = -1;  // buffer bursts rather than drop (meshbench: SetPendingLimits(-1,-1))
  o.pending_bytes_limit = -1;
  o.write_deadline = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeout * 1000));
  o.on_event = [mode = cfg.mode, name](const Event& e) {
    if (e.type != EventType::kSlowConsumer && e.type != EventType::kError) return;
    if (AsyncErrors().fetch_add(1) < 5) {
      Logf("%s: async error on %s: %s", mode.c_str(), name.c_str(), e.status.ToString().c_str());
    }
  };
  std::unique_ptr<Client> client;
  Status st = Client::Connect(std::move(o), &client);
  if (!st.ok()) {
    *error = "connect " + name + " to " + (mesh ? std::string("the mesh") : url) + ": " + st.ToString();
    return nullptr;
  }
  return client;
}

std::vector<std::string> Spread(const std::string& urls, int64_t n) {
  std::vector<std::string> list = SplitList(urls);
  if (list.empty()) list.push_back("nats://127.0.0.1:4222");
  std::vector<std::string> out(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (size_t i = 0; i < out.size(); ++i) out[i] = list[i % list.size()];
  return out;
}

bool DialAll(const Config& cfg, const std::string& urls, int64_t n, const std::string& role,
             std::vector<std::unique_ptr<Client>>* out, std::string* error) {
  const std::vector<std::string> addrs = Spread(urls, n);
  out->clear();
  out->resize(addrs.size());
  std::vector<std::string> errors(addrs.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 16 && w < n; ++w) {
    workers.emplace_back([&] {
      for (size_t i = next++; i < addrs.size(); i = next++) {
        (*out)[i] = Connect(cfg, addrs[i], role + "-" + std::to_string(i), &errors[i]);
      }
    });
  }
  for (auto& t : workers) t.join();
  for (size_t i = 0; i < addrs.size(); ++i) {
    if ((*out)[i] == nullptr) {
      *error = errors[i];
      out->clear();
      return false;
    }
  }
  return true;
}

int64_t Share(int64_t total, int64_t parts, int64_t i) {
  int64_t n = total / parts;
  if (i < total % parts) ++n;
  return n;
}

void Pace(std::chrono::steady_clock::time_point start, int64_t i, double rate) {
  if (rate <= 0) return;
  const auto due = start + Secs(static_cast<double>(i) / rate);
  if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
}

Report Summarize(const std::string& what, std::vector<int64_t>* ns) {
  Report r;
  r["count"] = ns->size();
  if (ns->empty()) return r;
  std::sort(ns->begin(), ns->end());
  double sum = 0;
  for (int64_t v : *ns) sum += static_cast<double>(v);
  r["mean"] = sum / static_cast<double>(ns->size()) / 1e3;
  const std::pair<const char*, double> qs[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"max", 100}};
  for (const auto& [key, q] : qs) {
    int64_t i = static_cast<int64_t>(std::ceil(q / 100 * static_cast<double>(ns->size()))) - 1;
    i = std::clamp<int64_t>(i, 0, static_cast<int64_t>(ns->size()) - 1);
    r[key] = static_cast<double>((*ns)[static_cast<size_t>(i)]) / 1e3;
  }
  Logf("%s latency (us, n=%zu): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f", what.c_str(), ns->size(),
       r["p50"].get<double>(), r["p90"].get<double>(), r["p99"].get<double>(), r["p99.9"].get<double>(),
       r["max"].get<double>());
  return r;
}

void AddProcStatus(Report* r, int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) {
    (*r)["server_status_error"] = "cannot read /proc/" + std::to_string(pid) + "/status";
    return;
  }
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    int64_t kb = 0;
    ls >> key >> kb;
    if (key == "VmHWM:") (*r)["server_vmhwm_kb"] = kb;
    if (key == "VmRSS:") (*r)["server_vmrss_kb"] = kb;
  }
}

bool AnyClosed(const std::vector<std::unique_ptr<Client>>& conns) {
  return std::any_of(conns.begin(), conns.end(),
                     [](const auto& c) { return c->state() == ConnectionState::kClosed; });
}

Failures Closed(const std::vector<std::unique_ptr<Client>>& conns, const std::string& role) {
  Failures out;
  for (size_t i = 0; i < conns.size(); ++i) {
    if (conns[i]->state() == ConnectionState::kClosed) {
      out.push_back(role + " " + std::to_string(i) + ": connection closed: " + conns[i]->last_error().ToString());
    }
  }
  return out;
}

bool AwaitInterest(const Config& cfg, const std::vector<std::unique_ptr<Client>>& pubs,
                   const std::vector<std::unique_ptr<Client>>& subs, std::string* error) {
  if (subs.empty()) return true;
  const std::string prefix = "_MESHBENCH.ready." + pubs[0]->NewInbox().substr(7);
  // Shared with the callbacks, which may still run briefly after we return.
  auto seen = std::make_shared<std::vector<std::atomic<bool>>>(pubs.size() * subs.size());
  std::vector<std::shared_ptr<Subscription>> probes;
  for (size_t i = 0; i < subs.size(); ++i) {
    std::shared_ptr<Subscription> sub;
    Status st = subs[i]->Subscribe(prefix + "." + std::to_string(i), [seen, i, n = subs.size(), p = pubs.size()](Message m) {
      const std::string text(m.data());
      char* end = nullptr;
      const long idx = std::strtol(text.c_str(), &end, 10);
      if (end != text.c_str() && idx >= 0 && static_cast<size_t>(idx) < p) (*seen)[static_cast<size_t>(idx) * n + i] = true;
    }, &sub);
    if (!st.ok()) {
      *error = "probe subscribe: " + st.ToString();
      return false;
    }
    probes.push_back(std::move(sub));
  }
  // Subscribe returned once the mesh confirmed each subscription (the
  // interest barrier), so one probe per pair must get through. Pairs still
  // missing after a second are probed again, for servers without the
  // barrier (nats-server); the retries are reported.
  auto probe_missing = [&] {
    int64_t missing = 0;
    for (size_t p = 0; p < pubs.size(); ++p) {
      for (size_t i = 0; i < subs.size(); ++i) {
        if (!(*seen)[p * subs.size() + i]) {
          ++missing;
          pubs[p]->Publish(prefix + "." + std::to_string(i), std::to_string(p));
        }
      }
    }
    for (auto& p : pubs) p->Flush(std::chrono::milliseconds(1000));
    return missing;
  };
  auto count_missing = [&] {
    int64_t missing = 0;
    for (size_t k = 0; k < pubs.size() * subs.size(); ++k) missing += (*seen)[k] ? 0 : 1;
    return missing;
  };
  probe_missing();
  int64_t retried = 0;
  bool ok = WaitUntil(std::min(cfg.timeout, 1.0), [&] { return count_missing() == 0; });
  if (!ok) {
    ok = WaitUntil(cfg.timeout, [&] {
      if (count_missing() == 0) return true;
      retried += probe_missing();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      return count_missing() == 0;
    });
  }
  const int64_t missing = count_missing();
  if (retried > 0) {
    std::cerr << "zmesh bench: " << retried << " interest probe(s) re-sent (a server without a mesh-wide interest "
              << "barrier)\n";
  }
  for (auto& s : probes) s->Unsubscribe();
  if (!ok) {
    std::ostringstream os;
    os << "interest not visible after " << cfg.timeout << "s: " << missing << " publisher/subscriber pairs missing";
    *error = os.str();
    return false;
  }
  std::this_thread::sleep_for(Secs(cfg.settle));
  return true;
}

namespace {

[[noreturn]] void Finish(const Report& r, int code) {
  static std::mutex mu;
  mu.lock();  // never unlocked: the first finisher exits the process
  std::cout << r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  std::_Exit(code);
}

}  // namespace

}  // namespace zmesh::cli::bench

namespace zmesh::cli {

int RunBench(int argc, char** argv) {
  using namespace bench;
  if (argc < 2 || argv[1][0] == '-') {
    std::cerr << "usage: zmesh bench pubsub|fanout|queue|latency|reqrep|conns [flags]  (--help for flags)\n";
    return 2;
  }
  Config cfg;
  cfg.mode = argv[1];
  if (cfg.mode == "fanout") cfg.subs = 100;
  if (cfg.mode == "latency") cfg.rate = 10000;
  FlagSet f("bench " + cfg.mode);
  f.String("pub-url", &cfg.pub_url, "publisher server URL(s), comma separated, used round-robin");
  f.String("sub-url", &cfg.sub_url, "subscriber server URL(s), comma separated, used round-robin");
  f.String("url", &cfg.url, "server URL(s) for conns mode");
  f.String("subject", &cfg.subject, "subject (conns mode: prefix)");
  f.String("group", &cfg.group, "queue group name");
  f.String("pass", &cfg.pass, "password (prefer --password_file or $ZMESH_PASSWORD)");
  f.Secret("pass");
  f.Int("pubs", &cfg.pubs, "publisher connections");
  f.Int("subs", &cfg.subs, "subscriber connections (fanout: default 100)");
  f.Int("members", &cfg.members, "queue group members");
  f.Double("max-dev", &cfg.max_dev, "queue: fail if a member's share deviates from M/K by more than this percent (0 = report only)");
  f.Int("size", &cfg.size, "payload size in bytes");
  f.Int("msgs", &cfg.msgs, "messages (requests in reqrep) in total");
  f.Double("rate", &cfg.rate, "total publish rate in msgs/s, 0 = unlimited (latency: default 10000)");
  f.Int("conns", &cfg.conns, "connections (conns mode)");
  f.Int("subs-per-conn", &cfg.subs_per_conn, "distinct subscriptions per connection (conns mode)");
  f.Double("hold", &cfg.hold, "seconds to hold connections open (conns mode)");
  f.Double("timeout", &cfg.timeout, "seconds to wait for interest, flushes and deliveries");
  f.Double("window-mb", &cfg.window_mb, "pause publishers while more than this many MB are in flight to the slowest subscriber (0 = open loop)");
  f.Double("settle", &cfg.settle, "extra seconds to sleep after interest is visible");
  f.Double("deadline", &cfg.deadline, "hard limit in seconds for the whole run");
  f.Int("server-pid", &cfg.server_pid, "report VmHWM/VmRSS of this (local) server process at the end");
  AddConnFlags(&f, &cfg.mesh);  // --zk/--servers/--user/--password...
  std::vector<std::string> positional;
  std::string error;
  if (!f.Parse(argc - 2, argv + 2, &positional, &error) || !positional.empty()) {
    std::cerr << "zmesh bench: " << (error.empty() ? "unexpected argument" : error) << "\n";
    return 2;
  }
  if (f.help_requested()) {
    std::cout << f.Usage("zmesh bench " + cfg.mode + " [flags]");
    return 0;
  }
  cfg.user = cfg.mesh.user;
  if (cfg.pass.empty()) {
    Options o;
    std::string ignored;
    ConnFlags probe = cfg.mesh;
    if (probe.servers.empty() && probe.zk.empty()) probe.servers = "x";  // only for the password sources
    if (BuildOptions(probe, &o, &ignored)) cfg.pass = o.password;
  }
  if (cfg.pubs < 1 || cfg.size < 0 || cfg.msgs < 0 || cfg.subs < 0 || cfg.members < 1) {
    std::cerr << "zmesh bench: --pubs and --members must be >= 1, counts >= 0\n";
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::thread([cfg] {
    std::this_thread::sleep_for(Secs(cfg.deadline));
    Report r;
    r["mode"] = cfg.mode;
    r["ok"] = false;
    r["error"] = "deadline exceeded";
    Finish(r, 1);
  }).detach();

  bool (*run)(const Config&, Report*, Failures*, std::string*) = nullptr;
  if (cfg.mode == "pubsub" || cfg.mode == "fanout" || cfg.mode == "latency") run = RunPubSub;
  if (cfg.mode == "queue") run = RunQueue;
  if (cfg.mode == "reqrep") run = RunReqRep;
  if (cfg.mode == "conns") run = RunConns;
  if (run == nullptr) {
    std::cerr << "unknown mode \"" << cfg.mode << "\"\n";
    return 2;
  }
  Report r;
  Failures fails;
  if (!run(cfg, &r, &fails, &error)) {
    Logf("%s: error: %s", cfg.mode.c_str(), error.c_str());
    Report e;
    e["mode"] = cfg.mode;
    e["ok"] = false;
    e["error"] = error;
    Finish(e, 2);
  }
  if (const int64_t n = AsyncErrors().load(); n > 0) {
    fails.push_back(std::to_string(n) + " asynchronous errors (e.g. slow consumer)");
  }
  if (cfg.server_pid > 0 && !r.contains("server_vmhwm_kb")) AddProcStatus(&r, cfg.server_pid);
  r["mode"] = cfg.mode;
  r["ok"] = fails.empty();
  r["failures"] = fails;
  for (const std::string& fail : fails) Logf("%s: FAIL: %s", cfg.mode.c_str(), fail.c_str());
  if (fails.empty()) Logf("%s: OK", cfg.mode.c_str());
  Finish(r, fails.empty() ? 0 : 1);
}

}  // namespace zmesh::cli

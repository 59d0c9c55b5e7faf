#pragma once

// `zmesh bench`: the C++ twin of ../shared/bench/meshbench (Go). Same modes
// (pubsub, fanout, queue, latency, reqrep, conns), same flags, same checks
// (loss, duplicates, order) and the same JSON fields on stdout, so the two
// load generators — and the two client libraries — can be compared run for
// run. Each connection is one zmesh::Client; like meshbench it does not
// reconnect (a lost connection is a failure), unless --zk/--servers make it
// use the mesh's failover instead of fixed URLs.
//
// Thread safety: start-up and per-mode code; shared counters are atomics.

#include <atomic>
#include <chrono>
#include <thread>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmesh/client.h>

#include "client/tools/cli_common.h"

namespace zmesh::cli::bench {

struct Config {
  std::string mode;
  std::string pub_url = "nats://127.0.0.1:4222";
  std::string sub_url = "nats://127.0.0.1:4222";
  std::string url = "nats://127.0.0.1:4222";
  std::string subject = "bench.data";
  std::string group = "bench";
  std::string user;
  std::string pass;
  int64_t pubs = 1;
  int64_t subs = 1;
  int64_t members = 5;
  int64_t size = 128;
  int64_t msgs = 100000;
  int64_t conns = 1000;
  int64_t subs_per_conn = 1;
  double rate = 0;
  double timeout = 30;
  double settle = 0;
  double hold = 10;
  double window_mb = 0;
  double max_dev = 0;
  double deadline = 600;
  int64_t server_pid = 0;
  ConnFlags mesh;  // --zk/--servers: connect through failover instead of the URLs
};

using Report = nlohmann::ordered_json;
using Failures = std::vector<std::string>;

// Each returns false with *error on a setup failure (exit 2); checks that
// fail go to *fails (exit 1).
bool RunPubSub(const Config& cfg, Report* r, Failures* fails, std::string* error);
bool RunQueue(const Config& cfg, Report* r, Failures* fails, std::string* error);
bool RunReqRep(const Config& cfg, Report* r, Failures* fails, std::string* error);
bool RunConns(const Config& cfg, Report* r, Failures* fails, std::string* error);

// ---- shared helpers (bench.cc) ----
std::atomic<int64_t>& AsyncErrors();
void Logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::unique_ptr<Client> Connect(const Config& cfg, const std::string& url, const std::string& name,
                                std::string* error);
// n connections spread round-robin over the comma-separated urls, 16 dialing at once.
bool DialAll(const Config& cfg, const std::string& urls, int64_t n, const std::string& role,
             std::vector<std::unique_ptr<Client>>* out, std::string* error);
std::vector<std::string> Spread(const std::string& urls, int64_t n);
int64_t Share(int64_t total, int64_t parts, int64_t i);
// Sleeps until message i is due at `rate` msgs/s after `start` (0 = no pacing).
void Pace(std::chrono::steady_clock::time_point start, int64_t i, double rate);
// Polls `cond` every millisecond until true or `timeout_s` passed.
template <typename Fn>
bool WaitUntil(double timeout_s, Fn cond);
Report Summarize(const std::string& what, std::vector<int64_t>* ns);
void AddProcStatus(Report* r, int64_t pid);
Failures Closed(const std::vector<std::unique_ptr<Client>>& conns, const std::string& role);
bool AnyClosed(const std::vector<std::unique_ptr<Client>>& conns);
// Every publisher gets a probe through to every subscriber (see meshbench).
bool AwaitInterest(const Config& cfg, const std::vector<std::unique_ptr<Client>>& pubs,
                   const std::vector<std::unique_ptr<Client>>& subs, std::string* error);
std::chrono::steady_clock::duration Secs(double s);

template <typename Fn>
bool WaitUntil(double timeout_s, Fn cond) {
  const auto deadline = std::chrono::steady_clock::now() + Secs(timeout_s);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace zmesh::cli::bench

// Micro-benchmarks of the subject index and the per-loop match cache (issue
// 10, items 4 and 5): many queue groups on one subject, and the cache while
// another thread subscribes and unsubscribes unrelated subjects.
//
//   cmake --build build --target zmesh_bench && build/bin/zmesh_bench
//
// The source also builds against the index before groups were indexed by
// name (no MatchResult::FindGroup, no MatchCache::misses): the `requires`
// branches below fall back to what that code did, for before/after numbers.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/match_cache.h"
#include "server/subject_index.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server {
namespace {

class BenchEndpoint : public SubscriberEndpoint {
 public:
  BenchEndpoint() : SubscriberEndpoint(Kind::kClient) {}
};

// An index with `groups` queue groups of one local member on `subject`.
struct GroupedIndex {
  explicit GroupedIndex(int groups, const std::string& subject = "orders.new") {
    for (int i = 0; i < groups; ++i) {
      auto* s = new Subscription(endpoint, subject, "group-" + std::to_string(i), std::to_string(i), false);
      index.Insert(s);
      subs.push_back(s);
      names.push_back(s->queue());
    }
  }
  ~GroupedIndex() {
    for (Subscription* s : subs) {
      index.Remove(s);
      s->Unref();
    }
    endpoint->Unref();
  }
  BenchEndpoint* endpoint = new BenchEndpoint;
  SubjectIndex index;
  std::vector<Subscription*> subs;
  std::vector<std::string> names;
};

// The router's weighted pick (PickGroupMember): one member per group.
size_t PickAll(const MatchResult& r, std::mt19937_64& rng) {
  size_t picked = 0;
  for (const MatchResult::Group& g : r.groups) {
    const uint64_t x = rng() % g.total_weight;
    const size_t at = std::upper_bound(g.cumulative_weight.begin(), g.cumulative_weight.end(), x) -
                      g.cumulative_weight.begin();
    picked += g.members[at % g.members.size()]->closed() ? 0 : 1;
  }
  return picked;
}

// The group a peer frame names, as Router::PublishFromPeer finds it.
template <typename Result>
const MatchResult::Group* FindListedGroup(const Result& r, std::string_view name) {
  if constexpr (requires { r.FindGroup(name); }) {
    return r.FindGroup(name);
  } else {  // before: a linear search of the group list per listed name
    auto it = std::find_if(r.groups.begin(), r.groups.end(),
                           [name](const MatchResult::Group& g) { return g.name == name; });
    return it == r.groups.end() ? nullptr : &*it;
  }
}

// Does this MatchCache count its misses? (Before item 5 it did not.)
template <typename Cache>
constexpr bool kCountsMisses = requires(const Cache& c) { c.misses(); };

template <typename Cache>
uint64_t MissesOf(const Cache& cache) {
  if constexpr (kCountsMisses<Cache>) {
    return cache.misses();
  } else {
    return 0;
  }
}

// A publish that misses the cache: match all groups, then pick one member of
// each (what every publish paid before while any SUB/UNSUB churned).
void BM_MatchAndPick(benchmark::State& state) {
  GroupedIndex gi(static_cast<int>(state.range(0)));
  std::mt19937_64 rng(1);
  for (auto _ : state) {
    auto r = gi.index.Match("orders.new");
    benchmark::DoNotOptimize(PickAll(*r, rng));
  }
  state.counters["groups"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_MatchAndPick)->Arg(1000)->Arg(10000)->Arg(50000)->Unit(benchmark::kMillisecond);

// A publish that hits the cache: pick one member of each group.
void BM_CachedPick(benchmark::State& state) {
  GroupedIndex gi(static_cast<int>(state.range(0)));
  MatchCache cache(&gi.index);
  std::mt19937_64 rng(1);
  for (auto _ : state) benchmark::DoNotOptimize(PickAll(*cache.Lookup("orders.new"), rng));
  state.counters["groups"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_CachedPick)->Arg(1000)->Arg(10000)->Arg(50000)->Unit(benchmark::kMillisecond);

// PublishFromPeer: the frame lists every group (the sender chose this node
// for all of them); find each in the cached result.
void BM_PeerFrameGroupLookup(benchmark::State& state) {
  GroupedIndex gi(static_cast<int>(state.range(0)));
  MatchCache cache(&gi.index);
  std::vector<std::string_view> listed(gi.names.begin(), gi.names.end());
  std::shuffle(listed.begin(), listed.end(), std::mt19937_64(2));
  for (auto _ : state) {
    const MatchResult* r = cache.Lookup("orders.new");
    size_t found = 0;
    for (std::string_view name : listed) found += FindListedGroup(*r, name) != nullptr;
    benchmark::DoNotOptimize(found);
  }
  state.counters["groups"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_PeerFrameGroupLookup)->Arg(1000)->Arg(10000)->Arg(50000)->Unit(benchmark::kMillisecond);

constexpr int kHot = 64;

// 64 hot subjects, each with a subscriber, and a 100-member queue group
// ("prices.*.*") they all match.
struct HotSubjects {
  HotSubjects() {
    for (int i = 0; i < kHot; ++i) {
      hot.push_back("prices.eu." + std::to_string(i));
      Add(hot.back(), "", "p" + std::to_string(i));
    }
    for (int m = 0; m < 100; ++m) Add("prices.*.*", "workers", "w" + std::to_string(m));
  }
  ~HotSubjects() {
    for (Subscription* s : subs) {
      index.Remove(s);
      s->Unref();
    }
    endpoint->Unref();
  }
  void Add(const std::string& subject, const std::string& queue, const std::string& sid) {
    auto* s = new Subscription(endpoint, subject, queue, sid, false);
    index.Insert(s);
    subs.push_back(s);
  }
  BenchEndpoint* endpoint = new BenchEndpoint;
  SubjectIndex index;
  std::vector<Subscription*> subs;
  std::vector<std::string> hot;
};

// Cached lookups of the hot subjects, with one SUB+UNSUB of a unique
// unrelated subject on this thread after every `range(0)` lookups: the
// deterministic form of churn (time per lookup includes the change). With
// `range(1)` the churned subjects end in a wildcard ("_INBOX.<n>.*"), which a
// cache checks against each entry; `range(2)` more subjects are cached.
void BM_LookupWithInterleavedChurn(benchmark::State& state) {
  HotSubjects h;
  BenchEndpoint* other = new BenchEndpoint;
  MatchCache cache(&h.index);
  const uint64_t every = static_cast<uint64_t>(state.range(0));
  const bool wildcard = state.range(1) != 0;
  for (int64_t i = 0; i < state.range(2); ++i) cache.Lookup("cold.subject." + std::to_string(i));
  uint64_t lookups = 0, misses = 0, changes = 0;
  std::vector<uint64_t> cached_at(kHot, 0);  // before: the generation each subject was matched at
  for (auto _ : state) {
    const size_t at = lookups % kHot;
    if constexpr (!kCountsMisses<MatchCache>) {
      const uint64_t g = h.index.generation();
      if (cached_at[at] != g) ++misses;
      cached_at[at] = g;
    }
    benchmark::DoNotOptimize(cache.Lookup(h.hot[at]));
    if (++lookups % every == 0) {
      auto* s = new Subscription(other, "_INBOX.req." + std::to_string(changes++) + (wildcard ? ".*" : ""), "",
                                 "c", false);
      h.index.Insert(s);
      h.index.Remove(s);
      s->Unref();
    }
  }
  if constexpr (kCountsMisses<MatchCache>) misses = MissesOf(cache) - static_cast<uint64_t>(state.range(2));
  state.counters["hit_rate"] = 1.0 - static_cast<double>(misses) / static_cast<double>(lookups);
  other->Unref();
}
BENCHMARK(BM_LookupWithInterleavedChurn)
    ->ArgNames({"every", "wildcard", "cold"})
    ->Args({1, 0, 0})
    ->Args({16, 0, 0})
    ->Args({256, 0, 0})
    ->Args({16, 1, 0})
    ->Args({16, 1, 3000})
    ->Args({16, 0, 3000});

// Cached lookups of the hot subjects while another thread SUBs and UNSUBs
// unique unrelated subjects, `range(0)` pairs per second (0: as fast as it
// can). On a busy machine the two threads may rarely overlap: read the
// rate-limited rows.
void BM_LookupUnderChurn(benchmark::State& state) {
  HotSubjects h;
  SubjectIndex& index = h.index;
  const std::vector<std::string>& hot = h.hot;
  const int64_t rate = state.range(0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> pairs{0};
  std::thread churn([&] {
    BenchEndpoint* other = new BenchEndpoint;
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      if (rate > 0) {
        const auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(i * 1'000'000'000 / rate));
        std::this_thread::sleep_until(due);
      }
      auto* s = new Subscription(other, "_INBOX.churn." + std::to_string(i), "", "c", false);
      index.Insert(s);
      index.Remove(s);
      s->Unref();
      pairs.fetch_add(1, std::memory_order_relaxed);
    }
    other->Unref();
  });

  MatchCache cache(&index);
  uint64_t lookups = 0, misses = 0;
  std::vector<uint64_t> cached_at(kHot, 0);  // before: the generation each subject was matched at
  size_t i = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const size_t at = i++ % kHot;
    if constexpr (!kCountsMisses<MatchCache>) {
      // before: any change empties the cache, so each subject matches again
      const uint64_t g = index.generation();
      if (cached_at[at] != g) ++misses;
      cached_at[at] = g;
    }
    benchmark::DoNotOptimize(cache.Lookup(hot[at]));
    ++lookups;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop.store(true);
  churn.join();
  if constexpr (kCountsMisses<MatchCache>) misses = MissesOf(cache);
  state.counters["hit_rate"] = lookups ? 1.0 - static_cast<double>(misses) / static_cast<double>(lookups) : 0;
  state.counters["churn_pairs_per_s"] = static_cast<double>(pairs.load()) / seconds;
}
BENCHMARK(BM_LookupUnderChurn)->Arg(0)->Arg(1000)->Arg(10000)->Unit(benchmark::kNanosecond)->UseRealTime();

}  // namespace
}  // namespace zmesh::server

BENCHMARK_MAIN();

// /subsz: the subject index. num_cache sums the workers' match caches (read
// on each worker); ?test=<subject> reports which subscriptions a message on
// that subject would reach, local clients and remote interest counted
// apart; ?subs=1 lists subscriptions (the matching ones with test), paged.
//
// Bounded like the traffic it watches: ?test= is answered on an I/O worker
// through its MatchCache, exactly as a publish on that subject would be
// matched (a hit costs nothing, a miss one Match that later publishes reuse);
// the plain listing walks the index under its reader lock for at most
// offset+limit entries, capped at kMaxSubszWalk, and renders the page only
// after the lock is released.

#include <functional>
#include <optional>

#include "proto/subject.h"
#include "server/match_cache.h"
#include "server/monitor/endpoints.h"
#include "server/monitor/format.h"
#include "server/monitor/worker_fanout.h"
#include "server/server_context.h"
#include "server/subscriber_endpoint.h"
#include "server/subscription.h"

namespace zmesh::server::monitor {
namespace {

// Any thread: a subscription's fields that other threads may read are
// immutable or atomic, and its owner lives as long as it does.
nlohmann::json SubscriptionJson(const Subscription& s) {
  nlohmann::json j = {{"subject", s.subject()}};
  if (s.is_queue()) j["qgroup"] = s.queue();
  if (s.remote()) {
    j["remote"] = true;
    if (s.owner()->kind() == SubscriberEndpoint::Kind::kPeer) j["node_id"] = s.owner()->remote_node_id();
    if (s.is_queue()) j["weight"] = s.weight();
  } else {
    j["sid"] = s.sid();
    if (s.owner()->kind() == SubscriberEndpoint::Kind::kClient) j["cid"] = s.owner()->connection_id();
    j["msgs"] = s.delivered();
    if (s.max_msgs() != 0) j["max"] = s.max_msgs();
  }
  return j;
}

// Pages through a stream of subscriptions, counting them all.
struct Pager {
  int64_t offset, limit;
  size_t total = 0;
  nlohmann::json list = nlohmann::json::array();
  void Add(const Subscription& s) {
    const int64_t index = static_cast<int64_t>(total++);
    if (index >= offset && index - offset < limit) list.push_back(SubscriptionJson(s));
  }
};

// What one worker answers: its match cache's size and, on the worker chosen
// for ?test=, the match.
struct WorkerPart {
  size_t cached = 0;
  std::optional<nlohmann::json> matches;
  std::optional<Pager> pager;
};

// Worker thread: matches `test` through the worker's MatchCache, the way a
// publish on it is matched. The result is read before the next Lookup.
WorkerPart TestOnWorker(IoWorker* w, const std::string& test, bool list, int64_t offset, int64_t limit) {
  WorkerPart part;
  const MatchResult* match = w->match_cache().Lookup(test);
  Pager pager{offset, limit};
  size_t local = 0, remote = 0;
  auto count = [&](const Subscription* s) {
    if (s->closed()) return;
    (s->remote() ? remote : local)++;
    if (list) pager.Add(*s);
  };
  for (const Subscription* s : match->plain) count(s);
  for (const MatchResult::Group& g : match->groups) {
    for (const Subscription* s : g.members) count(s);
  }
  part.matches = nlohmann::json{{"local", local}, {"remote", remote}, {"queue_groups", match->groups.size()}};
  if (list) part.pager = std::move(pager);
  part.cached = w->match_cache().size();
  return part;
}

// Main loop: the first min(offset+limit, kMaxSubszWalk) entries of the index
// under its reader lock, keeping references to the page only; rendered after.
nlohmann::json ListIndexPage(const SubjectIndex& index, int64_t offset, int64_t limit, bool* truncated) {
  const int64_t wanted = offset > kMaxSubszWalk - limit ? kMaxSubszWalk : offset + limit;
  const int64_t stop = std::min<int64_t>(wanted, kMaxSubszWalk);
  std::vector<SubscriptionRef> page;
  int64_t seen = 0;
  if (offset < stop) {
    index.ForEachWhile([&](Subscription* s) {
      if (seen >= offset) page.emplace_back(s);
      return ++seen < stop;
    });
  }
  *truncated = offset > kMaxSubszWalk - limit && index.size() > static_cast<size_t>(stop);
  nlohmann::json list = nlohmann::json::array();
  for (const SubscriptionRef& s : page) list.push_back(SubscriptionJson(*s.get()));
  return list;
}

}  // namespace

void ServeSubsz(MonitorContext& mc, const Query& query, Respond respond) {
  const SubjectIndex& index = mc.sources.ctx->index;
  const bool list = query.Flag("subs") || query.Get("subs") == "detail";
  int64_t offset = 0, limit = 0;
  std::string error;
  if (!query.Int("offset", 0, 0, INT64_MAX, &offset, &error) ||
      !query.Int("limit", kDefaultListLimit, 0, kMaxListLimit, &limit, &error)) {
    respond(ErrorResponse(400, error));
    return;
  }
  if (limit == 0) limit = kDefaultListLimit;
  const std::string* test_arg = query.Find("test");
  if (test_arg != nullptr && !proto::IsValidLiteralSubject(*test_arg)) {
    respond(ErrorResponse(400, "invalid test subject: '" + *test_arg + "' (a literal subject, no wildcards)"));
    return;
  }
  const std::vector<IoWorker*>& workers = mc.sources.workers;
  if (test_arg != nullptr && workers.empty()) {
    respond(ErrorResponse(503, "no I/O worker to match on"));
    return;
  }
  std::optional<std::string> test;
  if (test_arg != nullptr) test = *test_arg;
  // A fixed worker per subject, so repeated tests hit the same cache.
  IoWorker* tester = test ? workers[std::hash<std::string>{}(*test) % workers.size()] : nullptr;

  nlohmann::json j = {
      {"server_id", mc.identity.server_id},
      {"now", Rfc3339(UnixNowMs())},
      {"num_subscriptions", index.size()},
  };
  if (list && !test) {
    bool truncated = false;
    j["subscriptions_list"] = ListIndexPage(index, offset, limit, &truncated);
    j["total"] = index.size();
    j["offset"] = offset;
    j["limit"] = limit;
    if (truncated) j["truncated"] = true;
  }
  // The match caches are worker-thread state: ask each worker for its size,
  // and the chosen one for the test match.
  CollectFromWorkers<WorkerPart>(
      workers, mc.sources.main_loop,
      [tester, test, list, offset, limit](IoWorker* w) {
        if (w == tester) return TestOnWorker(w, *test, list, offset, limit);
        WorkerPart part;
        part.cached = w->match_cache().size();
        return part;
      },
      [j = std::move(j), test, list, offset, limit,
       respond = std::move(respond)](std::vector<WorkerPart> parts) mutable {
        size_t cached = 0;
        for (WorkerPart& p : parts) {
          cached += p.cached;
          if (!p.matches) continue;
          j["test"] = *test;
          j["matches"] = std::move(*p.matches);
          if (list && p.pager) {
            j["total"] = p.pager->total;
            j["offset"] = offset;
            j["limit"] = limit;
            j["subscriptions_list"] = std::move(p.pager->list);
          }
        }
        j["num_cache"] = cached;
        respond(JsonResponse(j));
      });
}

}  // namespace zmesh::server::monitor

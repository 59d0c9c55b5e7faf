// /subsz: the subject index. num_cache sums the workers' match caches (read
// on each worker); ?test=<subject> reports which subscriptions a message on
// that subject would reach, local clients and remote interest counted
// apart; ?subs=1 lists subscriptions (the matching ones with test), paged.

#include "proto/subject.h"
#include "server/connection.h"
#include "server/mesh/peer_node.h"
#include "server/monitor/endpoints.h"
#include "server/monitor/format.h"
#include "server/monitor/worker_fanout.h"
#include "server/server_context.h"

namespace zmesh::server::monitor {
namespace {

// Any thread: a subscription's fields that other threads may read are
// immutable or atomic, and its owner lives as long as it does.
nlohmann::json SubscriptionJson(const Subscription& s) {
  nlohmann::json j = {{"subject", s.subject()}};
  if (s.is_queue()) j["qgroup"] = s.queue();
  if (s.remote()) {
    j["remote"] = true;
    if (s.owner()->kind() == SubscriberEndpoint::Kind::kPeer) {
      j["node_id"] = static_cast<const mesh::PeerNode*>(s.owner())->node_id();
    }
    if (s.is_queue()) j["weight"] = s.weight();
  } else {
    j["sid"] = s.sid();
    if (s.owner()->kind() == SubscriberEndpoint::Kind::kClient) {
      j["cid"] = static_cast<const Connection*>(s.owner())->id();
    }
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
  const std::string* test = query.Find("test");
  if (test != nullptr && !proto::IsValidLiteralSubject(*test)) {
    respond(ErrorResponse(400, "invalid test subject: '" + *test + "' (a literal subject, no wildcards)"));
    return;
  }

  nlohmann::json j = {
      {"server_id", mc.identity.server_id},
      {"now", Rfc3339(UnixNowMs())},
      {"num_subscriptions", index.size()},
  };
  Pager pager{offset, limit};
  if (test != nullptr) {
    const std::unique_ptr<MatchResult> match = index.Match(*test);
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
    j["test"] = *test;
    j["matches"] = {{"local", local}, {"remote", remote}, {"queue_groups", match->groups.size()}};
  } else if (list) {
    // Under the index's reader lock: bounded work per entry, and only the
    // page itself is copied.
    index.ForEach([&pager](const Subscription* s) { pager.Add(*s); });
  }
  if (list) {
    j["total"] = pager.total;
    j["offset"] = offset;
    j["limit"] = limit;
    j["subscriptions_list"] = std::move(pager.list);
  }
  // The match caches are worker-thread state: ask each worker for its size.
  CollectFromWorkers<size_t>(
      mc.sources.workers, mc.sources.main_loop, [](IoWorker* w) { return w->match_cache().size(); },
      [j = std::move(j), respond = std::move(respond)](std::vector<size_t> sizes) mutable {
        size_t cached = 0;
        for (size_t n : sizes) cached += n;
        j["num_cache"] = cached;
        respond(JsonResponse(j));
      });
}

}  // namespace zmesh::server::monitor

// /connz: nats-server's query parameters and JSON shape. Open connections are
// read on their workers (CollectOpenConnections); closed ones come from
// ServerContext::closed with their reason. With subs=1 the page is chosen
// first, from the connections' metadata, and only the page's connections
// then have their subjects copied (CollectSubjects), at most
// kMaxConnzSubjects each: the cost follows the page, not the node.

#include "server/monitor/connz.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>

#include "server/monitor/endpoints.h"
#include "server/monitor/format.h"
#include "server/server_context.h"

namespace zmesh::server::monitor {
namespace {

using Less = std::function<bool(const ConnectionInfo&, const ConnectionInfo&)>;

int64_t UptimeMs(const ConnectionInfo& c, int64_t now) { return (c.closed ? c.stop_unix_ms : now) - c.start_unix_ms; }

// The primary order of each sort option; ties keep cid order. Counts sort
// largest first, as nats-server does.
bool SortOrder(const std::string& sort, int64_t now, Less* less) {
  auto desc = [](auto field) {
    return Less([field](const ConnectionInfo& a, const ConnectionInfo& b) { return field(a) > field(b); });
  };
  if (sort == "cid" || sort == "rtt") {  // rtt: not measured for clients, so cid order
    *less = [](const ConnectionInfo&, const ConnectionInfo&) { return false; };
  } else if (sort == "start") {
    *less = [](const ConnectionInfo& a, const ConnectionInfo& b) { return a.start_unix_ms < b.start_unix_ms; };
  } else if (sort == "subs") {
    *less = desc([](const ConnectionInfo& c) { return c.subscriptions; });
  } else if (sort == "pending") {
    *less = desc([](const ConnectionInfo& c) { return c.pending_bytes; });
  } else if (sort == "msgs_to") {
    *less = desc([](const ConnectionInfo& c) { return c.out_msgs; });
  } else if (sort == "msgs_from") {
    *less = desc([](const ConnectionInfo& c) { return c.in_msgs; });
  } else if (sort == "bytes_to") {
    *less = desc([](const ConnectionInfo& c) { return c.out_bytes; });
  } else if (sort == "bytes_from") {
    *less = desc([](const ConnectionInfo& c) { return c.in_bytes; });
  } else if (sort == "last") {
    *less = desc([](const ConnectionInfo& c) { return c.last_activity_unix_ms; });
  } else if (sort == "idle") {
    *less = desc([now](const ConnectionInfo& c) { return now - c.last_activity_unix_ms; });
  } else if (sort == "uptime") {
    *less = desc([now](const ConnectionInfo& c) { return UptimeMs(c, now); });
  } else if (sort == "stop") {
    *less = desc([](const ConnectionInfo& c) { return c.stop_unix_ms; });
  } else if (sort == "reason") {
    *less = [](const ConnectionInfo& a, const ConnectionInfo& b) { return a.reason < b.reason; };
  } else {
    return false;
  }
  return true;
}

nlohmann::json ConnectionJson(const ConnectionInfo& c, bool subs, int64_t now) {
  nlohmann::json j = {
      {"cid", c.cid},
      {"kind", "Client"},
      {"type", "nats"},
      {"ip", c.ip},
      {"port", c.port},
      {"start", Rfc3339(c.start_unix_ms)},
      {"last_activity", Rfc3339(c.last_activity_unix_ms)},
  };
  // "rtt" is left out, as nats-server leaves it out while unmeasured: zmesh
  // does not time client PINGs.
  if (c.closed) {
    j["stop"] = Rfc3339(c.stop_unix_ms);
    j["reason"] = c.reason;
  }
  j["uptime"] = UptimeString(UptimeMs(c, now));
  j["idle"] = UptimeString((c.closed ? c.stop_unix_ms : now) - c.last_activity_unix_ms);
  j["pending_bytes"] = c.pending_bytes;
  j["in_msgs"] = c.in_msgs;
  j["out_msgs"] = c.out_msgs;
  j["in_bytes"] = c.in_bytes;
  j["out_bytes"] = c.out_bytes;
  j["subscriptions"] = c.subscriptions;
  // nats-server omits empty client strings.
  if (!c.name.empty()) j["name"] = c.name;
  if (!c.lang.empty()) j["lang"] = c.lang;
  if (!c.version.empty()) j["version"] = c.version;
  if (!c.user.empty()) j["authorized_user"] = c.user;
  if (c.move) {
    char token[17];
    std::snprintf(token, sizeof(token), "%016llx", static_cast<unsigned long long>(c.move->token));
    j["move"] = {{"end", c.move->incoming ? "new" : "old"},
                 {"token", token},
                 {"cuts_complete", c.move->complete},
                 {"finished", c.move->finished},
                 {"withheld_msgs", c.move->withheld}};
  }
  if (subs && !c.subjects.empty()) j["subscriptions_list"] = c.subjects;
  if (subs && c.subjects_truncated) j["subscriptions_list_truncated"] = true;
  return j;
}

}  // namespace

bool ParseConnzOptions(const Query& query, ConnzOptions* o, std::string* error) {
  const std::string state = query.Get("state", "open");
  if (state == "open" || state.empty()) {
    o->state = ConnzOptions::State::kOpen;
  } else if (state == "closed") {
    o->state = ConnzOptions::State::kClosed;
  } else if (state == "all" || state == "any") {
    o->state = ConnzOptions::State::kAll;
  } else {
    *error = "invalid state: '" + state + "' (open, closed or all)";
    return false;
  }
  o->sort = query.Get("sort", "cid");
  if (o->sort.empty()) o->sort = "cid";
  Less unused;
  if (!SortOrder(o->sort, 0, &unused)) {
    *error = "invalid sorting option: '" + o->sort + "'";
    return false;
  }
  if ((o->sort == "stop" || o->sort == "reason") && o->state == ConnzOptions::State::kOpen) {
    *error = "sort by " + o->sort + " needs state=closed (or all)";
    return false;
  }
  o->subs = query.Flag("subs") || query.Get("subs") == "detail";
  int64_t cid = 0;
  if (!query.Int("offset", 0, 0, INT64_MAX, &o->offset, error) ||
      !query.Int("limit", kDefaultListLimit, 0, kMaxListLimit, &o->limit, error) ||
      !query.Int("cid", 0, 0, INT64_MAX, &cid, error)) {
    return false;
  }
  if (o->limit == 0) o->limit = kDefaultListLimit;  // nats-server: 0 means the default
  o->cid = static_cast<uint64_t>(cid);
  return true;
}

std::vector<ConnectionInfo> SelectConnzPage(const ConnzOptions& o, std::vector<ConnectionInfo> conns, int64_t now,
                                            size_t* total) {
  if (o.cid != 0) {
    std::erase_if(conns, [&o](const ConnectionInfo& c) { return c.cid != o.cid; });
  }
  Less less;
  SortOrder(o.sort, now, &less);
  std::sort(conns.begin(), conns.end(), [&less](const ConnectionInfo& a, const ConnectionInfo& b) {
    if (less(a, b)) return true;
    if (less(b, a)) return false;
    return a.cid < b.cid;
  });
  *total = conns.size();
  const size_t begin = std::min<size_t>(static_cast<size_t>(o.offset), conns.size());
  const size_t end = std::min<size_t>(begin + static_cast<size_t>(o.limit), conns.size());
  std::vector<ConnectionInfo> page;
  page.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) page.push_back(std::move(conns[i]));
  return page;
}

nlohmann::json RenderConnz(const ConnzOptions& o, const std::vector<ConnectionInfo>& page, size_t total,
                           const std::string& server_id, int64_t now) {
  nlohmann::json list = nlohmann::json::array();
  for (const ConnectionInfo& c : page) list.push_back(ConnectionJson(c, o.subs, now));
  return {
      {"server_id", server_id},
      {"now", Rfc3339(now)},
      {"num_connections", page.size()},
      {"total", total},
      {"offset", o.offset},
      {"limit", o.limit},
      {"connections", std::move(list)},
  };
}

nlohmann::json BuildConnz(const ConnzOptions& o, std::vector<ConnectionInfo> conns, const std::string& server_id,
                          int64_t now) {
  size_t total = 0;
  std::vector<ConnectionInfo> page = SelectConnzPage(o, std::move(conns), now, &total);
  return RenderConnz(o, page, total, server_id, now);
}

void ServeConnz(MonitorContext& mc, const Query& query, Respond respond) {
  ConnzOptions options;
  std::string error;
  if (!ParseConnzOptions(query, &options, &error)) {
    respond(ErrorResponse(400, error));
    return;
  }
  std::vector<ConnectionInfo> closed;
  if (options.state != ConnzOptions::State::kOpen) {
    for (const ClosedConnection& c : mc.sources.ctx->closed.Snapshot()) closed.push_back(FromClosed(c));
  }
  std::string server_id = mc.identity.server_id;
  if (options.state == ConnzOptions::State::kClosed) {
    respond(JsonResponse(BuildConnz(options, std::move(closed), server_id, UnixNowMs())));
    return;
  }
  // Everything the answer needs is captured by value: it is built later, on
  // the main loop, once every worker has answered.
  MonitorSources sources = mc.sources;
  CollectOpenConnections(
      mc.sources, [sources = std::move(sources), options, closed = std::move(closed),
                   server_id = std::move(server_id),
                   respond = std::move(respond)](std::vector<ConnectionInfo> open) mutable {
        for (ConnectionInfo& c : closed) open.push_back(std::move(c));
        const int64_t now = UnixNowMs();
        size_t total = 0;
        auto page = std::make_shared<std::vector<ConnectionInfo>>(SelectConnzPage(options, std::move(open), now, &total));
        std::vector<uint64_t> cids;
        if (options.subs) {
          for (const ConnectionInfo& c : *page) {
            if (!c.closed && c.subscriptions > 0) cids.push_back(c.cid);
          }
        }
        if (cids.empty()) {
          respond(JsonResponse(RenderConnz(options, *page, total, server_id, now)));
          return;
        }
        CollectSubjects(sources, std::move(cids), kMaxConnzSubjects,
                        [page, total, options, server_id, now, respond = std::move(respond)](SubjectsByCid found) {
                          for (ConnectionInfo& c : *page) {
                            auto it = found.find(c.cid);
                            if (it == found.end()) continue;
                            c.subjects = std::move(it->second.subjects);
                            c.subjects_truncated = it->second.truncated;
                          }
                          respond(JsonResponse(RenderConnz(options, *page, total, server_id, now)));
                        });
      });
}

}  // namespace zmesh::server::monitor

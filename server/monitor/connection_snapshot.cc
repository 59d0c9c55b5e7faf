#include "server/monitor/connection_snapshot.h"

#include <absl/container/flat_hash_set.h>

#include <algorithm>
#include <memory>

#include "server/client_connection.h"
#include "server/closed_connections.h"
#include "server/event_loop.h"
#include "server/move_filter.h"
#include "server/monitor/format.h"
#include "server/monitor/worker_fanout.h"
#include "server/subscription.h"

namespace zmesh::server::monitor {
namespace {

using Parts = std::vector<std::vector<ConnectionInfo>>;

// Worker thread: the worker's own connections are safe to read here.
std::vector<ConnectionInfo> SnapshotWorker(IoWorker* worker) {
  std::vector<ConnectionInfo> out;
  const int64_t now_unix = UnixNowMs();
  const int64_t now_mono = MonotonicMs();
  worker->ForEachConnection([&](Connection* conn) {
    if (conn->kind() != SubscriberEndpoint::Kind::kClient || conn->closing()) return;
    const auto* c = static_cast<ClientConnection*>(conn);
    ConnectionInfo info;
    info.cid = c->id();
    info.ip = c->remote_ip();
    info.port = c->remote_port();
    info.start_unix_ms = c->created_unix_ms();
    // last_read_ms is monotonic: place it on the wall clock relative to now.
    info.last_activity_unix_ms = now_unix - (now_mono - c->last_read_ms());
    info.pending_bytes = conn->out().pending_bytes();
    info.in_msgs = c->in_msgs();
    info.in_bytes = c->in_bytes();
    info.out_msgs = conn->out().out_msgs();
    info.out_bytes = conn->out().out_bytes();
    info.subscriptions = c->subscription_count();
    info.name = c->name();
    info.lang = c->lang();
    info.version = c->version();
    info.user = c->user();
    if (const MoveFilter* m = c->move()) {
      info.move = ConnectionInfo::Move{m->side() == MoveFilter::Side::kIncoming, m->token(), m->complete(),
                                       m->finished(), m->withheld()};
    }
    out.push_back(std::move(info));
  });
  return out;
}

// Worker thread: the subjects of the worker's connections in `cids`, at most
// `max` each.
SubjectsByCid SubjectsOnWorker(IoWorker* worker, const absl::flat_hash_set<uint64_t>& cids, size_t max) {
  SubjectsByCid out;
  worker->ForEachConnection([&](Connection* conn) {
    if (conn->kind() != SubscriberEndpoint::Kind::kClient || conn->closing() || !cids.contains(conn->id())) return;
    const auto* c = static_cast<ClientConnection*>(conn);
    SubjectList& list = out[c->id()];
    list.subjects.reserve(std::min(max, c->subscription_count()));
    list.truncated = c->subscription_count() > max;
    c->ForEachSubscriptionWhile([&list, max](const Subscription& s) {
      if (list.subjects.size() >= max) return false;
      list.subjects.push_back(s.subject());
      return true;
    });
  });
  return out;
}

// Main loop: one round of CollectSubjects per kConnectionsPerRound cids.
struct SubjectRounds {
  MonitorSources sources;
  std::vector<uint64_t> cids;
  size_t max = 0;
  size_t next = 0;  // first cid of the next round
  SubjectsByCid found;
  std::function<void(SubjectsByCid)> done;
};

void RunSubjectRound(std::shared_ptr<SubjectRounds> rounds) {
  if (rounds->next >= rounds->cids.size()) {
    rounds->done(std::move(rounds->found));
    return;
  }
  const size_t end = std::min(rounds->cids.size(), rounds->next + kConnectionsPerRound);
  auto cids = std::make_shared<const absl::flat_hash_set<uint64_t>>(rounds->cids.begin() + rounds->next,
                                                                    rounds->cids.begin() + end);
  rounds->next = end;
  const size_t max = rounds->max;
  CollectFromWorkers<SubjectsByCid>(
      rounds->sources.workers, rounds->sources.main_loop,
      [cids, max](IoWorker* w) { return SubjectsOnWorker(w, *cids, max); },
      [rounds](std::vector<SubjectsByCid> parts) {
        for (SubjectsByCid& part : parts) {
          for (auto& [cid, list] : part) rounds->found[cid] = std::move(list);
        }
        RunSubjectRound(rounds);
      });
}

}  // namespace

void CollectOpenConnections(const MonitorSources& sources, std::function<void(std::vector<ConnectionInfo>)> done) {
  CollectFromWorkers<std::vector<ConnectionInfo>>(
      sources.workers, sources.main_loop, [](IoWorker* w) { return SnapshotWorker(w); },
      [done = std::move(done)](Parts parts) {
        std::vector<ConnectionInfo> all;
        for (auto& part : parts) {
          for (auto& c : part) all.push_back(std::move(c));
        }
        done(std::move(all));
      });
}

void CollectSubjects(const MonitorSources& sources, std::vector<uint64_t> cids, size_t max_per_connection,
                     std::function<void(SubjectsByCid)> done) {
  auto rounds = std::make_shared<SubjectRounds>();
  rounds->sources = sources;
  rounds->cids = std::move(cids);
  rounds->max = max_per_connection;
  rounds->done = std::move(done);
  RunSubjectRound(std::move(rounds));
}

ConnectionInfo FromClosed(const ClosedConnection& c) {
  ConnectionInfo info;
  info.cid = c.cid;
  info.ip = c.ip;
  info.port = c.port;
  info.start_unix_ms = c.start_unix_ms;
  info.stop_unix_ms = c.stop_unix_ms;
  info.last_activity_unix_ms = c.stop_unix_ms;
  info.closed = true;
  info.reason = c.reason;
  info.in_msgs = c.in_msgs;
  info.in_bytes = c.in_bytes;
  info.out_msgs = c.out_msgs;
  info.out_bytes = c.out_bytes;
  info.subscriptions = c.subscriptions;
  info.name = c.name;
  info.lang = c.lang;
  info.version = c.version;
  info.user = c.user;
  return info;
}

}  // namespace zmesh::server::monitor

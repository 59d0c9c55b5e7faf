#include "server/monitor/connection_snapshot.h"

#include "server/client_connection.h"
#include "server/closed_connections.h"
#include "server/event_loop.h"
#include "server/monitor/format.h"
#include "server/monitor/worker_fanout.h"
#include "server/subscription.h"

namespace zmesh::server::monitor {
namespace {

using Parts = std::vector<std::vector<ConnectionInfo>>;

// Worker thread: the worker's own connections are safe to read here.
std::vector<ConnectionInfo> SnapshotWorker(IoWorker* worker, bool with_subjects) {
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
    if (with_subjects) {
      info.subjects.reserve(info.subscriptions);
      c->ForEachSubscription([&info](const Subscription& s) { info.subjects.push_back(s.subject()); });
    }
    out.push_back(std::move(info));
  });
  return out;
}

}  // namespace

void CollectOpenConnections(const MonitorSources& sources, bool with_subjects,
                            std::function<void(std::vector<ConnectionInfo>)> done) {
  CollectFromWorkers<std::vector<ConnectionInfo>>(
      sources.workers, sources.main_loop,
      [with_subjects](IoWorker* w) { return SnapshotWorker(w, with_subjects); },
      [done = std::move(done)](Parts parts) {
        std::vector<ConnectionInfo> all;
        for (auto& part : parts) {
          for (auto& c : part) all.push_back(std::move(c));
        }
        done(std::move(all));
      });
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

#pragma once

// The monitoring HTTP server (--http_listen): libevent's evhttp on the
// server's main loop, routing GET requests to the endpoints (endpoints.h).
// Endpoints that need connection state collect it from the I/O workers and
// answer later; evhttp lets a request stay open until then.
//
// Threading: everything here runs on the main loop thread — Start (which may
// also run before the loop does), Stop, and every request. evhttp objects are
// never touched elsewhere.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "server/monitor/endpoints.h"
#include "server/monitor/monitor_context.h"
#include "server/options.h"

struct evhttp;
struct evhttp_request;

namespace zmesh::server::monitor {

class HttpMonitor {
 public:
  // Requests waiting for the workers at once; more get 503 at once, so a
  // scraper loop cannot pile up work or memory.
  static constexpr size_t kMaxPendingRequests = 64;

  explicit HttpMonitor(MonitorSources sources);
  ~HttpMonitor();
  HttpMonitor(const HttpMonitor&) = delete;
  HttpMonitor& operator=(const HttpMonitor&) = delete;

  // Binds `address` (port 0 picks a free port) and serves. Main thread.
  bool Start(const HostPort& address, std::string* error);
  // Answers what is still waiting with 503, closes every HTTP connection
  // and the socket. Idempotent. Main thread.
  void Stop();

  // The bound address (valid after Start).
  const HostPort& bound() const { return bound_; }

 private:
  using Handler = void (*)(MonitorContext&, const Query&, Respond);
  struct Pending;

  static void OnRequest(evhttp_request* req, void* arg);
  void HandleRequest(evhttp_request* req);
  Respond MakeResponder(std::shared_ptr<Pending> pending);
  static void Send(evhttp_request* req, const HttpResponse& response, bool allow_header = false);

  MonitorSources sources_;
  std::shared_ptr<MonitorContext> context_;  // reset by Stop: late answers see it gone
  evhttp* http_ = nullptr;
  HostPort bound_;
  std::map<std::string, Handler> routes_;
  std::set<std::shared_ptr<Pending>> pending_;
};

}  // namespace zmesh::server::monitor

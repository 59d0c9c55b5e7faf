#include "server/monitor/http_monitor.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "server/event_loop.h"
#include "server/listener.h"
#include "server/server_context.h"

namespace zmesh::server::monitor {
namespace {

// A GET carries no body, and monitoring URLs are short.
constexpr ev_ssize_t kMaxHeadersBytes = 8 * 1024;
constexpr ev_ssize_t kMaxBodyBytes = 1024;
// Idle or stuck HTTP connections are dropped after this long.
constexpr int kHttpTimeoutSeconds = 30;

const char* ReasonPhrase(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

void ServeIndex(MonitorContext&, const Query&, Respond respond) {
  HttpResponse r;
  r.content_type = "text/plain; charset=utf-8";
  r.body = "zmesh monitoring: /healthz /varz /connz /subsz /peerz /metrics\n";
  respond(std::move(r));
}

}  // namespace

// An answer not given yet. `req` stays valid until evhttp_send_reply (evhttp
// keeps a request whose client went away until the reply is sent) or until
// evhttp_free in Stop.
struct HttpMonitor::Pending {
  explicit Pending(evhttp_request* r) : req(r) {}
  evhttp_request* req;
  bool done = false;
};

HttpMonitor::HttpMonitor(MonitorSources sources) : sources_(std::move(sources)) {
  routes_ = {
      {"/", &ServeIndex},           {"/healthz", &ServeHealthz}, {"/varz", &ServeVarz},
      {"/connz", &ServeConnz},      {"/subsz", &ServeSubsz},     {"/subscriptionsz", &ServeSubsz},
      {"/peerz", &ServePeerz},      {"/metrics", &ServeMetrics},
  };
}

HttpMonitor::~HttpMonitor() { Stop(); }

bool HttpMonitor::Start(const HostPort& address, std::string* error) {
  context_ = std::make_shared<MonitorContext>(sources_, IdentityOf(*sources_.ctx));
  http_ = evhttp_new(sources_.main_loop->base());
  if (http_ == nullptr) {
    *error = "evhttp_new failed";
    return false;
  }
  evhttp_set_max_headers_size(http_, kMaxHeadersBytes);
  evhttp_set_max_body_size(http_, kMaxBodyBytes);
  evhttp_set_timeout(http_, kHttpTimeoutSeconds);
  // Every method reaches our callback, which answers 405 itself (evhttp
  // would say 501 for a method it was told to refuse).
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                        EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                        EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(http_, &HttpMonitor::OnRequest, this);
  const std::string host = address.host.empty() ? "0.0.0.0" : address.host;
  evhttp_bound_socket* sock = evhttp_bind_socket_with_handle(http_, host.c_str(), static_cast<uint16_t>(address.port));
  if (sock == nullptr) {
    *error = "cannot listen for monitoring on " + HostPort{host, address.port}.ToString() + ": " +
             std::strerror(errno);
    evhttp_free(http_);
    http_ = nullptr;
    return false;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(evhttp_bound_socket_get_fd(sock), reinterpret_cast<sockaddr*>(&ss), &len);
  bound_ = HostPort{host, AddressOf(reinterpret_cast<sockaddr*>(&ss)).port};
  context_->http_address = bound_;
  LOG(INFO) << "monitoring on http://" << bound_.ToString() << " (/healthz /varz /connz /subsz /peerz /metrics)";
  return true;
}

void HttpMonitor::Stop() {
  sources_.main_loop->AssertInLoopThread();
  if (http_ == nullptr) return;
  for (const std::shared_ptr<Pending>& p : pending_) {
    if (p->done) continue;
    p->done = true;
    Send(p->req, ErrorResponse(503, "shutting down"));
  }
  pending_.clear();
  context_.reset();
  evhttp_free(http_);  // frees every connection and request
  http_ = nullptr;
}

void HttpMonitor::OnRequest(evhttp_request* req, void* arg) { static_cast<HttpMonitor*>(arg)->HandleRequest(req); }

void HttpMonitor::HandleRequest(evhttp_request* req) {
  sources_.main_loop->AssertInLoopThread();
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  std::string path = raw_path != nullptr && *raw_path != '\0' ? raw_path : "/";
  if (path.size() > 1 && path.back() == '/') path.pop_back();  // "/varz/" is "/varz"
  auto route = routes_.find(path);
  if (route == routes_.end()) {
    Send(req, ErrorResponse(404, "no such endpoint: " + path));
    return;
  }
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
    Send(req, ErrorResponse(405, "only GET is supported"), /*allow_header=*/true);
    return;
  }
  Query query;
  if (!query.Parse(uri != nullptr ? evhttp_uri_get_query(uri) : nullptr)) {
    Send(req, ErrorResponse(400, "malformed query string"));
    return;
  }
  if (pending_.size() >= kMaxPendingRequests) {
    Send(req, ErrorResponse(503, "too many monitoring requests in progress"));
    return;
  }
  ++context_->http_req_stats[path];
  auto pending = std::make_shared<Pending>(req);
  pending_.insert(pending);
  route->second(*context_, query, MakeResponder(std::move(pending)));
}

Respond HttpMonitor::MakeResponder(std::shared_ptr<Pending> pending) {
  std::weak_ptr<MonitorContext> alive = context_;
  return [this, alive = std::move(alive), pending = std::move(pending)](HttpResponse response) {
    // Stop() resets context_ (and answered everything): `this` may be gone.
    if (alive.expired() || pending->done) return;
    sources_.main_loop->AssertInLoopThread();
    pending->done = true;
    pending_.erase(pending);
    Send(pending->req, response);
  };
}

void HttpMonitor::Send(evhttp_request* req, const HttpResponse& response, bool allow_header) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", response.content_type.c_str());
  evhttp_add_header(headers, "Cache-Control", "no-cache");
  if (allow_header) evhttp_add_header(headers, "Allow", "GET, HEAD");
  evbuffer* body = evbuffer_new();
  if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
    // evhttp writes whatever body it is given, HEAD or not: send none, and
    // the length a GET would have.
    evhttp_add_header(headers, "Content-Length", std::to_string(response.body.size()).c_str());
  } else {
    evbuffer_add(body, response.body.data(), response.body.size());
  }
  evhttp_send_reply(req, response.code, ReasonPhrase(response.code), body);
  evbuffer_free(body);
}

}  // namespace zmesh::server::monitor

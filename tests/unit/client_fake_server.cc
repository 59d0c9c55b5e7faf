#include "tests/unit/client_fake_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <future>

#include "proto/connect.h"
#include "proto/msg_framing.h"
#include "proto/parser.h"
#include "proto/subject.h"

namespace zmesh::client::testing {

struct FakeServer::Conn {
  int fd = -1;
  bool connected = false;  // CONNECT received
  bool headers = false;
  bool no_responders = false;
  std::string in;
  int pings = 0;       // PINGs received; the first is the CONNECT handshake's
  int held_pongs = 0;  // PONGs owed while pongs are held
  std::string move_token;  // MOVE received with this token
  struct Sub {
    std::string subject;
    std::string queue;
    int64_t max = 0;
    int64_t count = 0;
  };
  std::map<std::string, Sub> subs;  // by sid
};

FakeServer::FakeServer(Config config) : config_(std::move(config)) {
  if (::pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) std::abort();
  OpenListener();
  thread_ = std::thread([this] { Loop(); });
}

FakeServer::~FakeServer() {
  stop_ = true;
  const char b = 'x';
  [[maybe_unused]] ssize_t n = ::write(wake_[1], &b, 1);
  thread_.join();
  CloseAll();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void FakeServer::OpenListener() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  ::listen(listen_fd_, 64);
  alive_ = true;
}

void FakeServer::Post(std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back([fn = std::move(fn), done] {
      fn();
      done->set_value();
    });
  }
  const char b = 'x';
  [[maybe_unused]] ssize_t n = ::write(wake_[1], &b, 1);
  fut.wait();
}

void FakeServer::CloseAll() {
  for (auto& c : conns_) {
    // RST instead of FIN, as a killed process's sockets mostly end.
    linger lg{1, 0};
    ::setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    ::close(c->fd);
  }
  conns_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  open_ = 0;
}

void FakeServer::Kill() {
  Post([this] {
    CloseAll();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    alive_ = false;
  });
}

void FakeServer::Restart() {
  Post([this] {
    if (listen_fd_ < 0) OpenListener();
  });
}

void FakeServer::SetAnswerPings(bool answer) { answer_pings_ = answer; }

void FakeServer::HoldPongs(bool hold) {
  Post([this, hold] {
    hold_pongs_ = hold;
    if (hold) return;
    for (auto& c : conns_) {
      for (; c->held_pongs > 0; --c->held_pongs) Send(c.get(), "PONG\r\n");
    }
  });
}

void FakeServer::SendToAll(const std::string& bytes) {
  Post([this, bytes] {
    for (auto& c : conns_) Send(c.get(), bytes);
  });
}

void FakeServer::FinishMove(const std::string& token) {
  Post([this, token] {
    for (auto& c : conns_) {
      if (c->fd < 0 || c->move_token != token) continue;
      Send(c.get(), "MOVED " + token + "\r\n");
      ::close(c->fd);  // a FIN after MOVED; the loop forgets the connection
      c->fd = -1;
    }
  });
}

void FakeServer::SendInfo(const proto::Info& info) { SendToAll(proto::EncodeInfoLine(info)); }

void FakeServer::Inject(const std::string& subject, const std::string& payload) {
  Post([this, subject, payload] { Route(subject, "", "", payload, nullptr); });
}

int FakeServer::connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

int FakeServer::accepted() const { return accepted_.load(); }

std::vector<std::string> FakeServer::log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

std::vector<std::string> FakeServer::LogWith(const std::string& prefix) const {
  std::vector<std::string> out;
  for (const std::string& e : log()) {
    if (e.rfind(prefix, 0) == 0) out.push_back(e);
  }
  return out;
}

void FakeServer::ClearLog() {
  std::lock_guard<std::mutex> lock(mu_);
  log_.clear();
}

proto::Info FakeServer::info() const {
  proto::Info info;
  info.server_id = config_.name;
  info.server_name = config_.name;
  info.version = "2.9.10";
  info.proto = 1;
  info.host = "127.0.0.1";
  info.port = port_;
  info.headers = config_.headers;
  info.auth_required = !config_.user.empty();
  info.max_payload = config_.max_payload;
  if (!config_.connect_urls.empty()) info.connect_urls = config_.connect_urls;
  info.move = config_.move;
  return info;
}

void FakeServer::Send(Conn* c, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(c->fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{c->fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
      continue;
    }
    return;  // the reader notices the dead socket
  }
}

void FakeServer::Accept() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    ++accepted_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++open_;
    }
    Send(c.get(), config_.raw_info.empty() ? proto::EncodeInfoLine(info()) : config_.raw_info);
    conns_.push_back(std::move(c));
  }
}

void FakeServer::Loop() {
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
    const size_t first_conn = fds.size();
    for (auto& c : conns_) fds.push_back({c->fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 100);
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake_[0], buf, sizeof(buf)) > 0) {
      }
      std::vector<std::function<void()>> tasks;
      {
        std::lock_guard<std::mutex> lock(mu_);
        tasks.swap(tasks_);
      }
      for (auto& t : tasks) t();
      continue;  // the fd set may have changed
    }
    if (listen_fd_ >= 0 && first_conn == 2 && (fds[1].revents & POLLIN)) Accept();
    std::vector<Conn*> ready;
    for (size_t i = first_conn; i < fds.size() && i - first_conn < conns_.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ready.push_back(conns_[i - first_conn].get());
    }
    for (Conn* c : ready) Read(c);
    // Drop closed connections.
    for (size_t i = 0; i < conns_.size();) {
      if (conns_[i]->fd < 0) {
        conns_.erase(conns_.begin() + static_cast<long>(i));
        std::lock_guard<std::mutex> lock(mu_);
        --open_;
      } else {
        ++i;
      }
    }
  }
}

void FakeServer::Read(Conn* c) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(c->fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c->in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    ::close(c->fd);
    c->fd = -1;
    return;
  }
  // Line-oriented parse of what the client sent (our own client: well formed).
  for (;;) {
    const size_t eol = c->in.find("\r\n");
    if (eol == std::string::npos) return;
    const std::string line = c->in.substr(0, eol);
    if (line.rfind("PUB ", 0) == 0 || line.rfind("HPUB ", 0) == 0) {
      const size_t sp = line.rfind(' ');
      const int64_t size = proto::ParseSize(std::string_view(line).substr(sp + 1));
      if (size < 0) {
        ::close(c->fd);
        c->fd = -1;
        return;
      }
      if (c->in.size() < eol + 2 + static_cast<size_t>(size) + 2) return;
      const std::string payload = c->in.substr(eol + 2, static_cast<size_t>(size));
      c->in.erase(0, eol + 2 + static_cast<size_t>(size) + 2);
      HandleLine(c, line, &payload);
    } else {
      c->in.erase(0, eol + 2);
      HandleLine(c, line, nullptr);
    }
    if (c->fd < 0) return;
  }
}

void FakeServer::HandleLine(Conn* c, const std::string& line, const std::string* payload) {
  std::string_view args[6];
  const size_t n = proto::SplitArgs(line, args, 6);
  if (n == 0) return;
  const std::string op(args[0]);
  auto log = [&](const std::string& entry) {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(entry);
  };
  if (op == "CONNECT") {
    const std::string json = line.substr(8);
    log("CONNECT " + json);
    proto::ConnectOptions opts;
    if (!proto::DecodeConnect(json, &opts)) {
      ::close(c->fd);  // as a real server: a malformed CONNECT ends the connection
      c->fd = -1;
      return;
    }
    c->headers = opts.headers.value_or(false);
    c->no_responders = opts.no_responders.value_or(false);
    if (!config_.user.empty()) {
      const bool ok = opts.user == config_.user && opts.pass == config_.password;
      if (!ok) {
        Send(c, "-ERR 'Authorization Violation'\r\n");
        ::close(c->fd);
        c->fd = -1;
        return;
      }
    }
    c->connected = true;
  } else if (op == "PING") {
    log("PING");
    const bool handshake = c->pings++ == 0;
    if (hold_pongs_ && !handshake) {
      ++c->held_pongs;  // a node whose interest barrier waits for a slow peer
    } else if (answer_pings_) {
      Send(c, "PONG\r\n");
    }
  } else if (op == "PONG") {
    log("PONG");
  } else if (op == "MOVE" && n >= 2) {
    c->move_token = std::string(args[1]);
    log("MOVE " + c->move_token);
  } else if (op == "SUB") {
    Conn::Sub sub;
    sub.subject = std::string(args[1]);
    std::string sid;
    if (n == 4) {
      sub.queue = std::string(args[2]);
      sid = std::string(args[3]);
      log("SUB " + sub.subject + " " + sub.queue + " " + sid);
    } else {
      sid = std::string(args[2]);
      log("SUB " + sub.subject + " " + sid);
    }
    c->subs[sid] = sub;
  } else if (op == "UNSUB") {
    const std::string sid(args[1]);
    if (n >= 3) {
      log("UNSUB " + sid + " " + std::string(args[2]));
      auto it = c->subs.find(sid);
      if (it != c->subs.end()) {
        it->second.max = proto::ParseSize(args[2]);
        if (it->second.count >= it->second.max) c->subs.erase(it);
      }
    } else {
      log("UNSUB " + sid);
      c->subs.erase(sid);
    }
  } else if (op == "PUB" || op == "HPUB") {
    const bool h = op == "HPUB";
    const size_t fixed = h ? 4 : 3;
    const std::string subject(args[1]);
    const std::string reply = n == fixed + 1 ? std::string(args[2]) : std::string();
    std::string headers;
    std::string body = *payload;
    if (h) {
      const int64_t hs = proto::ParseSize(args[n - 2]);
      headers = payload->substr(0, static_cast<size_t>(hs));
      body = payload->substr(static_cast<size_t>(hs));
    }
    log(op + " " + subject + (reply.empty() ? "" : " " + reply) + " " + body);
    Route(subject, reply, headers, body, c);
  }
}

void FakeServer::Route(const std::string& subject, const std::string& reply, const std::string& headers,
                       const std::string& payload, Conn* from) {
  bool delivered = false;
  std::map<std::string, bool> queue_served;
  for (auto& c : conns_) {
    if (c->fd < 0) continue;
    for (auto it = c->subs.begin(); it != c->subs.end();) {
      Conn::Sub& s = it->second;
      if (!proto::SubjectMatches(s.subject, subject) || (!s.queue.empty() && queue_served[s.queue])) {
        ++it;
        continue;
      }
      if (!s.queue.empty()) queue_served[s.queue] = true;
      std::string msg;
      if (headers.empty()) {
        proto::AppendMsg(&msg, subject, it->first, reply, payload);
      } else {
        proto::AppendHMsg(&msg, subject, it->first, reply, headers, payload);
      }
      Send(c.get(), msg);
      delivered = true;
      ++s.count;
      if (s.max > 0 && s.count >= s.max) {
        it = c->subs.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (!delivered && from != nullptr && !reply.empty() && from->headers && from->no_responders) {
    for (auto& [sid, s] : from->subs) {
      if (!proto::SubjectMatches(s.subject, reply)) continue;
      std::string msg;
      proto::AppendHMsg(&msg, reply, sid, "", proto::kNoRespondersHeaders, "");
      Send(from, msg);
      break;
    }
  }
}

}  // namespace zmesh::client::testing

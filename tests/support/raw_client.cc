#include "tests/support/raw_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kHistoryBytes = 1024;

#define ZMESH_FAIL_AT(loc) ADD_FAILURE_AT((loc).file_name(), static_cast<int>((loc).line()))

}  // namespace

std::string Printable(std::string_view bytes, std::size_t limit) {
  std::string out;
  if (bytes.size() > limit) {
    out = "...(" + std::to_string(bytes.size() - limit) + " bytes cut)...";
    bytes = bytes.substr(bytes.size() - limit);
  }
  for (unsigned char c : bytes) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

RawClient::~RawClient() { Close(); }

void RawClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawClient::Dial(uint16_t port, milliseconds timeout, std::source_location loc) {
  Close();
  closed_ = reset_ = false;
  buf_.clear();
  rpos_ = 0;
  history_.clear();
  const auto deadline = Clock::now() + timeout;
  std::string last_error;
  // Retries ECONNREFUSED within the timeout: a server that is still binding.
  while (true) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ZMESH_FAIL_AT(loc) << name_ << ": socket: " << strerror(errno);
      return false;
    }
    if (rcvbuf_ > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, sizeof(rcvbuf_));
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      fd_ = fd;
      return true;
    }
    last_error = strerror(errno);
    ::close(fd);
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ZMESH_FAIL_AT(loc) << name_ << ": connect 127.0.0.1:" << port << ": " << last_error;
  return false;
}

uint16_t RawClient::local_port() const {
  if (fd_ < 0) return 0;
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

bool RawClient::TrySend(std::string_view bytes) {
  if (fd_ < 0) return false;
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool RawClient::Send(std::string_view bytes, std::source_location loc) {
  if (fd_ < 0) {
    ZMESH_FAIL_AT(loc) << name_ << ": Send on a client that is not connected";
    return false;
  }
  std::string_view rest = bytes;
  while (!rest.empty()) {
    const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      ZMESH_FAIL_AT(loc) << name_ << ": send failed after " << (bytes.size() - rest.size())
                         << " of " << bytes.size() << " bytes: " << strerror(errno) << "\n"
                         << Describe();
      return false;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool RawClient::Fill(Clock::time_point deadline) {
  if (fd_ < 0 || closed_) return false;
  while (true) {
    const auto now = Clock::now();
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - now).count();
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<long>(0, left)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    // Compact now and then so the buffer does not grow with consumed bytes.
    if (rpos_ > 0 && (rpos_ == buf_.size() || rpos_ > (1u << 20))) {
      buf_.erase(0, rpos_);
      rpos_ = 0;
    }
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    closed_ = true;
    reset_ = n < 0;
    return false;
  }
}

void RawClient::Consume(std::size_t n) {
  history_.append(buf_, rpos_, n);
  if (history_.size() > kHistoryBytes) history_.erase(0, history_.size() - kHistoryBytes);
  rpos_ += n;
}

void RawClient::SkipServerPings() {
  if (!auto_pong_) return;
  while (Pending().starts_with("PING\r\n")) {
    Consume(6);
    TrySend("PONG\r\n");
  }
}

std::string RawClient::Describe() const {
  std::string s = name_ + ": ";
  s += closed_ ? (reset_ ? "connection reset" : "connection closed (EOF)") : "connection open";
  s += "\n  last consumed: \"" + Printable(history_, 512) + "\"";
  s += "\n  unconsumed:    \"" + Printable(Pending()) + "\"";
  return s;
}

std::optional<std::string> RawClient::ReadLine(milliseconds timeout, std::source_location loc) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    SkipServerPings();
    std::string_view pending = Pending();
    const std::size_t lf = pending.find('\n');
    if (lf != std::string_view::npos) {
      if (lf == 0 || pending[lf - 1] != '\r') {
        ZMESH_FAIL_AT(loc) << name_ << ": line not terminated by CRLF: \""
                           << Printable(pending.substr(0, lf + 1)) << "\"";
        std::string line(pending.substr(0, lf));
        Consume(lf + 1);
        return line;
      }
      std::string line(pending.substr(0, lf - 1));
      Consume(lf + 1);
      return line;
    }
    // "PING" and "PING\r" are a prefix of a server PING: wait for the rest.
    if (!Fill(deadline)) return std::nullopt;
  }
}

LineMatch RawClient::ExpectLine(const std::string& regex, milliseconds timeout,
                                std::source_location loc) {
  LineMatch result;
  std::optional<std::string> line = ReadLine(timeout, loc);
  if (!line) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected a line matching /" << regex << "/ within "
                       << timeout.count() << " ms, got none.\n"
                       << Describe();
    return result;
  }
  std::smatch m;
  if (!std::regex_match(*line, m, std::regex(regex))) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected a line matching /" << regex << "/, got \""
                       << Printable(*line) << "\"\n"
                       << Describe();
    return result;
  }
  result.ok = true;
  for (const auto& g : m) result.groups.push_back(g.str());
  return result;
}

std::optional<std::string> RawClient::ReadExact(std::size_t n, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Pending().size() < n) {
    if (!Fill(deadline)) return std::nullopt;
  }
  std::string out(Pending().substr(0, n));
  Consume(n);
  return out;
}

bool RawClient::ExpectClosed(milliseconds timeout, std::source_location loc) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    SkipServerPings();
    if (closed_ || Clock::now() >= deadline) break;
    Fill(deadline);
  }
  SkipServerPings();
  if (!Pending().empty()) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected the connection to close with nothing more "
                       << "received, but got bytes first.\n"
                       << Describe();
    return false;
  }
  if (!closed_) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected the connection to close within "
                       << timeout.count() << " ms, still open.\n"
                       << Describe();
    return false;
  }
  return true;
}

bool RawClient::ExpectSilence(milliseconds duration, std::source_location loc) {
  const auto deadline = Clock::now() + duration;
  while (true) {
    SkipServerPings();
    if (!Pending().empty() || closed_ || Clock::now() >= deadline) break;
    Fill(deadline);
  }
  if (!Pending().empty() || closed_) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected silence for " << duration.count() << " ms.\n"
                       << Describe();
    return false;
  }
  return true;
}

DrainResult RawClient::DrainUntilClosed(milliseconds timeout) {
  DrainResult result;
  const auto deadline = Clock::now() + timeout;
  bool at_line_start = rpos_ == 0 || (rpos_ > 0 && buf_[rpos_ - 1] == '\n');
  // Scan what arrives for "-ERR" at line starts without keeping it all.
  auto scan = [&](std::string_view data) {
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (at_line_start && data.substr(i).starts_with("-ERR")) ++result.errs;
      at_line_start = data[i] == '\n';
    }
    result.bytes += data.size();
    result.tail.append(data);
    if (result.tail.size() > 512) result.tail.erase(0, result.tail.size() - 512);
  };
  scan(Pending());
  Consume(Pending().size());
  while (!closed_) {
    if (!Fill(deadline)) break;
    scan(Pending());
    Consume(Pending().size());
  }
  result.closed = closed_;
  result.reset = reset_;
  return result;
}

std::optional<nlohmann::json> RawClient::ExpectInfo(milliseconds timeout,
                                                    std::source_location loc) {
  LineMatch m = ExpectLine(R"(INFO (\{.*\}) ?)", timeout, loc);
  if (!m) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(m[1], nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    ZMESH_FAIL_AT(loc) << name_ << ": INFO is not a JSON object: " << Printable(m[1]);
    return std::nullopt;
  }
  info_ = j;
  return j;
}

std::string RawClient::ConnectLine(std::string_view user, std::string_view pass,
                                   std::string_view options_json) {
  nlohmann::json j = {{"verbose", false}, {"pedantic", false}};
  nlohmann::json extra = nlohmann::json::parse(options_json.empty() ? "{}" : options_json);
  for (auto& [k, v] : extra.items()) j[k] = v;
  if (!user.empty()) j["user"] = std::string(user);
  if (!pass.empty()) j["pass"] = std::string(pass);
  return "CONNECT " + j.dump() + "\r\n";
}

bool RawClient::Connect(std::string_view user, std::string_view pass,
                        std::string_view options_json, std::source_location loc) {
  if (!ExpectInfo(kDefaultTimeout, loc)) return false;
  std::string line = ConnectLine(user, pass, options_json);
  const bool verbose = line.find("\"verbose\":true") != std::string::npos;
  if (!Send(line + "PING\r\n", loc)) return false;
  if (verbose && !ExpectLine(R"(\+OK)", kDefaultTimeout, loc)) return false;
  return static_cast<bool>(ExpectLine("PONG", kDefaultTimeout, loc));
}

bool RawClient::Flush(milliseconds timeout, std::source_location loc) {
  if (!Send("PING\r\n", loc)) return false;
  return static_cast<bool>(ExpectLine("PONG", timeout, loc));
}

bool RawClient::Sub(std::string_view subject, std::string_view sid, std::string_view queue,
                    std::source_location loc) {
  std::string line = "SUB " + std::string(subject) + " ";
  if (!queue.empty()) line += std::string(queue) + " ";
  return Send(line + std::string(sid) + "\r\n", loc);
}

bool RawClient::Unsub(std::string_view sid, std::optional<int> max, std::source_location loc) {
  std::string line = "UNSUB " + std::string(sid);
  if (max) line += " " + std::to_string(*max);
  return Send(line + "\r\n", loc);
}

bool RawClient::Pub(std::string_view subject, std::string_view payload, std::string_view reply,
                    std::source_location loc) {
  std::string out = "PUB " + std::string(subject) + " ";
  if (!reply.empty()) out += std::string(reply) + " ";
  out += std::to_string(payload.size()) + "\r\n";
  out += payload;
  out += "\r\n";
  return Send(out, loc);
}

bool RawClient::HPub(std::string_view subject, std::string_view headers,
                     std::string_view payload, std::string_view reply,
                     std::source_location loc) {
  std::string out = "HPUB " + std::string(subject) + " ";
  if (!reply.empty()) out += std::string(reply) + " ";
  out += std::to_string(headers.size()) + " " + std::to_string(headers.size() + payload.size()) +
         "\r\n";
  out += headers;
  out += payload;
  out += "\r\n";
  return Send(out, loc);
}

std::optional<Msg> RawClient::ReadMsg(milliseconds timeout, std::source_location loc) {
  const auto deadline = Clock::now() + timeout;
  std::optional<std::string> line = ReadLine(timeout, loc);
  if (!line) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected MSG/HMSG within " << timeout.count()
                       << " ms, got none.\n"
                       << Describe();
    return std::nullopt;
  }
  // Split on single spaces: both servers write exactly one between fields.
  std::vector<std::string_view> f;
  std::string_view rest = *line;
  while (!rest.empty()) {
    const std::size_t sp = rest.find(' ');
    f.push_back(rest.substr(0, sp));
    if (sp == std::string_view::npos) break;
    rest.remove_prefix(sp + 1);
  }
  Msg msg;
  std::size_t hdr_len = 0;
  std::size_t total_len = 0;
  auto num = [](std::string_view s, std::size_t* out) {
    if (s.empty() || s.size() > 12) return false;
    std::size_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<std::size_t>(c - '0');
    }
    *out = v;
    return true;
  };
  bool ok = false;
  if (!f.empty() && f[0] == "MSG" && (f.size() == 4 || f.size() == 5)) {
    ok = num(f.back(), &total_len);
  } else if (!f.empty() && f[0] == "HMSG" && (f.size() == 5 || f.size() == 6)) {
    msg.hmsg = true;
    ok = num(f[f.size() - 2], &hdr_len) && num(f.back(), &total_len) && hdr_len <= total_len;
  }
  if (!ok) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected MSG/HMSG, got \"" << Printable(*line) << "\"\n"
                       << Describe();
    return std::nullopt;
  }
  msg.subject = f[1];
  msg.sid = f[2];
  const std::size_t fixed = msg.hmsg ? 5 : 4;
  if (f.size() > fixed) msg.reply = f[3];
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  std::optional<std::string> body = ReadExact(total_len + 2, std::max(left, milliseconds(0)));
  if (!body || !body->ends_with("\r\n")) {
    ZMESH_FAIL_AT(loc) << name_ << ": message body of " << total_len
                       << " bytes + CRLF missing after \"" << Printable(*line) << "\"\n"
                       << Describe();
    return std::nullopt;
  }
  msg.headers = body->substr(0, hdr_len);
  msg.payload = body->substr(hdr_len, total_len - hdr_len);
  return msg;
}

bool RawClient::ExpectMsg(std::string_view subject, std::string_view sid,
                          std::string_view payload, std::string_view reply, milliseconds timeout,
                          std::source_location loc) {
  std::optional<Msg> m = ReadMsg(timeout, loc);
  if (!m) return false;
  if (m->subject != subject || m->sid != sid || m->payload != payload || m->reply != reply ||
      m->hmsg) {
    ZMESH_FAIL_AT(loc) << name_ << ": expected MSG " << subject << " " << sid
                       << (reply.empty() ? "" : " ") << reply << " \"" << Printable(payload)
                       << "\", got " << (m->hmsg ? "HMSG " : "MSG ") << m->subject << " "
                       << m->sid << (m->reply.empty() ? "" : " ") << m->reply << " headers \""
                       << Printable(m->headers) << "\" payload \"" << Printable(m->payload)
                       << "\"";
    return false;
  }
  return true;
}

}  // namespace zmesh::testing

// TLS on the client and peer ports (SPEC §5, issue 5 item 3), against real
// zmesh-server processes, with certificates generated at test time
// (tls_certs.h: OpenSSL's C API, nothing from the openssl CLI).
//
//  - TlsClientPortTest: one standalone node with --tls_cert/--tls_key. A TLS
//    client written here on OpenSSL (INFO read in clear, then SSL_connect on
//    the same socket, as nats-server 2.9 clients do) publishes and receives,
//    including 1 MiB payloads, a fan-out across I/O threads and a subscriber
//    whose socket is full (the server's TLS writes must be retried with the
//    same bytes); a client speaking plain text, one that never handshakes and
//    one that stalls mid-handshake are closed, and the node keeps serving.
//  - zmesh::Client and the standard Go client (natscheck --tls-ca) on a TLS
//    node; the wrong CA, an expired or not-yet-valid server certificate fail.
//  - --tls_verify_clients: no certificate, another CA's, an expired one are
//    refused (TLS 1.2 and 1.3); the CA's client certificate is accepted.
//  - TlsMeshTest: a private ZooKeeper; --peer_tls (mutual TLS 1.3 against
//    --peer_tls_ca, certificates naming node ids): two nodes link and forward
//    exactly once; a node presenting a certificate of the clients' CA, one of
//    another CA, and one without TLS are never linked; a certificate that
//    names another node id than the HELLO is refused; --peer_tls without
//    --peer_tls_ca does not start; a connection that never handshakes is
//    closed within the handshake bound.
//
// Every wait is bounded; only processes started here are signalled, by PID;
// everything listens on 127.0.0.1.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmesh/client.h>

#include "tests/integration/mesh_fixture.h"
#include "tests/integration/tls_certs.h"
#include "tests/support/mesh_cluster.h"
#include "tests/support/process.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// A TLS peer that closes on us must not kill the test with SIGPIPE.
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

constexpr milliseconds kIo{10000};  // one protocol round trip, generously

std::string OpenSslErrors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

int64_t MsLeft(Clock::time_point deadline) {
  return std::max<int64_t>(0, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
}

// Deterministic pseudo-random bytes: a reordered, dropped or repeated TLS
// record cannot go unnoticed.
std::string Pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// ---------------------------------------------------------------------------
// A NATS client over TLS on OpenSSL: INFO in clear, then the handshake on the
// same socket (nats-server 2.9 style). Non-blocking socket, every operation
// bounded by a deadline. Not thread safe: one per thread.

struct TlsConfig {
  std::string ca;    // verify the server's certificate against it; empty = no verification
  std::string cert;  // client certificate (PEM); empty = none
  std::string key;
  std::string expect_ip = "127.0.0.1";  // with `ca`: the certificate must name this IP
  int max_version = 0;                  // e.g. TLS1_2_VERSION; 0 = the library's best
};

struct TlsMsg {
  std::string subject, sid, reply, payload;
};

class TlsNatsClient {
 public:
  explicit TlsNatsClient(std::string name = "client") : name_(std::move(name)) {}
  ~TlsNatsClient() { Close(); }
  TlsNatsClient(const TlsNatsClient&) = delete;
  TlsNatsClient& operator=(const TlsNatsClient&) = delete;

  const std::string& name() const { return name_; }
  // Before Dial: a small kernel receive buffer (the server's socket fills).
  void set_receive_buffer(int bytes) { rcvbuf_ = bytes; }

  // TCP to 127.0.0.1:port and the INFO line, in clear.
  bool Dial(uint16_t port, std::string* error) {
    Close();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Fail(error, "socket: " + std::string(strerror(errno)));
    if (rcvbuf_ > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, sizeof rcvbuf_);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return Fail(error, "connect to port " + std::to_string(port) + ": " + strerror(errno));
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    auto line = ReadLine(kIo);
    if (!line || line->rfind("INFO ", 0) != 0) {
      return Fail(error, "no INFO line in clear; got " + (line ? *line : "nothing (" + close_reason_ + ")"));
    }
    info_ = json::parse(line->substr(5), nullptr, false);
    if (!info_.is_object()) return Fail(error, "INFO is not a JSON object: " + *line);
    return true;
  }

  const json& info() const { return info_; }
  // Bytes received in clear after the INFO line, before the handshake.
  std::string_view unread() const { return std::string_view(buf_).substr(rpos_); }

  // The TLS handshake as a client on the dialled socket.
  bool StartTls(const TlsConfig& cfg, std::string* error, milliseconds timeout = kIo) {
    if (!unread().empty()) return Fail(error, "the server sent bytes in clear after INFO: " + std::string(unread()));
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    if (cfg.max_version != 0) SSL_CTX_set_max_proto_version(ctx_, cfg.max_version);
    SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!cfg.ca.empty()) {
      if (SSL_CTX_load_verify_locations(ctx_, cfg.ca.c_str(), nullptr) != 1) {
        return Fail(error, "CA " + cfg.ca + ": " + OpenSslErrors());
      }
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!cfg.cert.empty() && (SSL_CTX_use_certificate_chain_file(ctx_, cfg.cert.c_str()) != 1 ||
                              SSL_CTX_use_PrivateKey_file(ctx_, cfg.key.c_str(), SSL_FILETYPE_PEM) != 1)) {
      return Fail(error, "client certificate " + cfg.cert + ": " + OpenSslErrors());
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    if (!cfg.ca.empty() && !cfg.expect_ip.empty())
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), cfg.expect_ip.c_str());
    const auto deadline = Clock::now() + timeout;
    while (true) {
      ERR_clear_error();
      const int r = SSL_connect(ssl_);
      if (r == 1) return true;
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!WaitFd(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          return Fail(error, "TLS handshake did not finish within " + std::to_string(timeout.count()) + " ms");
        }
        continue;
      }
      std::string why = OpenSslErrors();
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) why += std::string(" (verify: ") + X509_verify_cert_error_string(verify) + ")";
      if (e == SSL_ERROR_SYSCALL) why += " (syscall, errno " + std::to_string(errno) + ")";
      return Fail(error, "TLS handshake failed: " + why);
    }
  }

  // Ends the session properly: a close_notify alert (then Close()).
  void SendCloseNotify() {
    if (ssl_ != nullptr) SSL_shutdown(ssl_);
  }
  const char* tls_version() const { return ssl_ != nullptr ? SSL_get_version(ssl_) : "none"; }

  // Dial + check tls_required + StartTls + CONNECT + PING, expecting PONG.
  bool Connect(uint16_t port, const TlsConfig& cfg, std::string* error) {
    if (!Dial(port, error)) return false;
    if (!info_.value("tls_required", false)) return Fail(error, "INFO lacks \"tls_required\":true: " + info_.dump());
    if (!StartTls(cfg, error)) return false;
    if (!Send("CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":true,\"name\":\"" + name_ +
                  "\"}\r\nPING\r\n",
              error)) {
      return false;
    }
    return ExpectPong(error);
  }

  // All of `bytes`, bounded.
  bool Send(std::string_view bytes, std::string* error, milliseconds timeout = seconds(30)) {
    const auto deadline = Clock::now() + timeout;
    while (!bytes.empty()) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int r = SSL_write(ssl_, bytes.data(), static_cast<int>(std::min<size_t>(bytes.size(), 1 << 20)));
        if (r > 0) {
          bytes.remove_prefix(static_cast<size_t>(r));
          continue;
        }
        const int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
          if (!WaitFd(e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, deadline)) return Fail(error, "send timed out");
          continue;
        }
        return Fail(error, "SSL_write failed: " + OpenSslErrors() + " (errno " + std::to_string(errno) + ")");
      }
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!WaitFd(POLLOUT, deadline)) return Fail(error, "send timed out");
      } else {
        return Fail(error, "send failed: " + std::string(strerror(errno)));
      }
    }
    return true;
  }

  // The next line without CRLF (server PINGs are answered and skipped);
  // nullopt on timeout or close.
  std::optional<std::string> ReadLine(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      const size_t eol = buf_.find("\r\n", rpos_);
      if (eol != std::string::npos) {
        std::string line = buf_.substr(rpos_, eol - rpos_);
        Consume(eol + 2 - rpos_);
        if (line == "PING" && ssl_ != nullptr) {
          std::string ignored;
          Send("PONG\r\n", &ignored);
          continue;
        }
        return line;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  std::optional<std::string> ReadExact(size_t n, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (buf_.size() - rpos_ < n) {
      if (!Fill(deadline)) return std::nullopt;
    }
    std::string out = buf_.substr(rpos_, n);
    Consume(n);
    return out;
  }

  // The next MSG; nullopt on timeout, close or any other line (kept in
  // *unexpected when given).
  std::optional<TlsMsg> ReadMsg(milliseconds timeout, std::string* unexpected = nullptr) {
    const auto deadline = Clock::now() + timeout;
    auto line = ReadLine(milliseconds(MsLeft(deadline)));
    if (!line) {
      if (unexpected != nullptr) *unexpected = closed_ ? "closed: " + close_reason_ : "timeout";
      return std::nullopt;
    }
    std::vector<std::string> t;
    for (size_t at = 0; at < line->size();) {
      const size_t sp = line->find(' ', at);
      const size_t end = sp == std::string::npos ? line->size() : sp;
      if (end > at) t.push_back(line->substr(at, end - at));
      at = end + 1;
    }
    if (t.empty() || t[0] != "MSG" || (t.size() != 4 && t.size() != 5)) {
      if (unexpected != nullptr) *unexpected = *line;
      return std::nullopt;
    }
    TlsMsg m;
    m.subject = t[1];
    m.sid = t[2];
    if (t.size() == 5) m.reply = t[3];
    const size_t size = std::stoul(t.back());
    auto body = ReadExact(size + 2, milliseconds(MsLeft(deadline) + 1));
    if (!body || body->compare(size, 2, "\r\n") != 0) {
      if (unexpected != nullptr) *unexpected = "payload of " + *line + " incomplete or not CRLF-terminated";
      return std::nullopt;
    }
    m.payload = body->substr(0, size);
    return m;
  }

  bool ExpectPong(std::string* error, milliseconds timeout = kIo) {
    auto line = ReadLine(timeout);
    if (line && *line == "PONG") return true;
    return Fail(error, name_ + ": expected PONG, got " + (line ? "\"" + *line + "\"" : "nothing (" + Why() + ")"));
  }

  bool Flush(std::string* error) { return Send("PING\r\n", error) && ExpectPong(error); }

  // Waits until the connection ends (EOF, RST, TLS alert); what arrived
  // meanwhile goes to *received. False if it is still open at the deadline.
  bool WaitClosed(milliseconds timeout, std::string* received) {
    const auto deadline = Clock::now() + timeout;
    while (!closed_ && Fill(deadline)) {
    }
    if (received != nullptr) *received = buf_.substr(rpos_);
    return closed_;
  }

  bool closed() const { return closed_; }
  std::string Why() const { return closed_ ? "closed: " + close_reason_ : "timeout"; }

  void Close() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
    ssl_ = nullptr;
    ctx_ = nullptr;
    fd_ = -1;
    buf_.clear();
    rpos_ = 0;
    closed_ = false;
    close_reason_.clear();
  }

 private:
  bool Fail(std::string* error, const std::string& what) {
    if (error != nullptr) *error = name_ + ": " + what;
    return false;
  }

  bool WaitFd(short events, Clock::time_point deadline) {
    pollfd p{fd_, events, 0};
    while (true) {
      const int r = ::poll(&p, 1, static_cast<int>(MsLeft(deadline)));
      if (r > 0) return true;
      if (r == 0) return false;
      if (errno != EINTR) return false;
    }
  }

  // Reads more bytes into buf_; false on close or at the deadline.
  bool Fill(Clock::time_point deadline) {
    char tmp[64 * 1024];
    while (!closed_) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        errno = 0;
        const int r = SSL_read(ssl_, tmp, sizeof tmp);
        if (r > 0) {
          buf_.append(tmp, static_cast<size_t>(r));
          return true;
        }
        const int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
          if (!WaitFd(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return false;
          continue;
        }
        closed_ = true;
        if (e == SSL_ERROR_ZERO_RETURN) {
          close_reason_ = "close_notify";
        } else if (e == SSL_ERROR_SYSCALL) {
          close_reason_ = errno == 0 ? "EOF" : std::string(strerror(errno));
          const std::string ssl_errors = OpenSslErrors();
          if (!ssl_errors.empty()) close_reason_ += " " + ssl_errors;
        } else {
          close_reason_ = "TLS: " + OpenSslErrors();
        }
        return false;
      }
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!WaitFd(POLLIN, deadline)) return false;
        continue;
      }
      closed_ = true;
      close_reason_ = n == 0 ? "EOF" : std::string(strerror(errno));
    }
    return false;
  }

  void Consume(size_t n) {
    rpos_ += n;
    if (rpos_ > (1u << 20) && rpos_ * 2 > buf_.size()) {
      buf_.erase(0, rpos_);
      rpos_ = 0;
    }
  }

  std::string name_;
  int rcvbuf_ = 0;
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buf_;
  size_t rpos_ = 0;
  bool closed_ = false;
  std::string close_reason_;
  json info_;
};

// What became of a session a node might refuse (client certificates).
struct Attempt {
  bool handshake_ok = false;  // SSL_connect completed on our side
  bool got_pong = false;      // CONNECT + PING answered: the node accepted us
  bool closed = false;        // the node ended the connection
  std::string detail;
  bool refused() const { return !got_pong && (!handshake_ok || closed); }
};

Attempt TryClient(uint16_t port, const TlsConfig& cfg, const std::string& name) {
  Attempt a;
  TlsNatsClient c(name);
  std::string error;
  if (!c.Dial(port, &error)) {
    a.detail = error;
    return a;
  }
  if (!c.StartTls(cfg, &error)) {
    a.detail = error;
    a.closed = true;
    return a;
  }
  a.handshake_ok = true;
  // TLS 1.3: the server judges our certificate after our side finished; its
  // verdict arrives as an alert on the first read.
  c.Send("CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":true}\r\nPING\r\n", &error);
  auto line = c.ReadLine(kIo);
  a.got_pong = line && *line == "PONG";
  if (!a.got_pong) {
    std::string rest;
    a.closed = c.WaitClosed(kIo, &rest);
    a.detail = "got " + (line ? "\"" + *line + "\"" : std::string("nothing")) + ", then " + c.Why();
  } else {
    a.detail = std::string("accepted over ") + c.tls_version();
  }
  return a;
}

// ---------------------------------------------------------------------------
// Fixtures and helpers.

TestPki* g_pki = nullptr;
std::string g_pki_error;

// The certificates, generated once per test binary; removed after the last
// test (kept when a test failed).
class PkiEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete g_pki;
    g_pki = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const kPkiEnvironment =
    ::testing::AddGlobalTestEnvironment(new PkiEnvironment);

const TestPki* Pki() {
  if (g_pki == nullptr && g_pki_error.empty()) {
    g_pki = new TestPki;
    if (!g_pki->Generate(&g_pki_error)) g_pki_error = "generating test certificates: " + g_pki_error;
  }
  return g_pki_error.empty() ? g_pki : nullptr;
}

#define ASSERT_PKI() ASSERT_NE(Pki(), nullptr) << g_pki_error

// Graceful leave is not under test here: a stopped node exits at once.
const std::vector<std::string> kQuickExit = {"--lame_duck_grace_ms=0", "--lame_duck_duration_ms=100"};

std::vector<std::string> ServerTlsArgs(const CertKey& ck) {
  std::vector<std::string> args = {"--tls_cert=" + ck.cert, "--tls_key=" + ck.key};
  args.insert(args.end(), kQuickExit.begin(), kQuickExit.end());
  return args;
}

TlsConfig TrustingTestCa() {
  TlsConfig c;
  c.ca = Pki()->ca;
  return c;
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Connects `client` over TLS (INFO, handshake, CONNECT, PING/PONG) or fails
// the test.
#define CONNECT_TLS(client, port, cfg)                                               \
  do {                                                                               \
    std::string connect_error_;                                                      \
    ASSERT_TRUE((client).Connect((port), (cfg), &connect_error_)) << connect_error_; \
  } while (0)

#define SEND(client, bytes)                                           \
  do {                                                                \
    std::string send_error_;                                          \
    ASSERT_TRUE((client).Send((bytes), &send_error_)) << send_error_; \
  } while (0)

#define FLUSH(client)                                           \
  do {                                                          \
    std::string flush_error_;                                   \
    ASSERT_TRUE((client).Flush(&flush_error_)) << flush_error_; \
  } while (0)

std::string PubCmd(const std::string& subject, std::string_view payload) {
  std::string out = "PUB " + subject + " " + std::to_string(payload.size()) + "\r\n";
  out.append(payload);
  out += "\r\n";
  return out;
}

// natscheck (tests/go/natscheck) run to completion; its result is the last
// stdout line starting with '{'.
struct NatscheckOutcome {
  std::optional<int> exit_code;
  std::string status;
  json result;
  std::string log;
  bool passed() const { return exit_code == 0 && result.is_object() && result.value("ok", false); }
  std::string Describe() const {
    return "natscheck " + status + "\nresult: " + result.dump() + "\nlog tail:\n" +
           (log.size() > 4000 ? "..." + log.substr(log.size() - 4000) : log);
  }
};

NatscheckOutcome RunNatscheck(const std::string& log_path, const std::vector<std::string>& args) {
  const char* bin_dir = std::getenv("ZMESH_BIN_DIR");
  std::vector<std::string> argv = {std::string(bin_dir != nullptr ? bin_dir : ".") + "/natscheck"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--timeout=10");
  argv.push_back("--deadline=60");
  NatscheckOutcome o;
  Process p;
  std::string error;
  if (!p.Start(argv, log_path, &error)) {
    o.status = "did not start: " + error;
    return o;
  }
  const std::optional<int> status = p.WaitExit(seconds(90));
  if (!status) {
    p.Stop(seconds(2));
    o.status = "timed out";
  } else {
    o.status = DescribeWaitStatus(*status);
    if (WIFEXITED(*status)) o.exit_code = WEXITSTATUS(*status);
  }
  o.log = p.ReadLog();
  for (size_t end = o.log.size(); end > 0;) {
    const size_t nl = o.log.rfind('\n', end - 1);
    const size_t start = nl == std::string::npos ? 0 : nl + 1;
    if (start < end && o.log[start] == '{') {
      o.result = json::parse(o.log.substr(start, end - start), nullptr, false);
      break;
    }
    if (nl == std::string::npos) break;
    end = nl;
  }
  return o;
}

zmesh::Options LibOptions(const std::string& url) {
  zmesh::Options o;
  o.servers = {url};
  o.connect_timeout = milliseconds(1000);
  o.initial_connect_timeout = milliseconds(3000);
  o.reconnect_wait_initial = milliseconds(50);
  o.reconnect_wait_max = milliseconds(300);
  o.use_node_cache = false;
  return o;
}

class TlsClientPortTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_PKI(); }

  // A standalone node with the test CA's node certificate and `extra` flags.
  void StartNode(std::vector<std::string> extra = {}, ServerOptions so = {}) {
    so.extra_args = ServerTlsArgs(Pki()->node);
    so.extra_args.insert(so.extra_args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(server_.Start(so));
  }

  ServerUnderTest server_{Target::kZmesh};
};

// ---------------------------------------------------------------------------
// 1. The client port.

// INFO in clear with tls_required (also in /varz), then TLS: SUB/PUB/PING
// work and a message reaches a subscriber on another connection.
TEST_F(TlsClientPortTest, InfoInClearThenTlsPubSub) {
  const uint16_t http_port = PickFreePort();
  StartNode({"--http_listen=127.0.0.1:" + std::to_string(http_port)});

  TlsNatsClient sub("sub"), pub("pub");
  std::string error;
  ASSERT_TRUE(sub.Dial(server_.port(), &error)) << error;
  EXPECT_EQ(sub.info().value("tls_required", false), true) << sub.info().dump();
  ASSERT_TRUE(sub.StartTls(TrustingTestCa(), &error)) << error;
  SEND(sub, "CONNECT {\"verbose\":true,\"pedantic\":false,\"tls_required\":true}\r\n");
  ASSERT_EQ(sub.ReadLine(kIo).value_or(sub.Why()), "+OK");
  SEND(sub, "SUB tls.hello 1\r\nPING\r\n");
  ASSERT_EQ(sub.ReadLine(kIo).value_or(sub.Why()), "+OK");
  ASSERT_EQ(sub.ReadLine(kIo).value_or(sub.Why()), "PONG");

  CONNECT_TLS(pub, server_.port(), TrustingTestCa());
  SEND(pub, PubCmd("tls.hello", "over tls") + "PUB tls.hello reply.to 3\r\nabc\r\n");
  FLUSH(pub);
  std::string unexpected;
  auto m = sub.ReadMsg(kIo, &unexpected);
  ASSERT_TRUE(m) << unexpected;
  EXPECT_EQ(m->subject, "tls.hello");
  EXPECT_EQ(m->sid, "1");
  EXPECT_EQ(m->payload, "over tls");
  m = sub.ReadMsg(kIo, &unexpected);
  ASSERT_TRUE(m) << unexpected;
  EXPECT_EQ(m->reply, "reply.to");
  EXPECT_EQ(m->payload, "abc");

  auto varz = HttpGet("127.0.0.1", http_port, "/varz");
  ASSERT_TRUE(varz && varz->status == 200);
  const json v = json::parse(varz->body, nullptr, false);
  EXPECT_EQ(v.value("tls_required", false), true) << varz->body;
}

// 1 MiB payloads (the default max_payload) cross intact in both directions:
// many TLS records each way, the server writing at most 16 KiB per record.
TEST_F(TlsClientPortTest, OneMebibytePayloadsCrossIntact) {
  StartNode();
  TlsNatsClient sub("sub"), pub("pub");
  CONNECT_TLS(sub, server_.port(), TrustingTestCa());
  CONNECT_TLS(pub, server_.port(), TrustingTestCa());
  SEND(sub, "SUB big 1\r\n");
  FLUSH(sub);
  constexpr int kCount = 4;
  constexpr size_t kSize = 1 << 20;
  // The publisher writes from a thread while the subscriber reads, so neither
  // side's buffers have to hold everything.
  std::atomic<bool> pub_ok{false};
  std::string pub_error;
  std::thread publisher([&] {
    std::string all;
    for (int i = 0; i < kCount; ++i) all += PubCmd("big", Pattern(kSize, static_cast<uint64_t>(i)));
    pub_ok = pub.Send(all, &pub_error) && pub.Flush(&pub_error);
  });
  for (int i = 0; i < kCount; ++i) {
    std::string unexpected;
    auto m = sub.ReadMsg(seconds(30), &unexpected);
    ASSERT_TRUE(m) << "message " << i << ": " << unexpected;
    ASSERT_EQ(m->payload.size(), kSize);
    EXPECT_TRUE(m->payload == Pattern(kSize, static_cast<uint64_t>(i))) << "payload " << i << " corrupted";
  }
  publisher.join();
  EXPECT_TRUE(pub_ok) << pub_error;
  // One byte over the limit is still refused the NATS way over TLS.
  SEND(pub, "PUB big " + std::to_string(kSize + 1) + "\r\n");
  auto line = pub.ReadLine(kIo);
  EXPECT_EQ(line.value_or(pub.Why()), "-ERR 'Maximum Payload Violation'");
}

// A subscriber that does not read while 10 MiB are published to it: the
// node's socket to it fills, OpenSSL asks to retry writes, and every message
// must still arrive intact and in order once it reads.
TEST_F(TlsClientPortTest, SubscriberWithAFullSocketGetsEveryMessageIntact) {
  const uint16_t http_port = PickFreePort();
  StartNode({"--http_listen=127.0.0.1:" + std::to_string(http_port)});
  TlsNatsClient sub("sub"), pub("pub");
  sub.set_receive_buffer(4096);
  CONNECT_TLS(sub, server_.port(), TrustingTestCa());
  CONNECT_TLS(pub, server_.port(), TrustingTestCa());
  SEND(sub, "SUB fill 1\r\n");
  FLUSH(sub);
  // More than the node's socket send buffer can grow to (tcp_wmem max, 4 MiB
  // by default) plus sub's tiny receive window.
  constexpr int kCount = 160;
  constexpr size_t kSize = 64 * 1024 + 7;  // not a multiple of the 16 KiB record
  std::atomic<bool> pub_ok{false};
  std::string pub_error;
  std::thread publisher([&] {
    for (int i = 0;
         i < kCount && pub.Send(PubCmd("fill", Pattern(kSize, 1000u + static_cast<uint64_t>(i))), &pub_error); ++i) {
    }
    pub_ok = pub_error.empty() && pub.Flush(&pub_error);
  });
  // The node's socket to sub is full once bytes wait in its own queue
  // (/connz pending_bytes): its TLS writes were refused and must be retried.
  // Bounded well below --write_deadline_ms (10 s), which would cut sub off.
  int64_t pending = 0;
  const bool blocked = WaitFor(
      seconds(5),
      [&] {
        auto connz = HttpGet("127.0.0.1", http_port, "/connz");
        if (!connz || connz->status != 200) return false;
        const json j = json::parse(connz->body, nullptr, false);
        if (!j.is_object() || !j.contains("connections")) return false;
        for (const json& c : j["connections"]) {
          if (c.value("name", "") == "sub") pending = c.value("pending_bytes", int64_t{0});
        }
        return pending > 0;
      },
      milliseconds(20));
  EXPECT_TRUE(blocked) << "the node never had bytes pending for the non-reading subscriber";
  for (int i = 0; i < kCount; ++i) {
    std::string unexpected;
    auto m = sub.ReadMsg(seconds(30), &unexpected);
    ASSERT_TRUE(m) << "message " << i << ": " << unexpected;
    ASSERT_EQ(m->payload.size(), kSize) << "message " << i;
    ASSERT_TRUE(m->payload == Pattern(kSize, 1000u + static_cast<uint64_t>(i))) << "payload " << i << " corrupted";
  }
  publisher.join();
  EXPECT_TRUE(pub_ok) << pub_error;
}

// Many TLS subscribers (spread over the node's I/O threads) and one
// publisher: each gets every message once, in order. Messages are written to
// a TLS session from another thread than its owner's: the owner must do it.
TEST_F(TlsClientPortTest, FanOutAcrossIoThreads) {
  StartNode();
  constexpr int kSubs = 12;
  constexpr int kMsgs = 300;
  std::vector<std::unique_ptr<TlsNatsClient>> subs;
  for (int s = 0; s < kSubs; ++s) {
    subs.push_back(std::make_unique<TlsNatsClient>("sub" + std::to_string(s)));
    CONNECT_TLS(*subs.back(), server_.port(), TrustingTestCa());
    SEND(*subs.back(), "SUB fan.out 1\r\n");
    FLUSH(*subs.back());
  }
  TlsNatsClient pub("pub");
  CONNECT_TLS(pub, server_.port(), TrustingTestCa());
  std::string batch;
  for (int i = 0; i < kMsgs; ++i)
    batch += PubCmd("fan.out", std::to_string(i) + ":" + Pattern(200, static_cast<uint64_t>(i)));
  SEND(pub, batch);
  FLUSH(pub);
  std::vector<std::thread> readers;
  std::vector<std::string> failures(kSubs);
  for (int s = 0; s < kSubs; ++s) {
    readers.emplace_back([&, s] {
      for (int i = 0; i < kMsgs; ++i) {
        std::string unexpected;
        auto m = subs[static_cast<size_t>(s)]->ReadMsg(seconds(20), &unexpected);
        const std::string want = std::to_string(i) + ":" + Pattern(200, static_cast<uint64_t>(i));
        if (!m || m->payload != want) {
          failures[static_cast<size_t>(s)] =
              "message " + std::to_string(i) + ": " + (m ? "wrong payload " + m->payload.substr(0, 8) : unexpected);
          return;
        }
      }
    });
  }
  for (auto& t : readers) t.join();
  for (int s = 0; s < kSubs; ++s)
    EXPECT_TRUE(failures[static_cast<size_t>(s)].empty()) << "sub" << s << ": " << failures[static_cast<size_t>(s)];
}

// A client that ignores tls_required and speaks plain text is closed without
// a protocol answer in clear (nats-server 2.9 does the same), the failure is
// logged, and the node keeps serving TLS clients.
TEST_F(TlsClientPortTest, PlainTextClientIsClosed) {
  StartNode();
  TlsNatsClient plain("plain");
  std::string error;
  ASSERT_TRUE(plain.Dial(server_.port(), &error)) << error;
  SEND(plain, "CONNECT {\"verbose\":true,\"pedantic\":false}\r\nSUB x 1\r\nPING\r\n");
  std::string received;
  ASSERT_TRUE(plain.WaitClosed(seconds(5), &received)) << "still open after plain-text CONNECT";
  EXPECT_EQ(received.find("PONG"), std::string::npos) << "answered in clear: " << received;
  EXPECT_EQ(received.find("+OK"), std::string::npos) << "answered in clear: " << received;
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return server_.ReadLog().find("TLS handshake failed") != std::string::npos; }))
      << "no \"TLS handshake failed\" in the log:\n"
      << server_.ReadLog();

  TlsNatsClient good("good");
  CONNECT_TLS(good, server_.port(), TrustingTestCa());
  SEND(good, "SUB after 1\r\n" + PubCmd("after", "still serving"));
  std::string unexpected;
  auto m = good.ReadMsg(kIo, &unexpected);
  ASSERT_TRUE(m) << unexpected;
  EXPECT_EQ(m->payload, "still serving");
}

// A TLS client that closes its socket without a close_notify alert (as
// zmesh::Client does, and as any client that is killed does) has closed the
// connection, exactly like one that sends close_notify: nats-server 2.9
// reports "Client Closed" in /connz for both, not a read error.
TEST_F(TlsClientPortTest, ClosingWithoutCloseNotifyIsClientClosed) {
  const uint16_t http_port = PickFreePort();
  StartNode({"--http_listen=127.0.0.1:" + std::to_string(http_port)});
  {
    TlsNatsClient c("with-close-notify");
    CONNECT_TLS(c, server_.port(), TrustingTestCa());
    c.SendCloseNotify();
  }
  {
    TlsNatsClient c("without-close-notify");
    CONNECT_TLS(c, server_.port(), TrustingTestCa());
  }
  {
    zmesh::Options o = LibOptions(server_.url());
    o.tls.ca_file = Pki()->ca;
    o.name = "zmesh-client";
    std::unique_ptr<zmesh::Client> c;
    const zmesh::Status st = zmesh::Client::Connect(o, &c);
    ASSERT_TRUE(st.ok()) << st;
    c->Close();
  }
  std::map<std::string, std::string> reasons;
  const bool listed = WaitFor(
      seconds(5),
      [&] {
        auto connz = HttpGet("127.0.0.1", http_port, "/connz?state=closed");
        if (!connz || connz->status != 200) return false;
        const json j = json::parse(connz->body, nullptr, false);
        if (!j.is_object() || !j.contains("connections")) return false;
        for (const json& c : j["connections"]) reasons[c.value("name", "")] = c.value("reason", "");
        return reasons.count("with-close-notify") && reasons.count("without-close-notify") &&
               reasons.count("zmesh-client");
      },
      milliseconds(50));
  ASSERT_TRUE(listed) << "closed connections missing from /connz?state=closed";
  for (const char* name : {"with-close-notify", "without-close-notify", "zmesh-client"}) {
    EXPECT_EQ(reasons[name], "Client Closed")
        << name
        << ": OpenSSL 3 reports a TCP EOF without close_notify as SSL_ERROR_SSL (\"unexpected eof while "
           "reading\"), not as SSL_ERROR_SYSCALL with errno 0";
  }
}

// A client that never starts the handshake, and one that stops in the middle
// of it, are closed after --auth_timeout_ms (the handshake bound), not before
// and not much later; the node keeps serving.
TEST_F(TlsClientPortTest, HandshakeIsBoundedInTime) {
  ServerOptions so;
  so.auth_timeout_ms = 600;
  StartNode({}, so);
  TlsNatsClient idle("idle"), stalled("stalled");
  std::string error;
  const auto start = Clock::now();
  ASSERT_TRUE(idle.Dial(server_.port(), &error)) << error;
  ASSERT_TRUE(stalled.Dial(server_.port(), &error)) << error;
  // A TLS record header announcing a 512-byte ClientHello, then nothing.
  SEND(stalled, std::string("\x16\x03\x01\x02\x00\x01", 6));
  std::string received;
  ASSERT_TRUE(idle.WaitClosed(seconds(5), &received)) << "a client that never handshakes is still connected";
  const auto idle_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  EXPECT_TRUE(received.empty()) << "sent before closing: " << received;
  ASSERT_TRUE(stalled.WaitClosed(seconds(5), &received)) << "a client stalled mid-handshake is still connected";
  const auto stalled_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  EXPECT_GE(idle_ms, 450) << "closed before the bound";
  EXPECT_LE(idle_ms, 3000) << "closed long after the 600 ms bound";
  EXPECT_GE(stalled_ms, 450);
  EXPECT_LE(stalled_ms, 3000);
  const std::string log = server_.ReadLog();
  EXPECT_GE(CountOf(log, "no TLS handshake within 600 ms"), 2) << log;

  TlsNatsClient good("good");
  CONNECT_TLS(good, server_.port(), TrustingTestCa());
  FLUSH(good);
}

// ---------------------------------------------------------------------------
// 2. zmesh::Client (client/) on a TLS node.

TEST_F(TlsClientPortTest, ZmeshClientLibrary) {
  StartNode();
  zmesh::Options o = LibOptions(server_.url());
  o.tls.ca_file = Pki()->ca;
  std::unique_ptr<zmesh::Client> a, b;
  zmesh::Status st = zmesh::Client::Connect(o, &a);
  ASSERT_TRUE(st.ok()) << st;
  st = zmesh::Client::Connect(o, &b);
  ASSERT_TRUE(st.ok()) << st;

  std::shared_ptr<zmesh::Subscription> sub;
  ASSERT_TRUE(a->SubscribeSync("lib.data", &sub).ok());
  ASSERT_TRUE(a->Flush(kIo).ok());
  const std::string big = Pattern(300000, 7);
  ASSERT_TRUE(b->Publish("lib.data", "small").ok());
  ASSERT_TRUE(b->Publish("lib.data", big).ok());
  ASSERT_TRUE(b->Flush(kIo).ok());
  zmesh::Message m;
  ASSERT_TRUE(sub->NextMsg(&m, kIo).ok());
  EXPECT_EQ(m.data(), "small");
  ASSERT_TRUE(sub->NextMsg(&m, kIo).ok());
  EXPECT_TRUE(m.data() == big) << "300 kB payload corrupted";

  zmesh::Client* responder = a.get();
  std::shared_ptr<zmesh::Subscription> svc;
  ASSERT_TRUE(
      a->Subscribe(
           "lib.echo",
           [responder](zmesh::Message req) { responder->Publish(req.reply(), "echo:" + std::string(req.data())); },
           &svc)
          .ok());
  ASSERT_TRUE(a->Flush(kIo).ok());
  zmesh::Message reply;
  st = b->Request("lib.echo", "ping", kIo, &reply);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(reply.data(), "echo:ping");
  EXPECT_EQ(b->Request("lib.nobody", "x", kIo, &reply).code(), zmesh::StatusCode::kNoResponders);

  // The wrong CA, and no CA (system roots), fail cleanly with a TLS error.
  for (const std::string& ca : {Pki()->other_ca, std::string()}) {
    zmesh::Options bad = LibOptions(server_.url());
    bad.tls.ca_file = ca;
    std::unique_ptr<zmesh::Client> c;
    const auto start = Clock::now();
    st = zmesh::Client::Connect(bad, &c);
    EXPECT_EQ(st.code(), zmesh::StatusCode::kTlsError) << "CA '" << ca << "': " << st;
    EXPECT_EQ(c, nullptr);
    EXPECT_LT(Clock::now() - start, seconds(10));
  }
  // A name the certificate does not carry.
  zmesh::Options wrong_name = o;
  wrong_name.tls.server_name = "elsewhere.invalid";
  std::unique_ptr<zmesh::Client> c;
  st = zmesh::Client::Connect(wrong_name, &c);
  EXPECT_EQ(st.code(), zmesh::StatusCode::kTlsError) << st;
  // The good clients were not disturbed.
  st = b->Request("lib.echo", "again", kIo, &reply);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(reply.data(), "echo:again");
}

// A node whose certificate has expired, or is not valid yet, is refused by a
// verifying client.
TEST_F(TlsClientPortTest, ExpiredOrNotYetValidServerCertificateIsRefused) {
  for (const CertKey* ck : {&Pki()->expired, &Pki()->not_yet_valid}) {
    ServerUnderTest server(Target::kZmesh);
    ServerOptions so;
    so.extra_args = ServerTlsArgs(*ck);
    ASSERT_TRUE(server.Start(so));
    zmesh::Options o = LibOptions(server.url());
    o.tls.ca_file = Pki()->ca;
    std::unique_ptr<zmesh::Client> c;
    const zmesh::Status st = zmesh::Client::Connect(o, &c);
    EXPECT_EQ(st.code(), zmesh::StatusCode::kTlsError) << ck->cert << ": " << st;
    TlsNatsClient raw("raw");
    std::string error;
    EXPECT_FALSE(raw.Connect(server.port(), TrustingTestCa(), &error)) << ck->cert << " was accepted";
    EXPECT_NE(error.find(ck == &Pki()->expired ? "certificate has expired" : "certificate is not yet valid"),
              std::string::npos)
        << error;
  }
}

// ---------------------------------------------------------------------------
// 3. The standard Go client (nats.go through natscheck --tls-ca).

TEST_F(TlsClientPortTest, GoClient) {
  StartNode();
  const std::string url = server_.url();
  for (const char* scenario : {"pubsub", "request"}) {
    NatscheckOutcome o = RunNatscheck(server_.dir() + "/natscheck-" + scenario + ".log",
                                      {scenario, "--pub-url=" + url, "--tls-ca=" + Pki()->ca, "--msgs=2000"});
    EXPECT_TRUE(o.passed()) << o.Describe();
  }
  // Without the CA, nats.go cannot verify the node: a setup error (exit 2).
  NatscheckOutcome o = RunNatscheck(server_.dir() + "/natscheck-noca.log", {"pubsub", "--pub-url=" + url, "--msgs=10"});
  EXPECT_EQ(o.exit_code, std::optional<int>(2)) << o.Describe();
  EXPECT_NE(o.log.find("certificate"), std::string::npos) << o.Describe();
}

// ---------------------------------------------------------------------------
// 4. --tls_verify_clients.

TEST_F(TlsClientPortTest, VerifyClientsRequiresACertificateFromTheCa) {
  StartNode({"--tls_ca=" + Pki()->ca, "--tls_verify_clients"});
  {
    TlsNatsClient probe("probe");
    std::string error;
    ASSERT_TRUE(probe.Dial(server_.port(), &error)) << error;
    EXPECT_EQ(probe.info().value("tls_required", false), true) << probe.info().dump();
  }
  struct Case {
    const char* what;
    const CertKey* cert;  // null: none
    bool accepted;
  };
  const Case cases[] = {
      {"no certificate", nullptr, false},
      {"the CA's client certificate", &Pki()->client, true},
      {"a certificate from another CA", &Pki()->other_node, false},
      {"an expired certificate from the CA", &Pki()->expired, false},
      {"a not yet valid certificate from the CA", &Pki()->not_yet_valid, false},
  };
  int refused = 0;
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    for (const Case& c : cases) {
      TlsConfig cfg = TrustingTestCa();
      cfg.max_version = version;
      if (c.cert != nullptr) {
        cfg.cert = c.cert->cert;
        cfg.key = c.cert->key;
      }
      const Attempt a = TryClient(server_.port(), cfg, c.what);
      const std::string label = std::string(c.what) + (version == TLS1_2_VERSION ? " (TLS 1.2)" : " (TLS 1.3)");
      if (c.accepted) {
        EXPECT_TRUE(a.got_pong) << label << ": " << a.detail;
      } else {
        EXPECT_TRUE(a.refused()) << label << " was not refused: " << a.detail;
        // Refused by the TLS layer (an alert), not by a timeout or a reset.
        EXPECT_NE(a.detail.find("alert"), std::string::npos) << label << ": " << a.detail;
        ++refused;
      }
    }
  }
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return CountOf(server_.ReadLog(), "TLS handshake failed") >= refused; }))
      << "expected " << refused << " \"TLS handshake failed\" lines:\n"
      << server_.ReadLog();

  // zmesh::Client: with the client certificate it works, without it fails.
  zmesh::Options o = LibOptions(server_.url());
  o.tls.ca_file = Pki()->ca;
  std::unique_ptr<zmesh::Client> without;
  zmesh::Status st = zmesh::Client::Connect(o, &without);
  EXPECT_FALSE(st.ok()) << "connected without a client certificate";
  o.tls.cert_file = Pki()->client.cert;
  o.tls.key_file = Pki()->client.key;
  std::unique_ptr<zmesh::Client> with;
  st = zmesh::Client::Connect(o, &with);
  ASSERT_TRUE(st.ok()) << st;
  std::shared_ptr<zmesh::Subscription> sub;
  ASSERT_TRUE(with->SubscribeSync("verified", &sub).ok());
  ASSERT_TRUE(with->Publish("verified", "yes").ok());
  zmesh::Message m;
  ASSERT_TRUE(sub->NextMsg(&m, kIo).ok());
  EXPECT_EQ(m.data(), "yes");

  // The Go client with --tls-cert/--tls-key.
  NatscheckOutcome go =
      RunNatscheck(server_.dir() + "/natscheck-verify.log",
                   {"pubsub", "--pub-url=" + server_.url(), "--tls-ca=" + Pki()->ca, "--tls-cert=" + Pki()->client.cert,
                    "--tls-key=" + Pki()->client.key, "--msgs=1000"});
  EXPECT_TRUE(go.passed()) << go.Describe();
}

// ---------------------------------------------------------------------------
// 5, 6. Peer links.

class TlsMeshTest : public MeshFixture {
 protected:
  void SetUp() override {
    ASSERT_PKI();
    MeshFixture::SetUp();
    // Liveness is not under test here (mesh_fault_test's business): slack for
    // loaded machines, where a subscriber receiving megabytes while the CPU
    // is starved would otherwise be cut off as stale behind its own backlog.
    mesh_ = NewMesh("", [](MeshOptions& o) {
      o.ping_interval_ms = 2000;
      o.max_pings_out = 3;
      o.session_timeout_ms = 6000;
    });
  }

  // Peer certificates, and TLS on the client port with the clients' PKI.
  static std::vector<std::string> PeerArgs(const CertKey& ck, const std::string& peer_ca) {
    return {"--peer_tls_cert=" + ck.cert, "--peer_tls_key=" + ck.key, "--peer_tls_ca=" + peer_ca, "--peer_tls",
            "--tls_cert=" + Pki()->node.cert, "--tls_key=" + Pki()->node.key};
  }
  int AddNode(std::vector<std::string> args, std::string id = "", std::string secret = "") {
    args.insert(args.begin(), kQuickExit.begin(), kQuickExit.end());
    MeshNodeSpec spec;
    spec.node_id = std::move(id);
    spec.secret = std::move(secret);
    spec.extra_args = std::move(args);
    return mesh_->Add(spec);
  }
  void StartAndConverge(const std::vector<int>& nodes) {
    for (int i : nodes) {
      std::string error;
      ASSERT_TRUE(mesh_->Start(i, &error)) << error;
    }
    std::string why;
    ASSERT_TRUE(mesh_->WaitConverged(nodes, seconds(20), &why)) << why;
  }
  // Both ends list each other linked and synced in /peerz (bounded wait:
  // /peerz may not answer at once on a loaded machine).
  void ExpectLinkedAndSynced(int a, int b) {
    std::string last;
    const bool ok = WaitFor(
        seconds(10),
        [&] {
          for (auto [x, y] : {std::pair{a, b}, std::pair{b, a}}) {
            auto e = mesh_->PeerEntry(x, mesh_->id(y));
            if (!e || !e->value("linked", false) || !e->value("synced", false)) {
              last = mesh_->id(x) + " /peerz entry for " + mesh_->id(y) + ": " + (e ? e->dump() : "(none)");
              return false;
            }
          }
          return true;
        },
        milliseconds(50));
    EXPECT_TRUE(ok) << last;
  }
  // `subject` published `count` times on node `from` reaches a TLS subscriber
  // on node `to` exactly once each, in order, and nothing else arrives.
  void ExpectExactlyOnce(int from, int to, const std::string& subject, int count) {
    TlsNatsClient sub("sub@" + mesh_->id(to)), pub("pub@" + mesh_->id(from));
    CONNECT_TLS(sub, mesh_->client_port(to), TrustingTestCa());
    CONNECT_TLS(pub, mesh_->client_port(from), TrustingTestCa());
    // The probe subscription comes after the data one: once the probe's
    // interest reached `from`, so did the data's (SPEC §2).
    SEND(sub, "SUB " + subject + " 1\r\nSUB " + subject + ".probe 2\r\n");
    FLUSH(sub);
    const auto interest_deadline = Clock::now() + seconds(15);
    bool interest = false;
    while (!interest && Clock::now() < interest_deadline) {
      SEND(pub, PubCmd(subject + ".probe", "probe"));
      FLUSH(pub);
      if (auto m = sub.ReadMsg(milliseconds(100))) interest = m->sid == "2";
    }
    ASSERT_TRUE(interest) << "interest of " << mesh_->id(to) << " never reached " << mesh_->id(from);
    std::string batch;
    for (int i = 0; i < count; ++i) batch += PubCmd(subject, std::to_string(i));
    SEND(pub, batch);
    FLUSH(pub);
    std::map<int, int> seen;
    int last = -1;
    bool in_order = true;
    const auto deadline = Clock::now() + seconds(20);
    while (static_cast<int>(seen.size()) < count && Clock::now() < deadline) {
      auto m = sub.ReadMsg(milliseconds(MsLeft(deadline)));
      if (!m) break;
      if (m->sid != "1") continue;  // a late probe
      const int n = std::stoi(m->payload);
      if (n <= last) in_order = false;
      last = n;
      ++seen[n];
    }
    // Late duplicates would arrive now.
    const auto grace_end = Clock::now() + milliseconds(400);
    while (Clock::now() < grace_end) {
      auto m = sub.ReadMsg(milliseconds(MsLeft(grace_end) + 1));
      if (!m) break;
      if (m->sid == "1") ++seen[std::stoi(m->payload)];
    }
    int missing = 0, duplicated = 0;
    for (int i = 0; i < count; ++i) {
      if (seen[i] == 0) ++missing;
      if (seen[i] > 1) ++duplicated;
    }
    EXPECT_EQ(missing, 0) << mesh_->id(from) << " -> " << mesh_->id(to) << ": lost messages";
    EXPECT_EQ(duplicated, 0) << mesh_->id(from) << " -> " << mesh_->id(to) << ": duplicates";
    EXPECT_EQ(static_cast<int>(seen.size()), count) << "unexpected payloads";
    EXPECT_TRUE(in_order) << mesh_->id(from) << " -> " << mesh_->id(to) << ": out of order";
  }
  // 1 MiB payloads published on `from` reach a subscriber on `to` intact and
  // in order: peer frames of many TLS records each, written back to back.
  void ExpectBigPayloadsCross(int from, int to, int count) {
    constexpr size_t kSize = 1 << 20;
    TlsNatsClient sub("bigsub@" + mesh_->id(to)), pub("bigpub@" + mesh_->id(from));
    CONNECT_TLS(sub, mesh_->client_port(to), TrustingTestCa());
    CONNECT_TLS(pub, mesh_->client_port(from), TrustingTestCa());
    SEND(sub, "SUB big.cross 1\r\nSUB big.cross.probe 2\r\n");
    FLUSH(sub);
    const auto interest_deadline = Clock::now() + seconds(15);
    bool interest = false;
    while (!interest && Clock::now() < interest_deadline) {
      SEND(pub, PubCmd("big.cross.probe", "probe"));
      FLUSH(pub);
      if (auto m = sub.ReadMsg(milliseconds(100))) interest = m->sid == "2";
    }
    ASSERT_TRUE(interest) << "interest of " << mesh_->id(to) << " never reached " << mesh_->id(from);
    std::atomic<bool> pub_ok{false};
    std::string pub_error;
    std::thread publisher([&] {
      bool ok = true;
      for (int i = 0; i < count && ok; ++i) {
        ok = pub.Send(PubCmd("big.cross", Pattern(kSize, 5000u + static_cast<uint64_t>(i))), &pub_error);
      }
      pub_ok = ok && pub.Flush(&pub_error);
    });
    int got = 0;
    for (; got < count;) {
      std::string unexpected;
      auto m = sub.ReadMsg(seconds(30), &unexpected);
      if (!m) {
        ADD_FAILURE() << "message " << got << " from " << mesh_->id(from) << ": " << unexpected;
        break;
      }
      if (m->sid != "1") continue;
      if (m->payload != Pattern(kSize, 5000u + static_cast<uint64_t>(got))) {
        ADD_FAILURE() << "1 MiB payload " << got << " corrupted or out of order across the TLS peer link (size "
                      << m->payload.size() << ")";
        break;
      }
      ++got;
    }
    publisher.join();
    EXPECT_TRUE(pub_ok) << pub_error;
    EXPECT_EQ(got, count);
  }

  // The peer port of node i speaks TLS from the first byte: a handshake with
  // `cfg` succeeds and the node's first peer frame (HELLO, type 0x01) comes
  // inside it; or, when `expect_ok` is false, the handshake is refused.
  void ProbePeerPort(int i, const TlsConfig& cfg, bool expect_ok) {
    // No INFO on a peer port: drive the handshake on the raw socket.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(mesh_->peer_port(i));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    // Peer links speak TLS 1.3 only; the server judges our certificate after
    // our Finished, so a refusal shows on the first read.
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (!cfg.ca.empty()) {
      SSL_CTX_load_verify_locations(ctx, cfg.ca.c_str(), nullptr);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    if (!cfg.cert.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx, cfg.cert.c_str());
      SSL_CTX_use_PrivateKey_file(ctx, cfg.key.c_str(), SSL_FILETYPE_PEM);
    }
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (!cfg.ca.empty()) X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), mesh_->id(i).c_str(), 0);
    ERR_clear_error();
    const int r = SSL_connect(ssl);
    std::string why = r == 1 ? "" : OpenSslErrors();
    unsigned char head[5] = {};
    int got = 0;
    if (r == 1) {
      while (got < 5) {
        const int n = SSL_read(ssl, head + got, 5 - got);
        if (n <= 0) break;
        got += n;
      }
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ::close(fd);
    if (expect_ok) {
      ASSERT_EQ(r, 1) << "TLS handshake with " << mesh_->id(i) << "'s peer port failed: " << why;
      ASSERT_EQ(got, 5) << "no peer frame inside TLS from " << mesh_->id(i);
      const uint32_t length = head[0] | (head[1] << 8) | (head[2] << 16) | (static_cast<uint32_t>(head[3]) << 24);
      EXPECT_EQ(head[4], 0x01) << "the first frame is not HELLO";
      EXPECT_GT(length, 1u);
      EXPECT_LT(length, 4096u);
    } else {
      EXPECT_TRUE(r != 1 || got < 5) << mesh_->id(i) << "'s peer port accepted a TLS session it should refuse";
    }
  }
  // Lines of node i's log that report a failed TLS handshake on a link to
  // 127.0.0.1:port (the outbound links this node dialled to that port).
  int HandshakeFailuresTo(int i, uint16_t port) {
    const std::string log = mesh_->Log(i);
    const std::string needle = "127.0.0.1:" + std::to_string(port) + ": TLS handshake failed";
    return CountOf(log, needle);
  }
};

// Mutual TLS (--peer_tls): two nodes whose certificates the peer CA signed
// for their node ids link and forward exactly once. A node presenting a
// certificate of the clients' CA (naming its node id, as a peer certificate
// would), a node with another CA's certificate, and a node with the cluster
// secret but no certificates, all in the same ZooKeeper root, are never
// linked, while the first two keep working.
TEST_F(TlsMeshTest, MutualPeerTlsKeepsStrangersOut) {
  const int n1 = AddNode(PeerArgs(Pki()->peers.at("n1"), Pki()->peer_ca));
  const int n2 = AddNode(PeerArgs(Pki()->peers.at("n2"), Pki()->peer_ca));
  StartAndConverge({n1, n2});
  ExpectLinkedAndSynced(n1, n2);
  ExpectExactlyOnce(n1, n2, "mutual.a", 500);
  ExpectExactlyOnce(n2, n1, "mutual.b", 500);
  ExpectBigPayloadsCross(n1, n2, 16);

  // The peer port: TLS from the first byte, and mutual against the peer CA only.
  auto probe = [](const CertKey* ck) {
    TlsConfig c;
    c.ca = Pki()->peer_ca;
    if (ck != nullptr) {
      c.cert = ck->cert;
      c.key = ck->key;
    }
    return c;
  };
  ProbePeerPort(n1, probe(&Pki()->peers.at("n2")), /*expect_ok=*/true);
  ProbePeerPort(n1, probe(nullptr), /*expect_ok=*/false);                // no certificate
  ProbePeerPort(n1, probe(&Pki()->client), /*expect_ok=*/false);          // a client certificate
  ProbePeerPort(n1, probe(&Pki()->client_as_peer), /*expect_ok=*/false);  // the clients' CA naming a node
  ProbePeerPort(n1, probe(&Pki()->other_node), /*expect_ok=*/false);      // another CA

  // n3: the clients' CA signed its certificate (and it trusts that CA); n4:
  // another CA; n5: the cluster secret, no certificates.
  const int n3 = AddNode(PeerArgs(Pki()->client_as_peer, Pki()->ca));
  const int n4 = AddNode(PeerArgs(Pki()->other_node, Pki()->other_ca));
  const int n5 = AddNode({});
  std::string error;
  for (int i : {n3, n4, n5}) ASSERT_TRUE(mesh_->Launch(i, &error)) << error;
  // They give up waiting for the links after --join_timeout_ms and register.
  for (int i : {n3, n4, n5}) ASSERT_TRUE(mesh_->WaitReady(i, seconds(15), &error)) << error;

  // Until n1 and n2 have each tried to dial every newcomer (and failed), and
  // for at least 3 s: n1 and n2 stay linked to each other and to no one else,
  // and no newcomer is linked to anyone.
  std::string violation;
  auto links_as_expected = [&] {
    const auto l1 = mesh_->LinkedPeers(n1), l2 = mesh_->LinkedPeers(n2);
    const auto l3 = mesh_->LinkedPeers(n3), l4 = mesh_->LinkedPeers(n4), l5 = mesh_->LinkedPeers(n5);
    auto show = [](const std::optional<std::set<std::string>>& s) {
      if (!s) return std::string("(no /peerz)");
      std::string out = "{";
      for (const auto& x : *s) out += x + " ";
      return out + "}";
    };
    if (!l1 || !l2 || !l3 || !l4 || !l5) return false;  // a /peerz did not answer: no sample
    const bool ok = *l1 == std::set<std::string>{mesh_->id(n2)} && *l2 == std::set<std::string>{mesh_->id(n1)} &&
                    l3->empty() && l4->empty() && l5->empty();
    if (!ok && violation.empty()) {
      violation = "linked: n1 " + show(l1) + ", n2 " + show(l2) + ", n3 " + show(l3) + ", n4 " + show(l4) + ", n5 " +
                  show(l5);
    }
    return ok;
  };
  const auto window_start = Clock::now();
  auto all_dialled = [&] {
    for (int from : {n1, n2}) {
      for (int to : {n3, n4, n5}) {
        if (HandshakeFailuresTo(from, mesh_->peer_port(to)) == 0) return false;
      }
    }
    return true;
  };
  const bool dialled = WaitFor(
      seconds(20),
      [&] {
        links_as_expected();
        return Clock::now() - window_start >= seconds(3) && all_dialled();
      },
      milliseconds(100));
  EXPECT_TRUE(violation.empty()) << violation;
  EXPECT_TRUE(dialled) << "n1/n2 did not log failed TLS handshakes dialling every newcomer";
  for (int i : {n3, n4}) {
    EXPECT_NE(mesh_->Log(i).find("TLS handshake failed"), std::string::npos) << mesh_->id(i) << " logged no failed handshake";
  }
  // n1 knows the newcomers as members (their znodes) but holds no link to them.
  for (int stranger_node : {n3, n4, n5}) {
    std::optional<json> e;
    ASSERT_TRUE(WaitFor(
        seconds(10), [&] { return (e = mesh_->PeerEntry(n1, mesh_->id(stranger_node))).has_value(); },
        milliseconds(100)))
        << "n1 /peerz lacks " << mesh_->id(stranger_node);
    EXPECT_TRUE(e->value("member", false)) << e->dump();
    EXPECT_FALSE(e->value("linked", false)) << e->dump();
  }
  // The first two still forward, exactly once.
  ExpectLinkedAndSynced(n1, n2);
  ExpectExactlyOnce(n1, n2, "mutual.c", 300);
  ExpectExactlyOnce(n2, n1, "mutual.d", 300);
  EXPECT_TRUE(mesh_->Running(n1) && mesh_->Running(n2) && mesh_->Running(n3) && mesh_->Running(n4) &&
              mesh_->Running(n5));
}

// The certificate must name the node id in the HELLO: n2's certificate is
// from the peer CA but names n9. Both sides refuse the link.
TEST_F(TlsMeshTest, CertificateMustNameTheNodeId) {
  const int n1 = AddNode(PeerArgs(Pki()->peers.at("n1"), Pki()->peer_ca));
  StartAndConverge({n1});
  const int n2 = AddNode(PeerArgs(Pki()->peers.at("n9"), Pki()->peer_ca));
  std::string error;
  ASSERT_TRUE(mesh_->Start(n2, &error)) << error;
  const bool seen = WaitFor(
      seconds(20),
      [&] {
        return mesh_->Log(n1).find("the peer certificate does not name node n2") != std::string::npos;
      },
      milliseconds(100));
  EXPECT_TRUE(seen) << "n1 did not refuse n2's certificate for naming n9; n1 log:\n" << mesh_->Log(n1);
  // n2 cannot tell that n1 will refuse until n1 closes, so for a moment after
  // each dial n2 may list n1 as linked. What must never happen: n1 taking n2
  // as a peer, or n2 getting n1's interest (synced), over many redials.
  int samples = 0;
  const auto window_end = Clock::now() + seconds(3);
  while (Clock::now() < window_end) {
    const auto l1 = mesh_->LinkedPeers(n1);
    ASSERT_TRUE(l1.has_value()) << "n1 /peerz did not answer";
    EXPECT_TRUE(l1->empty()) << "n1 took a peer whose certificate names another node";
    if (const auto e = mesh_->PeerEntry(n2, mesh_->id(n1))) {
      EXPECT_FALSE(e->value("synced", false)) << "n2 got n1's interest: " << e->dump();
    }
    ++samples;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_GT(samples, 10);
}

// --peer_tls verifies against --peer_tls_ca or does not start: encryption
// without verification would let anyone in. A connection to a running
// node's peer port that never handshakes is closed after the handshake
// bound (2 x --auth_timeout_ms = 1000 ms here).
TEST_F(TlsMeshTest, PeerTlsNeedsAPeerCaAndAHandshakeInTime) {
  const int bad = AddNode({"--peer_tls_cert=" + Pki()->peers.at("n1").cert,
                           "--peer_tls_key=" + Pki()->peers.at("n1").key, "--peer_tls"});
  mesh_->node(bad).spec.expected_exit_code = 2;  // a refused configuration
  std::string error;
  EXPECT_FALSE(mesh_->Start(bad, &error, seconds(10))) << "a node with --peer_tls and no --peer_tls_ca started";
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return mesh_->Log(bad).find("--peer_tls_ca") != std::string::npos; }))
      << mesh_->Log(bad);
  EXPECT_TRUE(WaitFor(seconds(5), [&] { return !mesh_->Running(bad); })) << "it should have exited";

  std::vector<std::string> args = PeerArgs(Pki()->peers.at("n2"), Pki()->peer_ca);
  args.push_back("--auth_timeout_ms=500");
  const int n2 = AddNode(args, "n2");
  StartAndConverge({n2});
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(mesh_->peer_port(n2));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const auto start = Clock::now();
  pollfd p{fd, POLLIN, 0};
  const int ready = ::poll(&p, 1, 5000);
  char byte;
  const ssize_t n = ready == 1 ? ::recv(fd, &byte, 1, 0) : -2;
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  ::close(fd);
  EXPECT_TRUE(ready == 1 && n <= 0) << "an idle connection to the TLS peer port was not closed within 5 s (ready "
                                    << ready << ", recv " << n << ")";
  EXPECT_GE(waited, 800) << "closed before the handshake bound";
  EXPECT_LE(waited, 3000) << "closed long after the 1000 ms handshake bound";
  EXPECT_NE(mesh_->Log(n2).find("no TLS handshake within 1000 ms"), std::string::npos) << mesh_->Log(n2);
}

}  // namespace
}  // namespace zmesh::testing

#pragma once

// Starts the server a black-box test talks to: zmesh-server, or nats-server as
// the reference implementation, on 127.0.0.1 with a free port, from one set of
// options, so the very same test validates its expectations against
// nats-server and then checks zmesh against them.
//
// The target comes from ZMESH_TEST_TARGET=zmesh|nats (default zmesh).
// zmesh-server is $ZMESH_BIN_DIR/zmesh-server (ctest sets ZMESH_BIN_DIR);
// nats-server is $NATS_SERVER_BIN or the first of /usr/sbin (Debian's
// place), /usr/bin, /usr/local/bin. A missing binary is
// a test failure, never a skip.
//
// Not thread safe.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace zmesh::testing {

enum class Target { kZmesh, kNats };

// ZMESH_TEST_TARGET, default kZmesh; an unknown value fails loudly (abort),
// because silently testing the wrong server would pass for the wrong reason.
Target TargetFromEnv();
const char* TargetName(Target target);

// One user: the name, a bcrypt hash ("$2a$..."; both servers accept it), and
// optional permission lists. Empty allow lists mean "everything".
struct UserSpec {
  std::string name;
  std::string password_hash;
  std::vector<std::string> pub_allow;
  std::vector<std::string> pub_deny;
  std::vector<std::string> sub_allow;
  std::vector<std::string> sub_deny;
};

// A user with a hash and optional permission lists.
inline UserSpec MakeUser(std::string name, std::string password_hash,
                         std::vector<std::string> pub_allow = {},
                         std::vector<std::string> sub_allow = {},
                         std::vector<std::string> pub_deny = {},
                         std::vector<std::string> sub_deny = {}) {
  UserSpec u;
  u.name = std::move(name);
  u.password_hash = std::move(password_hash);
  u.pub_allow = std::move(pub_allow);
  u.pub_deny = std::move(pub_deny);
  u.sub_allow = std::move(sub_allow);
  u.sub_deny = std::move(sub_deny);
  return u;
}

// Limits in zmesh's terms (SPEC §7); unset means the server's default.
// For nats-server they become a generated config file.
struct ServerOptions {
  std::vector<UserSpec> users;  // empty: no authentication
  std::optional<int64_t> max_payload;
  std::optional<int64_t> max_control_line;
  std::optional<int64_t> max_pending_bytes;
  std::optional<int64_t> write_deadline_ms;
  std::optional<int64_t> ping_interval_ms;
  std::optional<int64_t> max_pings_out;
  std::optional<int64_t> auth_timeout_ms;
  std::optional<int64_t> max_connections;
  std::optional<int64_t> max_subs;
  std::optional<int> threads;  // zmesh only (nats-server uses all cores)
  // zmesh only: listen on port 0 and learn the ports from --ports_file instead
  // of picking free ports up front.
  bool use_ports_file = false;
  // Appended to the command line as is (target specific).
  std::vector<std::string> extra_args;
};

class ServerUnderTest {
 public:
  explicit ServerUnderTest(Target target = TargetFromEnv());
  ServerUnderTest(const ServerUnderTest&) = delete;
  ServerUnderTest& operator=(const ServerUnderTest&) = delete;
  // Stops the server. zmesh-server must end cleanly and its log must hold no
  // sanitizer report (tests/support/server_checks.h), else the test fails.
  // If the current test failed, prints the tail of the server log and keeps
  // its directory for inspection.
  ~ServerUnderTest();

  // Writes the users file / config, starts the server and waits (bounded)
  // until a TCP client receives its INFO line. Fails the test and returns false
  // if the server does not come up, with the log tail in the message.
  bool Start(const ServerOptions& options = {},
             std::source_location loc = std::source_location::current());
  // SIGTERM, SIGKILL after a bound. Returns the wait status.
  std::optional<int> Stop();

  // Replaces the users (rewrites the users file or config) and sends SIGHUP.
  // Returns once the signal is sent; callers poll for the effect.
  bool ReloadUsers(const std::vector<UserSpec>& users);

  Target target() const { return target_; }
  bool is_nats() const { return target_ == Target::kNats; }
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  // zmesh only; with use_ports_file, 0 unless the server reported a peer
  // port (a standalone node does not listen for peers).
  uint16_t peer_port() const { return peer_port_; }
  // zmesh with use_ports_file and --http_listen: the monitoring port, else 0.
  uint16_t http_port() const { return http_port_; }
  std::string url() const { return "nats://" + host_ + ":" + std::to_string(port_); }
  pid_t pid() const { return process_.pid(); }
  const std::string& dir() const { return dir_; }
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const { return process_.ReadLog(); }
  Process& process() { return process_; }
  const Process& process() const { return process_; }
  long RssKb() const { return process_.RssKb(); }

  // Path of the binary for `target`, from the environment.
  static std::string BinaryPath(Target target);

 private:
  bool WriteConfig(const ServerOptions& options);
  std::vector<std::string> BuildArgv(const ServerOptions& options) const;
  bool WaitReady(std::chrono::milliseconds timeout, std::string* why);
  bool ReadPortsFile();
  std::string LogTail(std::size_t bytes) const;

  Target target_;
  ServerOptions options_;
  std::string host_ = "127.0.0.1";
  uint16_t port_ = 0;
  uint16_t peer_port_ = 0;
  uint16_t http_port_ = 0;
  std::string dir_;
  std::string log_path_;
  std::string users_path_;   // zmesh
  std::string config_path_;  // nats
  std::string ports_path_;   // zmesh with use_ports_file
  Process process_;
};

// A free TCP port on 127.0.0.1 (bound to port 0 and released). Another process
// may take it before the server binds; Start() retries on a fresh port then.
uint16_t PickFreePort();

}  // namespace zmesh::testing

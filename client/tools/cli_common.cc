#include "client/tools/cli_common.h"

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <zmesh/client.h>

namespace zmesh::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;

void OnStopSignal(int) { g_stop = 1; }

}  // namespace

void AddConnFlags(FlagSet* f, ConnFlags* c) {
  f->String("zk", &c->zk, "ZooKeeper connect string; nodes are read from <zk_root>/nodes");
  f->String("zk_root", &c->zk_root, "mesh root in ZooKeeper");
  f->String("servers", &c->servers, "comma-separated node list (nats://host:port,...), instead of or besides --zk");
  f->String("user", &c->user, "user name");
  f->String("password_file", &c->password_file,
            "file whose first line is the password (preferred; or set $ZMESH_PASSWORD)");
  f->String("password", &c->password, "password (visible to other users until scrubbed; prefer --password_file)");
  f->Secret("password");
  f->String("name", &c->name, "connection name shown by the server");
  f->String("node_cache", &c->node_cache, "node cache file (default: under ~/.cache/zmesh)");
  f->Bool("tls", &c->tls, "require TLS (it is used anyway when the server asks for it)");
  f->String("tls_ca", &c->tls_ca, "CA bundle to verify servers");
  f->String("tls_cert", &c->tls_cert, "client certificate");
  f->String("tls_key", &c->tls_key, "client key");
  f->Bool("tls_insecure", &c->tls_insecure, "do not verify the server certificate (testing only)");
  f->Int("connect_timeout_ms", &c->connect_timeout_ms, "timeout of one connection attempt");
  f->Int("initial_timeout_ms", &c->initial_timeout_ms, "how long to wait for the first connection");
  f->Int("ping_interval_ms", &c->ping_interval_ms, "keepalive interval; a node silent for (max_pings_out+1) intervals is left");
  f->Int("max_pings_out", &c->max_pings_out, "unanswered keepalives before moving to another node");
  f->Int("reconnect_buffer_mb", &c->reconnect_buffer_mb, "publishes buffered while failing over, in MiB");
}

std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string ExpandSequence(const std::string& pattern, int64_t n) {
  std::string out;
  const std::string num = std::to_string(n);
  size_t pos = 0;
  for (;;) {
    const size_t at = pattern.find("{n}", pos);
    if (at == std::string::npos) break;
    out.append(pattern, pos, at - pos).append(num);
    pos = at + 3;
  }
  return out.append(pattern, pos, std::string::npos);
}

bool BuildOptions(const ConnFlags& c, Options* out, std::string* error) {
  Options o;
  o.servers = SplitList(c.servers);
  o.zk_connect = c.zk;
  o.zk_root = c.zk_root;
  if (o.servers.empty() && o.zk_connect.empty()) {
    *error = "say where the mesh is: --zk=HOST:PORT [--zk_root=/zmesh/NAME] or --servers=nats://HOST:PORT,...";
    return false;
  }
  o.node_cache_file = c.node_cache;
  o.user = c.user;
  if (!c.password_file.empty()) {
    std::ifstream in(c.password_file);
    if (!in) {
      *error = "cannot read password file " + c.password_file;
      return false;
    }
    std::getline(in, o.password);
    if (!o.password.empty() && o.password.back() == '\r') o.password.pop_back();
  } else if (const char* env = std::getenv("ZMESH_PASSWORD"); env != nullptr && env[0] != '\0') {
    o.password = env;
  } else {
    o.password = c.password;
  }
  o.name = c.name;
  o.tls.required = c.tls;
  o.tls.ca_file = c.tls_ca;
  o.tls.cert_file = c.tls_cert;
  o.tls.key_file = c.tls_key;
  o.tls.insecure_skip_verify = c.tls_insecure;
  o.connect_timeout = std::chrono::milliseconds(c.connect_timeout_ms);
  o.initial_connect_timeout = std::chrono::milliseconds(c.initial_timeout_ms);
  o.ping_interval = std::chrono::milliseconds(c.ping_interval_ms);
  o.max_pings_out = static_cast<int>(c.max_pings_out);
  o.reconnect_buffer_bytes = static_cast<size_t>(c.reconnect_buffer_mb) << 20;
  *out = std::move(o);
  return true;
}

void InstallStopSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool StopRequested() { return g_stop != 0; }

bool ParseOrUsage(FlagSet* flags, int argc, char** argv, const std::string& synopsis, size_t min_args,
                  size_t max_args, std::vector<std::string>* args, int* exit_code) {
  std::string error;
  if (!flags->Parse(argc - 1, argv + 1, args, &error)) {
    std::cerr << "zmesh " << argv[0] << ": " << error << "\n" << flags->Usage(synopsis);
    *exit_code = 2;
    return false;
  }
  if (flags->help_requested()) {
    std::cout << flags->Usage(synopsis);
    *exit_code = 0;
    return false;
  }
  if (args->size() < min_args || args->size() > max_args) {
    std::cerr << flags->Usage(synopsis);
    *exit_code = 2;
    return false;
  }
  return true;
}

bool ConnectOrReport(const char* cmd, const ConnFlags& conn, std::unique_ptr<Client>* client) {
  Options options;
  std::string error;
  if (!BuildOptions(conn, &options, &error)) {
    std::cerr << "zmesh " << cmd << ": " << error << "\n";
    return false;
  }
  // Scripts see failovers on stderr; stdout stays the data.
  options.on_event = [cmd](const Event& e) {
    // Routine: membership changes; the close we asked for (or whose cause
    // the command reports itself).
    if (e.type == EventType::kServersChanged || e.type == EventType::kClosed) return;
    std::cerr << "zmesh " << cmd << ": " << EventTypeName(e.type);
    if (!e.url.empty()) std::cerr << " " << e.url;
    if (!e.subject.empty()) std::cerr << " subject=" << e.subject;
    if (!e.status.ok()) std::cerr << " (" << e.status.ToString() << ")";
    std::cerr << "\n";
  };
  Status st = Client::Connect(std::move(options), client);
  if (!st.ok()) {
    std::cerr << "zmesh " << cmd << ": cannot connect: " << st << "\n";
    return false;
  }
  return true;
}

}  // namespace zmesh::cli

#include "tests/support/mesh_cluster.h"

#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/server_checks.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint16_t PortOf(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<uint16_t>(std::atoi(host_port.c_str() + colon + 1));
}

// The ZooKeeper C client logs every reconnect at ERROR level to stderr; the
// tests restart ZooKeeper on purpose, so keep only real errors quiet-ish.
void QuietZooKeeperLogs() {
  static std::once_flag once;
  std::call_once(once, [] { zoo_set_debug_level(static_cast<ZooLogLevel>(0)); });
}

}  // namespace

std::string ZmeshServerPath() {
  const char* dir = std::getenv("ZMESH_BIN_DIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : ".") + "/zmesh-server";
}

int CountEstablishedOnLocalPort(uint16_t local_port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  int count = 0;
  while (std::getline(in, line)) {
    // "  0: 0100007F:1F90 0100007F:C350 01 ..."
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    const size_t colon = local.find(':');
    if (colon == std::string::npos) continue;
    const auto port = static_cast<uint16_t>(std::strtoul(local.c_str() + colon + 1, nullptr, 16));
    if (port == local_port && state == "01") ++count;
  }
  return count;
}

// --- ZkReader -------------------------------------------------------------------

ZkReader::ZkReader(std::string connect) : connect_(std::move(connect)) {}

ZkReader::~ZkReader() { Close(); }

void ZkReader::Close() {
  if (zh_ != nullptr) {
    zookeeper_close(zh_);
    zh_ = nullptr;
  }
}

bool ZkReader::EnsureConnected(milliseconds timeout) {
  QuietZooKeeperLogs();
  if (zh_ != nullptr) {
    const int state = zoo_state(zh_);
    if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) Close();
  }
  if (zh_ == nullptr) {
    // A long session of its own: this reader must never be the one that
    // expires while ZooKeeper is stopped on purpose.
    zh_ = zookeeper_init(connect_.c_str(), nullptr, 10000, nullptr, nullptr, 0);
    if (zh_ == nullptr) return false;
  }
  return WaitFor(timeout, [&] { return zoo_state(zh_) == ZOO_CONNECTED_STATE; });
}

std::optional<std::vector<std::string>> ZkReader::Children(const std::string& path, milliseconds timeout) {
  if (!EnsureConnected(timeout)) return std::nullopt;
  String_vector children{};
  const int rc = zoo_get_children(zh_, path.c_str(), 0, &children);
  if (rc == ZNONODE) return std::vector<std::string>();
  if (rc != ZOK) return std::nullopt;
  std::vector<std::string> out;
  for (int32_t k = 0; k < children.count; ++k) out.emplace_back(children.data[k]);
  deallocate_String_vector(&children);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<ZkReader::Znode> ZkReader::Get(const std::string& path, milliseconds timeout) {
  if (!EnsureConnected(timeout)) return std::nullopt;
  std::string buffer(64 * 1024, '\0');
  int length = static_cast<int>(buffer.size());
  Stat stat{};
  if (zoo_get(zh_, path.c_str(), 0, buffer.data(), &length, &stat) != ZOK) return std::nullopt;
  Znode z;
  z.data = buffer.substr(0, static_cast<size_t>(std::max(length, 0)));
  z.ephemeral_owner = stat.ephemeralOwner;
  return z;
}

// --- MeshCluster ------------------------------------------------------------------

MeshCluster::MeshCluster(MeshOptions options) : options_(std::move(options)), zk_(options_.zk_connect) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "zmesh-mesh.XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  secret_path_ = dir_ + "/cluster.secret";
  std::ofstream(secret_path_) << options_.secret << "\n";
}

namespace {
// The node exited by itself with the status its test expected.
bool EndedAsExpected(const MeshCluster::Node& n) {
  const std::optional<int> status = n.process->exit_status();
  return n.spec.expected_exit_code && status && WIFEXITED(*status) &&
         WEXITSTATUS(*status) == *n.spec.expected_exit_code;
}
}  // namespace

MeshCluster::~MeshCluster() {
  // SIGTERM to all at once, so that a graceful leave of one does not make the
  // others log errors while they are being stopped one by one; the second
  // SIGTERM right after keeps teardown from waiting out each lame duck.
  std::vector<Process*> running;
  for (Node& n : nodes_) running.push_back(n.process.get());
  TerminateForTeardown(running, milliseconds(0));
  for (Node& n : nodes_) {
    if (n.process && !EndedAsExpected(n)) ExpectCleanEnd(n.id, *n.process);
    // Every run of the node appended to this one log.
    if (n.process || std::filesystem::exists(n.log_path)) ExpectNoSanitizerReports(n.id, n.log_path);
  }
  const bool failed = ::testing::Test::HasFailure();
  if (failed) {
    for (int i = 0; i < size(); ++i) {
      std::cerr << "---- " << nodes_[static_cast<size_t>(i)].id << " log tail ("
                << nodes_[static_cast<size_t>(i)].log_path << ") ----\n"
                << LogTail(i, 6000) << "\n";
    }
    std::cerr << "mesh test directory kept: " << dir_ << "\n";
  } else if (const char* keep = std::getenv("ZMESH_KEEP_MESH_DIRS"); keep != nullptr && *keep == '1') {
    std::cerr << "mesh test directory kept (ZMESH_KEEP_MESH_DIRS=1): " << dir_ << "\n";
  } else if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int MeshCluster::Add(MeshNodeSpec spec) {
  Node n;
  const int index = size();
  n.id = spec.node_id.empty() ? "n" + std::to_string(index + 1) : spec.node_id;
  // Files are named by id; a second process with the same id (a twin, a
  // test of identity) gets files of its own.
  std::string file = n.id;
  for (const Node& other : nodes_) {
    if (other.id == n.id) file = n.id + "-" + std::to_string(index + 1);
  }
  n.ports_path = dir_ + "/" + file + ".ports";
  n.log_path = dir_ + "/" + file + ".log";
  n.secret_path = secret_path_;
  if (!spec.secret.empty()) {
    n.secret_path = dir_ + "/" + n.id + ".secret";
    std::ofstream(n.secret_path) << spec.secret << "\n";
  }
  n.client_port = spec.client_port;
  n.peer_port = spec.peer_port;
  n.http_port = spec.http_port;
  n.spec = std::move(spec);
  nodes_.push_back(std::move(n));
  return index;
}

std::vector<std::string> MeshCluster::Argv(const Node& n) const {
  const std::string& h = n.spec.host;
  std::vector<std::string> argv = {
      ZmeshServerPath(),
      "--listen=" + h + ":" + std::to_string(n.spec.client_port),
      "--peer_listen=" + h + ":" + std::to_string(n.spec.peer_port),
      "--http_listen=" + h + ":" + std::to_string(n.spec.http_port),
      "--ports_file=" + n.ports_path,
      "--zk=" + options_.zk_connect,
      "--zk_root=" + options_.zk_root,
      "--node_id=" + n.id,
      "--cluster_secret_file=" + n.secret_path,
      "--zk_session_timeout_ms=" + std::to_string(options_.session_timeout_ms),
      "--ping_interval_ms=" + std::to_string(options_.ping_interval_ms),
      "--max_pings_out=" + std::to_string(options_.max_pings_out),
      "--join_timeout_ms=" + std::to_string(options_.join_timeout_ms),
      "--anti_entropy_interval_ms=" + std::to_string(options_.anti_entropy_interval_ms),
      "--threads=" + std::to_string(options_.threads),
      // Short graceful leave on Stop(); tests about lame duck override it in extra_args.
      "--lame_duck_grace_ms=100", "--lame_duck_duration_ms=300",
  };
  argv.insert(argv.end(), n.spec.extra_args.begin(), n.spec.extra_args.end());
  return argv;
}

bool MeshCluster::Launch(int i, std::string* error) {
  Node& n = node(i);
  if (n.process && n.process->Running()) {
    *error = n.id + " is already running";
    return false;
  }
  // A restart replaces the Process, and with it the previous run's exit
  // status: judge that run now.
  if (n.process && !EndedAsExpected(n)) ExpectCleanEnd(n.id, *n.process);
  std::error_code ec;
  std::filesystem::remove(n.ports_path, ec);  // a restart must not read the old one
  if (n.spec.client_port == 0) n.client_port = 0;
  if (n.spec.peer_port == 0) n.peer_port = 0;
  if (n.spec.http_port == 0) n.http_port = 0;
  {
    std::ofstream(n.log_path, std::ios::app) << "==== test harness: starting " << n.id << " ====\n";
  }
  n.process = std::make_unique<Process>();
  return n.process->Start(Argv(n), n.log_path, error, {"GLOG_logtostderr=1"});
}

bool MeshCluster::ReadPortsFile(Node& n) {
  const std::string text = ReadFile(n.ports_path);
  if (text.empty()) return false;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("client")) return false;
  n.client_port = PortOf(j.value("client", ""));
  n.peer_port = PortOf(j.value("peer", ""));
  n.http_port = PortOf(j.value("http", ""));
  return n.client_port != 0;
}

bool MeshCluster::WaitReady(int i, milliseconds timeout, std::string* error) {
  Node& n = node(i);
  bool exited = false;
  const bool ok = WaitFor(timeout, [&] {
    if (ReadPortsFile(n)) return true;
    if (!n.process || !n.process->Running()) {
      exited = true;
      return true;
    }
    return false;
  });
  if (ok && !exited) return true;
  *error = n.id + (exited ? " exited before serving clients" : " did not serve clients within " +
                                                                  std::to_string(timeout.count()) + " ms") +
           "; log tail:\n" + LogTail(i, 4000);
  return false;
}

bool MeshCluster::Start(int i, std::string* error, milliseconds timeout) {
  return Launch(i, error) && WaitReady(i, timeout, error);
}

bool MeshCluster::StartNodes(int count, std::string* error) {
  for (int k = 0; k < count; ++k) {
    const int i = Add();
    if (!Start(i, error)) return false;
  }
  return WaitConverged(RunningNodes(), milliseconds(15000), error);
}

void MeshCluster::Kill(int i) {
  Node& n = node(i);
  if (!n.process) return;
  n.process->Signal(SIGKILL);
  n.process->WaitExit(std::chrono::seconds(10));
}

void MeshCluster::Stop(int i) {
  Node& n = node(i);
  if (!n.process) return;
  n.process->Signal(SIGCONT);
  // Generous: running out of it is now a failure (server_checks.h), and a
  // sanitizer build's exit (leak check) is slow on a loaded machine.
  n.process->Stop(std::chrono::seconds(15));
}

bool MeshCluster::Signal(int i, int sig) {
  Node& n = node(i);
  return n.process && n.process->Signal(sig);
}

bool MeshCluster::Running(int i) {
  Node& n = node(i);
  return n.process && n.process->Running();
}

std::string MeshCluster::client_url(int i) const {
  return "nats://127.0.0.1:" + std::to_string(client_port(i));
}

std::string MeshCluster::Log(int i) const { return ReadFile(nodes_.at(static_cast<size_t>(i)).log_path); }

std::string MeshCluster::LogTail(int i, size_t bytes) const {
  const std::string log = Log(i);
  return log.size() > bytes ? "..." + log.substr(log.size() - bytes) : log;
}

std::optional<json> MeshCluster::Peerz(int i) {
  const Node& n = node(i);
  auto j = GetJson(n.spec.host, n.http_port, "/peerz");
  if (!j || !j->contains("peers")) return std::nullopt;
  return j;
}

std::optional<json> MeshCluster::Varz(int i) {
  const Node& n = node(i);
  return GetJson(n.spec.host, n.http_port, "/varz");
}

std::optional<json> MeshCluster::Connz(int i, const std::string& query) {
  const Node& n = node(i);
  return GetJson(n.spec.host, n.http_port, query.empty() ? "/connz" : "/connz?" + query);
}

int MeshCluster::Healthz(int i) {
  const Node& n = node(i);
  auto reply = HttpGet(n.spec.host, n.http_port, "/healthz");
  return reply ? reply->status : 0;
}

std::optional<json> MeshCluster::PeerEntry(int i, const std::string& peer_id) {
  auto peerz = Peerz(i);
  if (!peerz) return std::nullopt;
  for (const json& p : (*peerz)["peers"]) {
    if (p.value("node_id", "") == peer_id) return p;
  }
  return std::nullopt;
}

std::optional<std::set<std::string>> MeshCluster::LinkedPeers(int i) {
  auto peerz = Peerz(i);
  if (!peerz) return std::nullopt;
  std::set<std::string> linked;
  for (const json& p : (*peerz)["peers"]) {
    if (p.value("linked", false)) linked.insert(p.value("node_id", ""));
  }
  return linked;
}

std::vector<int> MeshCluster::RunningNodes() {
  std::vector<int> out;
  for (int i = 0; i < size(); ++i) {
    if (Running(i)) out.push_back(i);
  }
  return out;
}

std::optional<std::vector<std::string>> MeshCluster::ZkMembers(milliseconds timeout) {
  return zk_.Children(nodes_path(), timeout);
}

std::string MeshCluster::DescribeState(const std::vector<int>& nodes) {
  std::string out;
  auto members = ZkMembers(milliseconds(500));
  out += "ZooKeeper " + nodes_path() + ": ";
  if (members) {
    for (const std::string& m : *members) out += m + " ";
  } else {
    out += "(unreachable)";
  }
  out += "\n";
  for (int i : nodes) {
    auto peerz = Peerz(i);
    out += id(i) + " /peerz: " + (peerz ? peerz->dump() : std::string("(no answer)")) + "\n";
  }
  return out;
}

bool MeshCluster::WaitConverged(const std::vector<int>& nodes, milliseconds timeout, std::string* why) {
  std::set<std::string> want;
  for (int i : nodes) want.insert(id(i));
  // /peerz is a snapshot the node refreshes every tick: a node that was just
  // resumed (SIGCONT) still shows its state from before the pause. So the
  // condition must hold for a while (several ticks) before it counts.
  constexpr milliseconds kStable{400};
  std::optional<Clock::time_point> holding_since;
  auto converged = [&] {
    auto members = ZkMembers(milliseconds(500));
    if (!members || std::set<std::string>(members->begin(), members->end()) != want) return false;
    for (int i : nodes) {
      auto peerz = Peerz(i);
      if (!peerz || !peerz->value("registered", false) || !peerz->value("healthy", false)) return false;
      std::set<std::string> linked;
      for (const json& p : (*peerz)["peers"]) {
        const std::string pid = p.value("node_id", "");
        const bool wanted = want.count(pid) > 0;
        if (p.value("linked", false)) {
          if (!wanted) return false;
          if (!p.value("member", false) || !p.value("synced", false)) return false;
          linked.insert(pid);
        } else if (wanted) {
          return false;
        }
      }
      if (linked.size() != want.size() - 1) return false;
    }
    return true;
  };
  const bool ok = WaitFor(
      timeout,
      [&] {
        if (!converged()) {
          holding_since.reset();
          return false;
        }
        if (!holding_since) holding_since = Clock::now();
        return Clock::now() - *holding_since >= kStable;
      },
      milliseconds(50));
  if (!ok) *why = "mesh did not converge within " + std::to_string(timeout.count()) + " ms:\n" + DescribeState(nodes);
  return ok;
}

}  // namespace zmesh::testing

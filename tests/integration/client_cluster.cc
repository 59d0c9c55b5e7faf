#include "tests/integration/client_cluster.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>

#include "tests/support/server_checks.h"
#include "tests/support/server_under_test.h"
#include "tests/support/wait_for.h"
#include "tests/support/zookeeper_server.h"

namespace zmesh::testing {

bool WaitForInfo(int port, std::chrono::milliseconds timeout) {
  return WaitFor(timeout, [port] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      pollfd p{fd, POLLIN, 0};
      char buf[5] = {};
      ok = ::poll(&p, 1, 500) == 1 && ::recv(fd, buf, 4, 0) == 4 && std::string(buf) == "INFO";
    }
    ::close(fd);
    return ok;
  }, std::chrono::milliseconds(20));
}

NodeCluster::NodeCluster(Kind kind, int size, std::string zk_connect, std::string zk_root)
    : kind_(kind), zk_connect_(std::move(zk_connect)), zk_root_(std::move(zk_root)) {
  char tmpl[] = "/tmp/zmesh-client-cluster-XXXXXX";
  if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
  const std::vector<int> ports = FreeLoopbackPorts(2 * size);
  nodes_.resize(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) {
    nodes_[static_cast<size_t>(i)].port = ports[static_cast<size_t>(2 * i)];
    nodes_[static_cast<size_t>(i)].peer_port = ports[static_cast<size_t>(2 * i + 1)];
  }
  if (kind_ == Kind::kZmesh) {
    std::ofstream(dir_ + "/secret") << "client-test-cluster-secret-0123456789\n";
  } else {
    // Lame duck: INFO ldm at once, clients closed only after the grace period.
    std::ofstream(dir_ + "/nats.conf") << "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"10s\"\n";
  }
}

NodeCluster::~NodeCluster() {
  if (kind_ == Kind::kZmesh) {
    // zmesh-server is ours: it must stop cleanly and report no sanitizer
    // finding (tests/support/server_checks.h). Every run of node i appends
    // to one log.
    std::vector<Process*> running;
    for (Node& n : nodes_) running.push_back(n.process.get());
    TerminateForTeardown(running, std::chrono::milliseconds(0));
    for (int i = 0; i < size(); ++i) {
      const Node& n = nodes_[static_cast<size_t>(i)];
      if (!n.process) continue;
      ExpectCleanEnd("n" + std::to_string(i + 1), *n.process);
      ExpectNoSanitizerReports("n" + std::to_string(i + 1), n.process->log_path());
    }
  }
  for (Node& n : nodes_) {  // SIGKILL by PID, reaped
    n.registrar.reset();
    n.process.reset();
  }
  if (!dir_.empty() && !::testing::Test::HasFailure()) {
    std::system(("rm -rf " + dir_).c_str());
  } else if (!dir_.empty()) {
    std::fprintf(stderr, "node logs kept in %s\n", dir_.c_str());
  }
}

std::vector<std::string> NodeCluster::Argv(int i) const {
  const Node& n = nodes_[static_cast<size_t>(i)];
  const std::string id = "n" + std::to_string(i + 1);
  if (kind_ != Kind::kZmesh) {
    std::string routes;
    for (size_t j = 0; j < nodes_.size(); ++j) {
      if (static_cast<int>(j) == i) continue;
      routes += (routes.empty() ? "" : ",") + std::string("nats://127.0.0.1:") + std::to_string(nodes_[j].peer_port);
    }
    std::vector<std::string> argv = {ServerUnderTest::BinaryPath(Target::kNats), "-c", dir_ + "/nats.conf", "-a", "127.0.0.1", "-p",
            std::to_string(n.port), "-n", id, "--cluster_name", "clienttest", "--cluster",
            "nats://127.0.0.1:" + std::to_string(n.peer_port), "--routes", routes};
    if (kind_ == Kind::kNatsInZooKeeper) argv.push_back("--no_advertise");
    return argv;
  }
  return {ServerUnderTest::BinaryPath(Target::kZmesh),
          "--listen=127.0.0.1:" + std::to_string(n.port),
          "--peer_listen=127.0.0.1:" + std::to_string(n.peer_port),
          "--zk=" + zk_connect_,
          "--zk_root=" + zk_root_,
          "--node_id=" + id,
          "--cluster_secret_file=" + dir_ + "/secret",
          "--zk_session_timeout_ms=2000"};
}

bool NodeCluster::StartNode(int i, std::string* error) {
  Node& n = nodes_[static_cast<size_t>(i)];
  // A restart replaces the Process and with it the last run's exit status.
  if (kind_ == Kind::kZmesh && n.process) ExpectCleanEnd("n" + std::to_string(i + 1), *n.process);
  n.process = std::make_unique<Process>();
  const std::string log = dir_ + "/node" + std::to_string(i + 1) + ".log";
  if (!n.process->Start(Argv(i), log, error, {"GLOG_logtostderr=1"})) return false;
  if (!WaitForInfo(n.port, std::chrono::seconds(20))) {
    *error = "node " + std::to_string(i + 1) + " did not serve on port " + std::to_string(n.port) + ":\n" +
             n.process->ReadLog();
    return false;
  }
  return kind_ == Kind::kNatsInZooKeeper ? StartRegistrar(i, error) : true;
}

bool NodeCluster::StartRegistrar(int i, std::string* error) {
  Node& n = nodes_[static_cast<size_t>(i)];
  const char* bin_dir = ::getenv("ZMESH_BIN_DIR");
  const std::string helper = std::string(bin_dir != nullptr ? bin_dir : ".") + "/zk_registry_helper";
  const std::string log = dir_ + "/registrar" + std::to_string(i + 1) + ".log";
  std::ofstream(log, std::ios::trunc).close();
  n.registrar = std::make_unique<Process>();
  if (!n.registrar->Start({helper, zk_connect_, zk_root_, "n" + std::to_string(i + 1), url(i),
                           "127.0.0.1:" + std::to_string(n.peer_port), "2000"},
                          log, error, {"GLOG_logtostderr=1"})) {
    return false;
  }
  if (!WaitFor(std::chrono::seconds(20), [&] { return n.registrar->ReadLog().find("registered") != std::string::npos; },
               std::chrono::milliseconds(20))) {
    *error = "zk_registry_helper for node " + std::to_string(i + 1) + " did not register:\n" + n.registrar->ReadLog();
    return false;
  }
  return true;
}

bool NodeCluster::Start(std::string* error) {
  for (int i = 0; i < size(); ++i) {
    if (!StartNode(i, error)) return false;
  }
  return true;
}

void NodeCluster::Kill(int i) {
  Node& n = nodes_[static_cast<size_t>(i)];
  for (Process* p : {n.registrar.get(), n.process.get()}) {
    if (p == nullptr) continue;
    p->Signal(SIGKILL);
    p->WaitExit(std::chrono::seconds(10));
  }
}

void NodeCluster::Stop(int i) {
  Node& n = nodes_[static_cast<size_t>(i)];
  // The registrar first: a leaving node deregisters before it stops serving.
  if (n.registrar) n.registrar->Stop(std::chrono::seconds(10));
  if (n.process) n.process->Stop(std::chrono::seconds(10));
}

bool NodeCluster::LameDuck(int i) {
  Node& n = nodes_[static_cast<size_t>(i)];
  if (!n.process) return false;
  if (kind_ != Kind::kZmesh) {
    // nats-server --signal ldm=PID sends SIGUSR2 to that PID.
    return n.process->Signal(SIGUSR2);
  }
  return n.process->Signal(SIGTERM);  // zmesh-server: graceful leave
}

bool NodeCluster::running(int i) const {
  const Node& n = nodes_[static_cast<size_t>(i)];
  return n.process && n.process->pid() > 0;
}

std::vector<std::string> NodeCluster::urls() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(url(i));
  return out;
}

int NodeCluster::IndexOf(const std::string& u) const {
  for (int i = 0; i < size(); ++i) {
    if (url(i) == u) return i;
  }
  return -1;
}

std::string NodeCluster::Log(int i) const {
  const Node& n = nodes_[static_cast<size_t>(i)];
  return n.process ? n.process->ReadLog() : std::string();
}

}  // namespace zmesh::testing

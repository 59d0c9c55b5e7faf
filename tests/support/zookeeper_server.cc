#include "tests/support/zookeeper_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

constexpr char kClassPath[] = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

// Small heap, serial GC and C1 only: a test server starts in about half a
// second and stays out of the way of the code under test on 2 cores.
const std::vector<std::string> kJvmFlags = {
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.net.preferIPv4Stack=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
    "-Dzookeeper.admin.enableServer=false",
};

std::string FindJava() {
  if (const char* home = getenv("JAVA_HOME"); home != nullptr && *home != '\0') {
    std::string java = std::string(home) + "/bin/java";
    if (access(java.c_str(), X_OK) == 0) return java;
  }
  for (const char* candidate : {"/usr/bin/java", "/usr/lib/jvm/default-java/bin/java"}) {
    if (access(candidate, X_OK) == 0) return candidate;
  }
  return "";
}

// Connects to 127.0.0.1:port within the deadline; -1 on failure.
int ConnectLoopback(int port, std::chrono::steady_clock::time_point deadline) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      close(fd);
      return -1;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof(err);
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

// Removes <tmp>/zmesh-zk.* directories left by test processes that died
// before their destructor ran (their JVMs died with them, see Launch). Only
// directories whose recorded owner PID no longer exists are touched.
void RemoveAbandonedDirs(const std::string& tmp) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(tmp, ec)) {
    if (entry.path().filename().string().rfind("zmesh-zk.", 0) != 0) continue;
    std::ifstream in(entry.path() / "owner.pid");
    long owner = 0;
    if (!(in >> owner) || owner <= 0) continue;
    if (kill(static_cast<pid_t>(owner), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    std::filesystem::remove_all(entry.path(), ignored);
  }
}

}  // namespace

std::string ZooKeeperFourLetterWord(int port, const std::string& word,
                                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = ConnectLoopback(port, deadline);
  if (fd < 0) return "";
  std::string answer;
  if (send(fd, word.data(), word.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(word.size())) {
    char buf[4096];
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) break;
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;  // the server closes after answering
      answer.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return answer;
}

std::vector<int> FreeLoopbackPorts(int count) {
  // All sockets stay bound until every port is chosen, so they differ.
  std::vector<int> fds, ports;
  for (int i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

ZooKeeperServer::ZooKeeperServer(Options options) : options_(std::move(options)) {}

ZooKeeperServer::~ZooKeeperServer() {
  if (process_.Signal(SIGKILL)) process_.WaitExit(std::chrono::seconds(10));
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string ZooKeeperServer::connect_string() const {
  return "127.0.0.1:" + std::to_string(port_);
}

bool ZooKeeperServer::Prepare(std::string* error) {
  if (!dir_.empty()) return true;
  const char* tmp_env = getenv("TMPDIR");
  const std::string tmp = tmp_env != nullptr && *tmp_env != '\0' ? tmp_env : "/tmp";
  RemoveAbandonedDirs(tmp);
  std::string pattern = tmp + "/zmesh-zk.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    *error = "mkdtemp " + pattern + ": " + strerror(errno);
    return false;
  }
  dir_ = pattern;
  std::ofstream(dir_ + "/owner.pid") << getpid() << "\n";
  if (options_.port != 0) {
    port_ = options_.port;
  } else {
    std::vector<int> ports = FreeLoopbackPorts(1);
    if (ports.empty()) {
      *error = "no free port on 127.0.0.1";
      return false;
    }
    port_ = ports[0];
  }
  std::error_code ec;
  std::filesystem::create_directories(dir_ + "/data", ec);
  if (ec) {
    *error = "mkdir " + dir_ + "/data: " + ec.message();
    return false;
  }
  if (options_.myid != 0) {
    std::ofstream(dir_ + "/data/myid") << options_.myid << "\n";
  }
  std::ofstream cfg(dir_ + "/zoo.cfg");
  cfg << "tickTime=" << options_.tick_ms << "\n"
      << "initLimit=10\n"
      << "syncLimit=5\n"
      << "dataDir=" << dir_ << "/data\n"
      << "clientPort=" << port_ << "\n"
      << "clientPortAddress=127.0.0.1\n"
      << "maxClientCnxns=0\n"
      << "admin.enableServer=false\n"
      << "4lw.commands.whitelist=srvr,ruok,mntr,cons,dump,wchs\n";
  for (const std::string& line : options_.extra_config) cfg << line << "\n";
  cfg.close();
  if (!cfg) {
    *error = "cannot write " + dir_ + "/zoo.cfg";
    return false;
  }
  return true;
}

bool ZooKeeperServer::Launch(std::string* error) {
  if (process_.Running()) return true;
  if (!Prepare(error)) return false;
  const std::string java = FindJava();
  if (java.empty()) {
    *error = "no java found (apt-get install default-jre-headless zookeeper)";
    return false;
  }
  if (access("/usr/share/java/zookeeper.jar", R_OK) != 0) {
    *error = "/usr/share/java/zookeeper.jar missing (apt-get install zookeeper)";
    return false;
  }
  std::vector<std::string> argv;
  // setpriv makes the kernel SIGKILL the JVM when the thread that started it
  // dies, so an aborted test run leaves no ZooKeeper behind. It execs java:
  // the PID we hold is the JVM's.
  if (access("/usr/bin/setpriv", X_OK) == 0) {
    argv = {"/usr/bin/setpriv", "--pdeathsig", "KILL", "--", java};
  } else {
    argv = {java};
  }
  argv.insert(argv.end(), kJvmFlags.begin(), kJvmFlags.end());
  argv.insert(argv.end(), {"-cp", kClassPath, "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                           dir_ + "/zoo.cfg"});
  if (!process_.Start(argv, dir_ + "/zk.log", error)) return false;
  return true;
}

bool ZooKeeperServer::WaitServing(std::chrono::milliseconds timeout, std::string* error) {
  bool exited = false;
  const bool serving = WaitFor(
      timeout,
      [&] {
        if (!process_.Running()) {
          exited = true;
          return true;
        }
        return !Mode().empty();
      },
      std::chrono::milliseconds(50));
  if (serving && !exited) return true;
  std::optional<int> status = process_.WaitExit(std::chrono::milliseconds(0));
  *error = "ZooKeeper on port " + std::to_string(port_) +
           (exited ? " exited (" + (status ? DescribeWaitStatus(*status) : std::string("?")) + ")"
                   : " not serving after " + std::to_string(timeout.count()) + " ms") +
           "; log " + dir_ + "/zk.log:\n" + LogTail();
  return false;
}

bool ZooKeeperServer::Start(std::string* error) {
  return Launch(error) && WaitServing(options_.start_timeout, error);
}

bool ZooKeeperServer::Stop(int sig) {
  if (!process_.Running()) return true;
  process_.Signal(sig);
  // WaitExit polls waitpid: we are the parent, so a zombie is reaped, not
  // mistaken for a live process (kill -0 would be).
  if (process_.WaitExit(std::chrono::seconds(10))) return true;
  process_.Signal(SIGKILL);
  return process_.WaitExit(std::chrono::seconds(10)).has_value();
}

bool ZooKeeperServer::Restart(std::string* error, int sig) {
  if (!Stop(sig)) {
    *error = "ZooKeeper (pid " + std::to_string(pid()) + ") did not stop";
    return false;
  }
  return Start(error);
}

bool ZooKeeperServer::running() { return process_.Running(); }

std::string ZooKeeperServer::Mode() const {
  const std::string answer = ZooKeeperFourLetterWord(port_, "srvr", std::chrono::seconds(1));
  const size_t pos = answer.find("Mode: ");
  if (pos == std::string::npos) return "";
  const size_t end = answer.find('\n', pos);
  return answer.substr(pos + 6, end == std::string::npos ? std::string::npos : end - pos - 6);
}

std::string ZooKeeperServer::LogTail() const {
  const std::string log = process_.ReadLog();
  constexpr size_t kTail = 3000;
  return log.size() <= kTail ? log : log.substr(log.size() - kTail);
}

ZooKeeperEnsemble::ZooKeeperEnsemble(int size, int tick_ms) {
  const std::vector<int> ports = FreeLoopbackPorts(3 * size);
  std::vector<std::string> members;
  for (int i = 0; i < size && static_cast<int>(ports.size()) == 3 * size; ++i) {
    members.push_back("server." + std::to_string(i + 1) + "=127.0.0.1:" +
                      std::to_string(ports[size + 2 * i]) + ":" +
                      std::to_string(ports[size + 2 * i + 1]));
  }
  for (int i = 0; i < size; ++i) {
    ZooKeeperServer::Options options;
    options.tick_ms = tick_ms;
    options.port = i < static_cast<int>(ports.size()) ? ports[i] : 0;
    options.extra_config = members;
    options.myid = i + 1;
    servers_.push_back(std::make_unique<ZooKeeperServer>(options));
  }
}

bool ZooKeeperEnsemble::Start(std::string* error, std::chrono::milliseconds timeout) {
  for (auto& server : servers_) {
    if (!server->Launch(error)) return false;
  }
  for (auto& server : servers_) {
    if (!server->WaitServing(timeout, error)) return false;
  }
  return true;
}

int ZooKeeperEnsemble::LeaderIndex() const {
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i]->Mode() == "leader") return static_cast<int>(i);
  }
  return -1;
}

std::string ZooKeeperEnsemble::connect_string() const {
  std::string connect;
  for (const auto& server : servers_) {
    if (!connect.empty()) connect += ",";
    connect += server->connect_string();
  }
  return connect;
}

}  // namespace zmesh::testing

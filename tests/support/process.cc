#include "tests/support/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/support/wait_for.h"

extern char** environ;

namespace zmesh::testing {

Process::~Process() {
  if (running_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    running_ = false;
  }
}

bool Process::Start(const std::vector<std::string>& argv, const std::string& log_path,
                    std::string* error, const std::vector<std::string>& extra_env) {
  if (running_ || argv.empty()) {
    *error = running_ ? "already running" : "empty argv";
    return false;
  }
  log_path_ = log_path;
  status_.reset();
  launched_ = false;
  killed_on_purpose_ = false;

  // Everything the child needs is prepared before fork: after fork only
  // async-signal-safe calls are allowed (the test runner may have threads).
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  for (const std::string& e : extra_env) env_strings.push_back(e);
  std::vector<char*> env;
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    *error = "open " + log_path + ": " + strerror(errno);
    return false;
  }
  // The child writes its exec errno here; a successful exec closes the pipe.
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + strerror(errno);
    ::close(log_fd);
    return false;
  }

  const pid_t pid = ::fork();
  if (pid < 0) {
    *error = std::string("fork: ") + strerror(errno);
    ::close(log_fd);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return false;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(args[0], args.data(), env.data());
    const int err = errno;
    ssize_t ignored = ::write(pipe_fds[1], &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  // Also from the parent, so the group exists before anyone could signal it.
  ::setpgid(pid, pid);
  ::close(log_fd);
  ::close(pipe_fds[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipe_fds[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(pipe_fds[0]);
  pid_ = pid;
  running_ = true;
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    WaitExit(std::chrono::seconds(5));
    *error = "exec " + argv[0] + ": " + strerror(child_errno);
    return false;
  }
  launched_ = true;
  return true;
}

bool Process::Signal(int sig) {
  if (!Running()) return false;
  if (::kill(pid_, sig) != 0) return false;
  if (sig == SIGKILL) killed_on_purpose_ = true;
  return true;
}

bool Process::Running() {
  if (!running_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    running_ = false;
    status_ = status;
  }
  return running_;
}

std::optional<int> Process::WaitExit(std::chrono::milliseconds timeout) {
  if (!running_) return status_;
  WaitFor(timeout, [&] { return !Running(); }, std::chrono::milliseconds(2));
  return running_ ? std::nullopt : status_;
}

std::optional<int> Process::Stop(std::chrono::milliseconds grace) {
  if (!running_) return status_;
  Signal(SIGTERM);
  if (std::optional<int> status = WaitExit(grace)) return status;
  // Not through Signal(): this SIGKILL is the harness giving up, not the
  // test's intent, and must not excuse the exit status.
  if (Running()) ::kill(pid_, SIGKILL);
  return WaitExit(std::chrono::seconds(10));
}

long Process::StatusFieldKb(const char* field) const {
  if (!running_) return -1;
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtol(line.c_str() + prefix.size(), nullptr, 10);
  }
  return -1;
}

long Process::RssKb() const { return StatusFieldKb("VmRSS"); }
long Process::VmHwmKb() const { return StatusFieldKb("VmHWM"); }

std::string Process::ReadLog() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "status " + std::to_string(status);
}

}  // namespace zmesh::testing

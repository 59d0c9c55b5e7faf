#pragma once

// A child process for integration tests: the server under test, ZooKeeper, a CLI.
// It runs in its own process group (a Ctrl-C on the test runner does not reach it
// directly, and it cannot signal the runner's group), with stdout and stderr
// appended to a log file. Only the process started here is ever signalled, by PID.
//
// Not thread safe: use one Process from one thread.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::testing {

class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Kills the child (SIGKILL, by PID) if it is still running, and reaps it.
  ~Process();

  // Starts argv[0] (a path; no PATH search) with `argv`, extra environment
  // entries "NAME=value" added to the inherited environment, stdout and stderr
  // appended to `log_path`. Returns false and sets *error when the program
  // could not be executed (the exec error is reported back through a pipe, so a
  // missing binary fails here, not later as a mysterious timeout).
  bool Start(const std::vector<std::string>& argv, const std::string& log_path,
             std::string* error, const std::vector<std::string>& extra_env = {});

  // PID of the child, or -1 before Start() / after it was reaped.
  pid_t pid() const { return running_ ? pid_ : -1; }
  const std::string& log_path() const { return log_path_; }

  // Sends `sig` to the child. False if it is not running (never signals a
  // reaped PID, which the kernel may have reused). A SIGKILL sent here is
  // the caller's intent (kill -9 tests), so it marks killed_on_purpose();
  // Stop()'s escalation to SIGKILL does not.
  bool Signal(int sig);

  // True once Start() executed the program (until the next Start()).
  bool launched() const { return launched_; }
  // True when the caller sent SIGKILL through Signal() since Start().
  bool killed_on_purpose() const { return killed_on_purpose_; }
  // Wait status once the child was reaped; nullopt while it runs.
  std::optional<int> exit_status() const { return running_ ? std::nullopt : status_; }

  // Waits up to `timeout` for the child to exit; returns its wait status
  // (use WIFEXITED/WEXITSTATUS/WIFSIGNALED) or nullopt on timeout. Once reaped,
  // returns the same status again without waiting.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);

  // True while the child has not exited (reaps it if it has).
  bool Running();

  // SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the wait
  // status, or nullopt if it could not be reaped even after SIGKILL.
  std::optional<int> Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Resident set size and its high-water mark in KiB from /proc/<pid>/status;
  // -1 if the process is gone or the field is missing.
  long RssKb() const;
  long VmHwmKb() const;

  // The whole log file (for failure messages and log assertions).
  std::string ReadLog() const;

 private:
  long StatusFieldKb(const char* field) const;

  pid_t pid_ = -1;
  bool running_ = false;
  bool launched_ = false;
  bool killed_on_purpose_ = false;
  std::optional<int> status_;
  std::string log_path_;
};

// Describes a wait status for messages: "exit 0", "signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

}  // namespace zmesh::testing

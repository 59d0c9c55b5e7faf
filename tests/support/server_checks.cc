#include "tests/support/server_checks.h"

#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxExcerptLines = 40;
constexpr size_t kMaxExcerptBytes = 4000;
// A server that hits one bug often hits it on every message: a handful of
// reports say everything, hundreds would bury the failure output.
constexpr size_t kMaxReportsShown = 5;

// The kind of report `line` starts, or "" when it starts none.
std::string ReportStart(const std::string& line) {
  // "==123==ERROR: AddressSanitizer: heap-use-after-free ...",
  // "WARNING: ThreadSanitizer: data race (pid=1)", "==1==ERROR: LeakSanitizer: ..."
  static const std::regex kHeader("(ERROR|WARNING|FATAL): ([A-Za-z]*Sanitizer)\\b");
  std::smatch m;
  if (std::regex_search(line, m, kHeader)) return m[2];
  // UBSan: "file.cc:12:3: runtime error: signed integer overflow ..."
  if (line.find("runtime error:") != std::string::npos) return "UndefinedBehaviorSanitizer";
  return "";
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    out.emplace_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::vector<SanitizerReport> FindSanitizerReports(std::string_view log) {
  const std::vector<std::string> lines = Lines(log);
  std::vector<SanitizerReport> reports;
  size_t i = 0;
  while (i < lines.size()) {
    std::string kind = ReportStart(lines[i]);
    if (kind.empty()) {
      ++i;
      continue;
    }
    SanitizerReport r;
    r.kind = std::move(kind);
    size_t j = i;
    while (j < lines.size() && j - i < kMaxExcerptLines) {
      if (j > i && !ReportStart(lines[j]).empty()) break;  // the next report
      if (r.excerpt.size() < kMaxExcerptBytes) r.excerpt += lines[j] + "\n";
      const bool summary = lines[j].find("SUMMARY:") != std::string::npos;
      ++j;
      if (summary) break;
    }
    if (r.excerpt.size() > kMaxExcerptBytes) r.excerpt = r.excerpt.substr(0, kMaxExcerptBytes) + "...\n";
    reports.push_back(std::move(r));
    i = j;
  }
  return reports;
}

std::string UncleanEnd(std::optional<int> wait_status, bool killed_on_purpose) {
  if (!wait_status) return "still running";
  const int status = *wait_status;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (killed_on_purpose && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return "";
  std::string why = "ended with " + DescribeWaitStatus(status);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
    why += " that the test did not send: it did not exit on SIGTERM in time";
  } else if (WIFEXITED(status)) {
    why += " (a sanitizer that halts on error exits non-zero; see the log)";
  }
  return why;
}

void TerminateForTeardown(const std::vector<Process*>& processes, milliseconds grace, milliseconds bound) {
  for (Process* p : processes) {
    if (p != nullptr && p->Running()) ::kill(p->pid(), SIGCONT);
  }
  for (Process* p : processes) {
    if (p != nullptr && p->Running()) ::kill(p->pid(), SIGTERM);
  }
  auto all_gone = [&] {
    for (Process* p : processes) {
      if (p != nullptr && p->Running()) return false;
    }
    return true;
  };
  WaitFor(grace, all_gone, milliseconds(5));
  for (Process* p : processes) {
    if (p != nullptr && p->Running()) ::kill(p->pid(), SIGTERM);
  }
  WaitFor(bound, all_gone, milliseconds(5));
  for (Process* p : processes) {
    // Process::Stop's own escalation: not killed_on_purpose, so it is reported.
    if (p != nullptr && p->Running()) p->Stop(milliseconds(0));
  }
}

void ExpectCleanEnd(const std::string& name, const Process& process, std::source_location loc) {
  if (!process.launched()) return;
  const std::string why = UncleanEnd(process.exit_status(), process.killed_on_purpose());
  if (why.empty()) return;
  ADD_FAILURE_AT(loc.file_name(), static_cast<int>(loc.line()))
      << "zmesh-server " << name << " " << why << " (log " << process.log_path() << ")";
}

void ExpectNoSanitizerReports(const std::string& name, const std::string& log_path, std::source_location loc) {
  const std::vector<SanitizerReport> reports = FindSanitizerReports(ReadWholeFile(log_path));
  for (size_t k = 0; k < reports.size() && k < kMaxReportsShown; ++k) {
    ADD_FAILURE_AT(loc.file_name(), static_cast<int>(loc.line()))
        << reports[k].kind << " report in zmesh-server " << name << " (log " << log_path << ", report "
        << k + 1 << " of " << reports.size() << "):\n"
        << reports[k].excerpt;
  }
}

}  // namespace zmesh::testing

#pragma once

// What every harness that starts zmesh-server checks when it is done with a
// server: that the process ended cleanly, and that its log (stdout and stderr,
// where the sanitizer runtimes write) holds no sanitizer report. A report in a
// server is a bug even when the test's own expectations all held, and under
// halt_on_error it usually shows only as a server that "went away" — so it
// must fail the test that caused it, with the report in the failure message.
//
// Clean means: exit status 0 after SIGTERM (a second SIGTERM, "stop now",
// still must exit 0), or killed by the SIGKILL the test itself sent through
// Process::Signal (kill -9 tests). Anything else — a crash, an abort from a
// sanitizer, a non-zero exit, needing the harness's SIGKILL because SIGTERM
// was not enough — is a failure.

#include <chrono>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/process.h"

namespace zmesh::testing {

struct SanitizerReport {
  std::string kind;     // "AddressSanitizer", "UndefinedBehaviorSanitizer", ...
  std::string excerpt;  // the report from its first line, bounded
};

// Every sanitizer report in `log`: "ERROR:/WARNING:/FATAL: <X>Sanitizer"
// headers (ASan, LSan, TSan, UBSan, MSan) and UBSan's "runtime error:" lines,
// each with the lines that follow it up to its SUMMARY line (or the next
// report, or a bound).
std::vector<SanitizerReport> FindSanitizerReports(std::string_view log);

// "" when a process that ended with `wait_status` ended cleanly (see above);
// otherwise why not. nullopt means it has not ended.
std::string UncleanEnd(std::optional<int> wait_status, bool killed_on_purpose);

// Ends every still-running process in `processes` for teardown: SIGCONT (a
// test may have paused it), SIGTERM to all; after `grace` a second SIGTERM
// (zmesh-server stops at once) to those still running; SIGKILL only after
// `bound`, which then shows as an unclean end. Never signals reaped PIDs.
void TerminateForTeardown(const std::vector<Process*>& processes, std::chrono::milliseconds grace,
                          std::chrono::milliseconds bound = std::chrono::seconds(20));

// ADD_FAILURE (at `loc`) when `process`, once started, did not end cleanly.
// `name` identifies the server in the message (node id, log path).
void ExpectCleanEnd(const std::string& name, const Process& process,
                    std::source_location loc = std::source_location::current());

// ADD_FAILURE (at `loc`) for each sanitizer report in the file `log_path`.
void ExpectNoSanitizerReports(const std::string& name, const std::string& log_path,
                              std::source_location loc = std::source_location::current());

}  // namespace zmesh::testing

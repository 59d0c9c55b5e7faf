#pragma once

// Reads zmesh-server's command-line flags (defined in flags.cc, the single
// place where they live) into Options.

#include <string>

#include "server/options.h"

namespace zmesh::server {

// Builds Options from the parsed flags. Returns false with *error set when a
// flag value is invalid.
bool OptionsFromFlags(Options* options, std::string* error);

// gflags silently skips unknown flags inside a --flagfile and takes a
// trailing "# comment" as part of a value; an operator's typo would then go
// unnoticed. Checks every line of the given comma-separated flagfiles.
bool ValidateFlagfiles(const std::string& paths, std::string* error);

// SIGHUP: re-reads the log-level flags (--v, --minloglevel, --vmodule) from
// the --flagfile(s) and applies the ones that changed. Returns a description
// of what changed (empty when nothing did). Main thread.
std::string ReloadLogFlags();

}  // namespace zmesh::server

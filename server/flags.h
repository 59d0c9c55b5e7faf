#pragma once

// Reads zmesh-server's command-line flags (defined in flags.cc, the single
// place where they live) into Options.

#include <string>

#include "server/options.h"

namespace zmesh::server {

// Builds Options from the parsed flags. Returns false with *error set when a
// flag value is invalid.
bool OptionsFromFlags(Options* options, std::string* error);

}  // namespace zmesh::server

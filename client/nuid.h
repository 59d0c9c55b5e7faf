#pragma once

// Unique tokens for inbox subjects: 22 base-62 characters from a per-process
// random generator seeded from the OS (~131 bits), as nats.go's nuid.
//
// Thread safety: NewNuid is thread-safe.

#include <string>

namespace zmesh::client {

std::string NewNuid();

}  // namespace zmesh::client

#pragma once

// What every zmesh CLI command shares: how to find the mesh (--zk/--zk_root
// or --servers), credentials (--user, and the password from --password_file,
// $ZMESH_PASSWORD or, discouraged, --password, which is scrubbed from argv),
// TLS, and turning all that into zmesh::Options.
//
// Thread safety: none; start-up code.

#include <cstdint>
#include <string>
#include <vector>

#include <zmesh/options.h>

#include "client/tools/flags.h"

namespace zmesh::cli {

struct ConnFlags {
  std::string zk;
  std::string zk_root = "/zmesh/default";
  std::string servers;  // comma separated
  std::string user;
  std::string password;
  std::string password_file;
  std::string name;
  std::string node_cache;
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  bool tls_insecure = false;
  int64_t connect_timeout_ms = 2000;
  int64_t initial_timeout_ms = 10000;
  int64_t ping_interval_ms = 2000;
  int64_t max_pings_out = 2;
  int64_t reconnect_buffer_mb = 8;
};

void AddConnFlags(FlagSet* flags, ConnFlags* conn);

// Fills *out; false with *error when no way to find the mesh is given or a
// password file cannot be read.
bool BuildOptions(const ConnFlags& conn, Options* out, std::string* error);

// Splits "a,b,,c" into {"a","b","c"}.
std::vector<std::string> SplitList(const std::string& list);

// Replaces every "{n}" in `pattern` with `n`.
std::string ExpandSequence(const std::string& pattern, int64_t n);

// Installs SIGINT/SIGTERM handlers that set a flag (and SIGPIPE ignored).
void InstallStopSignals();
bool StopRequested();

}  // namespace zmesh::cli

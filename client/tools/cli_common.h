#pragma once

// What every zmesh CLI command shares: how to find the mesh (--zk/--zk_root
// or --servers), credentials (--user, and the password from --password_file,
// $ZMESH_PASSWORD or, discouraged, --password, which is scrubbed from argv),
// TLS, and turning all that into zmesh::Options.
//
// Thread safety: none; start-up code.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <zmesh/client.h>
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

// Parses a command's flags (argv[0] is the command's name) into *args. False
// when the command should end now with *exit_code: 0 after --help, 2 after a
// flag error or fewer than min_args or more than max_args arguments (the
// usage goes to stderr).
bool ParseOrUsage(FlagSet* flags, int argc, char** argv, const std::string& synopsis, size_t min_args,
                  size_t max_args, std::vector<std::string>* args, int* exit_code);

// Connects a client for command `cmd`; false after reporting why on stderr.
// The client's events (failovers, slow-consumer notices) go to stderr too, so
// stdout stays the data.
bool ConnectOrReport(const char* cmd, const ConnFlags& conn, std::unique_ptr<Client>* client);

// Installs SIGINT/SIGTERM handlers that set a flag (and SIGPIPE ignored).
void InstallStopSignals();
bool StopRequested();

}  // namespace zmesh::cli

#pragma once

// Everything that configures a zmesh-server node. Built from the command-line
// flags in one place (flags.cc); libraries and tests take this struct.

#include <cstdint>
#include <string>

#include "proto/name_bounds.h"

namespace zmesh::server {

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;
};

// Parses "host:port", "[v6]:port" or ":port" (host then empty). False on error.
bool ParseHostPort(const std::string& text, HostPort* out);

struct Options {
  // Listeners.
  HostPort listen{"0.0.0.0", 4222};
  HostPort peer_listen{"0.0.0.0", 6222};
  std::string advertise;     // host published in INFO and the znode; empty = derived
  std::string http_listen;   // monitoring host:port; empty = off
  std::string ports_file;    // write the bound ports here as JSON once listening

  // Mesh.
  std::string node_id;       // empty = generated
  std::string zk;            // ZooKeeper connect string; empty = standalone
  std::string zk_root = "/zmesh/default";
  int zk_session_timeout_ms = 10000;
  std::string zk_credentials_file;
  std::string cluster_secret_file;
  bool insecure_peers = false;
  int64_t join_timeout_ms = 10000;
  int64_t join_grace_ms = 15000;
  int64_t anti_entropy_interval_ms = 30000;
  int64_t interest_barrier_timeout_ms = 5000;
  int64_t move_timeout_ms = 10000;
  bool rebalance = true;
  int rebalance_moves_per_s = 10;
  size_t peer_max_pending_bytes = 256u << 20;

  // Threads.
  int threads = 0;  // 0 = number of cores

  // Client limits (SPEC §1, §4).
  int64_t max_payload = 1 << 20;
  size_t max_control_line = 4096;
  int max_connections = 65536;
  int max_subs = 1048576;            // per connection; 0 = only the node budget
  int64_t max_subs_total = 2000000;  // local client subscriptions on the node
  // Subject length (bytes) and tokens, queue-name length: SUB, PUB, peers.
  proto::NameBounds name_bounds{1024, 64, 256};
  int64_t auth_timeout_ms = 2000;
  int64_t ping_interval_ms = 120000;
  int max_pings_out = 2;
  int64_t write_deadline_ms = 10000;
  size_t max_pending_bytes = 64u << 20;
  size_t max_pending_bytes_total = size_t{1} << 30;  // all clients together; 0 = no bound

  // Graceful leave (SIGTERM/SIGINT).
  int64_t lame_duck_grace_ms = 2000;
  int64_t lame_duck_duration_ms = 30000;

  // Authentication.
  std::string users_file;
  int max_logins_in_flight_per_ip = 16;  // 0 = no per-address bound

  // TLS.
  std::string tls_cert, tls_key, tls_ca;
  bool tls_verify_clients = false;
  bool peer_tls = false;  // certificates on peer links instead of the cluster secret
  std::string peer_tls_cert, peer_tls_key, peer_tls_ca;
  int64_t testing_peer_relink_ms = 0;

  // Identity.
  std::string server_name;  // defaults to node_id
};

}  // namespace zmesh::server

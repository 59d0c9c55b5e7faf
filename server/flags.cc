#include "server/flags.h"

#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

// SPEC §7 names these flags; scripts and operators rely on the names.
DEFINE_string(listen, "0.0.0.0:4222", "Client (NATS protocol) listen address host:port; port 0 picks a free port");
DEFINE_string(peer_listen, "0.0.0.0:6222",
              "Peer listen address host:port; when the host is a specific address, outgoing peer connections "
              "bind their source address to it");
DEFINE_string(advertise, "",
              "Host published in the znode and in INFO connect_urls; empty = the listen host, or the first "
              "non-loopback address when that is 0.0.0.0");
DEFINE_string(http_listen, "", "Monitoring HTTP host:port (/healthz /varz /connz /subsz /peerz /metrics); empty = off");
DEFINE_string(ports_file, "", "Once listening, write {\"client\":…,\"peer\":…,\"http\":…} to this file (atomically)");
DEFINE_string(node_id, "", "Stable node id, unique in the mesh (at most 255 bytes, no '/', whitespace or control characters); empty = generated at start");
DEFINE_string(zk, "", "ZooKeeper connect string host:port[,host:port]; empty = standalone node without a mesh");
DEFINE_string(zk_root, "/zmesh/default", "Mesh root path in ZooKeeper; nodes register under <zk_root>/nodes");
DEFINE_int32(zk_session_timeout_ms, 10000, "Requested ZooKeeper session timeout; ZooKeeper may clamp it");
DEFINE_string(zk_credentials_file, "",
              "File holding user:password for ZooKeeper digest ACLs; empty = znodes are created world-writable");
DEFINE_string(cluster_secret_file, "",
              "File holding the shared peer secret (one per line, at least 16 characters; a second line is also "
              "accepted, for rotation): peer links run TLS 1.3 keyed by it. A mesh needs it unless --peer_tls or "
              "--insecure_peers. SIGHUP reloads it");
DEFINE_bool(insecure_peers, false,
            "Peer links in plain text without any authentication: anyone who reaches the peer port joins the mesh "
            "(demos on loopback only)");
DEFINE_int64(join_timeout_ms, 10000,
             "A starting node waits this long for every live peer's full interest before it registers and opens "
             "its client port; peers that did not answer are logged and dialled again in the background");
DEFINE_int64(join_grace_ms, 15000,
             "Keep an authenticated link from a node without a znode (a joining node) this long before closing it");
DEFINE_int64(anti_entropy_interval_ms, 30000,
             "How often peers compare interest digests; a difference triggers a full re-sync of that peer's interest");
DEFINE_int64(interest_barrier_timeout_ms, 5000,
             "A client's PING after SUB/UNSUB is answered once every peer applied the change; a peer that has not "
             "within this long is logged, counted and its link reset (it re-syncs), then the PONG goes out");
DEFINE_int64(move_timeout_ms, 10000,
             "A planned client move (a zmesh client leaving a lame-duck node) waits this long at most for every "
             "node's cut; past it the old node finishes and the new one delivers everything");
DEFINE_bool(rebalance, true,
            "Keep client connections balanced across the mesh: a node above the average asks some of its zmesh "
            "clients (those that can move losslessly) to move to the least loaded node");
DEFINE_int32(rebalance_moves_per_s, 10, "At most this many clients a node asks to move per second when rebalancing");
DEFINE_int64(peer_max_pending_bytes, 256ll << 20,
             "Bytes waiting to be written to one peer link (at most 16 GiB); beyond it the link is reset and re-synced");
DEFINE_int32(threads, 0, "I/O threads serving connections; 0 = number of cores");
DEFINE_int64(max_payload, 1 << 20, "Largest message payload in bytes; a bigger PUB gets -ERR 'Maximum Payload Violation' and is closed");
DEFINE_int32(max_control_line, 4096, "Longest protocol control line in bytes (64 to 1048576); a longer one gets -ERR 'maximum control line exceeded' and is closed");
DEFINE_int32(max_connections, 65536, "Client connections accepted at once (at most 1000000); beyond it a new client gets -ERR 'maximum connections exceeded'");
DEFINE_int32(max_subs, 1048576,
             "Subscriptions per client connection (at most 10000000), so that one connection cannot take the whole node "
             "budget; beyond it SUB gets -ERR 'maximum subscriptions "
             "exceeded' and the connection stays open, as with nats-server; 0 = only --max_subs_total applies");
DEFINE_int64(max_subs_total, 2000000,
             "Subscriptions of all clients of this node together (1 to 100000000); beyond it SUB gets -ERR 'maximum "
             "subscriptions exceeded' and the connection stays open. A subscription costs about 0.5 KB with a short "
             "subject, 2.5 KB with a 1 KB one, on this node and again on each peer");
DEFINE_int32(max_subject_length, 1024,
             "Longest subject or reply subject in bytes (1 to 65535, the peer wire format's limit), for SUB, PUB and "
             "peer input; a longer SUB or PUB gets -ERR 'Invalid Subject: ...' / 'Invalid Publish Subject: ...' and "
             "the connection stays open. Use the same value on every node of a mesh");
DEFINE_int32(max_subject_tokens, 64,
             "Most '.'-separated tokens in a subject (1 to 32768), for SUB, PUB and peer input; beyond it the SUB or "
             "PUB gets -ERR and the connection stays open. Use the same value on every node of a mesh");
DEFINE_int32(max_queue_name_length, 256,
             "Longest queue group name in bytes (1 to 65535); a SUB with a longer one gets -ERR 'Invalid Queue Name: "
             "...' and the connection stays open. Use the same value on every node of a mesh");
DEFINE_int64(auth_timeout_ms, 2000, "With --users_file, a client that has not sent CONNECT this long after INFO gets -ERR 'Authentication Timeout' and is closed");
DEFINE_int64(ping_interval_ms, 120000, "PING a connection idle this long; peer links are pinged at this interval regardless of traffic");
DEFINE_int32(max_pings_out, 2, "Close a connection (-ERR 'Stale Connection') with more than this many PINGs unanswered");
DEFINE_int64(write_deadline_ms, 10000, "Close a client as a slow consumer when its socket accepts no bytes for this long");
DEFINE_int64(max_pending_bytes, 64ll << 20, "Close a client as a slow consumer when this many bytes are waiting to be written to it (at most 16 GiB)");
DEFINE_int64(max_pending_bytes_total, 1ll << 30,
             "Node-wide bound on bytes waiting to be written to clients (0 = none). While the node is over it, a "
             "client that is behind (over 256 KiB queued that its socket did not take) and is handed another message is "
             "closed as a slow consumer; clients that keep up are not touched");
DEFINE_int64(lame_duck_grace_ms, 2000,
             "On SIGTERM/SIGINT (lame duck): after deleting the znode, refusing new clients and telling clients "
             "(INFO ldm) to move, wait this long before closing any client");
DEFINE_int64(lame_duck_duration_ms, 30000,
             "Lame duck: spread the closing of the remaining clients over this long, then drain and exit 0; a second "
             "signal exits at once");
DEFINE_int32(max_logins_in_flight_per_ip, 16,
             "With --users_file, password checks queued or running at once for one client IP address (the queue "
             "holds 1024 in all); a CONNECT beyond it is closed with -ERR 'Server Busy, Try Again' (standard clients "
             "retry) without taking a slot from other addresses; 0 = no per-address bound");
DEFINE_string(users_file, "", "File of user:hash lines (made by `zmesh passwd`), with optional permissions; empty = no authentication. SIGHUP reloads it");
DEFINE_string(tls_cert, "",
              "PEM certificate chain; when set, clients must use TLS (INFO tls_required, as nats-server: INFO in "
              "clear, then the TLS handshake); also the peer certificate with --peer_tls when --peer_tls_cert is empty");
DEFINE_string(tls_key, "", "PEM private key for --tls_cert");
DEFINE_string(tls_ca, "",
              "PEM CA bundle for client certificates: with --tls_verify_clients, clients must present a certificate "
              "it signed (never used for peers: see --peer_tls_ca)");
DEFINE_bool(tls_verify_clients, false, "Require client certificates signed by --tls_ca on the client port");
DEFINE_bool(peer_tls, false,
            "Peer links use mutual TLS 1.3 with certificates instead of the cluster secret: each node's certificate "
            "(--peer_tls_cert) must be signed by --peer_tls_ca and name its node id (DNS subjectAltName or CN)");
DEFINE_string(peer_tls_cert, "", "PEM certificate chain of this node on peer links with --peer_tls; empty = --tls_cert");
DEFINE_string(peer_tls_key, "", "PEM private key for --peer_tls_cert; empty = --tls_key");
DEFINE_string(peer_tls_ca, "",
              "PEM CA bundle that signs peer certificates (--peer_tls); keep it separate from --tls_ca, so that no "
              "client certificate passes as a node");
DEFINE_int64(testing_peer_relink_ms, 0,
             "Tests only: the node with the smaller id replaces each of its peer links with a fresh one this often; "
             "0 = never");
DEFINE_string(server_name, "", "Name reported in INFO server_name; empty = the node id");

namespace zmesh::server {
namespace {

// Upper limits of the bound flags: beyond them a value is a typo, or would
// overflow what it feeds (frame limits, counters).
constexpr int kMaxControlLineLimit = 1 << 20;
constexpr int kMaxConnectionsLimit = 1000000;
constexpr int kMaxSubsLimit = 10000000;
constexpr int64_t kMaxSubsTotalLimit = 100000000;
constexpr size_t kMaxPendingBytesLimit = size_t{16} << 30;

}  // namespace

bool OptionsFromFlags(Options* o, std::string* error) {
  if (!ParseHostPort(FLAGS_listen, &o->listen)) {
    *error = "invalid --listen: " + FLAGS_listen;
    return false;
  }
  if (!ParseHostPort(FLAGS_peer_listen, &o->peer_listen)) {
    *error = "invalid --peer_listen: " + FLAGS_peer_listen;
    return false;
  }
  if (o->listen.host.empty()) o->listen.host = "0.0.0.0";
  if (o->peer_listen.host.empty()) o->peer_listen.host = "0.0.0.0";
  o->advertise = FLAGS_advertise;
  o->http_listen = FLAGS_http_listen;
  o->ports_file = FLAGS_ports_file;
  o->node_id = FLAGS_node_id;
  o->zk = FLAGS_zk;
  o->zk_root = FLAGS_zk_root;
  o->zk_session_timeout_ms = FLAGS_zk_session_timeout_ms;
  o->zk_credentials_file = FLAGS_zk_credentials_file;
  o->cluster_secret_file = FLAGS_cluster_secret_file;
  o->insecure_peers = FLAGS_insecure_peers;
  o->join_timeout_ms = FLAGS_join_timeout_ms;
  o->join_grace_ms = FLAGS_join_grace_ms;
  o->anti_entropy_interval_ms = FLAGS_anti_entropy_interval_ms;
  o->interest_barrier_timeout_ms = FLAGS_interest_barrier_timeout_ms;
  o->move_timeout_ms = std::max<int64_t>(FLAGS_move_timeout_ms, 1);
  o->rebalance = FLAGS_rebalance;
  o->rebalance_moves_per_s = std::max(FLAGS_rebalance_moves_per_s, 0);
  o->peer_max_pending_bytes = static_cast<size_t>(std::max<int64_t>(FLAGS_peer_max_pending_bytes, 1 << 20));
  o->threads = FLAGS_threads > 0 ? FLAGS_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o->max_payload = FLAGS_max_payload;
  o->max_control_line = static_cast<size_t>(std::max(FLAGS_max_control_line, 64));
  if (FLAGS_max_control_line > kMaxControlLineLimit) {
    *error = "--max_control_line must be at most " + std::to_string(kMaxControlLineLimit) + " bytes";
    return false;
  }
  o->max_connections = FLAGS_max_connections;
  o->max_subs = FLAGS_max_subs;
  o->max_subs_total = FLAGS_max_subs_total;
  o->name_bounds.max_subject_bytes = static_cast<size_t>(std::max(FLAGS_max_subject_length, 0));
  o->name_bounds.max_subject_tokens = static_cast<size_t>(std::max(FLAGS_max_subject_tokens, 0));
  o->name_bounds.max_queue_bytes = static_cast<size_t>(std::max(FLAGS_max_queue_name_length, 0));
  o->auth_timeout_ms = FLAGS_auth_timeout_ms;
  o->ping_interval_ms = FLAGS_ping_interval_ms;
  o->max_pings_out = FLAGS_max_pings_out;
  o->write_deadline_ms = FLAGS_write_deadline_ms;
  o->max_pending_bytes = static_cast<size_t>(std::max<int64_t>(FLAGS_max_pending_bytes, 1024));
  o->max_pending_bytes_total = static_cast<size_t>(std::max<int64_t>(FLAGS_max_pending_bytes_total, 0));
  o->users_file = FLAGS_users_file;
  o->max_logins_in_flight_per_ip = FLAGS_max_logins_in_flight_per_ip;
  o->lame_duck_grace_ms = std::max<int64_t>(FLAGS_lame_duck_grace_ms, 0);
  o->lame_duck_duration_ms = std::max<int64_t>(FLAGS_lame_duck_duration_ms, 0);
  o->tls_cert = FLAGS_tls_cert;
  o->tls_key = FLAGS_tls_key;
  o->tls_ca = FLAGS_tls_ca;
  o->peer_tls = FLAGS_peer_tls;
  o->peer_tls_cert = FLAGS_peer_tls_cert.empty() ? FLAGS_tls_cert : FLAGS_peer_tls_cert;
  o->peer_tls_key = FLAGS_peer_tls_key.empty() ? FLAGS_tls_key : FLAGS_peer_tls_key;
  o->peer_tls_ca = FLAGS_peer_tls_ca;
  o->testing_peer_relink_ms = std::max<int64_t>(FLAGS_testing_peer_relink_ms, 0);
  o->tls_verify_clients = FLAGS_tls_verify_clients;
  o->server_name = FLAGS_server_name;

  if (o->max_payload <= 0 || o->max_payload > (1ll << 30)) {
    *error = "--max_payload must be in (0, 1 GiB]";
    return false;
  }
  if (o->ping_interval_ms <= 0 || o->max_pings_out <= 0 || o->write_deadline_ms <= 0 || o->auth_timeout_ms <= 0) {
    *error = "durations and --max_pings_out must be positive";
    return false;
  }
  if (o->max_logins_in_flight_per_ip < 0) {
    *error = "--max_logins_in_flight_per_ip must be 0 (no bound) or positive";
    return false;
  }
  if (o->tls_cert.empty() != o->tls_key.empty()) {
    *error = "--tls_cert and --tls_key go together";
    return false;
  }
  if (o->tls_verify_clients && o->tls_cert.empty()) {
    *error = "--tls_verify_clients needs --tls_cert and --tls_key";
    return false;
  }
  if (o->peer_tls && (o->peer_tls_cert.empty() || o->peer_tls_key.empty() || o->peer_tls_ca.empty())) {
    *error = "--peer_tls needs a certificate and key (--peer_tls_cert/--peer_tls_key, or --tls_cert/--tls_key) and "
             "--peer_tls_ca, the CA that signs peer certificates";
    return false;
  }
  if (o->peer_tls && o->insecure_peers) {
    *error = "--peer_tls and --insecure_peers contradict each other";
    return false;
  }
  if (!o->zk.empty() && o->cluster_secret_file.empty() && !o->peer_tls && !o->insecure_peers) {
    *error = "refusing to form a mesh without --cluster_secret_file (or --peer_tls; --insecure_peers for demos)";
    return false;
  }
  if (o->join_timeout_ms < 0 || o->join_grace_ms <= 0 || o->anti_entropy_interval_ms <= 0 ||
      o->interest_barrier_timeout_ms <= 0) {
    *error = "--join_timeout_ms, --join_grace_ms, --anti_entropy_interval_ms and --interest_barrier_timeout_ms must "
             "be positive";
    return false;
  }
  // The node id crosses peer links in HELLO (a u16-length string without
  // whitespace or control characters) and names a znode (no '/').
  if (o->node_id.size() > 255 || std::any_of(o->node_id.begin(), o->node_id.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '/';
      })) {
    *error = "--node_id must be at most 255 bytes without '/', whitespace or control characters";
    return false;
  }
  if (o->max_connections <= 0 || o->max_connections > kMaxConnectionsLimit) {
    *error = "--max_connections must be in [1, " + std::to_string(kMaxConnectionsLimit) + "]";
    return false;
  }
  if (o->max_subs < 0 || o->max_subs > kMaxSubsLimit) {
    *error = "--max_subs must be in [0, " + std::to_string(kMaxSubsLimit) + "] (0 = only --max_subs_total applies)";
    return false;
  }
  if (o->max_subs_total <= 0 || o->max_subs_total > kMaxSubsTotalLimit) {
    *error = "--max_subs_total must be in [1, " + std::to_string(kMaxSubsTotalLimit) + "]";
    return false;
  }
  // Subjects and queue names cross peer links as u16-length strings: a bound
  // beyond that would let a client make a frame that cannot be encoded.
  if (FLAGS_max_subject_length < 1 || static_cast<size_t>(FLAGS_max_subject_length) > proto::kMaxWireStringBytes) {
    *error = "--max_subject_length must be in [1, 65535] (subjects are u16-length strings on peer links)";
    return false;
  }
  if (FLAGS_max_subject_tokens < 1 || FLAGS_max_subject_tokens > 32768) {
    *error = "--max_subject_tokens must be in [1, 32768]";
    return false;
  }
  if (FLAGS_max_queue_name_length < 1 ||
      static_cast<size_t>(FLAGS_max_queue_name_length) > proto::kMaxWireStringBytes) {
    *error = "--max_queue_name_length must be in [1, 65535] (queue names are u16-length strings on peer links)";
    return false;
  }
  if (o->max_pending_bytes > kMaxPendingBytesLimit || o->peer_max_pending_bytes > kMaxPendingBytesLimit) {
    *error = "--max_pending_bytes and --peer_max_pending_bytes must be at most 16 GiB";
    return false;
  }
  return true;
}

}  // namespace zmesh::server

namespace zmesh::server {

bool ValidateFlagfiles(const std::string& paths, std::string* error) {
  std::stringstream list(paths);
  std::string path;
  while (std::getline(list, path, ',')) {
    if (path.empty()) continue;
    std::ifstream in(path);
    if (!in) {
      *error = "cannot read flagfile " + path;
      return false;
    }
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      const size_t first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#') continue;
      const std::string where = path + ":" + std::to_string(n) + ": ";
      if (line[first] != '-') {
        *error = where + "not a --flag line (gflags would ignore every flag after it)";
        return false;
      }
      if (line.find(" #") != std::string::npos || line.find("\t#") != std::string::npos) {
        *error = where + "a comment must be on a line of its own (gflags would take it as part of the value)";
        return false;
      }
      std::string name = line.substr(line.find_first_not_of('-', first));
      name = name.substr(0, name.find_first_of("= \t\r"));
      gflags::CommandLineFlagInfo info;
      const bool known = gflags::GetCommandLineFlagInfo(name.c_str(), &info) ||
                         (name.rfind("no", 0) == 0 && gflags::GetCommandLineFlagInfo(name.substr(2).c_str(), &info) &&
                          info.type == "bool");
      if (!known) {
        *error = where + "unknown flag --" + name;
        return false;
      }
    }
  }
  return true;
}

}  // namespace zmesh::server

namespace zmesh::server {

std::string ReloadLogFlags() {
  std::string paths;
  if (!gflags::GetCommandLineOption("flagfile", &paths) || paths.empty()) return "";
  std::string changed;
  std::stringstream list(paths);
  std::string path;
  while (std::getline(list, path, ',')) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      const size_t first = line.find_first_not_of(" \t-");
      if (first == std::string::npos || first == 0) continue;
      const size_t eq = line.find('=', first);
      if (eq == std::string::npos) continue;
      const std::string name = line.substr(first, eq - first);
      if (name != "v" && name != "minloglevel" && name != "vmodule") continue;
      std::string value = line.substr(eq + 1);
      while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
      std::string current;
      gflags::GetCommandLineOption(name.c_str(), &current);
      if (current == value) continue;
      if (gflags::SetCommandLineOption(name.c_str(), value.c_str()).empty()) continue;  // invalid value
      if (name == "vmodule") {  // glog reads --vmodule once; apply each pattern=level
        std::stringstream modules(value);
        std::string module;
        while (std::getline(modules, module, ',')) {
          const size_t at = module.find('=');
          if (at != std::string::npos) google::SetVLOGLevel(module.substr(0, at).c_str(), std::atoi(module.c_str() + at + 1));
        }
      }
      changed += (changed.empty() ? "" : ", ") + ("--" + name + "=" + value);
    }
  }
  return changed;
}

}  // namespace zmesh::server

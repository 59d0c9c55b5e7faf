#pragma once

// What the mesh layer and each peer link are configured with (from the
// server's flags; see Server::StartMesh).
//
// Threading: filled in before the mesh starts (peer_url by Mesh::Start,
// before any link exists), immutable afterwards; any thread may read it.

#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/name_bounds.h"
#include "server/options.h"

namespace zmesh::auth {
class PeerKeys;
class PeerTlsContexts;
}  // namespace zmesh::auth

namespace zmesh::server::mesh {

struct MeshOptions {
  std::string node_id;
  uint64_t incarnation = 0;
  std::string client_url;  // nats://advertise:port, published in the znode
  std::string peer_host;   // advertised host of the peer port
  std::string peer_url;    // peer_host:bound port, set by Start; published in the znode
  std::string version;
  HostPort peer_listen;    // also the source address of outgoing links when specific
  // TLS on every link (owned by the server); null only with --insecure_peers.
  auth::PeerTlsContexts* peer_tls = nullptr;
  auth::PeerKeys* peer_keys = nullptr;  // PSK mode: the cluster secret's keys
  bool certificate_mode = false;        // --peer_tls: certificates must name the node id
  // Tests only: the node with the smaller id replaces each of its links with
  // a fresh one this often (0 = never), to exercise link replacement.
  int64_t testing_relink_ms = 0;
  int64_t ping_interval_ms = 120000;
  int max_pings_out = 2;
  int64_t write_deadline_ms = 10000;
  int64_t handshake_timeout_ms = 5000;
  int64_t dial_timeout_ms = 2000;
  int64_t dial_grace_ms = 1000;
  int64_t join_timeout_ms = 10000;
  int64_t join_grace_ms = 15000;
  int64_t anti_entropy_interval_ms = 30000;
  // A peer that has not applied an interest change a client's PING waits
  // for within this long is reset (and re-synced when it reconnects).
  int64_t interest_barrier_timeout_ms = 5000;
  // A planned client move waits this long at most for every node's cut.
  int64_t move_timeout_ms = 10000;
  // Connection balance (server/mesh/rebalancer.h).
  bool rebalance = true;
  int rebalance_moves_per_s = 10;
  size_t peer_max_pending_bytes = 256u << 20;
  size_t max_frame_bytes = (1u << 20) + (1u << 20);
  // Names a peer frame may carry (the same bounds as the client port).
  proto::NameBounds name_bounds;
};

}  // namespace zmesh::server::mesh

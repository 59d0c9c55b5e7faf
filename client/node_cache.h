#pragma once

// The local copy of the mesh's node list, so a client finds the mesh while
// ZooKeeper is unreachable (SPEC §6). One JSON file per (ZooKeeper, root):
//   {"version":1,"zk":"...","root":"...","written_ms":...,
//    "nodes":[{"id":"n1","client_url":"nats://127.0.0.1:4222"},...]}
// Written atomically (temporary file in the same directory, fsync, rename),
// so a reader never sees a torn file, even when several clients share it.
//
// Thread safety: stateless functions; concurrent writers each rename a
// complete file, the last one wins.

#include <optional>
#include <string>
#include <vector>

#include <zmesh/status.h>

namespace zmesh::client {

struct CachedNode {
  std::string id;
  std::string client_url;
  bool operator==(const CachedNode&) const = default;
};

// $XDG_CACHE_HOME/zmesh (else $HOME/.cache/zmesh, else /tmp/zmesh-<uid>)
// + "nodes-<sanitized root>-<hash of connect string and root>.json".
std::string DefaultNodeCachePath(const std::string& zk_connect, const std::string& zk_root);

// The cached nodes; nullopt with *error when the file is missing, unreadable
// or not a valid cache.
std::optional<std::vector<CachedNode>> ReadNodeCache(const std::string& path, std::string* error);

// Creates missing parent directories (0700) and replaces the file atomically.
Status WriteNodeCache(const std::string& path, const std::string& zk_connect, const std::string& zk_root,
                      const std::vector<CachedNode>& nodes);

}  // namespace zmesh::client

#pragma once

// The cluster secret as TLS 1.3 external pre-shared keys for peer links
// (SPEC §3, docs/peer-protocol.md). The secret file holds one secret per line:
// the first is the one this node dials with ("current"), an optional second
// ("next" or "previous") is accepted as well, which is what rotates a secret
// without downtime (docs/operations.md). Blank lines and '#' comments are
// ignored.
//
// Each secret becomes, through HKDF-SHA256 with fixed labels, a 32-byte PSK
// and a public identity that names the key without revealing it; a node
// without the secret can neither offer nor accept a matching key, so it cannot
// finish the handshake.
//
// Threading: a PeerKeyring is immutable once made and shared read-only
// (std::shared_ptr) by every thread; a reload (SIGHUP) builds a new one and
// swaps it in PeerKeys, so links already connected keep the ring they started
// with.

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace zmesh::auth {

inline constexpr size_t kMinClusterSecretBytes = 16;
inline constexpr size_t kMaxClusterSecrets = 2;

struct PeerPsk {
  std::string identity;  // "zmesh-peer-v2:" + 16 hex digits, sent in clear in the ClientHello
  std::string key;       // 32 bytes, never leaves the process
};

class PeerKeyring {
 public:
  // From the secrets in file order (1 or 2, each at least kMinClusterSecretBytes).
  static absl::StatusOr<std::shared_ptr<const PeerKeyring>> FromSecrets(const std::vector<std::string>& secrets);
  // Reads and parses a secret file; the error names the file.
  static absl::StatusOr<std::shared_ptr<const PeerKeyring>> Load(const std::string& path);
  // The secret file's content as secrets (exposed for tests).
  static absl::StatusOr<std::vector<std::string>> ParseSecretFile(std::string_view content);

  // The key this node offers when it dials.
  const PeerPsk& current() const { return keys_.front(); }
  // The key with this identity, or null: a dialler with another secret.
  const PeerPsk* Find(std::string_view identity) const;
  size_t size() const { return keys_.size(); }

 private:
  std::vector<PeerPsk> keys_;
};

// HKDF-SHA256(salt = "zmesh peer psk v2", ikm = secret, info = `label`), `bytes` long.
std::string DeriveFromSecret(std::string_view secret, std::string_view label, size_t bytes);

// The keyring in force: read by link set-up on any thread, replaced on reload.
class PeerKeys {
 public:
  explicit PeerKeys(std::shared_ptr<const PeerKeyring> ring) : ring_(std::move(ring)) {}
  std::shared_ptr<const PeerKeyring> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ring_;
  }
  void Set(std::shared_ptr<const PeerKeyring> ring) {
    std::lock_guard<std::mutex> lock(mu_);
    ring_ = std::move(ring);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const PeerKeyring> ring_;
};

}  // namespace zmesh::auth

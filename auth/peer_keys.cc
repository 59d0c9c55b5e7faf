#include "auth/peer_keys.h"

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <fstream>
#include <sstream>

#include <glog/logging.h>

namespace zmesh::auth {
namespace {

constexpr std::string_view kSalt = "zmesh peer psk v2";
constexpr std::string_view kKeyLabel = "tls13 external psk";
constexpr std::string_view kIdentityLabel = "tls13 external psk identity";
constexpr std::string_view kIdentityPrefix = "zmesh-peer-v2:";

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

}  // namespace

std::string DeriveFromSecret(std::string_view secret, std::string_view label, size_t bytes) {
  std::string out(bytes, '\0');
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  size_t len = bytes;
  const bool ok =
      ctx != nullptr && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1 &&
      EVP_PKEY_CTX_set1_hkdf_salt(ctx, reinterpret_cast<const unsigned char*>(kSalt.data()),
                                  static_cast<int>(kSalt.size())) == 1 &&
      EVP_PKEY_CTX_set1_hkdf_key(ctx, reinterpret_cast<const unsigned char*>(secret.data()),
                                 static_cast<int>(secret.size())) == 1 &&
      EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const unsigned char*>(label.data()),
                                  static_cast<int>(label.size())) == 1 &&
      EVP_PKEY_derive(ctx, reinterpret_cast<unsigned char*>(out.data()), &len) == 1 && len == bytes;
  EVP_PKEY_CTX_free(ctx);
  // Only an OpenSSL without HKDF gets here; no peer link could be secured.
  CHECK(ok) << "HKDF-SHA256 is unavailable in this OpenSSL";
  return out;
}

absl::StatusOr<std::vector<std::string>> PeerKeyring::ParseSecretFile(std::string_view content) {
  std::vector<std::string> secrets;
  std::istringstream in{std::string(content)};
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t start = 0;
    while (start < line.size() && (line[start] == ' ' || line[start] == '\t')) ++start;
    line.erase(0, start);
    if (line.empty() || line[0] == '#') continue;
    secrets.push_back(line);
  }
  if (secrets.empty()) return absl::InvalidArgumentError("no cluster secret in it");
  if (secrets.size() > kMaxClusterSecrets) {
    return absl::InvalidArgumentError("more than " + std::to_string(kMaxClusterSecrets) +
                                      " secrets (one to dial with, one more accepted during a rotation)");
  }
  return secrets;
}

absl::StatusOr<std::shared_ptr<const PeerKeyring>> PeerKeyring::FromSecrets(const std::vector<std::string>& secrets) {
  if (secrets.empty() || secrets.size() > kMaxClusterSecrets) {
    return absl::InvalidArgumentError("a cluster secret file holds 1 or 2 secrets");
  }
  auto ring = std::shared_ptr<PeerKeyring>(new PeerKeyring);
  for (size_t i = 0; i < secrets.size(); ++i) {
    if (secrets[i].size() < kMinClusterSecretBytes) {
      return absl::InvalidArgumentError("secret " + std::to_string(i + 1) + " is shorter than " +
                                        std::to_string(kMinClusterSecretBytes) + " characters");
    }
    PeerPsk psk;
    psk.key = DeriveFromSecret(secrets[i], kKeyLabel, 32);
    psk.identity = std::string(kIdentityPrefix) + Hex(DeriveFromSecret(secrets[i], kIdentityLabel, 8));
    if (ring->Find(psk.identity) != nullptr) continue;  // the same secret twice
    ring->keys_.push_back(std::move(psk));
  }
  return std::shared_ptr<const PeerKeyring>(std::move(ring));
}

absl::StatusOr<std::shared_ptr<const PeerKeyring>> PeerKeyring::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError("cannot read the cluster secret file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto secrets = ParseSecretFile(ss.str());
  if (!secrets.ok()) return absl::InvalidArgumentError("cluster secret file " + path + ": " + std::string(secrets.status().message()));
  auto ring = FromSecrets(*secrets);
  if (!ring.ok()) return absl::InvalidArgumentError("cluster secret file " + path + ": " + std::string(ring.status().message()));
  return ring;
}

const PeerPsk* PeerKeyring::Find(std::string_view identity) const {
  for (const PeerPsk& k : keys_) {
    if (k.identity == identity) return &k;
  }
  return nullptr;
}

}  // namespace zmesh::auth

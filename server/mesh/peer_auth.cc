#include "server/mesh/peer_auth.h"

#include <glog/logging.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "proto/peer_protocol.h"

namespace zmesh::server::mesh {
namespace {

void AppendField(std::string_view v, std::string* out) {
  const uint32_t n = static_cast<uint32_t>(v.size());
  out->append(reinterpret_cast<const char*>(&n), sizeof n);  // length-prefixed: fields cannot run together
  out->append(v);
}

}  // namespace

std::string NewNonce() {
  std::string nonce(proto::peer::kNonceBytes, '\0');
  CHECK_EQ(RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())), 1);
  return nonce;
}

std::string PeerProof(std::string_view secret, std::string_view prover_id, std::string_view prover_nonce,
                      std::string_view verifier_id, std::string_view verifier_nonce) {
  std::string msg = "zmesh-peer-proof-v1";
  AppendField(prover_id, &msg);
  AppendField(prover_nonce, &msg);
  AppendField(verifier_id, &msg);
  AppendField(verifier_nonce, &msg);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(msg.data()),
       msg.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

bool VerifyPeerProof(std::string_view secret, std::string_view proof, std::string_view prover_id,
                     std::string_view prover_nonce, std::string_view verifier_id, std::string_view verifier_nonce) {
  const std::string expected = PeerProof(secret, prover_id, prover_nonce, verifier_id, verifier_nonce);
  return proof.size() == expected.size() && CRYPTO_memcmp(proof.data(), expected.data(), expected.size()) == 0;
}

}  // namespace zmesh::server::mesh

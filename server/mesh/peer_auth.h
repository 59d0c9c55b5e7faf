#pragma once

// Challenge-response between peers over the cluster secret (SPEC §3): each
// side sends a random nonce in HELLO and proves knowledge of the secret with
// HMAC-SHA256 over both nonces and both node ids. The secret never crosses
// the wire; a proof is bound to this link's nonces (no replay) and to the
// direction (a proof from A to B is not a proof from B to A).
//
// Thread safety: pure functions, any thread.

#include <string>
#include <string_view>

namespace zmesh::server::mesh {

// kNonceBytes of cryptographically random data.
std::string NewNonce();

// What `prover` sends to `verifier`, answering the verifier's nonce.
std::string PeerProof(std::string_view secret, std::string_view prover_id, std::string_view prover_nonce,
                      std::string_view verifier_id, std::string_view verifier_nonce);

// Constant-time check of a proof received from `prover`.
bool VerifyPeerProof(std::string_view secret, std::string_view proof, std::string_view prover_id,
                     std::string_view prover_nonce, std::string_view verifier_id, std::string_view verifier_nonce);

}  // namespace zmesh::server::mesh

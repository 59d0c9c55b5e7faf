#pragma once

// Slow, salted password hashes through libxcrypt's crypt_r.
//
// New hashes are bcrypt "$2b$<cost>$<salt+hash>". Verification also accepts
// the hashes other tools write, so a users file made for nats-server works
// unchanged: bcrypt "$2a$" (Go's bcrypt, `nats server passwd`), "$2y$"
// (PHP, htpasswd), yescrypt "$y$" and gost-yescrypt "$gy$" (mkpasswd,
// /etc/shadow) and scrypt "$7$". Everything else is refused, in particular
// plaintext and fast or unsalted schemes (DES, md5crypt, sha256/512crypt).
//
// All functions are thread safe. HashPassword and VerifyPassword are slow on
// purpose (bcrypt cost 11 is ~100 ms of CPU): never call them on an I/O
// thread; the Authenticator runs them on its own workers.

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zmesh::auth {

inline constexpr int kDefaultBcryptCost = 11;
inline constexpr int kMinBcryptCost = 4;
inline constexpr int kMaxBcryptCost = 31;
// bcrypt ignores everything after the first 72 bytes of a password.
inline constexpr size_t kBcryptMaxPasswordBytes = 72;

// A "$2b$" hash of `password` under a fresh random salt. InvalidArgument for a
// cost outside [kMinBcryptCost, kMaxBcryptCost] or a password that is empty or
// contains NUL (crypt_r would silently cut it there).
absl::StatusOr<std::string> HashPassword(std::string_view password, int cost = kDefaultBcryptCost);

// OK when `hash` is a complete hash in one of the accepted formats above;
// otherwise InvalidArgument saying why. Cheap: checks the shape, not the hash.
absl::Status ValidatePasswordHash(std::string_view hash);

// True when `password` hashes to `hash`. The crypt_r output is compared with
// the stored hash in constant time. False for a hash that fails
// ValidatePasswordHash and for a password containing NUL.
bool VerifyPassword(std::string_view password, std::string_view hash);

}  // namespace zmesh::auth

#include "auth/password_hash.h"

#include <crypt.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

namespace zmesh::auth {
namespace {

// crypt_r's salt and hash alphabet.
bool IsCryptChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '/';
}

bool AllCryptChars(std::string_view s) { return std::all_of(s.begin(), s.end(), IsCryptChar); }

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Never echo `hash` in an error: a bad entry may well be a plaintext password.
absl::Status Malformed(const std::string& scheme) {
  return absl::InvalidArgumentError("malformed " + scheme + " hash");
}

absl::Status ValidateBcrypt(std::string_view hash) {
  // "$2b$" + two-digit cost + "$" + 22 characters of salt + 31 of hash.
  if (hash.size() != 60 || hash[6] != '$' || !AllCryptChars(hash.substr(7))) {
    return Malformed("bcrypt");
  }
  if (hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9') return Malformed("bcrypt");
  int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
  if (cost < kMinBcryptCost || cost > kMaxBcryptCost) {
    return absl::InvalidArgumentError("bcrypt cost " + std::to_string(cost) + " outside [" +
                                      std::to_string(kMinBcryptCost) + ", " +
                                      std::to_string(kMaxBcryptCost) + "]");
  }
  return absl::OkStatus();
}

// yescrypt "$y$<params>$<salt>$<hash>" and scrypt "$7$<params+salt>$<hash>";
// `fields` counts the '$'-separated fields after the leading '$'. The first
// is the scheme id, the last the 43-character hash.
absl::Status ValidateDollarFields(std::string_view hash, size_t fields, const std::string& scheme) {
  std::string_view rest = hash.substr(1);
  for (size_t i = 0; i < fields; ++i) {
    size_t end = i + 1 == fields ? rest.size() : rest.find('$');
    if (end == std::string_view::npos) return Malformed(scheme);
    std::string_view field = rest.substr(0, end);
    rest.remove_prefix(std::min(rest.size(), end + 1));
    if (i == 0) continue;
    if (field.empty() || !AllCryptChars(field)) return Malformed(scheme);
    if (i + 1 == fields && field.size() != 43) return Malformed(scheme);
  }
  return absl::OkStatus();
}

// crypt_r with its 32 KiB of state on the heap (too big for a worker's stack
// budget) and wiped afterwards, like the copy of the password.
std::optional<std::string> Crypt(std::string_view password, const std::string& setting) {
  auto data = std::make_unique<crypt_data>();  // zeroed, as crypt_r wants it
  std::string pw(password);
  const char* out = crypt_r(pw.c_str(), setting.c_str(), data.get());
  std::optional<std::string> result;
  if (out != nullptr && out[0] != '*') result.emplace(out);  // "*0"/"*1" mean failure
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  OPENSSL_cleanse(pw.data(), pw.size());
  return result;
}

}  // namespace

absl::StatusOr<std::string> HashPassword(std::string_view password, int cost) {
  if (cost < kMinBcryptCost || cost > kMaxBcryptCost) {
    return absl::InvalidArgumentError("bcrypt cost must be in [" + std::to_string(kMinBcryptCost) +
                                      ", " + std::to_string(kMaxBcryptCost) + "], got " +
                                      std::to_string(cost));
  }
  if (password.empty()) return absl::InvalidArgumentError("empty password");
  if (HasNul(password)) return absl::InvalidArgumentError("password contains a NUL byte");
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // No random bytes passed in: libxcrypt draws the salt from the OS (getrandom).
  if (crypt_gensalt_rn("$2b$", cost, nullptr, 0, setting, sizeof(setting)) == nullptr) {
    return absl::ErrnoToStatus(errno, "crypt_gensalt_rn");
  }
  std::optional<std::string> hash = Crypt(password, setting);
  if (!hash) return absl::InternalError("crypt_r failed to hash the password");
  return *std::move(hash);
}

absl::Status ValidatePasswordHash(std::string_view hash) {
  absl::Status shape;
  if (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
    shape = ValidateBcrypt(hash);
  } else if (hash.starts_with("$y$")) {
    shape = ValidateDollarFields(hash, 4, "yescrypt");
  } else if (hash.starts_with("$gy$")) {
    shape = ValidateDollarFields(hash, 4, "gost-yescrypt");
  } else if (hash.starts_with("$7$")) {
    shape = ValidateDollarFields(hash, 3, "scrypt");
  } else {
    return absl::InvalidArgumentError(
        "not a bcrypt ($2a$/$2b$/$2y$), yescrypt ($y$, $gy$) or scrypt ($7$) hash; "
        "plaintext passwords are not accepted, make a hash with `zmesh passwd`");
  }
  if (!shape.ok()) return shape;
  // libxcrypt's own parser has the last word on parameters (e.g. yescrypt's).
  if (crypt_checksalt(std::string(hash).c_str()) != CRYPT_SALT_OK) {
    return absl::InvalidArgumentError("hash parameters rejected by libxcrypt");
  }
  return absl::OkStatus();
}

bool VerifyPassword(std::string_view password, std::string_view hash) {
  if (HasNul(password) || !ValidatePasswordHash(hash).ok()) return false;
  std::optional<std::string> computed = Crypt(password, std::string(hash));
  if (!computed || computed->size() != hash.size()) return false;
  return CRYPTO_memcmp(computed->data(), hash.data(), hash.size()) == 0;
}

}  // namespace zmesh::auth

#include <gtest/gtest.h>

#include <string>

#include "auth/password_hash.h"

namespace zmesh::auth {
namespace {

using namespace std::string_literals;

// Made by Go's golang.org/x/crypto/bcrypt, the library behind nats-server and
// `nats server passwd`, for the password "nats-s3cr3t".
constexpr char kGoBcryptCost4[] = "$2a$04$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K";
constexpr char kGoBcryptCost10[] = "$2a$10$Nr/PLnOLYDrAQTk/IxmHQOoZDVk2CwXB5j5ronHYLeNJMxeONSDxy";

TEST(HashPasswordTest, RoundTrip) {
  absl::StatusOr<std::string> hash = HashPassword("correct horse", 4);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_TRUE(hash->starts_with("$2b$04$")) << *hash;
  EXPECT_EQ(hash->size(), 60u);
  EXPECT_TRUE(ValidatePasswordHash(*hash).ok());
  EXPECT_TRUE(VerifyPassword("correct horse", *hash));
  EXPECT_FALSE(VerifyPassword("correct horsf", *hash));
  EXPECT_FALSE(VerifyPassword("correct hors", *hash));
  EXPECT_FALSE(VerifyPassword("", *hash));
}

TEST(HashPasswordTest, FreshSaltEveryTime) {
  absl::StatusOr<std::string> a = HashPassword("same", 4);
  absl::StatusOr<std::string> b = HashPassword("same", 4);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(VerifyPassword("same", *a));
  EXPECT_TRUE(VerifyPassword("same", *b));
}

TEST(HashPasswordTest, DefaultCostIs11) {
  absl::StatusOr<std::string> hash = HashPassword("pw");
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_TRUE(hash->starts_with("$2b$11$")) << *hash;
}

TEST(HashPasswordTest, RejectsBadInput) {
  EXPECT_EQ(HashPassword("pw", 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword("pw", 32).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword("", 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword("a\0b"s, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(VerifyPasswordTest, AcceptsGoBcrypt2a) {
  EXPECT_TRUE(VerifyPassword("nats-s3cr3t", kGoBcryptCost4));
  EXPECT_FALSE(VerifyPassword("nats-s3cr3T", kGoBcryptCost4));
  EXPECT_TRUE(VerifyPassword("nats-s3cr3t", kGoBcryptCost10));
  EXPECT_FALSE(VerifyPassword("nats-secret", kGoBcryptCost10));
}

TEST(VerifyPasswordTest, AcceptsOtherSlowSaltedSchemes) {
  // Made with libxcrypt's crypt_gensalt_rn + crypt_r for the password "pw".
  const char* hashes[] = {
      "$2y$05$O2QWpAr6Qj7LWCDNsfLFsOgXW/CUfwFR5cB/8.aLGkcxavndOggIK",
      "$y$j9T$xmkfCK4hTouxrp/oRNdIH0$VhwtXkjbsMnQDGeA6eDlehGjrQrr0b4b4RGvqSKnLh5",
      "$gy$j9T$VfvQk/2SGqnr6kUBZeSx81$XMUM39W8W8qZVROjH7zSHy8xeFBl5Royzfx85/zfYdC",
      "$7$CU..../....nPqsRypaMfdx7HANpRdKU1$a0egy81X.ORzbaW5iCwZ9gorOGo.op.TfJsNvnLObgB",
  };
  for (const char* hash : hashes) {
    EXPECT_TRUE(ValidatePasswordHash(hash).ok()) << hash << ": " << ValidatePasswordHash(hash);
    EXPECT_TRUE(VerifyPassword("pw", hash)) << hash;
    EXPECT_FALSE(VerifyPassword("pW", hash)) << hash;
  }
}

TEST(VerifyPasswordTest, RejectsPlaintextAndWeakOrUnknownFormats) {
  const char* bad[] = {
      "",
      "hunter2",                                                        // plaintext
      "$2b$04$",                                                        // a setting, no hash
      "$2b$04$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0",    // one short
      "$2b$04$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K0",  // one long
      "$2b$03$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K",   // cost too low
      "$2b$32$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K",   // cost too high
      "$2b$0x$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K",
      "$2b$04$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0!",
      "$2x$04$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K",  // buggy variant
      "$1$abcdefgh$2Hht9LWKVdxeAQ1QDJeSX/",                            // md5crypt
      "$5$zBT2viWAHmn18.V7$014JvyysRsRX6BvnEzbGvtTr6lJfakccPOceSOm1SO0",
      "$6$NFZ34MAbJZP3h7Tm$dds58XcYxMWwKBB/tAPrLKgSJverCc8oYnsbc0N5R3Hq/iKhgyF60.qZRt6gRtjSribTG5EjA13dR1a/IcsFQ/",
      "abJnggxhB/yWI",                  // DES crypt
      "$y$j9T$xmkfCK4hTouxrp/oRNdIH0",  // yescrypt setting without hash
      "$y$j9T$xmkfCK4hTouxrp/oRNdIH0$VhwtXkjbsMnQDGeA6eDlehGjrQrr0b4b4RGvqSKnLh",
      "$7$CU..../....nPqsRypaMfdx7HANpRdKU1",
  };
  for (const char* hash : bad) {
    absl::Status status = ValidatePasswordHash(hash);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << hash;
    if (*hash != '\0') {
      EXPECT_EQ(std::string(status.message()).find(hash), std::string::npos)
          << "error echoes the hash: " << status;
    }
    EXPECT_FALSE(VerifyPassword(hash, hash)) << hash;  // plaintext never compares equal
  }
}

TEST(VerifyPasswordTest, PasswordWithNulNeverVerifies) {
  absl::StatusOr<std::string> hash = HashPassword("abc", 4);
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(VerifyPassword("abc", *hash));
  // crypt_r would stop at the NUL and accept "abc\0anything" as "abc".
  EXPECT_FALSE(VerifyPassword("abc\0xyz"s, *hash));
}

}  // namespace
}  // namespace zmesh::auth

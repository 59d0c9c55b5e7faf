#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "auth/password_hash.h"
#include "auth/users_file.h"

namespace zmesh::auth {
namespace {

// Go bcrypt (nats-server's) for "nats-s3cr3t", and libxcrypt's own format.
constexpr char kHashA[] = "$2a$04$EZjpT4cViREZg/4Z/85UUO1HkuwBplACU2Vq74plDo7CztkR5kx0K";
constexpr char kHashB[] = "$2y$05$O2QWpAr6Qj7LWCDNsfLFsOgXW/CUfwFR5cB/8.aLGkcxavndOggIK";

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  return (std::string() + ... + std::string(parts));
}

std::string ErrorOf(std::string_view contents) {
  absl::StatusOr<UsersTable> table = ParseUsers(contents, "users.txt");
  EXPECT_FALSE(table.ok()) << contents;
  if (table.ok()) return "";
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(table.status().message());
}

TEST(UsersFileTest, ParsesUsersCommentsAndPermissions) {
  std::string contents =
      Cat("# zmesh users\n"
          "\n"
          "alice:",
          kHashA, "\n",
          "   \t\n"
          "  # indented comment\n"
          "bob:",
          kHashB, "  pub=a.>,b.*\tsub=_INBOX.>,c  pub_deny=a.secret  sub_deny=x.>\r\n",
          "carol:", kHashA, " sub=#.hash.is.a.subject\n");
  absl::StatusOr<UsersTable> table = ParseUsers(contents, "users.txt");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);

  const UserEntry* alice = table->Find("alice");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->hash, kHashA);
  EXPECT_EQ(alice->line, 3);
  ASSERT_NE(alice->permissions, nullptr);
  EXPECT_TRUE(alice->permissions->unrestricted());
  EXPECT_TRUE(VerifyPassword("nats-s3cr3t", alice->hash));

  const UserEntry* bob = table->Find("bob");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->hash, kHashB);  // the CRLF's '\r' is not part of anything
  EXPECT_EQ(bob->line, 6);
  const PermissionLists& lists = bob->permissions->lists();
  EXPECT_EQ(lists.pub_allow, (std::vector<std::string>{"a.>", "b.*"}));
  EXPECT_EQ(lists.sub_allow, (std::vector<std::string>{"_INBOX.>", "c"}));
  EXPECT_EQ(lists.pub_deny, (std::vector<std::string>{"a.secret"}));
  EXPECT_EQ(lists.sub_deny, (std::vector<std::string>{"x.>"}));
  EXPECT_TRUE(bob->permissions->CanPublish("a.b"));
  EXPECT_FALSE(bob->permissions->CanPublish("a.secret"));
  EXPECT_FALSE(bob->permissions->CanSubscribe("d"));

  EXPECT_EQ(table->Find("carol")->permissions->lists().sub_allow,
            (std::vector<std::string>{"#.hash.is.a.subject"}));
  EXPECT_EQ(table->Find("dave"), nullptr);
  EXPECT_EQ(table->Find("Alice"), nullptr);
  EXPECT_EQ(table->dummy_hash(), kHashA);  // the first user's
}

TEST(UsersFileTest, EmptyFileIsAnEmptyTable) {
  absl::StatusOr<UsersTable> table = ParseUsers("# nobody yet\n\n", "users.txt");
  ASSERT_TRUE(table.ok());
  EXPECT_TRUE(table->empty());
  EXPECT_EQ(table->dummy_hash(), "");
}

TEST(UsersFileTest, ErrorsNameFileAndLine) {
  std::string ok_line = Cat("alice:", kHashA, "\n");
  EXPECT_EQ(ErrorOf(Cat("# c\n", ok_line, "bob ", kHashA, "\n")),
            "users.txt:3: missing ':' between user name and password hash");
  EXPECT_EQ(ErrorOf(Cat(":", kHashA, "\n")), "users.txt:1: empty user name");
  EXPECT_EQ(ErrorOf("\n\nbob:\n"), "users.txt:3: missing password hash after \"bob:\"");
  EXPECT_EQ(ErrorOf(Cat(ok_line, "\n", "alice:", kHashB, "\n")),
            "users.txt:3: duplicate user \"alice\" (first defined on line 1)");
  EXPECT_EQ(ErrorOf(Cat(ok_line, "bob:", kHashA, " pub=a..b\n")),
            "users.txt:2: invalid subject \"a..b\" in pub");
  EXPECT_EQ(ErrorOf(Cat("bob:", kHashA, " sub=a,>.b\n")),
            "users.txt:1: invalid subject \">.b\" in sub");
  EXPECT_EQ(ErrorOf(Cat("bob:", kHashA, " sub_deny=a,\n")),
            "users.txt:1: invalid subject \"\" in sub_deny");
  EXPECT_EQ(ErrorOf(Cat("bob:", kHashA, " pub_deny=\n")),
            "users.txt:1: empty subject list in pub_deny");
  EXPECT_EQ(ErrorOf(Cat("bob:", kHashA, " pub=a pub=b\n")), "users.txt:1: duplicate field pub");
  EXPECT_EQ(ErrorOf(Cat("bob:", kHashA, " publish=a\n")),
            "users.txt:1: unknown field \"publish\" for user \"bob\" (expected pub=, sub=, "
            "pub_deny= or sub_deny= with comma-separated subjects)");
}

TEST(UsersFileTest, BadHashIsAnErrorThatDoesNotEchoIt) {
  std::string error = ErrorOf("\nalice:hunter2\n");
  EXPECT_TRUE(error.starts_with("users.txt:2: bad password hash for user \"alice\": ")) << error;
  EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;

  error = ErrorOf("alice:$6$NFZ34MAbJZP3h7Tm$dds58XcYxMWwKBB/tAPrLKgSJverC\n");
  EXPECT_TRUE(error.starts_with("users.txt:1: bad password hash for user \"alice\"")) << error;

  // "alice: hunter2": the password landed in the field position.
  error = ErrorOf(Cat("alice:", kHashA, " hunter2!\n"));
  EXPECT_TRUE(error.starts_with("users.txt:1: unexpected text after the hash for user \"alice\""))
      << error;
  EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
}

class UsersFileOnDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/auth_users_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
};

TEST_F(UsersFileOnDiskTest, LoadsFile) {
  std::string path = dir_ + "/users.txt";
  std::ofstream(path) << "alice:" << kHashA << " pub=x\n";
  absl::StatusOr<UsersTable> table = LoadUsersFile(path);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_NE(table->Find("alice"), nullptr);
  EXPECT_FALSE(table->Find("alice")->permissions->CanPublish("y"));
}

TEST_F(UsersFileOnDiskTest, ErrorsCarryThePath) {
  std::string path = dir_ + "/users.txt";
  std::ofstream(path) << "alice:" << kHashA << "\nalice:" << kHashA << "\n";
  absl::StatusOr<UsersTable> table = LoadUsersFile(path);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(std::string(table.status().message()),
            path + ":2: duplicate user \"alice\" (first defined on line 1)");
}

TEST_F(UsersFileOnDiskTest, MissingFileAndDirectoryAreErrors) {
  absl::StatusOr<UsersTable> missing = LoadUsersFile(dir_ + "/nope.txt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find(dir_ + "/nope.txt"), std::string::npos);
  // A directory must not load as an empty table (which would lock everybody out silently).
  EXPECT_FALSE(LoadUsersFile(dir_).ok());
}

}  // namespace
}  // namespace zmesh::auth

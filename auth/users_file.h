#pragma once

// The users file (--users_file): who may connect, with which password, and
// optionally what each user may publish and subscribe to.
//
//   # Comment lines and blank lines are ignored.
//   <user>:<hash> [pub=<subjects>] [sub=<subjects>] [pub_deny=<subjects>] [sub_deny=<subjects>]
//
//   alice:$2b$11$Kq3uN0m0...
//   bob:$2a$11$V1qrpBt8...  pub=orders.>,_INBOX.>  sub=_INBOX.>,replies.*  sub_deny=replies.admin
//
// - <user> is everything before the first ':'; non-empty, no whitespace,
//   unique within the file (case sensitive).
// - <hash> runs to the next whitespace: a slow salted hash that
//   ValidatePasswordHash accepts (bcrypt $2a$/$2b$/$2y$, yescrypt, scrypt),
//   as printed by `zmesh passwd` or `nats server passwd`. A plaintext
//   password is an error, never a password.
// - Optional permission fields follow, separated by whitespace, each key at
//   most once: a comma-separated list of valid subjects (wildcards allowed,
//   no spaces). pub and sub are allow lists, pub_deny and sub_deny deny
//   lists; semantics in auth/permissions.h. A user without fields may
//   publish and subscribe to anything.
// - '#' starts a comment only as the first non-blank character of a line
//   ('#' is a legal subject character). Surrounding blanks and a trailing
//   '\r' (CRLF files) are ignored.
//
// Errors name the file and the line, e.g.
//   users.txt:3: duplicate user "bob" (first defined on line 2)
// and never echo a hash or anything that might be a password.

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "auth/permissions.h"

namespace zmesh::auth {

struct UserEntry {
  std::string name;
  std::string hash;
  std::shared_ptr<const Permissions> permissions;  // never null
  int line = 0;                                    // where it was defined
};

// An immutable-once-built set of users. Shared read-only between threads as
// std::shared_ptr<const UsersTable>: the const methods are thread safe.
class UsersTable {
 public:
  // False (and no change) when a user of that name exists. Not thread safe:
  // only while building the table.
  bool Insert(UserEntry entry);

  // nullptr for an unknown user.
  const UserEntry* Find(std::string_view name) const;
  size_t size() const { return users_.size(); }
  bool empty() const { return users_.empty(); }

  // A hash to verify unknown users against, so that they cost as much time
  // as known ones: the first user's. Empty for an empty table.
  const std::string& dummy_hash() const { return dummy_hash_; }

 private:
  std::map<std::string, UserEntry, std::less<>> users_;
  std::string dummy_hash_;
};

// Parses the contents of a users file; `source_name` prefixes error messages.
absl::StatusOr<UsersTable> ParseUsers(std::string_view contents, std::string_view source_name);

// Reads and parses the file at `path`.
absl::StatusOr<UsersTable> LoadUsersFile(const std::string& path);

}  // namespace zmesh::auth

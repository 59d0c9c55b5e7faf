#include "auth/users_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

#include "auth/password_hash.h"
#include "proto/subject.h"

namespace zmesh::auth {
namespace {

bool IsKeyChar(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

// Whitespace-separated fields of a trimmed, non-empty line.
std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  while (!line.empty()) {
    size_t end = 0;
    while (end < line.size() && !IsBlank(line[end])) ++end;
    fields.push_back(line.substr(0, end));
    line.remove_prefix(end);
    line = Trim(line);
  }
  return fields;
}

std::string Quoted(std::string_view s) {
  // Built piecewise: GCC 12 at -O3 reports a false -Wrestrict for "\"" + string.
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out.append(s);
  out += '"';
  return out;
}

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// Names a field in an error only when it looks like a key: the text after a
// hash could be a password someone pasted there.
std::string DescribeKey(std::string_view key) {
  if (key.empty() || key.size() > 16 || !std::all_of(key.begin(), key.end(), IsKeyChar)) {
    return "unexpected text after the hash";
  }
  return "unknown field " + Quoted(key);
}

std::vector<std::string>* ListFor(std::string_view key, PermissionLists* lists) {
  if (key == "pub") return &lists->pub_allow;
  if (key == "sub") return &lists->sub_allow;
  if (key == "pub_deny") return &lists->pub_deny;
  if (key == "sub_deny") return &lists->sub_deny;
  return nullptr;
}

// Parses one non-comment line; errors carry no location, the caller adds it.
absl::StatusOr<UserEntry> ParseLine(std::string_view line) {
  std::vector<std::string_view> fields = Fields(line);
  size_t colon = fields[0].find(':');
  if (colon == std::string_view::npos) {
    return Invalid("missing ':' between user name and password hash");
  }
  UserEntry entry;
  entry.name = std::string(fields[0].substr(0, colon));
  entry.hash = std::string(fields[0].substr(colon + 1));
  if (entry.name.empty()) return Invalid("empty user name");
  if (entry.hash.empty()) return Invalid("missing password hash after " + Quoted(entry.name + ":"));
  if (absl::Status s = ValidatePasswordHash(entry.hash); !s.ok()) {
    return Invalid("bad password hash for user " + Quoted(entry.name) + ": " +
                   std::string(s.message()));
  }
  PermissionLists lists;
  for (size_t i = 1; i < fields.size(); ++i) {
    size_t eq = fields[i].find('=');
    std::string key(fields[i].substr(0, eq));
    std::vector<std::string>* list = eq == std::string_view::npos ? nullptr : ListFor(key, &lists);
    if (list == nullptr) {
      return Invalid(
          DescribeKey(key) + " for user " + Quoted(entry.name) +
          " (expected pub=, sub=, pub_deny= or sub_deny= with comma-separated subjects)");
    }
    if (!list->empty()) return Invalid("duplicate field " + key);
    std::string_view value = fields[i].substr(eq + 1);
    if (value.empty()) return Invalid("empty subject list in " + key);
    while (true) {
      size_t comma = value.find(',');
      std::string_view subject = value.substr(0, comma);
      if (!proto::IsValidSubject(subject)) {
        return Invalid("invalid subject " + Quoted(subject) + " in " + key);
      }
      list->emplace_back(subject);
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  entry.permissions = std::make_shared<const Permissions>(std::move(lists));
  return entry;
}

}  // namespace

bool UsersTable::Insert(UserEntry entry) {
  if (users_.contains(entry.name)) return false;
  if (users_.empty()) dummy_hash_ = entry.hash;
  std::string name = entry.name;
  users_.emplace(std::move(name), std::move(entry));
  return true;
}

const UserEntry* UsersTable::Find(std::string_view name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

absl::StatusOr<UsersTable> ParseUsers(std::string_view contents, std::string_view source_name) {
  UsersTable table;
  int line_number = 0;
  while (!contents.empty()) {
    size_t newline = contents.find('\n');
    std::string_view line = Trim(contents.substr(0, newline));  // Trim drops CRLF's '\r'
    contents.remove_prefix(newline == std::string_view::npos ? contents.size() : newline + 1);
    ++line_number;
    if (line.empty() || line.front() == '#') continue;
    auto error = [&](const std::string& message) {
      return Invalid(std::string(source_name) + ":" + std::to_string(line_number) + ": " + message);
    };
    absl::StatusOr<UserEntry> entry = ParseLine(line);
    if (!entry.ok()) return error(std::string(entry.status().message()));
    if (const UserEntry* first = table.Find(entry->name)) {
      return error("duplicate user " + Quoted(entry->name) + " (first defined on line " +
                   std::to_string(first->line) + ")");
    }
    entry->line = line_number;
    table.Insert(*std::move(entry));
  }
  return table;
}

absl::StatusOr<UsersTable> LoadUsersFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "cannot open users file " + path);
  std::string contents;
  char buf[16384];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      contents.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {  // e.g. EISDIR: a directory is not an empty users file
      int error = errno;
      close(fd);
      return absl::ErrnoToStatus(error, "cannot read users file " + path);
    }
  }
  close(fd);
  return ParseUsers(contents, path);
}

}  // namespace zmesh::auth

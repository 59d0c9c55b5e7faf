#include "client/node_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace zmesh::client {
namespace {

// Bound on what we read: a cache with thousands of nodes is still far below.
constexpr std::streamsize kMaxCacheBytes = 4 << 20;

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string CacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/zmesh";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return std::string(home) + "/.cache/zmesh";
  }
  return "/tmp/zmesh-" + std::to_string(::getuid());
}

Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status(StatusCode::kIoError, "mkdir " + prefix + ": " + std::strerror(errno));
    }
  }
  return Status::Ok();
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string DefaultNodeCachePath(const std::string& zk_connect, const std::string& zk_root) {
  std::string name;
  for (char c : zk_root) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                       c == '_';
    if (plain) {
      name.push_back(c);
    } else if (!name.empty() && name.back() != '_') {
      name.push_back('_');
    }
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  if (name.size() > 64) name.resize(64);
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx",
                static_cast<unsigned long long>(Fnv1a(zk_connect + "|" + zk_root)));
  return CacheDir() + "/nodes-" + (name.empty() ? "root" : name) + "-" + hash + ".json";
}

std::optional<std::vector<CachedNode>> ReadNodeCache(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open " + path;
    return std::nullopt;
  }
  std::string text(static_cast<size_t>(kMaxCacheBytes) + 1, '\0');
  in.read(text.data(), kMaxCacheBytes + 1);
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > static_cast<size_t>(kMaxCacheBytes)) {
    *error = path + " is too large for a node cache";
    return std::nullopt;
  }
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto nodes = j.is_object() ? j.find("nodes") : j.end();
  if (!j.is_object() || nodes == j.end() || !nodes->is_array()) {
    *error = path + " is not a node cache";
    return std::nullopt;
  }
  std::vector<CachedNode> out;
  for (const auto& n : *nodes) {
    if (!n.is_object()) continue;
    auto url = n.find("client_url");
    if (url == n.end() || !url->is_string() || url->get<std::string>().empty()) continue;
    auto id = n.find("id");
    out.push_back(CachedNode{(id != n.end() && id->is_string()) ? id->get<std::string>() : std::string(),
                             url->get<std::string>()});
  }
  return out;
}

Status WriteNodeCache(const std::string& path, const std::string& zk_connect, const std::string& zk_root,
                      const std::vector<CachedNode>& nodes) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (slash != std::string::npos && slash > 0) {
    Status st = MakeDirs(dir);
    if (!st.ok()) return st;
  }
  nlohmann::json j;
  j["version"] = 1;
  j["zk"] = zk_connect;
  j["root"] = zk_root;
  j["written_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  nlohmann::json list = nlohmann::json::array();
  for (const CachedNode& n : nodes) list.push_back({{"id", n.id}, {"client_url", n.client_url}});
  j["nodes"] = std::move(list);
  const std::string data = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";

  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status(StatusCode::kIoError, "create " + tmp + ": " + std::strerror(errno));
  const bool ok = WriteAll(fd, data) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return Status(StatusCode::kIoError, "write " + tmp + ": " + std::strerror(saved));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status(StatusCode::kIoError, "rename to " + path + ": " + std::strerror(err));
  }
  // Make the rename itself durable (best effort).
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

}  // namespace zmesh::client

#pragma once

// Remembers credentials that verified recently, so that a reconnect storm of
// the same users costs one slow hash per user rather than one per connection.
//
// Entries are keyed by HMAC-SHA256(random per-process key, length(user) user
// '\0' password): no password, nor any plain hash of one, is stored, and the
// key never leaves the process. Only successful verifications are cached. The
// cache is bounded (the least recently used entry goes first), entries expire
// `ttl` after they were verified, and Invalidate() drops them all (the users
// file was reloaded).
//
// Thread safe: every method may be called from any thread.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "auth/permissions.h"

namespace zmesh::auth {

class CredentialCache {
 public:
  using Key = std::array<unsigned char, 32>;
  using Clock = std::chrono::steady_clock;

  // capacity 0 disables the cache.
  CredentialCache(size_t capacity, Clock::duration ttl);
  ~CredentialCache();

  CredentialCache(const CredentialCache&) = delete;
  CredentialCache& operator=(const CredentialCache&) = delete;

  // Lock free: the HMAC key is fixed at construction.
  Key MakeKey(std::string_view user, std::string_view password) const;

  // The permissions cached under `key`; nullptr when absent or expired.
  std::shared_ptr<const Permissions> Find(const Key& key);

  // Caches `permissions` under `key`, unless Invalidate() ran after `epoch`
  // was read: a verification that raced with a reload must not put the old
  // table's answer back.
  void Insert(const Key& key, std::shared_ptr<const Permissions> permissions, uint64_t epoch);

  uint64_t epoch() const;
  void Invalidate();
  size_t size() const;

 private:
  struct Entry {
    Key key;
    std::shared_ptr<const Permissions> permissions;
    Clock::time_point expires;
  };
  struct KeyHash {
    // The key is an HMAC output: any 8 bytes of it are already uniform.
    size_t operator()(const Key& key) const;
  };

  const size_t capacity_;
  const Clock::duration ttl_;
  std::array<unsigned char, 32> hmac_key_;

  mutable std::mutex mu_;
  uint64_t epoch_ = 0;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index_;
};

}  // namespace zmesh::auth

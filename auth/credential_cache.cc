#include "auth/credential_cache.h"

#include <glog/logging.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <string>
#include <utility>

namespace zmesh::auth {

size_t CredentialCache::KeyHash::operator()(const Key& key) const {
  size_t h;
  std::memcpy(&h, key.data(), sizeof(h));
  return h;
}

CredentialCache::CredentialCache(size_t capacity, Clock::duration ttl)
    : capacity_(capacity), ttl_(ttl) {
  CHECK_EQ(RAND_bytes(hmac_key_.data(), static_cast<int>(hmac_key_.size())), 1)
      << "no randomness for the credential cache key";
}

CredentialCache::~CredentialCache() { OPENSSL_cleanse(hmac_key_.data(), hmac_key_.size()); }

CredentialCache::Key CredentialCache::MakeKey(std::string_view user,
                                              std::string_view password) const {
  // user '\0' password, with the user's length in front so that no two
  // (user, password) pairs share a message, whatever bytes they contain.
  uint64_t user_size = user.size();
  std::string message(reinterpret_cast<const char*>(&user_size), sizeof(user_size));
  message.append(user).push_back('\0');
  message.append(password);
  Key key;
  unsigned int length = 0;
  CHECK(HMAC(EVP_sha256(), hmac_key_.data(), static_cast<int>(hmac_key_.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), key.data(),
             &length) != nullptr);
  CHECK_EQ(length, key.size());
  OPENSSL_cleanse(message.data(), message.size());
  return key;
}

std::shared_ptr<const Permissions> CredentialCache::Find(const Key& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  if (Clock::now() >= it->second->expires) {
    lru_.erase(it->second);
    index_.erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->permissions;
}

void CredentialCache::Insert(const Key& key, std::shared_ptr<const Permissions> permissions,
                             uint64_t epoch) {
  std::lock_guard lock(mu_);
  if (capacity_ == 0 || epoch != epoch_) return;
  Clock::time_point expires = Clock::now() + ttl_;
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->permissions = std::move(permissions);
    it->second->expires = expires;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  if (lru_.size() >= capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, std::move(permissions), expires});
  index_.emplace(key, lru_.begin());
}

uint64_t CredentialCache::epoch() const {
  std::lock_guard lock(mu_);
  return epoch_;
}

void CredentialCache::Invalidate() {
  std::lock_guard lock(mu_);
  ++epoch_;
  index_.clear();
  lru_.clear();
}

size_t CredentialCache::size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

}  // namespace zmesh::auth

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "auth/credential_cache.h"

namespace zmesh::auth {
namespace {

constexpr auto kHour = std::chrono::hours(1);

std::shared_ptr<const Permissions> NewPermissions() { return std::make_shared<Permissions>(); }

TEST(CredentialCacheTest, KeysAreKeyedHmacsOfUserAndPassword) {
  CredentialCache cache(8, kHour), other(8, kHour);
  CredentialCache::Key key = cache.MakeKey("alice", "pw");
  EXPECT_EQ(key, cache.MakeKey("alice", "pw"));
  EXPECT_NE(key, cache.MakeKey("alice", "pW"));
  EXPECT_NE(key, cache.MakeKey("alicf", "pw"));
  // The boundary between user and password is part of the key.
  EXPECT_NE(cache.MakeKey("ab", "c"), cache.MakeKey("a", "bc"));
  EXPECT_NE(cache.MakeKey("a", std::string("\0b", 2)), cache.MakeKey(std::string("a\0", 2), "b"));
  // A per-process random key: another cache derives other keys.
  EXPECT_NE(key, other.MakeKey("alice", "pw"));
}

TEST(CredentialCacheTest, FindsWhatWasInserted) {
  CredentialCache cache(8, kHour);
  auto perms = NewPermissions();
  CredentialCache::Key key = cache.MakeKey("alice", "pw");
  EXPECT_EQ(cache.Find(key), nullptr);
  cache.Insert(key, perms, cache.epoch());
  EXPECT_EQ(cache.Find(key), perms);
  EXPECT_EQ(cache.Find(cache.MakeKey("alice", "other")), nullptr);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(CredentialCacheTest, EvictsLeastRecentlyUsed) {
  CredentialCache cache(2, kHour);
  auto a = cache.MakeKey("a", "pw"), b = cache.MakeKey("b", "pw"), c = cache.MakeKey("c", "pw");
  cache.Insert(a, NewPermissions(), cache.epoch());
  cache.Insert(b, NewPermissions(), cache.epoch());
  ASSERT_NE(cache.Find(a), nullptr);  // a is now more recent than b
  cache.Insert(c, NewPermissions(), cache.epoch());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(cache.Find(a), nullptr);
  EXPECT_EQ(cache.Find(b), nullptr);
  EXPECT_NE(cache.Find(c), nullptr);
}

TEST(CredentialCacheTest, EntriesExpire) {
  CredentialCache cache(8, std::chrono::seconds(0));
  auto key = cache.MakeKey("a", "pw");
  cache.Insert(key, NewPermissions(), cache.epoch());
  EXPECT_EQ(cache.Find(key), nullptr);
  EXPECT_EQ(cache.size(), 0u);  // the expired entry is dropped when found
}

TEST(CredentialCacheTest, InvalidateDropsEntriesAndLateInserts) {
  CredentialCache cache(8, kHour);
  auto key = cache.MakeKey("a", "pw");
  cache.Insert(key, NewPermissions(), cache.epoch());
  uint64_t before = cache.epoch();
  cache.Invalidate();
  EXPECT_NE(cache.epoch(), before);
  EXPECT_EQ(cache.Find(key), nullptr);
  // A verification that started before the reload finishes after it.
  cache.Insert(key, NewPermissions(), before);
  EXPECT_EQ(cache.Find(key), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(CredentialCacheTest, ZeroCapacityCachesNothing) {
  CredentialCache cache(0, kHour);
  auto key = cache.MakeKey("a", "pw");
  cache.Insert(key, NewPermissions(), cache.epoch());
  EXPECT_EQ(cache.Find(key), nullptr);
}

}  // namespace
}  // namespace zmesh::auth

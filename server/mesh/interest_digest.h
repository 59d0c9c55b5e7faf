#pragma once

// A digest of a set of interest entries (subject, queue, count), equal on two
// nodes exactly when they hold the same set: the XOR of a fixed 64-bit hash of
// each entry, so it is updated in O(1) as entries come and go. The hash must
// be the same in every process (no per-process seed), since two nodes compare
// their digests.

#include <cstdint>
#include <string_view>

namespace zmesh::server::mesh {

inline uint64_t HashInterestEntry(std::string_view subject, std::string_view queue, uint32_t count) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  auto mix_bytes = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  };
  mix_bytes(subject);
  h ^= 0xff;  // separator; the lengths are mixed in below, so ("ab","c") != ("a","bc")
  h *= 0x100000001b3ull;
  mix_bytes(queue);
  h ^= static_cast<uint64_t>(subject.size()) << 32 | queue.size();
  h ^= static_cast<uint64_t>(count) * 0x9e3779b97f4a7c15ull;
  // splitmix64 finaliser: spreads FNV's weak high bits.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

// The set digest: entries and the XOR of their hashes.
struct InterestDigest {
  uint64_t hash = 0;
  uint64_t entries = 0;

  void Add(std::string_view subject, std::string_view queue, uint32_t count) {
    hash ^= HashInterestEntry(subject, queue, count);
    ++entries;
  }
  void Remove(std::string_view subject, std::string_view queue, uint32_t count) {
    hash ^= HashInterestEntry(subject, queue, count);
    --entries;
  }
  bool operator==(const InterestDigest&) const = default;
};

}  // namespace zmesh::server::mesh

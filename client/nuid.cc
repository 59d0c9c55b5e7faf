#include "client/nuid.h"

#include <mutex>
#include <random>

namespace zmesh::client {

std::string NewNuid() {
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  static std::mutex mu;
  static std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  std::string out(22, '0');
  std::lock_guard<std::mutex> lock(mu);
  for (char& c : out) c = kDigits[rng() % 62];
  return out;
}

}  // namespace zmesh::client

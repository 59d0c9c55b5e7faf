#pragma once

// Fixed test users with bcrypt hashes ($2a$, cost 10, made with libxcrypt's
// crypt(3)), so tests need no hashing tool and both zmesh-server and
// nats-server accept the same users. The passwords are test data, not secrets.

namespace zmesh::testing {

inline constexpr char kAliceUser[] = "alice";
inline constexpr char kAlicePassword[] = "alice-pw";
inline constexpr char kAliceHash[] = "$2a$10$bSzdHUviApwgEzk8C40tlOEWcBE1jHVAJBUBVnanY6H0xlPGgRFPO";

inline constexpr char kBobUser[] = "bob";
inline constexpr char kBobPassword[] = "bob-pw";
inline constexpr char kBobHash[] = "$2a$10$EalN8e5Ra5vHLnDhQBjf8ORT1kAncNu4RkKZFQ6.ClIkxhgec831S";

inline constexpr char kCarolUser[] = "carol";
inline constexpr char kCarolPassword[] = "carol-pw";
inline constexpr char kCarolHash[] = "$2a$10$A7U4b9bFs5StNYXBofY7YeEStqj5fN1XS7YfncbqdYYrCRmcKHD4K";

}  // namespace zmesh::testing

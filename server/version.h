#pragma once

namespace zmesh::server {

inline constexpr char kZmeshVersion[] = "0.1.0";
// INFO "version": the nats-server release whose client protocol zmesh matches.
// Clients gate protocol features on it, so it names that release; zmesh's own
// version travels in INFO "zmesh_version".
inline constexpr char kNatsProtocolVersion[] = "2.9.10";

}  // namespace zmesh::server

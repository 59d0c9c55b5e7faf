#pragma once

// Walks a buffer of protocol that this client encoded itself (proto/
// client_writer.h), one operation at a time. Used when a connection is lost:
// the publishes that never reached the socket are kept for the next node,
// while SUB/UNSUB (re-sent from the subscription table) and PING/PONG of the
// dead connection are dropped.
//
// The input is trusted (our own encoder), but a malformed buffer still only
// ends the walk; it never reads out of bounds.
//
// Thread safety: stateless functions.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zmesh::client {

enum FrameKind : uint32_t {
  kFramePub = 1,      // PUB and HPUB
  kFramePing = 2,
  kFrameOther = 4,    // CONNECT, SUB, UNSUB, PONG
};

// Length of the operation starting at buf[0], 0 if incomplete or malformed.
// *kind receives its FrameKind.
size_t FrameLength(std::string_view buf, FrameKind* kind);

// Appends to *out the operations of `buf` that start at or after offset
// `from` and whose kind is in `kinds` (a mask). `buf` must start at an
// operation boundary. Returns the number of operations kept.
size_t KeepFrames(std::string_view buf, size_t from, uint32_t kinds, std::string* out);

}  // namespace zmesh::client

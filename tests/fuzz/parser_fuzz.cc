// libFuzzer target for the NATS protocol parser, both roles. The first byte
// picks the role and where the input is split, so split-buffer paths are
// exercised too. Invariants checked: no crash, bounded buffering, and the same
// result whole as split.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "proto/parser.h"

namespace {

using zmesh::proto::Op;
using zmesh::proto::ParseStatus;
using zmesh::proto::Parser;

struct Result {
  std::vector<std::string> ops;  // a digest of each op
  int error = 0;
  bool operator==(const Result&) const = default;
};

constexpr Parser::Limits kLimits{256, 4096};

Result Run(Parser::Role role, const std::vector<std::string_view>& chunks) {
  Parser p(role, kLimits);
  Result r;
  for (std::string_view chunk : chunks) {
    while (!chunk.empty()) {
      Op op;
      const ParseStatus st = p.Next(&chunk, &op);
      // The parser never holds more than a control line plus one payload.
      if (p.buffered_bytes() > kLimits.max_control_line + 1 + 64 + kLimits.max_payload + 2) std::abort();
      if (st == ParseStatus::kError) {
        r.error = static_cast<int>(p.error());
        return r;
      }
      if (st == ParseStatus::kNeedMore) break;
      std::string d(1, static_cast<char>(op.type));
      for (std::string_view v : {op.arg, op.subject, op.reply, op.queue, op.sid, op.payload}) {
        d += std::to_string(v.size()) + ":" + std::string(v) + "|";
      }
      d += std::to_string(op.max_msgs) + "/" + std::to_string(op.header_size);
      r.ops.push_back(std::move(d));
    }
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto role = (data[0] & 1) ? Parser::Role::kClient : Parser::Role::kServer;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const Result whole = Run(role, {input});
  const size_t split = input.empty() ? 0 : (data[0] >> 1) % input.size();
  const Result halves = Run(role, {input.substr(0, split), input.substr(split)});
  if (!(whole == halves)) std::abort();
  return 0;
}

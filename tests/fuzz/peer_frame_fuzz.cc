// libFuzzer target for the peer protocol's frame reader: whatever a peer
// sends must decode or fail cleanly, identically whole and split, within the
// frame limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "proto/peer_protocol.h"

namespace {

using zmesh::proto::peer::Frame;
using zmesh::proto::peer::FrameReader;

constexpr size_t kLimit = 4096;

std::vector<std::string> Run(const std::vector<std::string_view>& chunks) {
  FrameReader reader(kLimit);
  std::vector<std::string> out;
  for (std::string_view chunk : chunks) {
    while (!chunk.empty()) {
      Frame f;
      const auto st = reader.Next(&chunk, &f);
      if (reader.buffered_bytes() > kLimit + 4) std::abort();
      if (st == FrameReader::Status::kError) {
        out.push_back("E");
        return out;
      }
      if (st == FrameReader::Status::kNeedMore) break;
      std::string d(1, static_cast<char>(f.type));
      d += std::string(f.interest.subject) + "|" + std::string(f.msg.subject) + "|" + std::string(f.msg.payload) + "|" +
           std::to_string(f.msg.queues.size()) + "|" + std::string(f.hello.node_id) + "|" + std::string(f.reason);
      std::string why;
      d += zmesh::proto::peer::ValidateFrame(f, &why) ? "|valid" : "|invalid";
      out.push_back(std::move(d));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto whole = Run({input});
  const size_t split = input.empty() ? 0 : data[0] % input.size();
  if (Run({input.substr(0, split), input.substr(split)}) != whole) std::abort();
  return 0;
}

// libFuzzer target for the peer state machine after the handshake (SPEC §5:
// nothing from a peer may crash a node or make it allocate without bound).
// A real zmesh-server runs in this process: its mesh membership comes from an
// in-memory registry, peer links are plain (the handshake under test is the
// protocol's, TLS has its own tests), and a local NATS client subscribes to
// everything so that forwarded messages are delivered for real.
//
// Each input: a new peer connection that completes the handshake as node
// "fuzz-peer" (HELLO both ways, activation: the node's interest snapshot
// arrives), then the input's bytes as frames, then a PING. The node must
// answer it or close the link; either way it must survive, which the next
// input checks. Runs under ASan+UBSan in the fuzz build.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <cstring>
#include <thread>

#include <glog/logging.h>

#include "proto/peer_protocol.h"
#include "server/mesh/mesh.h"
#include "server/options.h"
#include "server/server.h"
#include "zk/testing/fake_registry.h"

namespace {

namespace peer = zmesh::proto::peer;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Connects to the node's peer port. A refused or failed connect is retried
// for up to a second (a loaded machine, a listener busy accepting): only a
// node that stays unreachable ends the run, with the reason.
int Dial(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int error = 0;
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    error = errno;
    if (fd >= 0) ::close(fd);
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::fprintf(stderr, "peer_session fuzzer: cannot reach the node's peer port %d: %s\n", port, std::strerror(error));
  std::abort();
}

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads frames until one of `type` (true), or close / timeout (false).
bool WaitFrame(int fd, peer::FrameReader* reader, peer::FrameType type, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 1))) != 1) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    std::string_view in(buf, static_cast<size_t>(n));
    while (!in.empty()) {
      peer::Frame f;
      const auto st = reader->Next(&in, &f);
      if (st == peer::FrameReader::Status::kError) std::abort();  // the node sent garbage
      if (st == peer::FrameReader::Status::kNeedMore) break;
      if (f.type == type) return true;
    }
  }
  return false;
}

// Discards what the local subscriber received; reconnects it if it was cut.
class LocalSubscriber {
 public:
  void Ensure(int port) {
    if (fd_ >= 0) {
      char buf[65536];
      while (true) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          ::close(fd_);
          fd_ = -1;
        }
        break;
      }
    }
    if (fd_ >= 0) return;
    fd_ = Dial(port);
    SendAll(fd_, "CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB > 1\r\nSUB > q 2\r\nPING\r\n");
  }

 private:
  int fd_ = -1;
};

struct Node {
  std::unique_ptr<zmesh::server::Server> server;
  std::thread main;
  int peer_port = 0;
  int client_port = 0;
  LocalSubscriber subscriber;
};

Node* StartNode() {
  FLAGS_minloglevel = 2;  // every input opens and closes a link: keep errors only
  auto* node = new Node;
  zmesh::server::Options o;
  o.listen = {"127.0.0.1", 0};
  o.peer_listen = {"127.0.0.1", 0};
  o.zk = "in-process";
  o.node_id = "fuzz-node";
  o.insecure_peers = true;
  o.threads = 2;
  o.join_timeout_ms = 100;
  o.join_grace_ms = 3600 * 1000;  // the fuzz peer has no znode: a joining node, kept
  o.max_payload = 64 * 1024;
  node->server = std::make_unique<zmesh::server::Server>(o);
  auto zookeeper = std::make_shared<zmesh::zk::FakeZooKeeper>();
  node->server->set_registry_factory([zookeeper](zmesh::zk::RegistryOptions ro, zmesh::zk::Executor executor) {
    return std::make_unique<zmesh::zk::FakeRegistry>(zookeeper, std::move(ro), std::move(executor));
  });
  std::atomic<int> started{0};
  node->main = std::thread([node, &started] {
    std::string error;
    if (!node->server->Start(&error)) {
      std::fprintf(stderr, "peer_session fuzzer: cannot start the node: %s\n", error.c_str());
      std::abort();
    }
    started = 1;
    node->server->Run();
  });
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (started && node->server->mesh() != nullptr && node->server->mesh()->Healthy()) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  if (!node->server->mesh() || !node->server->mesh()->Healthy()) {
    std::fprintf(stderr, "peer_session fuzzer: the node did not become ready\n");
    std::abort();
  }
  node->peer_port = node->server->mesh()->peer_address().port;
  node->client_port = node->server->client_address().port;
  return node;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Node* node = StartNode();  // lives for the whole process
  node->subscriber.Ensure(node->client_port);

  const int fd = Dial(node->peer_port);
  peer::FrameReader reader(1 << 22);
  std::string hello;
  peer::EncodeHello({peer::kProtocolVersion, "fuzz-peer", 1, "127.0.0.1:1", "nats://127.0.0.1:1"}, &hello);
  SendAll(fd, hello);
  // Activated once the node's own snapshot arrived; then ours, empty.
  if (!WaitFrame(fd, &reader, peer::FrameType::kSyncEnd, milliseconds(10000))) {
    std::fprintf(stderr, "peer_session fuzzer: the handshake did not complete\n");
    std::abort();
  }
  std::string sync;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &sync);
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {0, 0}, &sync);
  SendAll(fd, sync);

  SendAll(fd, std::string_view(reinterpret_cast<const char*>(data), size));
  std::string ping;
  peer::EncodeEmpty(peer::FrameType::kPing, &ping);
  if (SendAll(fd, ping)) {
    // A PONG, or the link closed for a protocol error: both are fine. An
    // input that ends inside a frame swallows the PING; then our end of the
    // stream tells the node, and it closes the link.
    if (!WaitFrame(fd, &reader, peer::FrameType::kPong, milliseconds(300))) {
      ::shutdown(fd, SHUT_WR);
      WaitFrame(fd, &reader, peer::FrameType::kPong, milliseconds(3000));
    }
  }
  ::close(fd);
  return 0;
}

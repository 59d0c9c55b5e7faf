#include "tests/unit/mesh_harness.h"

#include <future>
#include <utility>

#include "server/mesh/interest_digest.h"
#include "server/subject_index.h"
#include "tests/support/wait_for.h"
#include "zk/registry.h"
#include "zk/testing/fake_registry.h"

namespace zmesh::server::mesh::testing {

using namespace std::chrono_literals;
namespace peer = proto::peer;
using zmesh::testing::ScriptedPeer;

namespace {

std::string NodePath(const std::string& id) { return std::string(kRoot) + "/nodes/" + id; }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

zk::NodeInfo ScriptedNode::Info() const {
  zk::NodeInfo info;
  info.id = id;
  info.client_url = "nats://127.0.0.1:" + std::to_string(10000 + listener.port() % 1000);
  info.peer_url = "127.0.0.1:" + std::to_string(listener.port());
  info.version = "test";
  info.incarnation = incarnation;
  info.moves = moves;
  info.queue_switch = queue_switch;
  return info;
}

MeshOptions MeshHarness::DefaultOptions() {
  MeshOptions o;
  o.node_id = "n5";
  o.incarnation = 55;
  o.client_url = "nats://127.0.0.1:4005";
  o.peer_host = "127.0.0.1";
  o.peer_listen = HostPort{"127.0.0.1", 0};
  o.version = "test";
  o.peer_tls = nullptr;  // plain frames, as with --insecure_peers
  o.dial_grace_ms = 40;  // the mesh ticks every 10 ms
  o.dial_timeout_ms = 2000;
  // Longer than any wait of a test: a link is closed by the rule under test,
  // never by an unfinished handshake.
  o.handshake_timeout_ms = 10000;
  o.join_timeout_ms = 60000;  // a join ends because the peers synced, never by timeout
  o.join_grace_ms = 60000;
  return o;
}

MeshHarness::MeshHarness() {
  Options server_options;
  ServerContext::Init init;
  init.node_id = "n5";
  ctx_ = std::make_unique<ServerContext>(server_options, std::move(init));
  worker_ = std::make_unique<IoWorker>(0, &ctx_->index);
  worker_->Start(10ms);
  main_thread_ = std::thread([this] { main_loop_.Run(); });
}

MeshHarness::~MeshHarness() { Shutdown(); }

bool MeshHarness::Start(MeshOptions options, std::string* error) {
  EventLoop* main = &main_loop_;
  zk::Executor on_main = [main](std::function<void()> task) { main->QueueInLoop(std::move(task)); };
  zk::RegistryOptions registry_options;
  registry_options.root = kRoot;
  auto registry = std::make_unique<zk::FakeRegistry>(zk_, std::move(registry_options), std::move(on_main));
  bool ok = false;
  const int64_t started = NowMs();
  const bool ran = OnMain([&] {
    mesh_ = std::make_unique<Mesh>(ctx_.get(), std::move(options), &main_loop_, std::vector<IoWorker*>{worker_.get()},
                                   std::move(registry));
    ok = mesh_->Start(
        [this, started] {
          ready_after_ms_ = NowMs() - started;
          ready_ = true;
        },
        error);
    if (ok) peer_port_ = static_cast<uint16_t>(mesh_->peer_address().port);
  });
  return ran && ok;
}

void MeshHarness::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // The order of Server::Run: the mesh stops (listener, tick, registry), the
  // workers close every link; their last notifications reach the mesh on the
  // main loop before it is destroyed there (its connector and listener
  // belong to that thread).
  if (mesh_) OnMain([this] { mesh_->Stop(); });
  worker_->Stop();
  DrainMain();
  OnMain([this] { mesh_.reset(); });
  main_loop_.Quit();
  main_thread_.join();
}

bool MeshHarness::OnMain(std::function<void()> task) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  main_loop_.QueueInLoop([task = std::move(task), done] {
    task();
    done->set_value();
  });
  return f.wait_for(5s) == std::future_status::ready;
}

bool MeshHarness::DrainMain(int rounds) {
  for (int i = 0; i < rounds; ++i) {
    if (!OnMain([] {})) return false;
  }
  return true;
}

void MeshHarness::Register(const ScriptedNode& node) { Register(node.Info()); }

void MeshHarness::Register(const zk::NodeInfo& info) { zk_->Put(NodePath(info.id), zk::EncodeNodeInfo(info)); }

void MeshHarness::Unregister(const std::string& id) { zk_->Delete(NodePath(id)); }

bool MeshHarness::ZnodeExists(const std::string& id) const { return zk_->Get(NodePath(id)).has_value(); }

std::optional<PeerStatus> MeshHarness::StatusOf(const std::string& id) const {
  for (const PeerStatus& s : mesh_->Status()) {
    if (s.node_id == id) return s;
  }
  return std::nullopt;
}

bool MeshHarness::WaitStatus(const std::string& id, const std::function<bool(const PeerStatus&)>& pred) {
  return zmesh::testing::WaitFor(5s, [&] {
    std::optional<PeerStatus> s = StatusOf(id);
    return s && pred(*s);
  });
}

bool MeshHarness::IndexMatches(const std::string& subject) const { return !ctx_->index.Match(subject)->empty(); }

std::unique_ptr<ScriptedPeer> AcceptDial(ScriptedNode& node) {
  const int fd = node.listener.Accept(5s);
  if (fd < 0) return nullptr;
  auto p = std::make_unique<ScriptedPeer>();
  p->Adopt(fd);
  std::optional<DecodedFrame> hello = WaitDecoded(*p, peer::FrameType::kHello);
  if (!hello) return nullptr;
  const zk::NodeInfo info = node.Info();
  if (!p->SendHello(node.id, node.incarnation, info.peer_url, info.client_url)) return nullptr;
  return p;
}

std::unique_ptr<ScriptedPeer> DialMesh(uint16_t port, const std::string& id, uint64_t incarnation) {
  auto p = std::make_unique<ScriptedPeer>();
  if (!p->Dial(port) || !p->SendHello(id, incarnation)) return nullptr;
  return p;
}

bool SendSnapshot(ScriptedPeer& p, const std::vector<std::string>& subjects) {
  std::string frames;
  peer::EncodeEmpty(peer::FrameType::kSyncBegin, &frames);
  InterestDigest digest;
  for (const std::string& s : subjects) {
    peer::EncodeInterest({s, "", 1, 1}, &frames);
    digest.Add(s, "", 1);
  }
  peer::EncodeDigest(peer::FrameType::kSyncEnd, {digest.hash, digest.entries, subjects.empty() ? 0u : 1u}, &frames);
  return p.Send(frames);
}

bool SendEmpty(ScriptedPeer& p, peer::FrameType type) {
  std::string frame;
  peer::EncodeEmpty(type, &frame);
  return p.Send(frame);
}

std::optional<DecodedFrame> WaitDecoded(ScriptedPeer& p, peer::FrameType type) {
  std::string body;
  if (!p.WaitFrame(static_cast<uint8_t>(type), 5s, &body)) return std::nullopt;
  std::string bytes;
  const uint32_t len = static_cast<uint32_t>(body.size() + 1);
  for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>((len >> (8 * k)) & 0xff));
  bytes.push_back(static_cast<char>(type));
  bytes += body;
  peer::FrameReader reader(1 << 20);
  std::string_view in(bytes);
  peer::Frame frame;
  if (reader.Next(&in, &frame) != peer::FrameReader::Status::kFrame) return std::nullopt;
  DecodedFrame out;
  out.node_id = std::string(frame.hello.node_id);
  out.incarnation = frame.hello.incarnation;
  out.drain_ms = frame.leaving.drain_ms;
  out.reason = std::string(frame.reason);
  out.move_token = frame.move_token;
  out.subject = std::string(frame.interest.subject);
  out.queue = std::string(frame.interest.queue);
  return out;
}

bool PingPong(ScriptedPeer& p) {
  return SendEmpty(p, peer::FrameType::kPing) && p.WaitFrame(static_cast<uint8_t>(peer::FrameType::kPong), 5s);
}

}  // namespace zmesh::server::mesh::testing

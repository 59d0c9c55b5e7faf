#pragma once

// A zmesh node: the client listener, the I/O workers, authentication and (in
// a mesh) the peer layer, wired together.
//
// Threading: the main loop (the thread that calls Run) owns the listeners,
// signal handling and membership; client connections live on the workers.
// Shutdown() is safe from any thread.

#include <event2/event.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/event_loop.h"
#include "server/listener.h"
#include "server/options.h"
#include "zk/registry.h"

namespace zmesh::auth {
class PeerKeys;
class PeerTlsContexts;
}  // namespace zmesh::auth

namespace zmesh::server {

struct ServerContext;
class IoWorker;
namespace mesh {
class Mesh;
}
namespace monitor {
class HttpMonitor;
}

class Server {
 public:
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads users, binds the client listener, starts the workers. Main thread.
  bool Start(std::string* error);
  // Runs the main loop until Shutdown(); then stops everything.
  void Run();
  // Any thread: stop now (closing every connection after a best-effort flush).
  void Shutdown();
  // Main thread: graceful leave (SPEC §3, lame duck): delete our znode, stop
  // accepting, tell clients to move (INFO ldm), close the remaining clients
  // spread over --lame_duck_duration_ms after --lame_duck_grace_ms, drain,
  // stop. Bounded: everything ends by grace + duration + kDrainBoundMs.
  void EnterLameDuck();
  static constexpr int64_t kDrainBoundMs = 5000;

  // Main thread: SIGHUP — re-read the log-level flags from --flagfile, the
  // users file and the cluster secret file, keeping connections.
  void Reload();

  // Before Start(): where the mesh's membership comes from instead of the
  // ZooKeeper named by --zk (in-process tests and fuzzers; the executor runs
  // tasks on the main loop).
  using RegistryFactory = std::function<std::unique_ptr<zk::Registry>(zk::RegistryOptions, zk::Executor)>;
  void set_registry_factory(RegistryFactory factory) { registry_factory_ = std::move(factory); }

  const HostPort& client_address() const { return client_listener_->bound(); }
  ServerContext* context() const { return ctx_.get(); }
  mesh::Mesh* mesh() const { return mesh_.get(); }

 private:
  bool StartMesh(std::string* error);
  void ReloadUsers();
  // New peer links use the secrets now in the file; links up keep theirs.
  void ReloadClusterSecret();
  // The node may serve clients: open the client port, write the ports file.
  void BecomeReady();
  void BroadcastInfo();
  void OnAccept(int fd, const PeerAddress& peer);
  void InstallSignalHandlers();
  bool WritePortsFile(std::string* error) const;
  // Serves monitoring on --http_listen (before joining, so /healthz says 503).
  bool StartMonitor(std::string* error);

  const Options options_;
  RegistryFactory registry_factory_;
  EventLoop main_loop_;
  std::unique_ptr<ServerContext> ctx_;
  std::vector<std::unique_ptr<IoWorker>> workers_;
  std::unique_ptr<Listener> client_listener_;
  std::unique_ptr<auth::PeerKeys> peer_keys_;             // PSK mode
  std::unique_ptr<auth::PeerTlsContexts> peer_tls_;       // null: --insecure_peers
  std::unique_ptr<mesh::Mesh> mesh_;
  std::unique_ptr<monitor::HttpMonitor> monitor_;  // --http_listen; null when off
  std::vector<event*> signal_events_;
  static constexpr int64_t kLameDuckStepMs = 50;
  bool lame_duck_ = false;
  int64_t lame_duck_started_ms_ = 0;  // when the client port closed
  int64_t lame_duck_total_ = -1;      // clients when closing began
  int64_t lame_duck_closed_ = 0;      // closes asked for so far
  int64_t lame_duck_rotation_ = 0;    // which worker takes the odd close
  std::unique_ptr<EventLoop::Timer> lame_duck_timer_;
  void StopAcceptingForLameDuck();
  void LameDuckStep();
  size_t next_worker_ = 0;
};

// A random id in nats-server's style: 'N' and 55 base32 characters.
std::string NewServerId();

}  // namespace zmesh::server

#pragma once

// A zmesh node: the client listener, the I/O workers, authentication and (in
// a mesh) the peer layer, wired together.
//
// Threading: the main loop (the thread that calls Run) owns the listeners,
// signal handling and membership; client connections live on the workers.
// Shutdown() is safe from any thread.

#include <event2/event.h>

#include <memory>
#include <string>
#include <vector>

#include "server/event_loop.h"
#include "server/listener.h"
#include "server/options.h"

namespace zmesh::server {

struct ServerContext;
class IoWorker;

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
  // Any thread.
  void Shutdown();

  // Main thread: SIGHUP — re-read the users file, keeping connections.
  void ReloadUsers();

  const HostPort& client_address() const { return client_listener_->bound(); }
  ServerContext* context() const { return ctx_.get(); }

 private:
  void OnAccept(int fd, const PeerAddress& peer);
  void InstallSignalHandlers();
  bool WritePortsFile(std::string* error) const;

  const Options options_;
  EventLoop main_loop_;
  std::unique_ptr<ServerContext> ctx_;
  std::vector<std::unique_ptr<IoWorker>> workers_;
  std::unique_ptr<Listener> client_listener_;
  std::vector<event*> signal_events_;
  size_t next_worker_ = 0;
};

// A random id in nats-server's style: 'N' and 55 base32 characters.
std::string NewServerId();

}  // namespace zmesh::server

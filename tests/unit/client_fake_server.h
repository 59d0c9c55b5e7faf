#pragma once

// A fake NATS server for the client library's unit tests: a real TCP listener
// on 127.0.0.1 (in-process, one thread, poll()), speaking just enough of the
// protocol — INFO, CONNECT, PING/PONG, SUB/UNSUB (with max), PUB/HPUB routed
// to matching local subscriptions, no-responders — and recording everything
// each client sent, so tests can check what the client does around failures.
// Controls simulate what real nodes do: die (sockets closed, listener gone),
// come back on the same port, stop answering PINGs, announce lame duck mode,
// send garbage, and, advertising INFO "move", take part in planned moves
// as scripted by the test (MOVE is recorded; FinishMove answers MOVED).
//
// Thread safety: all public methods are thread-safe; controls run on the
// server thread and return when done.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/info.h"

namespace zmesh::client::testing {

struct FakeServerConfig {
  std::string name = "fake";
  std::vector<std::string> connect_urls;  // announced in INFO when non-empty
  std::string user;                       // required credentials when non-empty
  std::string password;
  int64_t max_payload = 1 << 20;
  bool headers = true;
  // When set, sent instead of the normal INFO line (garbage tests).
  std::string raw_info;
  // INFO "move": the node supports planned moves.
  bool move = false;
};

class FakeServer {
 public:
  using Config = FakeServerConfig;

  explicit FakeServer(Config config = Config());
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  std::string key() const { return "127.0.0.1:" + std::to_string(port_); }

  // Closes every connection and the listener (like kill -9: clients read EOF).
  void Kill();
  // Listens again on the same port.
  void Restart();
  bool alive() const { return alive_.load(); }
  // Stops (false) or resumes (true) answering PINGs.
  void SetAnswerPings(bool answer);
  // Holds (true) every PONG except a connection's CONNECT handshake PONG,
  // as a zmesh node does while a peer has not applied a SUB yet; false
  // sends the held PONGs, in order.
  void HoldPongs(bool hold);
  // Sends raw bytes to every connected client.
  void SendToAll(const std::string& bytes);
  // The INFO this server sends on accept (unless raw_info is set).
  proto::Info info() const;
  // Sends `info` (e.g. info() with lame_duck set) to every connected client.
  void SendInfo(const proto::Info& info);
  // Publishes as if another client had: MSG to every matching subscription.
  void Inject(const std::string& subject, const std::string& payload);
  // The old node's end of a move: to the connection that sent MOVE <token>,
  // writes MOVED <token> as its last bytes and closes it.
  void FinishMove(const std::string& token);

  // Currently open client connections, and connections ever accepted.
  int connections() const;
  int accepted() const;
  // Everything clients sent, one entry per operation, in order:
  // "CONNECT {...}", "SUB subj [queue] sid", "UNSUB sid [max]", "PUB subj [reply] payload", "PING",
  // "PONG", "MOVE token".
  std::vector<std::string> log() const;
  // Only entries starting with `prefix`.
  std::vector<std::string> LogWith(const std::string& prefix) const;
  void ClearLog();

 private:
  struct Conn;
  void Loop();
  void Post(std::function<void()> fn);  // runs on the server thread, waits
  void OpenListener();
  void CloseAll();
  void Accept();
  void Read(Conn* c);
  void HandleLine(Conn* c, const std::string& line, const std::string* payload);
  void Route(const std::string& subject, const std::string& reply, const std::string& headers,
             const std::string& payload, Conn* from);
  void Send(Conn* c, const std::string& bytes);

  const Config config_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> alive_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> answer_pings_{true};
  bool hold_pongs_ = false;  // server thread
  std::atomic<int> accepted_{0};

  std::vector<std::unique_ptr<Conn>> conns_;  // server thread
  mutable std::mutex mu_;
  std::vector<std::string> log_;             // guarded by mu_
  int open_ = 0;                             // guarded by mu_
  std::vector<std::function<void()>> tasks_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace zmesh::client::testing

#pragma once

// Traffic for the mesh tests: NATS-protocol connections over raw TCP that
// publish sequence-numbered payloads and count, per subscription, what
// arrives from which publisher, so a test can assert exact counts:
// exactly once per (publisher, seq), and seq strictly increasing per
// publisher per subscription (SPEC §2).
//
// Unlike RawClient, a MeshClient reads on a thread of its own: subscribers
// must keep reading while publishers on other nodes publish, and the server
// may send INFO (membership changes) or PING at any time, which are handled
// here and never mistaken for messages.
//
// Payloads: "<publisher>#<seq>", seq counting from 1 per publishing
// connection; the publisher is the connection's name. Anything else (probes)
// is kept as a string per subscription.
//
// Thread safety: the public methods of MeshClient may be called from any one
// test thread while its reader thread runs; a ContinuousPublisher owns its
// client on a thread of its own.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace zmesh::testing {

using std::chrono::milliseconds;

std::string SeqPayload(const std::string& publisher, uint64_t seq);

// What one subscription received.
struct Receipts {
  // publisher -> number of copies of each seq (index = seq; [0] unused).
  std::map<std::string, std::vector<uint32_t>> copies;
  // publisher -> last seq seen, for the order check.
  std::map<std::string, uint64_t> last_seq;
  uint64_t order_violations = 0;
  std::map<std::string, uint64_t> order_violations_from;  // per publisher
  std::string first_order_violation;
  uint64_t sequenced = 0;             // sequenced messages received
  std::multiset<std::string> others;  // any other payloads (probes), with repeats
  std::map<std::string, uint64_t> subjects;  // subject -> messages

  // Records one message as it arrived.
  void Add(const std::string& subject, const std::string& payload);
  // Copies received of (publisher, seq).
  uint32_t Copies(const std::string& publisher, uint64_t seq) const;
  // Sequenced messages from `publisher` (with duplicates).
  uint64_t From(const std::string& publisher) const;
};

// Sums receipts (the members of a queue group); the order fields are not
// meaningful in the sum, check them per member.
Receipts Merge(const std::vector<Receipts>& parts);

// `r` without what came from `publisher` (a publisher on a node that died:
// its losses are legitimate, checked apart with NoDuplicatesInOrder).
Receipts Without(Receipts r, const std::string& publisher);

// Every seq 1..expected[publisher] exactly once and in order, and no
// sequenced message from any other publisher.
::testing::AssertionResult ExactlyOnceInOrder(const Receipts& r, const std::map<std::string, uint64_t>& expected);
// Exactly once, order not checked (sums over queue members).
::testing::AssertionResult ExactlyOnce(const Receipts& r, const std::map<std::string, uint64_t>& expected);
// No (publisher, seq) more than once and per-publisher order kept; losses
// allowed (a node died, ZooKeeper expired a session, ...).
::testing::AssertionResult NoDuplicatesInOrder(const Receipts& r);

class MeshClient {
 public:
  explicit MeshClient(std::string name);
  ~MeshClient();
  MeshClient(const MeshClient&) = delete;
  MeshClient& operator=(const MeshClient&) = delete;

  const std::string& name() const { return name_; }

  // Connects to 127.0.0.1:port (or `host`), reads INFO, sends CONNECT (no
  // verbose, echo on) and PING, and waits for PONG; starts the reader. When
  // `retry_refused`, a refused connection is retried until `timeout` (a node
  // whose client port is about to open).
  bool Connect(uint16_t port, std::string* error, milliseconds timeout = milliseconds(5000),
               bool retry_refused = false, const std::string& host = "127.0.0.1");

  // SUB with the next sid; returns the sid.
  int Sub(const std::string& subject, const std::string& queue = "");
  void Unsub(int sid);
  // Plain SUBs of `subjects` with consecutive sids, pipelined in large
  // writes (hundreds of thousands of subscriptions in a second); returns the
  // first sid. What arrives on them is recorded on first arrival.
  int SubMany(const std::vector<std::string>& subjects);
  // Subscribes ProbeSubject() — after the data subscriptions, so that a
  // probe getting through proves they arrived too (interest travels in order).
  int SubProbe();
  std::string ProbeSubject() const { return "_probe." + name_; }

  bool Pub(const std::string& subject, const std::string& payload, const std::string& reply = "");
  // Publishes `count` sequenced messages on `subject` with this connection's
  // next seqs, in batches; false when the connection failed (the seqs sent
  // before are counted in published()).
  bool PublishSeq(const std::string& subject, uint64_t count);
  // Last seq published.
  uint64_t published() const { return published_.load(); }

  // PING and wait for its PONG: the server has processed everything before.
  bool Flush(milliseconds timeout = milliseconds(5000));
  // Closes the TCP connection (a client disconnecting).
  void Close();
  bool closed() const { return closed_.load(); }

  Receipts Get(int sid) const;
  uint64_t CountFrom(int sid, const std::string& publisher) const;
  uint64_t Sequenced(int sid) const;
  // True once a probe from `publisher` arrived on the probe subscription.
  bool GotProbe(const std::string& publisher) const;
  // True once `payload` arrived on the probe subscription.
  bool ProbeArrived(const std::string& payload) const;
  // -ERR lines received.
  std::vector<std::string> errors() const;

  // Planned moves (docs/design-lossless-moves.md), played by hand: extra
  // CONNECT fields (before Connect; e.g. ,"move_token":"..."), a raw
  // protocol line, and the token of the MOVED received ("" until then)
  // with the messages recorded before it.
  void set_connect_extra(std::string fields) { connect_extra_ = std::move(fields); }
  bool SendRaw(const std::string& bytes) { return SendAll(bytes); }
  std::string moved() const;
  uint64_t messages_before_moved() const;
  uint64_t messages() const;

 private:
  bool SendAll(const std::string& bytes);
  void ReadLoop();
  // Parses complete protocol units from in_; false on garbage.
  bool ParseBuffered();
  void Record(int sid, const std::string& subject, const std::string& payload);

  const std::string name_;
  int fd_ = -1;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> pongs_{0};
  uint64_t pings_sent_ = 0;
  int next_sid_ = 1;
  int probe_sid_ = 0;
  std::mutex write_mu_;
  mutable std::mutex mu_;  // guards receipts_, errors_
  std::map<int, Receipts> receipts_;
  std::vector<std::string> errors_;
  std::string moved_;                 // guarded by mu_
  uint64_t messages_ = 0;             // guarded by mu_
  uint64_t messages_before_moved_ = 0;  // guarded by mu_
  std::string connect_extra_;
  std::string in_;  // reader thread only
};

// Makes sure the interest of every subscriber (subscribed before its probe
// subject, see SubProbe) is visible on the node of every publisher, the way
// an application does it with zmesh: each subscriber flushes (its PONG waits
// for the mesh-wide interest barrier), then each publisher publishes ONE
// probe to each subscriber's probe subject. No retry: a probe that does not
// arrive is a broken barrier (or a node not linked to the others; call it on
// a converged mesh). False with the missing pairs in *why.
bool WaitInterest(const std::vector<MeshClient*>& publishers, const std::vector<MeshClient*>& subscribers,
                  milliseconds timeout, std::string* why);

// Publishes a fresh fence payload from every publisher to every subscriber's
// probe subject and waits until all arrived: with per-publisher order,
// whatever a publisher sent before has arrived too, so a late duplicate has
// had its chance to show up. False with the missing pairs in *why.
bool Fence(const std::vector<MeshClient*>& publishers, const std::vector<MeshClient*>& subscribers,
           milliseconds timeout, std::string* why);

// Polls until `sid` of `client` received at least `count` sequenced messages
// from `publisher`.
bool WaitCount(const MeshClient& client, int sid, const std::string& publisher, uint64_t count,
               milliseconds timeout);

// A node's client address.
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
};

// One round of traffic on these nodes: a subscriber and a publisher on each,
// every publisher `count` messages at once; every subscriber must get every
// message exactly once, in order. Client names start with `tag`, so rounds
// do not mix.
::testing::AssertionResult TrafficRoundExactlyOnce(const std::vector<Endpoint>& nodes, uint64_t count,
                                                   const std::string& tag);
// The same on 127.0.0.1 ports.
::testing::AssertionResult TrafficRoundExactlyOnce(const std::vector<uint16_t>& ports, uint64_t count,
                                                   const std::string& tag);

// A publisher on a thread of its own that keeps publishing sequenced
// messages (`batch` every `interval`) until stopped or its connection fails.
class ContinuousPublisher {
 public:
  ContinuousPublisher(std::string name, std::string subject, int batch = 5,
                      milliseconds interval = milliseconds(2));
  ~ContinuousPublisher();
  bool Connect(const Endpoint& node, std::string* error) {
    return client_.Connect(node.port, error, milliseconds(5000), false, node.host);
  }
  void Start();
  // Stops publishing and flushes; returns the last seq published.
  uint64_t Stop();
  uint64_t published() const { return client_.published(); }
  bool failed() const { return failed_.load(); }
  MeshClient& client() { return client_; }
  const std::string& name() const { return client_.name(); }

 private:
  MeshClient client_;
  const std::string subject_;
  const int batch_;
  const milliseconds interval_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
};

// Steady traffic through a whole mesh: on every node k (1-based) a
// subscriber "sub<k>" and a ContinuousPublisher "pub<k>", all on one subject.
// Fault tests keep it running through a fault and then check, per pair, that
// nothing was lost or duplicated. Test thread only.
class NodeTraffic {
 public:
  explicit NodeTraffic(std::string subject) : subject_(std::move(subject)) {}

  // Connects, subscribes, and makes sure every subscription is visible to
  // every publisher; does not start publishing yet.
  ::testing::AssertionResult Connect(const std::vector<Endpoint>& nodes);
  void Start();
  // Stops every publisher (and flushes it); returns what each published.
  std::map<std::string, uint64_t> Stop();

  // Messages subscriber k has received from each publisher so far.
  std::map<std::string, uint64_t> Snapshot(size_t k) const;
  // Waits until subscriber k received at least `more` messages from each
  // publisher in `from` beyond the counts in `since` (from Snapshot()).
  bool WaitFlowing(size_t k, const std::vector<size_t>& from, const std::map<std::string, uint64_t>& since,
                   uint64_t more, milliseconds timeout) const;

  std::vector<MeshClient*> subscribers() const;
  std::vector<MeshClient*> publisher_clients() const;
  MeshClient& sub(size_t k) { return *subs_[k]; }
  ContinuousPublisher& pub(size_t k) { return *pubs_[k]; }
  Receipts Get(size_t k) const { return subs_[k]->Get(sids_[k]); }
  // Per subscriber, the counts from each publisher; for failure messages.
  std::string Describe() const;

 private:
  const std::string subject_;
  std::vector<std::unique_ptr<MeshClient>> subs_;
  std::vector<std::unique_ptr<ContinuousPublisher>> pubs_;
  std::vector<int> sids_;
};

}  // namespace zmesh::testing

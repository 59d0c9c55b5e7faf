#include "tests/integration/mesh_traffic.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>

#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Largest seq accepted from a payload: a garbled one must not make the
// counter vector huge.
constexpr uint64_t kMaxSeq = 50'000'000;

bool ParseSeqPayload(const std::string& payload, std::string* publisher, uint64_t* seq) {
  const size_t hash = payload.rfind('#');
  if (hash == std::string::npos || hash == 0 || hash + 1 >= payload.size()) return false;
  uint64_t value = 0;
  for (size_t k = hash + 1; k < payload.size(); ++k) {
    const char c = payload[k];
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > kMaxSeq) return false;
  }
  *publisher = payload.substr(0, hash);
  *seq = value;
  return value > 0;
}

// A decimal size from the protocol; nullopt unless it is all digits and sane.
std::optional<size_t> ParseSize(const std::string& token) {
  if (token.empty() || token.size() > 10) return std::nullopt;
  size_t value = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<size_t>(c - '0');
  }
  return value;
}

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string token;
  while (in >> token) out.push_back(token);
  return out;
}

// Lists seqs for a failure message as runs, up to `limit` of them:
// "3-5 9 12-40 ... (+17 more runs)". Runs show where a stream broke off and
// where it came back.
std::string SeqList(const std::vector<uint64_t>& seqs, size_t limit = 12) {
  std::string out;
  size_t runs = 0;
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    if (runs < limit) {
      if (!out.empty()) out += ' ';
      out += std::to_string(seqs[i]);
      if (j > i) out += "-" + std::to_string(seqs[j]);
    }
    ++runs;
    i = j + 1;
  }
  if (runs > limit) out += " ... (+" + std::to_string(runs - limit) + " more runs)";
  return out;
}

::testing::AssertionResult CheckCounts(const Receipts& r, const std::map<std::string, uint64_t>& expected,
                                       bool check_order) {
  std::ostringstream problems;
  bool ok = true;
  for (const auto& [publisher, count] : expected) {
    std::vector<uint64_t> missing, duplicated, extra;
    auto it = r.copies.find(publisher);
    for (uint64_t seq = 1; seq <= count; ++seq) {
      const uint32_t c = it == r.copies.end() || seq >= it->second.size() ? 0 : it->second[seq];
      if (c == 0) missing.push_back(seq);
      if (c > 1) duplicated.push_back(seq);
    }
    if (it != r.copies.end()) {
      for (uint64_t seq = count + 1; seq < it->second.size(); ++seq) {
        if (it->second[seq] > 0) extra.push_back(seq);
      }
    }
    if (!missing.empty() || !duplicated.empty() || !extra.empty()) {
      ok = false;
      problems << "\n  from " << publisher << " (published " << count << ", received " << r.From(publisher)
               << "): " << missing.size() << " missing [" << SeqList(missing) << "], " << duplicated.size()
               << " duplicated [" << SeqList(duplicated) << "], " << extra.size() << " never published ["
               << SeqList(extra) << "]";
    }
  }
  for (const auto& [publisher, copies] : r.copies) {
    if (expected.count(publisher) == 0) {
      ok = false;
      problems << "\n  " << r.From(publisher) << " messages from unexpected publisher " << publisher;
    }
  }
  if (check_order && r.order_violations > 0) {
    ok = false;
    problems << "\n  " << r.order_violations << " order violations, first: " << r.first_order_violation;
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "received " << r.sequenced << " sequenced messages:" << problems.str();
}

}  // namespace

std::string SeqPayload(const std::string& publisher, uint64_t seq) { return publisher + "#" + std::to_string(seq); }

uint32_t Receipts::Copies(const std::string& publisher, uint64_t seq) const {
  auto it = copies.find(publisher);
  if (it == copies.end() || seq >= it->second.size()) return 0;
  return it->second[seq];
}

uint64_t Receipts::From(const std::string& publisher) const {
  auto it = copies.find(publisher);
  if (it == copies.end()) return 0;
  uint64_t total = 0;
  for (uint32_t c : it->second) total += c;
  return total;
}

Receipts Merge(const std::vector<Receipts>& parts) {
  Receipts sum;
  for (const Receipts& r : parts) {
    for (const auto& [publisher, copies] : r.copies) {
      auto& v = sum.copies[publisher];
      if (v.size() < copies.size()) v.resize(copies.size(), 0);
      for (size_t k = 0; k < copies.size(); ++k) v[k] += copies[k];
    }
    sum.sequenced += r.sequenced;
    sum.order_violations += r.order_violations;
    sum.others.insert(r.others.begin(), r.others.end());
    for (const auto& [subject, n] : r.subjects) sum.subjects[subject] += n;
  }
  return sum;
}

Receipts Without(Receipts r, const std::string& publisher) {
  r.sequenced -= r.From(publisher);
  r.order_violations -= r.order_violations_from[publisher];
  r.order_violations_from.erase(publisher);
  r.copies.erase(publisher);
  r.last_seq.erase(publisher);
  return r;
}

::testing::AssertionResult ExactlyOnceInOrder(const Receipts& r, const std::map<std::string, uint64_t>& expected) {
  return CheckCounts(r, expected, /*check_order=*/true);
}

::testing::AssertionResult ExactlyOnce(const Receipts& r, const std::map<std::string, uint64_t>& expected) {
  return CheckCounts(r, expected, /*check_order=*/false);
}

::testing::AssertionResult NoDuplicatesInOrder(const Receipts& r) {
  std::ostringstream problems;
  bool ok = true;
  for (const auto& [publisher, copies] : r.copies) {
    std::vector<uint64_t> duplicated;
    for (uint64_t seq = 1; seq < copies.size(); ++seq) {
      if (copies[seq] > 1) duplicated.push_back(seq);
    }
    if (!duplicated.empty()) {
      ok = false;
      problems << "\n  from " << publisher << ": " << duplicated.size() << " duplicated [" << SeqList(duplicated)
               << "]";
    }
  }
  if (r.order_violations > 0) {
    ok = false;
    problems << "\n  " << r.order_violations << " order violations, first: " << r.first_order_violation;
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "received " << r.sequenced << " sequenced messages:" << problems.str();
}

// --- MeshClient -----------------------------------------------------------------

MeshClient::MeshClient(std::string name) : name_(std::move(name)) {}

MeshClient::~MeshClient() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) ::close(fd_);
}

bool MeshClient::Connect(uint16_t port, std::string* error, milliseconds timeout, bool retry_refused,
                         const std::string& host) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  while (true) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      *error = std::string("socket: ") + strerror(errno);
      return false;
    }
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (!retry_refused || err != ECONNREFUSED || Clock::now() >= deadline) {
      *error = name_ + ": connect to " + host + ":" + std::to_string(port) + ": " + strerror(err);
      return false;
    }
    // The port is about to open (a node that just registered): retry at once.
    std::this_thread::sleep_for(milliseconds(1));
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Bounded blocking writes: a stuck server fails the test instead of hanging it.
  timeval tv{10, 0};
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  reader_ = std::thread([this] { ReadLoop(); });
  if (!SendAll("CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":true,\"name\":\"" + name_ +
               "\",\"lang\":\"mesh-test\",\"version\":\"1\",\"protocol\":1,\"headers\":true" + connect_extra_ + "}\r\n")) {
    *error = name_ + ": CONNECT failed";
    return false;
  }
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  if (!Flush(std::max(left, milliseconds(1000)))) {
    *error = name_ + ": no PONG after CONNECT; errors: ";
    for (const std::string& e : errors()) *error += e + "; ";
    return false;
  }
  return true;
}

bool MeshClient::SendAll(const std::string& bytes) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (fd_ < 0 || closed_) return false;
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

int MeshClient::Sub(const std::string& subject, const std::string& queue) {
  const int sid = next_sid_++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    receipts_[sid];
  }
  SendAll("SUB " + subject + (queue.empty() ? "" : " " + queue) + " " + std::to_string(sid) + "\r\n");
  return sid;
}

int MeshClient::SubMany(const std::vector<std::string>& subjects) {
  const int first = next_sid_;
  std::string batch;
  for (const std::string& subject : subjects) {
    batch += "SUB " + subject + " " + std::to_string(next_sid_++) + "\r\n";
    if (batch.size() >= (1u << 20)) {
      SendAll(batch);
      batch.clear();
    }
  }
  SendAll(batch);
  return first;
}

void MeshClient::Unsub(int sid) { SendAll("UNSUB " + std::to_string(sid) + "\r\n"); }

int MeshClient::SubProbe() {
  probe_sid_ = Sub(ProbeSubject());
  return probe_sid_;
}

bool MeshClient::Pub(const std::string& subject, const std::string& payload, const std::string& reply) {
  return SendAll("PUB " + subject + (reply.empty() ? "" : " " + reply) + " " + std::to_string(payload.size()) +
                 "\r\n" + payload + "\r\n");
}

bool MeshClient::PublishSeq(const std::string& subject, uint64_t count) {
  constexpr uint64_t kBatch = 200;
  std::string out;
  uint64_t seq = published_.load();
  for (uint64_t done = 0; done < count;) {
    out.clear();
    for (uint64_t k = 0; k < kBatch && done < count; ++k, ++done) {
      const std::string payload = SeqPayload(name_, ++seq);
      out += "PUB " + subject + " " + std::to_string(payload.size()) + "\r\n" + payload + "\r\n";
    }
    if (!SendAll(out)) {
      // Unknown how much of the batch the server took: count it as published,
      // so that the checks treat the rest as lost, never as "never published".
      published_ = seq;
      return false;
    }
    published_ = seq;
  }
  return true;
}

bool MeshClient::Flush(milliseconds timeout) {
  const uint64_t want = ++pings_sent_;
  if (!SendAll("PING\r\n")) return false;
  return WaitFor(timeout, [&] { return pongs_.load() >= want || closed_.load(); }, milliseconds(1)) &&
         pongs_.load() >= want;
}

void MeshClient::Close() {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  }
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  closed_ = true;
}

void MeshClient::ReadLoop() {
  char buf[65536];
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    const int rc = poll(&p, 1, 50);
    if (rc <= 0) continue;
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    in_.append(buf, static_cast<size_t>(n));
    if (!ParseBuffered()) break;
  }
  closed_ = true;
}

bool MeshClient::ParseBuffered() {
  size_t off = 0;
  while (true) {
    const size_t eol = in_.find("\r\n", off);
    if (eol == std::string::npos) break;
    const std::string line = in_.substr(off, eol - off);
    const bool is_msg = line.rfind("MSG ", 0) == 0;
    const bool is_hmsg = line.rfind("HMSG ", 0) == 0;
    if (is_msg || is_hmsg) {
      const std::vector<std::string> t = Split(line);
      const size_t fixed = is_msg ? 4 : 5;  // tokens without the reply subject
      if (t.size() != fixed && t.size() != fixed + 1) {
        std::lock_guard<std::mutex> lock(mu_);
        errors_.push_back("bad line: " + line);
        return false;
      }
      const std::optional<size_t> total = ParseSize(t.back());
      const std::optional<size_t> header = is_hmsg ? ParseSize(t[t.size() - 2]) : std::optional<size_t>(0);
      if (!total || !header || *header > *total) {
        std::lock_guard<std::mutex> lock(mu_);
        errors_.push_back("bad sizes: " + line);
        return false;
      }
      if (in_.size() < eol + 2 + *total + 2) break;  // wait for the payload
      const std::string payload = in_.substr(eol + 2 + *header, *total - *header);
      Record(std::atoi(t[2].c_str()), t[1], payload);
      off = eol + 2 + *total + 2;
      continue;
    }
    off = eol + 2;
    if (line == "PING") {
      SendAll("PONG\r\n");
    } else if (line == "PONG") {
      ++pongs_;
    } else if (line.rfind("MOVED ", 0) == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      moved_ = line.substr(6);
      messages_before_moved_ = messages_;
    } else if (line.rfind("INFO ", 0) == 0 || line == "+OK") {
      // INFO again when the membership changes (connect_urls): nothing to do.
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      errors_.push_back(line);
    }
  }
  in_.erase(0, off);
  return true;
}

std::string MeshClient::moved() const {
  std::lock_guard<std::mutex> lock(mu_);
  return moved_;
}

uint64_t MeshClient::messages_before_moved() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_before_moved_;
}

uint64_t MeshClient::messages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_;
}

void MeshClient::Record(int sid, const std::string& subject, const std::string& payload) {
  std::lock_guard<std::mutex> lock(mu_);
  ++messages_;
  receipts_[sid].Add(subject, payload);
}

void Receipts::Add(const std::string& subject, const std::string& payload) {
  ++subjects[subject];
  std::string publisher;
  uint64_t seq = 0;
  if (!ParseSeqPayload(payload, &publisher, &seq)) {
    others.insert(payload);
    return;
  }
  ++sequenced;
  auto& c = copies[publisher];
  if (c.size() <= seq) c.resize(std::max<size_t>(seq + 1, c.size() * 2), 0);
  ++c[seq];
  uint64_t& last = last_seq[publisher];
  if (seq < last) {
    ++order_violations_from[publisher];
    if (order_violations++ == 0) {
      first_order_violation = publisher + " seq " + std::to_string(seq) + " after " + std::to_string(last) +
                              " on " + subject;
    }
  } else {
    last = seq;
  }
}

Receipts MeshClient::Get(int sid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = receipts_.find(sid);
  return it == receipts_.end() ? Receipts() : it->second;
}

uint64_t MeshClient::CountFrom(int sid, const std::string& publisher) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = receipts_.find(sid);
  return it == receipts_.end() ? 0 : it->second.From(publisher);
}

uint64_t MeshClient::Sequenced(int sid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = receipts_.find(sid);
  return it == receipts_.end() ? 0 : it->second.sequenced;
}

bool MeshClient::GotProbe(const std::string& publisher) const { return ProbeArrived("?probe:" + publisher); }

bool MeshClient::ProbeArrived(const std::string& payload) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = receipts_.find(probe_sid_);
  return it != receipts_.end() && it->second.others.count(payload) > 0;
}

std::vector<std::string> MeshClient::errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return errors_;
}

// --- Waiting for interest ------------------------------------------------------------

bool WaitInterest(const std::vector<MeshClient*>& publishers, const std::vector<MeshClient*>& subscribers,
                  milliseconds timeout, std::string* why) {
  for (MeshClient* s : subscribers) {
    if (!s->Flush(timeout)) {
      *why = s->name() + ": no PONG within " + std::to_string(timeout.count()) + " ms after subscribing";
      return false;
    }
  }
  for (MeshClient* p : publishers) {
    for (MeshClient* s : subscribers) p->Pub(s->ProbeSubject(), "?probe:" + p->name());
    if (!p->Flush(timeout)) {
      *why = p->name() + ": no PONG within " + std::to_string(timeout.count()) + " ms after its probes";
      return false;
    }
  }
  auto all_through = [&] {
    for (MeshClient* p : publishers) {
      for (MeshClient* s : subscribers) {
        if (!s->GotProbe(p->name())) return false;
      }
    }
    return true;
  };
  // Each probe was published after the subscriber's flush: it is on its way.
  if (WaitFor(timeout, all_through, milliseconds(2))) return true;
  *why = "probes published after the subscribers' flush were lost (interest barrier):";
  for (MeshClient* p : publishers) {
    for (MeshClient* s : subscribers) {
      if (!s->GotProbe(p->name())) *why += " " + p->name() + "->" + s->name();
    }
  }
  return false;
}

bool Fence(const std::vector<MeshClient*>& publishers, const std::vector<MeshClient*>& subscribers,
           milliseconds timeout, std::string* why) {
  static std::atomic<uint64_t> next_fence{1};
  const std::string tag = std::to_string(next_fence++);
  for (MeshClient* p : publishers) {
    for (MeshClient* s : subscribers) p->Pub(s->ProbeSubject(), "?fence" + tag + ":" + p->name());
  }
  auto all = [&] {
    for (MeshClient* p : publishers) {
      for (MeshClient* s : subscribers) {
        if (!s->ProbeArrived("?fence" + tag + ":" + p->name())) return false;
      }
    }
    return true;
  };
  if (WaitFor(timeout, all, milliseconds(2))) return true;
  *why = "fence " + tag + " did not get through within " + std::to_string(timeout.count()) + " ms:";
  for (MeshClient* p : publishers) {
    for (MeshClient* s : subscribers) {
      if (!s->ProbeArrived("?fence" + tag + ":" + p->name())) *why += " " + p->name() + "->" + s->name();
    }
  }
  return false;
}

bool WaitCount(const MeshClient& client, int sid, const std::string& publisher, uint64_t count,
               milliseconds timeout) {
  return WaitFor(timeout, [&] { return client.CountFrom(sid, publisher) >= count; }, milliseconds(2));
}

::testing::AssertionResult TrafficRoundExactlyOnce(const std::vector<uint16_t>& ports, uint64_t count,
                                                   const std::string& tag) {
  std::vector<Endpoint> nodes;
  for (uint16_t port : ports) nodes.push_back({"127.0.0.1", port});
  return TrafficRoundExactlyOnce(nodes, count, tag);
}

::testing::AssertionResult TrafficRoundExactlyOnce(const std::vector<Endpoint>& nodes, uint64_t count,
                                                   const std::string& tag) {
  std::vector<std::unique_ptr<MeshClient>> subs, pubs;
  std::vector<MeshClient*> sub_ptrs, pub_ptrs;
  std::vector<int> sids;
  const std::string subject = "mesh.round." + tag;
  for (size_t k = 0; k < nodes.size(); ++k) {
    subs.push_back(std::make_unique<MeshClient>(tag + "-sub" + std::to_string(k + 1)));
    pubs.push_back(std::make_unique<MeshClient>(tag + "-pub" + std::to_string(k + 1)));
    std::string error;
    if (!subs.back()->Connect(nodes[k].port, &error, milliseconds(5000), false, nodes[k].host) ||
        !pubs.back()->Connect(nodes[k].port, &error, milliseconds(5000), false, nodes[k].host)) {
      return ::testing::AssertionFailure() << error;
    }
    sids.push_back(subs.back()->Sub(subject));
    subs.back()->SubProbe();
    sub_ptrs.push_back(subs.back().get());
    pub_ptrs.push_back(pubs.back().get());
  }
  std::string why;
  if (!WaitInterest(pub_ptrs, sub_ptrs, milliseconds(10000), &why)) return ::testing::AssertionFailure() << why;
  std::vector<std::thread> threads;
  std::vector<char> ok(pubs.size(), 0);
  for (size_t k = 0; k < pubs.size(); ++k) {
    threads.emplace_back([&, k] { ok[k] = pubs[k]->PublishSeq(subject, count) && pubs[k]->Flush(milliseconds(20000)); });
  }
  for (auto& t : threads) t.join();
  for (size_t k = 0; k < pubs.size(); ++k) {
    if (!ok[k]) return ::testing::AssertionFailure() << pubs[k]->name() << " could not publish";
  }
  const uint64_t total = count * pubs.size();
  for (size_t k = 0; k < subs.size(); ++k) {
    if (!WaitFor(milliseconds(30000), [&] { return subs[k]->Sequenced(sids[k]) >= total; })) {
      return ::testing::AssertionFailure() << subs[k]->name() << " received " << subs[k]->Sequenced(sids[k])
                                           << " of " << total << ": " << ExactlyOnceInOrder(subs[k]->Get(sids[k]), {}).message();
    }
  }
  if (!Fence(pub_ptrs, sub_ptrs, milliseconds(10000), &why)) return ::testing::AssertionFailure() << why;
  std::map<std::string, uint64_t> expected;
  for (MeshClient* p : pub_ptrs) expected[p->name()] = count;
  for (size_t k = 0; k < subs.size(); ++k) {
    auto result = ExactlyOnceInOrder(subs[k]->Get(sids[k]), expected);
    if (!result) return ::testing::AssertionFailure() << subs[k]->name() << ": " << result.message();
  }
  return ::testing::AssertionSuccess();
}

// --- ContinuousPublisher ---------------------------------------------------------------

ContinuousPublisher::ContinuousPublisher(std::string name, std::string subject, int batch, milliseconds interval)
    : client_(std::move(name)), subject_(std::move(subject)), batch_(batch), interval_(interval) {}

ContinuousPublisher::~ContinuousPublisher() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ContinuousPublisher::Start() {
  thread_ = std::thread([this] {
    while (!stop_) {
      if (!client_.PublishSeq(subject_, static_cast<uint64_t>(batch_))) {
        failed_ = true;
        return;
      }
      // Paces the load (this is a rate, not a wait for a condition).
      std::this_thread::sleep_for(interval_);
    }
  });
}

uint64_t ContinuousPublisher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (!failed_ && !client_.Flush(milliseconds(5000))) failed_ = true;
  return client_.published();
}

// --- NodeTraffic ------------------------------------------------------------------------

::testing::AssertionResult NodeTraffic::Connect(const std::vector<Endpoint>& nodes) {
  for (size_t k = 0; k < nodes.size(); ++k) {
    const std::string n = std::to_string(k + 1);
    subs_.push_back(std::make_unique<MeshClient>("sub" + n));
    pubs_.push_back(std::make_unique<ContinuousPublisher>("pub" + n, subject_));
    std::string error;
    if (!subs_.back()->Connect(nodes[k].port, &error, milliseconds(5000), false, nodes[k].host) ||
        !pubs_.back()->Connect(nodes[k], &error)) {
      return ::testing::AssertionFailure() << error;
    }
    sids_.push_back(subs_.back()->Sub(subject_));
    subs_.back()->SubProbe();
  }
  std::string why;
  if (!WaitInterest(publisher_clients(), subscribers(), milliseconds(10000), &why)) {
    return ::testing::AssertionFailure() << why;
  }
  return ::testing::AssertionSuccess();
}

void NodeTraffic::Start() {
  for (auto& p : pubs_) p->Start();
}

std::map<std::string, uint64_t> NodeTraffic::Stop() {
  std::map<std::string, uint64_t> out;
  for (auto& p : pubs_) out[p->name()] = p->Stop();
  return out;
}

std::map<std::string, uint64_t> NodeTraffic::Snapshot(size_t k) const {
  std::map<std::string, uint64_t> out;
  for (auto& p : pubs_) out[p->name()] = subs_[k]->CountFrom(sids_[k], p->name());
  return out;
}

bool NodeTraffic::WaitFlowing(size_t k, const std::vector<size_t>& from, const std::map<std::string, uint64_t>& since,
                              uint64_t more, milliseconds timeout) const {
  return WaitFor(timeout, [&] {
    for (size_t p : from) {
      const std::string& name = pubs_[p]->name();
      auto it = since.find(name);
      const uint64_t base = it == since.end() ? 0 : it->second;
      if (subs_[k]->CountFrom(sids_[k], name) < base + more) return false;
    }
    return true;
  }, milliseconds(5));
}

std::vector<MeshClient*> NodeTraffic::subscribers() const {
  std::vector<MeshClient*> out;
  for (auto& s : subs_) out.push_back(s.get());
  return out;
}

std::vector<MeshClient*> NodeTraffic::publisher_clients() const {
  std::vector<MeshClient*> out;
  for (auto& p : pubs_) out.push_back(&p->client());
  return out;
}

std::string NodeTraffic::Describe() const {
  std::string out;
  for (size_t k = 0; k < subs_.size(); ++k) {
    out += subs_[k]->name() + ":";
    for (auto& [p, n] : Snapshot(k)) out += " " + p + "=" + std::to_string(n);
    out += "; ";
  }
  for (auto& p : pubs_) out += p->name() + " published " + std::to_string(p->published()) + "; ";
  return out;
}

}  // namespace zmesh::testing

#pragma once

// A blocking NATS-protocol test client over raw TCP to 127.0.0.1: the test
// writes exact bytes and matches what comes back line by line, like
// nats-server's own black-box tests (sendProto / expectResult). Every read has
// a timeout; a mismatch or timeout fails the current GoogleTest test with the
// bytes actually received, at the caller's source line.
//
// Server PINGs: when auto-pong is on (the default) a server line that is
// exactly "PING" at a line boundary is answered with PONG and skipped by the
// line readers, because both servers PING idle clients on their own schedule
// and a test must not depend on when. Turn it off to observe PINGs (stale
// connection tests); never use "PING" as a payload with it on.
//
// Not thread safe: one RawClient per thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace zmesh::testing {

using std::chrono::milliseconds;

inline constexpr milliseconds kDefaultTimeout{5000};

// The result of ExpectLine: groups[0] is the whole line (without CRLF),
// groups[i] the regex's capture groups. Converts to false on failure.
struct LineMatch {
  bool ok = false;
  std::vector<std::string> groups;
  explicit operator bool() const { return ok; }
  const std::string& operator[](std::size_t i) const { return groups.at(i); }
};

// One delivered message, MSG or HMSG.
struct Msg {
  std::string subject;
  std::string sid;
  std::string reply;    // empty when the message has no reply subject
  bool hmsg = false;    // arrived as HMSG
  std::string headers;  // HMSG only: the raw header block, "NATS/1.0...\r\n\r\n"
  std::string payload;  // the payload after the headers
};

// What DrainUntilClosed saw.
struct DrainResult {
  bool closed = false;     // EOF or RST within the timeout
  bool reset = false;      // closed by RST rather than FIN
  std::size_t bytes = 0;   // bytes read (and discarded)
  std::size_t errs = 0;    // "-ERR" occurrences at line starts
  std::string tail;        // the last bytes read, for messages
};

// Escapes bytes for failure messages: printable ASCII as is, \r \n \t and
// \xNN otherwise, cut to `limit` bytes (keeping the end).
std::string Printable(std::string_view bytes, std::size_t limit = 2048);

class RawClient {
 public:
  RawClient() = default;
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient();

  // Before Dial: shrink the kernel receive buffer (SO_RCVBUF) so a client that
  // stops reading backs the server up quickly (slow consumer tests).
  void set_receive_buffer(int bytes) { rcvbuf_ = bytes; }
  void set_auto_pong(bool on) { auto_pong_ = on; }
  // A name used in failure messages ("sub", "pub", ...).
  void set_name(std::string name) { name_ = std::move(name); }

  // Connects to 127.0.0.1:port (TCP_NODELAY, so each Send leaves at once).
  bool Dial(uint16_t port, milliseconds timeout = kDefaultTimeout,
            std::source_location loc = std::source_location::current());
  bool connected() const { return fd_ >= 0; }
  // The client's own port (0 when not connected): with the server's port it
  // names the connection in /proc/net/tcp (tests/support/tcp_state.h).
  uint16_t local_port() const;
  // True once EOF or RST has been seen.
  bool closed() const { return closed_; }
  void Close();

  // Writes all of `bytes` (blocking, bounded by a 10 s send timeout); fails
  // the test on error.
  bool Send(std::string_view bytes, std::source_location loc = std::source_location::current());
  // Like Send, but an error (the server already closed us) is not a failure.
  bool TrySend(std::string_view bytes);

  // The next CRLF-terminated line without its CRLF; nullopt on timeout or
  // close (not a test failure by itself). A bare-LF line is a failure: both
  // servers must end every line with CRLF.
  std::optional<std::string> ReadLine(milliseconds timeout = kDefaultTimeout,
                                      std::source_location loc = std::source_location::current());
  // The next line must match `regex` (ECMAScript, whole line). Fails the test
  // with the line or the bytes received on mismatch, timeout or close.
  LineMatch ExpectLine(const std::string& regex, milliseconds timeout = kDefaultTimeout,
                       std::source_location loc = std::source_location::current());
  // Exactly n bytes (payloads); nullopt on timeout or close.
  std::optional<std::string> ReadExact(std::size_t n, milliseconds timeout = kDefaultTimeout);
  // The connection must be closed (EOF or RST) within `timeout` with nothing
  // else received first.
  bool ExpectClosed(milliseconds timeout = kDefaultTimeout,
                    std::source_location loc = std::source_location::current());
  // Nothing may arrive (and the connection must stay open) for `duration`.
  // The only legitimate bounded wait for "nothing": keep durations short.
  bool ExpectSilence(milliseconds duration,
                     std::source_location loc = std::source_location::current());
  // Reads and discards until the connection closes (bounded by timeout),
  // counting bytes and "-ERR" lines. For slow-consumer victims.
  DrainResult DrainUntilClosed(milliseconds timeout);

  // --- Protocol conveniences -------------------------------------------------

  // Reads the INFO line and returns its JSON (also kept in info()).
  std::optional<nlohmann::json> ExpectInfo(milliseconds timeout = kDefaultTimeout,
                                           std::source_location loc = std::source_location::current());
  const nlohmann::json& info() const { return info_; }

  // INFO, then CONNECT with {"verbose":false,"pedantic":false} overridden by
  // the fields of `options_json` (a JSON object) plus user/pass when
  // non-empty, then PING; expects +OK (if verbose) and PONG.
  bool Connect(std::string_view user = {}, std::string_view pass = {},
               std::string_view options_json = "{}",
               std::source_location loc = std::source_location::current());
  // The CONNECT line Connect() would send.
  static std::string ConnectLine(std::string_view user, std::string_view pass,
                                 std::string_view options_json);

  // PING, expect PONG: everything sent before has been processed by the server.
  bool Flush(milliseconds timeout = kDefaultTimeout,
             std::source_location loc = std::source_location::current());

  bool Sub(std::string_view subject, std::string_view sid, std::string_view queue = {},
           std::source_location loc = std::source_location::current());
  bool Unsub(std::string_view sid, std::optional<int> max = std::nullopt,
             std::source_location loc = std::source_location::current());
  bool Pub(std::string_view subject, std::string_view payload, std::string_view reply = {},
           std::source_location loc = std::source_location::current());
  // `headers` is the raw block "NATS/1.0\r\nK: V\r\n\r\n".
  bool HPub(std::string_view subject, std::string_view headers, std::string_view payload,
            std::string_view reply = {},
            std::source_location loc = std::source_location::current());

  // The next MSG or HMSG; nullopt (and a test failure) on anything else.
  std::optional<Msg> ReadMsg(milliseconds timeout = kDefaultTimeout,
                             std::source_location loc = std::source_location::current());
  // The next message must be on `subject` with `payload` (and `reply`).
  bool ExpectMsg(std::string_view subject, std::string_view sid, std::string_view payload,
                 std::string_view reply = {}, milliseconds timeout = kDefaultTimeout,
                 std::source_location loc = std::source_location::current());

  // Unconsumed bytes plus the last consumed ones, for failure messages.
  std::string Describe() const;

 private:
  // Waits until more bytes arrive (true) or the deadline passes / the peer
  // closes (false).
  bool Fill(std::chrono::steady_clock::time_point deadline);
  void SkipServerPings();
  std::string_view Pending() const { return std::string_view(buf_).substr(rpos_); }
  void Consume(std::size_t n);

  int fd_ = -1;
  int rcvbuf_ = 0;
  bool auto_pong_ = true;
  bool closed_ = false;
  bool reset_ = false;
  std::string name_ = "client";
  std::string buf_;
  std::size_t rpos_ = 0;
  std::string history_;  // tail of consumed bytes
  nlohmann::json info_;
};

}  // namespace zmesh::testing

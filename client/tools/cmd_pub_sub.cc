// zmesh pub / zmesh sub.

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include <zmesh/client.h>

#include "client/tools/cli_common.h"
#include "client/tools/commands.h"

namespace zmesh::cli {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

int RunPub(int argc, char** argv) {
  ConnFlags conn;
  int64_t count = 1;
  int64_t interval_ms = 0;
  int64_t timeout_ms = 30000;
  std::string reply;
  FlagSet flags("pub");
  AddConnFlags(&flags, &conn);
  flags.Int("count", &count, "messages to publish; {n} in PAYLOAD becomes 1..count");
  flags.Int("interval_ms", &interval_ms, "pause between messages");
  flags.String("reply", &reply, "reply subject");
  flags.Int("timeout_ms", &timeout_ms, "give up when the mesh cannot take the messages for this long");
  std::vector<std::string> args;
  int code = 0;
  if (!ParseOrUsage(&flags, argc, argv, "zmesh pub [flags] SUBJECT PAYLOAD", 2, 2, &args, &code)) return code;
  InstallStopSignals();
  std::unique_ptr<Client> client;
  if (!ConnectOrReport("pub", conn, &client)) return 1;

  const auto timeout = std::chrono::milliseconds(timeout_ms);
  auto next = Clock::now();
  for (int64_t n = 1; n <= count && !StopRequested(); ++n) {
    if (interval_ms > 0) {
      std::this_thread::sleep_until(next);
      next += std::chrono::milliseconds(interval_ms);
    }
    const std::string payload = ExpandSequence(args[1], n);
    // While failing over, the reconnect buffer may fill up: wait for room
    // rather than drop a message.
    const auto give_up = Clock::now() + timeout;
    Status st;
    for (;;) {
      st = client->Publish(args[0], reply, payload);
      if (st.code() != StatusCode::kBufferFull || Clock::now() >= give_up || StopRequested()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!st.ok()) {
      std::cerr << "zmesh pub: message " << n << ": " << st << "\n";
      return 1;
    }
  }
  // Done only when the server has everything; a flush cut by a failover is
  // repeated (the buffered messages go to the next node).
  const auto give_up = Clock::now() + timeout;
  Status st;
  do {
    st = client->Flush(std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now()));
  } while (st.code() == StatusCode::kDisconnected && Clock::now() < give_up);
  if (!st.ok()) {
    std::cerr << "zmesh pub: flush: " << st << "\n";
    return 1;
  }
  client->Close();
  return 0;
}

int RunSub(int argc, char** argv) {
  ConnFlags conn;
  std::string queue;
  int64_t count = 0;
  bool raw = false;
  FlagSet flags("sub");
  AddConnFlags(&flags, &conn);
  flags.String("queue", &queue, "queue group: each message goes to one member of the group");
  flags.Int("count", &count, "exit after this many messages (0 = run until interrupted)");
  flags.Bool("raw", &raw, "print only payloads, one line per message");
  std::vector<std::string> args;
  int code = 0;
  if (!ParseOrUsage(&flags, argc, argv, "zmesh sub [flags] SUBJECT", 1, 1, &args, &code)) return code;
  InstallStopSignals();
  std::unique_ptr<Client> client;
  if (!ConnectOrReport("sub", conn, &client)) return 1;

  std::shared_ptr<Subscription> sub;
  Status st = queue.empty() ? client->SubscribeSync(args[0], &sub) : client->QueueSubscribeSync(args[0], queue, &sub);
  if (!st.ok()) {
    std::cerr << "zmesh sub: " << st << "\n";
    return 1;
  }
  // A slow terminal must not make us drop: buffer without limit.
  sub->SetPendingLimits(-1, -1);
  if (count > 0) sub->AutoUnsubscribe(count);
  st = client->Flush(std::chrono::milliseconds(conn.initial_timeout_ms));
  if (!st.ok()) std::cerr << "zmesh sub: flush: " << st << "\n";
  std::cerr << "zmesh sub: listening on " << args[0] << (queue.empty() ? "" : " queue " + queue) << " via "
            << client->connected_url() << "\n";

  int64_t received = 0;
  while (!StopRequested() && (count == 0 || received < count)) {
    Message msg;
    st = sub->NextMsg(&msg, std::chrono::milliseconds(200));
    if (st.code() == StatusCode::kTimeout) continue;
    if (!st.ok()) {
      std::cerr << "zmesh sub: " << st << "\n";
      return 1;
    }
    ++received;
    if (raw) {
      std::fwrite(msg.data().data(), 1, msg.data().size(), stdout);
      std::fputc('\n', stdout);
    } else {
      std::printf("[#%lld] Received on \"%.*s\"", static_cast<long long>(received),
                  static_cast<int>(msg.subject().size()), msg.subject().data());
      if (!msg.reply().empty()) {
        std::printf(" reply \"%.*s\"", static_cast<int>(msg.reply().size()), msg.reply().data());
      }
      std::printf("\n%.*s\n\n", static_cast<int>(msg.data().size()), msg.data().data());
    }
    std::fflush(stdout);
  }
  client->Close();
  return 0;
}

}  // namespace zmesh::cli

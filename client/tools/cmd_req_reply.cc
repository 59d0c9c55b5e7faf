// zmesh req / zmesh reply.

#include <chrono>
#include <iostream>
#include <memory>

#include <zmesh/client.h>

#include "client/tools/cli_common.h"
#include "client/tools/commands.h"

namespace zmesh::cli {
namespace {

std::string Expand(const std::string& pattern, int64_t n, std::string_view request) {
  std::string s = ExpandSequence(pattern, n);
  std::string out;
  size_t pos = 0;
  for (;;) {
    const size_t at = s.find("{req}", pos);
    if (at == std::string::npos) break;
    out.append(s, pos, at - pos).append(request);
    pos = at + 5;
  }
  return out.append(s, pos, std::string::npos);
}

}  // namespace

int RunReq(int argc, char** argv) {
  ConnFlags conn;
  int64_t timeout_ms = 2000;
  int64_t count = 1;
  FlagSet flags("req");
  AddConnFlags(&flags, &conn);
  flags.Int("timeout_ms", &timeout_ms, "how long to wait for each reply");
  flags.Int("count", &count, "requests to send; {n} in PAYLOAD becomes 1..count");
  std::vector<std::string> args;
  int code = 0;
  if (!ParseOrUsage(&flags, argc, argv, "zmesh req [flags] SUBJECT PAYLOAD", 2, 2, &args, &code)) return code;
  InstallStopSignals();
  std::unique_ptr<Client> client;
  if (!ConnectOrReport("req", conn, &client)) return 1;
  for (int64_t n = 1; n <= count && !StopRequested(); ++n) {
    Message reply;
    Status st = client->Request(args[0], ExpandSequence(args[1], n), std::chrono::milliseconds(timeout_ms), &reply);
    if (!st.ok()) {
      std::cerr << "zmesh req: " << st << "\n";
      return 1;
    }
    std::cout << reply.data() << std::endl;
  }
  client->Close();
  return 0;
}

int RunReply(int argc, char** argv) {
  ConnFlags conn;
  std::string queue;
  int64_t count = 0;
  FlagSet flags("reply");
  AddConnFlags(&flags, &conn);
  flags.String("queue", &queue, "queue group, so several responders share the requests");
  flags.Int("count", &count, "exit after answering this many requests (0 = run until interrupted)");
  const std::string synopsis =
      "zmesh reply [flags] SUBJECT [RESPONSE]   ({n} = request number, {req} = request payload; "
      "default: echo the request)";
  std::vector<std::string> args;
  int code = 0;
  if (!ParseOrUsage(&flags, argc, argv, synopsis, 1, 2, &args, &code)) return code;
  const std::string response = args.size() == 2 ? args[1] : "{req}";
  InstallStopSignals();
  std::unique_ptr<Client> client;
  if (!ConnectOrReport("reply", conn, &client)) return 1;
  std::shared_ptr<Subscription> sub;
  Status st = queue.empty() ? client->SubscribeSync(args[0], &sub) : client->QueueSubscribeSync(args[0], queue, &sub);
  if (!st.ok()) {
    std::cerr << "zmesh reply: " << st << "\n";
    return 1;
  }
  sub->SetPendingLimits(-1, -1);
  client->Flush(std::chrono::milliseconds(conn.initial_timeout_ms));
  std::cerr << "zmesh reply: listening on " << args[0] << " via " << client->connected_url() << "\n";
  int64_t answered = 0;
  while (!StopRequested() && (count == 0 || answered < count)) {
    Message msg;
    st = sub->NextMsg(&msg, std::chrono::milliseconds(200));
    if (st.code() == StatusCode::kTimeout) continue;
    if (!st.ok()) {
      std::cerr << "zmesh reply: " << st << "\n";
      return 1;
    }
    if (msg.reply().empty()) continue;  // not a request
    ++answered;
    st = client->Publish(msg.reply(), Expand(response, answered, msg.data()));
    if (!st.ok()) std::cerr << "zmesh reply: respond: " << st << "\n";
  }
  client->Flush(std::chrono::seconds(5));
  client->Close();
  return 0;
}

}  // namespace zmesh::cli

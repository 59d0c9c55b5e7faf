// zmesh: the command-line tool. Subcommands: pub, sub, req, reply, nodes,
// passwd, bench. See `zmesh help` and `zmesh <command> --help`.

#include <glog/logging.h>

#include <cstring>
#include <iostream>
#include <string>

#include "client/tools/commands.h"

#ifdef ZMESH_CLI_WITH_PASSWD
#include "auth/passwd_command.h"
#endif

namespace {

constexpr const char* kUsage =
    "usage: zmesh <command> [flags] [args]\n"
    "\n"
    "commands:\n"
    "  pub [--count N] [--interval_ms T] SUBJECT PAYLOAD   publish ({n} in PAYLOAD = 1..N)\n"
    "  sub [--queue G] [--count N] [--raw] SUBJECT         print messages as they arrive\n"
    "  req [--timeout_ms T] SUBJECT PAYLOAD                send a request, print the reply\n"
    "  reply [--queue G] SUBJECT [RESPONSE]                answer requests\n"
    "  nodes                                               list the live nodes in ZooKeeper\n"
    "  passwd [USER]                                       hash a password for --users_file\n"
    "  bench pubsub|fanout|queue|latency|reqrep|conns      load generator (meshbench's flags and JSON)\n"
    "\n"
    "Every command finds the mesh with --zk=HOST:PORT [--zk_root=/zmesh/NAME] or\n"
    "--servers=nats://HOST:PORT,...; credentials: --user plus --password_file=FILE or\n"
    "$ZMESH_PASSWORD. `zmesh <command> --help` lists all flags.\n";

}  // namespace

int main(int argc, char** argv) {
  // The ZooKeeper module logs through glog; a CLI's stdout is data and its
  // stderr is for problems, so only warnings and worse are shown.
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = google::GLOG_WARNING;
  google::InitGoogleLogging("zmesh");
  if (argc < 2 || std::strcmp(argv[1], "help") == 0 || std::strcmp(argv[1], "--help") == 0 ||
      std::strcmp(argv[1], "-h") == 0) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  // Subcommands see their own name as argv[0].
  int sub_argc = argc - 1;
  char** sub_argv = argv + 1;
  if (cmd == "pub") return zmesh::cli::RunPub(sub_argc, sub_argv);
  if (cmd == "sub") return zmesh::cli::RunSub(sub_argc, sub_argv);
  if (cmd == "req" || cmd == "request") return zmesh::cli::RunReq(sub_argc, sub_argv);
  if (cmd == "reply") return zmesh::cli::RunReply(sub_argc, sub_argv);
  if (cmd == "nodes") return zmesh::cli::RunNodes(sub_argc, sub_argv);
  if (cmd == "bench") return zmesh::cli::RunBench(sub_argc, sub_argv);
  if (cmd == "passwd") {
#ifdef ZMESH_CLI_WITH_PASSWD
    return zmesh::auth::RunPasswdCommand(sub_argc, sub_argv, std::cin, std::cout, std::cerr);
#else
    std::cerr << "zmesh passwd: this build has no auth module\n";
    return 1;
#endif
  }
  std::cerr << "zmesh: unknown command '" << cmd << "'\n\n" << kUsage;
  return 2;
}

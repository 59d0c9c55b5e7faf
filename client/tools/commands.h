#pragma once

// The zmesh CLI's subcommands. Each takes the arguments after its name
// (argv[0] is the command name) and returns the process exit status:
// 0 success, 1 failure at run time, 2 usage error.

namespace zmesh::cli {

int RunPub(int argc, char** argv);
int RunSub(int argc, char** argv);
int RunReq(int argc, char** argv);
int RunReply(int argc, char** argv);
int RunNodes(int argc, char** argv);
int RunBench(int argc, char** argv);

}  // namespace zmesh::cli

// zmesh-server: a forwarding node of the zmesh pub/sub mesh.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <malloc.h>

#include <iostream>

#include "server/flags.h"
#include "server/server.h"
#include "server/version.h"

int main(int argc, char** argv) {
  // Outbound chunks are allocated by the publishing thread and freed by the
  // thread that wrote them; with glibc's default trimming, every fan-out
  // burst returned the arena top to the kernel and faulted it back in (a
  // fifth of the server's time in 1 -> 100 fan-out). Keep up to 64 MiB of
  // freed memory per arena for reuse instead.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
  gflags::SetUsageMessage("zmesh-server [flags]: a zmesh forwarding node (NATS client protocol on --listen)");
  gflags::SetVersionString(zmesh::server::kZmeshVersion);
  FLAGS_logtostderr = true;  // glog: stderr unless --log_dir is given
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!FLAGS_log_dir.empty()) FLAGS_logtostderr = false;
  google::InitGoogleLogging(argv[0]);

  zmesh::server::Options options;
  std::string error;
  std::string flagfiles;
  gflags::GetCommandLineOption("flagfile", &flagfiles);
  if (!zmesh::server::ValidateFlagfiles(flagfiles, &error) ||
      !zmesh::server::OptionsFromFlags(&options, &error)) {
    std::cerr << "zmesh-server: " << error << "\n";
    return 2;
  }
  zmesh::server::Server server(options);
  if (!server.Start(&error)) {
    LOG(ERROR) << "cannot start: " << error;
    return 1;
  }
  server.Run();
  return 0;
}

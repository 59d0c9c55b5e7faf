#pragma once

// Routes the ZooKeeper C client's own log lines to glog.
//
// The C client logs from its IO and completion threads and from the caller's
// thread, so everything here is thread-safe. Its routine reconnect messages
// ("connection refused", "timed out") are logged at ERROR, which would page an
// operator during every ZooKeeper rolling restart; they become WARNINGs.

namespace zmesh::zk {

enum class ZooKeeperLogLevel { kError, kWarn, kInfo, kDebug };

// Sets the C client's process-wide log level (default kWarn). The C client
// reads the level without synchronization, so call this before the first
// registry is created. Any thread.
void SetZooKeeperLogLevel(ZooKeeperLogLevel level);

// Applies the default level unless SetZooKeeperLogLevel() ran first. Called by
// the registry before each zookeeper_init2. Any thread.
void InitZooKeeperLogging();

// The log_callback_fn handed to zookeeper_init2. Any thread.
void ZooKeeperLogToGlog(const char* message);

}  // namespace zmesh::zk

#pragma once

// The fixture of the mesh test binaries: one private ZooKeeper per binary
// (tick 500 ms, so 2000 ms sessions are honoured; ZOOKEEPER.md), started
// before the first test and restarted if a test left it stopped, and a
// MeshCluster per test under a ZooKeeper root of its own. A test that cannot
// start ZooKeeper fails; it never skips.

#include <unistd.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/mesh_cluster.h"
#include "tests/support/zookeeper_server.h"

namespace zmesh::testing {

class MeshFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    zk_ = new ZooKeeperServer();
    zk_error_.clear();
    if (!zk_->Start(&zk_error_)) zk_error_ = "cannot start ZooKeeper: " + zk_error_;
  }

  static void TearDownTestSuite() {
    if (zk_ != nullptr) zk_->Stop();
    delete zk_;
    zk_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(zk_error_.empty()) << zk_error_;
    if (!zk_->running() || zk_->Mode().empty()) {
      std::string error;
      ASSERT_TRUE(zk_->Restart(&error)) << "ZooKeeper was left stopped and cannot restart: " << error;
    }
    mesh_ = NewMesh();
  }

  void TearDown() override { mesh_.reset(); }

  // A ZooKeeper root no other test (or earlier run) uses.
  static std::string UniqueRoot(const std::string& suffix = "") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return "/zmesh/" + std::string(info->test_suite_name()) + "-" + info->name() + suffix + "-" +
           std::to_string(getpid());
  }

  // A fresh mesh (no node started) with the test defaults, adjusted by `tweak`.
  template <typename Tweak>
  std::unique_ptr<MeshCluster> NewMesh(const std::string& root_suffix, Tweak tweak) {
    MeshOptions o;
    o.zk_connect = zk_->connect_string();
    o.zk_root = UniqueRoot(root_suffix);
    tweak(o);
    return std::make_unique<MeshCluster>(o);
  }
  std::unique_ptr<MeshCluster> NewMesh(const std::string& root_suffix = "") {
    return NewMesh(root_suffix, [](MeshOptions&) {});
  }

  static ZooKeeperServer& zk() { return *zk_; }

  static inline ZooKeeperServer* zk_ = nullptr;
  static inline std::string zk_error_;
  std::unique_ptr<MeshCluster> mesh_;
};

}  // namespace zmesh::testing

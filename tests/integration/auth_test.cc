// Username/password authentication (SPEC §5) with bcrypt hashes, the auth
// timeout, per-user publish/subscribe permissions and SIGHUP reload of the
// users. The same users become a zmesh users file or a nats-server config
// (tests/support/server_under_test.h); ZMESH_TEST_TARGET picks the server.
//
// nats-server 2.9.10, as characterised here:
//  - auth_required:true in INFO; any operation before CONNECT (even PING) is
//    -ERR 'Authorization Violation' and a close; so is a bad CONNECT.
//  - No CONNECT within the timeout: -ERR 'Authentication Timeout', close.
//  - A permission violation is an -ERR naming the subject (and queue), the
//    connection stays open, and the denied message/subscription has no effect.
//  - On reload, new users can log in, existing connections stay up, and a
//    connection whose user was removed is closed without any -ERR.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "tests/support/raw_client.h"
#include "tests/support/server_under_test.h"
#include "tests/support/test_users.h"
#include "tests/support/wait_for.h"

namespace zmesh::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const std::string kAuthViolation = R"(-ERR 'Authorization Violation')";

// alice may publish foo.> except foo.secret, and subscribe to _INBOX.> and
// bar; bob may do anything.
std::vector<UserSpec> DefaultUsers() {
  return {MakeUser(kAliceUser, kAliceHash, /*pub_allow=*/{"foo.>"}, /*sub_allow=*/{"_INBOX.>", "bar"},
                   /*pub_deny=*/{"foo.secret"}),
          MakeUser(kBobUser, kBobHash)};
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (options_.users.empty()) options_.users = DefaultUsers();
    ASSERT_TRUE(server_.Start(options_));
  }

  std::unique_ptr<RawClient> Login(const std::string& user, const std::string& pass,
                                   std::string_view options_json = "{}") {
    auto c = std::make_unique<RawClient>();
    c->set_name(user);
    if (!c->Dial(server_.port()) || !c->Connect(user, pass, options_json)) return nullptr;
    return c;
  }

  // One login attempt that does not fail the test: the first line after
  // CONNECT+PING ("PONG" on success), or "" if none came. On success the
  // connection is handed over in *kept.
  std::string TryLogin(const std::string& user, const std::string& pass,
                       std::unique_ptr<RawClient>* kept = nullptr) {
    auto c = std::make_unique<RawClient>();
    c->set_name("try-" + user);
    if (!c->Dial(server_.port())) return "";
    std::optional<std::string> info = c->ReadLine(milliseconds(2000));
    if (!info || !info->starts_with("INFO ")) return "";
    c->TrySend(RawClient::ConnectLine(user, pass, "{}") + "PING\r\n");
    std::optional<std::string> line = c->ReadLine(milliseconds(5000));
    if (line == "PONG" && kept != nullptr) *kept = std::move(c);
    return line.value_or("");
  }

  ServerOptions options_;
  ServerUnderTest server_;
};

TEST_F(AuthTest, InfoSaysAuthRequired) {
  RawClient c;
  ASSERT_TRUE(c.Dial(server_.port()));
  std::optional<nlohmann::json> info = c.ExpectInfo();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->value("auth_required", false), true) << info->dump();
}

TEST_F(AuthTest, GoodCredentialsAreAccepted) {
  auto verbose = std::make_unique<RawClient>();
  ASSERT_TRUE(verbose->Dial(server_.port()));
  ASSERT_TRUE(verbose->ExpectInfo());
  verbose->Send(RawClient::ConnectLine(kBobUser, kBobPassword, R"({"verbose":true})") +
                "PING\r\n");
  EXPECT_TRUE(verbose->ExpectLine(R"(\+OK)"));
  EXPECT_TRUE(verbose->ExpectLine("PONG"));

  auto quiet = Login(kAliceUser, kAlicePassword);
  ASSERT_TRUE(quiet);
  EXPECT_TRUE(quiet->Flush());
}

TEST_F(AuthTest, BadCredentialsAreRejectedAndClosed) {
  struct Attempt {
    const char* what;
    std::string connect;
  };
  const Attempt attempts[] = {
      {"wrong password", RawClient::ConnectLine(kAliceUser, "wrong", "{}")},
      {"another user's password", RawClient::ConnectLine(kAliceUser, kBobPassword, "{}")},
      {"unknown user", RawClient::ConnectLine("mallory", kAlicePassword, "{}")},
      {"no credentials", RawClient::ConnectLine("", "", "{}")},
      {"user without password", RawClient::ConnectLine(kAliceUser, "", "{}")},
      {"password hash as password", RawClient::ConnectLine(kAliceUser, kAliceHash, "{}")},
  };
  for (const Attempt& a : attempts) {
    SCOPED_TRACE(a.what);
    RawClient c;
    c.set_name(a.what);
    ASSERT_TRUE(c.Dial(server_.port()));
    ASSERT_TRUE(c.ExpectInfo());
    c.TrySend(a.connect + "PING\r\n");
    EXPECT_TRUE(c.ExpectLine(kAuthViolation));
    EXPECT_TRUE(c.ExpectClosed());
  }
}

TEST_F(AuthTest, OperationsBeforeConnectAreViolations) {
  for (const char* op : {"PING\r\n", "SUB foo 1\r\n", "PUB foo 1\r\nx\r\n"}) {
    SCOPED_TRACE(op);
    RawClient c;
    ASSERT_TRUE(c.Dial(server_.port()));
    ASSERT_TRUE(c.ExpectInfo());
    c.TrySend(op);
    EXPECT_TRUE(c.ExpectLine(kAuthViolation));
    EXPECT_TRUE(c.ExpectClosed());
  }
}

class AuthTimeoutTest : public AuthTest {
 protected:
  void SetUp() override {
    options_.auth_timeout_ms = 500;
    AuthTest::SetUp();
  }
};

TEST_F(AuthTimeoutTest, NoConnectWithinTimeoutIsClosed) {
  RawClient c;
  ASSERT_TRUE(c.Dial(server_.port()));
  ASSERT_TRUE(c.ExpectInfo());
  const auto start = Clock::now();
  EXPECT_TRUE(c.ExpectLine(R"(-ERR 'Authentication Timeout')", milliseconds(5000)));
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  EXPECT_TRUE(c.ExpectClosed());
  EXPECT_GE(took, 400) << "closed before the 500 ms timeout";
  EXPECT_LT(took, 2500) << "closed long after the 500 ms timeout";
}

// Half a CONNECT line does not stop the clock.
TEST_F(AuthTimeoutTest, PartialConnectStillTimesOut) {
  RawClient c;
  ASSERT_TRUE(c.Dial(server_.port()));
  ASSERT_TRUE(c.ExpectInfo());
  c.Send(R"(CONNECT {"user":"alice","pass":)");
  EXPECT_TRUE(c.ExpectLine(R"(-ERR 'Authentication Timeout')", milliseconds(5000)));
  EXPECT_TRUE(c.ExpectClosed());
}

// Once logged in, the auth timer is gone.
TEST_F(AuthTimeoutTest, AuthenticatedClientOutlivesTheTimeout) {
  auto c = Login(kBobUser, kBobPassword);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->ExpectSilence(milliseconds(1000)));
  EXPECT_TRUE(c->Flush());
}

TEST_F(AuthTest, PublishPermissions) {
  auto alice = Login(kAliceUser, kAlicePassword);
  auto bob = Login(kBobUser, kBobPassword);
  ASSERT_TRUE(alice && bob);
  bob->Sub(">", "1");
  ASSERT_TRUE(bob->Flush());

  alice->Pub("baz", "denied");
  EXPECT_TRUE(alice->ExpectLine(R"(-ERR 'Permissions Violation for Publish to "baz"')"));
  alice->Pub("foo.secret", "denied");
  EXPECT_TRUE(alice->ExpectLine(R"(-ERR 'Permissions Violation for Publish to "foo\.secret"')"));
  alice->Pub("foo.ok", "allowed");
  EXPECT_TRUE(alice->Flush()) << "a violation must not close the connection";
  // Only the allowed message reached bob: the next one is bob's own marker.
  EXPECT_TRUE(bob->ExpectMsg("foo.ok", "1", "allowed"));
  bob->Pub("marker", "m");
  EXPECT_TRUE(bob->ExpectMsg("marker", "1", "m"));
}

TEST_F(AuthTest, SubscribePermissions) {
  auto alice = Login(kAliceUser, kAlicePassword);
  auto bob = Login(kBobUser, kBobPassword);
  ASSERT_TRUE(alice && bob);

  alice->Sub("baz", "1");
  EXPECT_TRUE(alice->ExpectLine(R"(-ERR 'Permissions Violation for Subscription to "baz"')"));
  alice->Sub("baz", "2", "q");
  EXPECT_TRUE(alice->ExpectLine(
      R"(-ERR 'Permissions Violation for Subscription to "baz" using queue "q"')"));
  // A wildcard covering more than allowed is denied too.
  alice->Sub("_INBOX.>", "3");
  alice->Sub("bar", "4");
  alice->Sub(">", "5");
  EXPECT_TRUE(alice->ExpectLine(R"(-ERR 'Permissions Violation for Subscription to ">"')"));
  EXPECT_TRUE(alice->Flush()) << "a violation must not close the connection";

  bob->Pub("baz", "not for alice");
  bob->Pub("bar", "b");
  bob->Pub("_INBOX.r", "i");
  EXPECT_TRUE(alice->ExpectMsg("bar", "4", "b"));
  EXPECT_TRUE(alice->ExpectMsg("_INBOX.r", "3", "i"));
}

TEST_F(AuthTest, ViolationInVerboseModeGetsOnlyTheError) {
  auto alice = Login(kAliceUser, kAlicePassword, R"({"verbose":true})");
  ASSERT_TRUE(alice);
  alice->Pub("baz", "x");
  alice->Sub("baz", "1");
  alice->Pub("foo.ok", "x");
  EXPECT_TRUE(alice->ExpectLine(R"(-ERR 'Permissions Violation for Publish to "baz"')"));
  EXPECT_TRUE(alice->ExpectLine(R"(-ERR 'Permissions Violation for Subscription to "baz"')"));
  EXPECT_TRUE(alice->ExpectLine(R"(\+OK)"));
  EXPECT_TRUE(alice->Flush());
}

class AuthReloadTest : public AuthTest {
 protected:
  void SetUp() override {
    options_.users = {MakeUser(kAliceUser, kAliceHash), MakeUser(kBobUser, kBobHash)};
    AuthTest::SetUp();
  }
};

// SIGHUP re-reads the users: a new user can log in, a removed one cannot,
// and existing connections stay up.
TEST_F(AuthReloadTest, SighupReloadsUsers) {
  auto alice = Login(kAliceUser, kAlicePassword);
  ASSERT_TRUE(alice);
  alice->Sub("news", "1");
  ASSERT_TRUE(alice->Flush());
  EXPECT_EQ(TryLogin(kCarolUser, kCarolPassword), kAuthViolation);

  // Add carol, remove bob.
  ASSERT_TRUE(server_.ReloadUsers({MakeUser(kAliceUser, kAliceHash),
                                   MakeUser(kCarolUser, kCarolHash)}));
  std::unique_ptr<RawClient> carol;
  EXPECT_TRUE(WaitFor(milliseconds(10000),
                      [&] { return TryLogin(kCarolUser, kCarolPassword, &carol) == "PONG"; },
                      milliseconds(50)))
      << "carol cannot log in after the reload";
  ASSERT_TRUE(carol);
  EXPECT_EQ(TryLogin(kBobUser, kBobPassword), kAuthViolation) << "bob was removed";

  // The existing connection is untouched.
  EXPECT_TRUE(alice->Flush());
  carol->Pub("news", "after reload");
  EXPECT_TRUE(alice->ExpectMsg("news", "1", "after reload"));
}

// nats-server also closes, without an -ERR, the connections of a user the
// reload removed (its authorization is re-checked on reload).
TEST_F(AuthReloadTest, SighupClosesConnectionsOfRemovedUsers) {
  auto alice = Login(kAliceUser, kAlicePassword);
  auto bob = Login(kBobUser, kBobPassword);
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(server_.ReloadUsers({MakeUser(kAliceUser, kAliceHash)}));
  // The reload has happened once bob can no longer log in.
  EXPECT_TRUE(WaitFor(milliseconds(10000),
                      [&] { return TryLogin(kBobUser, kBobPassword) == kAuthViolation; },
                      milliseconds(50)));
  EXPECT_TRUE(bob->ExpectClosed());
  EXPECT_TRUE(alice->Flush());
}

}  // namespace
}  // namespace zmesh::testing

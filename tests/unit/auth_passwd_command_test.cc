#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "auth/passwd_command.h"
#include "auth/password_hash.h"
#include "auth/users_file.h"

namespace zmesh::auth {
namespace {

struct CommandRun {
  int code;
  std::string out;
  std::string err;
  std::string last_line;
};

CommandRun RunWith(std::vector<std::string> args, std::istream& in) {
  args.insert(args.begin(), "passwd");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream out, err;
  int code = RunPasswdCommand(static_cast<int>(args.size()), argv.data(), in, out, err);
  std::string text = out.str();
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return CommandRun{code, out.str(), err.str(), text.substr(text.rfind('\n') + 1)};
}

CommandRun RunWithInput(std::vector<std::string> args, const std::string& input) {
  std::istringstream in(input);
  return RunWith(std::move(args), in);
}

TEST(PasswdCommandTest, PrintsAHashThatVerifies) {
  CommandRun run = RunWithInput({"--cost", "4"}, "s3cret\n");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(run.last_line.starts_with("$2b$04$")) << run.out;
  EXPECT_TRUE(run.out.ends_with("\n"));
  EXPECT_TRUE(VerifyPassword("s3cret", run.last_line));
  EXPECT_FALSE(VerifyPassword("s3cret\n", run.last_line));
  EXPECT_FALSE(VerifyPassword("s3cre", run.last_line));
}

TEST(PasswdCommandTest, StripsCrlfAndReadsOnlyTheFirstLine) {
  CommandRun crlf = RunWithInput({"--cost=4"}, "s3cret\r\nother\n");
  ASSERT_EQ(crlf.code, 0) << crlf.err;
  EXPECT_TRUE(VerifyPassword("s3cret", crlf.last_line));
  CommandRun no_newline = RunWithInput({"--cost=4"}, "with space ");
  ASSERT_EQ(no_newline.code, 0) << no_newline.err;
  EXPECT_TRUE(VerifyPassword("with space ", no_newline.last_line));
}

TEST(PasswdCommandTest, DefaultCostIs11) {
  CommandRun run = RunWithInput({}, "pw\n");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(run.last_line.starts_with("$2b$11$")) << run.out;
}

TEST(PasswdCommandTest, UserArgumentPrintsAUsersFileLine) {
  CommandRun run = RunWithInput({"--cost", "4", "alice"}, "alice-pw\n");
  ASSERT_EQ(run.code, 0) << run.err;
  ASSERT_TRUE(run.last_line.starts_with("alice:$2b$04$")) << run.out;
  absl::StatusOr<UsersTable> table = ParseUsers(run.out, "stdout");
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_NE(table->Find("alice"), nullptr);
  EXPECT_TRUE(VerifyPassword("alice-pw", table->Find("alice")->hash));
}

TEST(PasswdCommandTest, RefusesEmptyOrMissingPassword) {
  for (const char* input : {"\n", "\r\n", ""}) {
    CommandRun run = RunWithInput({"--cost", "4"}, input);
    EXPECT_EQ(run.code, 1) << "input: " << input;
    EXPECT_EQ(run.out, "");
    EXPECT_NE(run.err, "");
  }
  EXPECT_NE(RunWithInput({"--cost", "4"}, "\n").err.find("empty password"), std::string::npos);
  EXPECT_NE(RunWithInput({"--cost", "4"}, "").err.find("no password"), std::string::npos);
}

TEST(PasswdCommandTest, UsageErrors) {
  const std::vector<std::vector<std::string>> bad = {
      {"--cost"},        {"--cost", "3"},  {"--cost", "32"}, {"--cost", "x"}, {"--cost=11x"},
      {"--rounds", "4"}, {"alice", "bob"}, {"al:ice"},       {"#alice"},      {""},
  };
  for (const std::vector<std::string>& args : bad) {
    CommandRun run = RunWithInput(args, "pw\n");
    EXPECT_EQ(run.code, 2) << args[0];
    EXPECT_EQ(run.out, "");
    EXPECT_NE(run.err.find("usage: zmesh passwd"), std::string::npos);
  }
  CommandRun help = RunWithInput({"--help"}, "");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("usage: zmesh passwd"), std::string::npos);
  // "--" ends the options: a user may be called "-x".
  CommandRun dash = RunWithInput({"--cost", "4", "--", "-x"}, "pw\n");
  EXPECT_EQ(dash.code, 0) << dash.err;
  EXPECT_TRUE(dash.last_line.starts_with("-x:$2b$04$"));
}

// Runs the command with std::cin on a pseudo-terminal and types `lines` once
// echo has been switched off.
class PasswdTerminalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(openpty(&master_, &slave_, nullptr, nullptr, nullptr), 0);
    saved_stdin_ = dup(STDIN_FILENO);
    ASSERT_GE(saved_stdin_, 0);
    ASSERT_EQ(dup2(slave_, STDIN_FILENO), STDIN_FILENO);
    std::cin.clear();
  }
  void TearDown() override {
    dup2(saved_stdin_, STDIN_FILENO);
    close(saved_stdin_);
    close(slave_);
    close(master_);
    std::cin.clear();
  }

  bool EchoOn() {
    struct termios t;
    tcgetattr(slave_, &t);
    return (t.c_lflag & ECHO) != 0;
  }

  CommandRun Type(const std::string& lines) {
    EXPECT_TRUE(EchoOn());
    CommandRun run;
    std::thread command([&] { run = RunWith({"--cost", "4"}, std::cin); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (EchoOn() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_FALSE(EchoOn()) << "echo still on while reading the password";
    EXPECT_EQ(write(master_, lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
    command.join();
    EXPECT_TRUE(EchoOn()) << "terminal not restored";
    return run;
  }

  int master_ = -1, slave_ = -1, saved_stdin_ = -1;
};

TEST_F(PasswdTerminalTest, AsksTwice) {
  CommandRun run = Type("tty-pw\ntty-pw\n");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.err.find("Password: "), std::string::npos);
  EXPECT_NE(run.err.find("Confirm password: "), std::string::npos);
  EXPECT_TRUE(VerifyPassword("tty-pw", run.last_line));
}

TEST_F(PasswdTerminalTest, MismatchFails) {
  CommandRun run = Type("tty-pw\ntty-px\n");
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_NE(run.err.find("passwords do not match"), std::string::npos);
}

}  // namespace
}  // namespace zmesh::auth

#include "auth/passwd_command.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "auth/password_hash.h"

namespace zmesh::auth {
namespace {

constexpr char kUsage[] =
    "usage: zmesh passwd [--cost N] [user]\n"
    "Reads a password from standard input (twice and without echo on a terminal)\n"
    "and prints its bcrypt hash, or user:hash when a user is given, as the last\n"
    "line. --cost N: bcrypt cost, 4..31 (default 11).\n";

struct Args {
  int cost = kDefaultBcryptCost;
  std::string user;
  bool help = false;
};

bool ParseCost(std::string_view text, int* cost) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *cost);
  return ec == std::errc() && ptr == end && *cost >= kMinBcryptCost && *cost <= kMaxBcryptCost;
}

bool IsValidUserName(std::string_view user) {
  if (user.empty() || user.front() == '#') return false;
  return user.find_first_of(": \t\r\n\v\f") == std::string_view::npos;
}

std::optional<Args> ParseArgs(int argc, char** argv, std::ostream& err) {
  Args args;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!options_done && (arg == "-h" || arg == "--help")) {
      args.help = true;
    } else if (!options_done && (arg == "--cost" || arg.starts_with("--cost="))) {
      std::string_view value;
      if (arg == "--cost") {
        if (++i == argc) {
          err << "zmesh passwd: --cost needs a value\n";
          return std::nullopt;
        }
        value = argv[i];
      } else {
        value = arg.substr(7);
      }
      if (!ParseCost(value, &args.cost)) {
        err << "zmesh passwd: --cost must be an integer in [" << kMinBcryptCost << ", "
            << kMaxBcryptCost << "]\n";
        return std::nullopt;
      }
    } else if (!options_done && arg == "--") {
      options_done = true;
    } else if (!options_done && arg.starts_with("-")) {
      err << "zmesh passwd: unknown option " << arg << "\n";
      return std::nullopt;
    } else if (!args.user.empty()) {
      err << "zmesh passwd: more than one user name\n";
      return std::nullopt;
    } else if (!IsValidUserName(arg)) {
      err << "zmesh passwd: a user name must be non-empty, not start with '#' and contain "
             "neither ':' nor whitespace\n";
      return std::nullopt;
    } else {
      args.user = std::string(arg);
    }
  }
  return args;
}

// The terminal's settings while echo is off, for the signal handler: a
// Ctrl-C at the prompt must not leave the shell without echo.
struct termios saved_termios;

extern "C" void RestoreTerminalAndReraise(int sig) {
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
  signal(sig, SIG_DFL);
  raise(sig);
}

class EchoOff {
 public:
  EchoOff() {
    if (tcgetattr(STDIN_FILENO, &saved_termios) != 0) return;
    struct sigaction action {};
    action.sa_handler = RestoreTerminalAndReraise;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < kSignals; ++i) sigaction(kCaught[i], &action, &previous_[i]);
    handlers_installed_ = true;
    struct termios quiet = saved_termios;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;  // the Enter still moves to the next line
    active_ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
  }
  ~EchoOff() {
    if (active_) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
    if (!handlers_installed_) return;
    for (int i = 0; i < kSignals; ++i) sigaction(kCaught[i], &previous_[i], nullptr);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  static constexpr int kSignals = 4;
  static constexpr int kCaught[kSignals] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP};
  struct sigaction previous_[kSignals] = {};
  bool handlers_installed_ = false;
  bool active_ = false;
};

void Wipe(std::string* secret) {
  OPENSSL_cleanse(secret->data(), secret->size());
  secret->clear();
}

// One line without its "\n" or "\r\n".
absl::StatusOr<std::string> ReadLine(std::istream& in) {
  std::string line;
  if (!std::getline(in, line)) return absl::NotFoundError("no password on standard input");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

absl::StatusOr<std::string> ReadFromTerminal(std::istream& in, std::ostream& err) {
  EchoOff echo_off;
  err << "Password: " << std::flush;
  absl::StatusOr<std::string> first = ReadLine(in);
  if (!first.ok()) return first;
  err << "Confirm password: " << std::flush;
  absl::StatusOr<std::string> second = ReadLine(in);
  bool same = second.ok() && *first == *second;
  if (second.ok()) Wipe(&*second);
  if (!same) {
    Wipe(&*first);
    return absl::InvalidArgumentError("passwords do not match");
  }
  return first;
}

}  // namespace

int RunPasswdCommand(int argc, char** argv, std::istream& in, std::ostream& out,
                     std::ostream& err) {
  std::optional<Args> args = ParseArgs(argc, argv, err);
  if (!args) {
    err << kUsage;
    return 2;
  }
  if (args->help) {
    out << kUsage;
    return 0;
  }
  bool terminal = &in == &std::cin && isatty(STDIN_FILENO);
  absl::StatusOr<std::string> password = terminal ? ReadFromTerminal(in, err) : ReadLine(in);
  if (!password.ok()) {
    err << "zmesh passwd: " << password.status().message() << "\n";
    return 1;
  }
  if (password->empty()) {
    err << "zmesh passwd: empty password refused\n";
    return 1;
  }
  if (password->size() > kBcryptMaxPasswordBytes) {
    err << "zmesh passwd: warning: bcrypt uses only the first " << kBcryptMaxPasswordBytes
        << " bytes of the password\n";
  }
  absl::StatusOr<std::string> hash = HashPassword(*password, args->cost);
  Wipe(&*password);
  if (!hash.ok()) {
    err << "zmesh passwd: " << hash.status().message() << "\n";
    return 1;
  }
  if (!args->user.empty()) out << args->user << ':';
  out << *hash << '\n' << std::flush;
  return 0;
}

}  // namespace zmesh::auth

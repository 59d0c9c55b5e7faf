#pragma once

// A small command-line flag parser for the zmesh CLI's subcommands. Each
// subcommand has its own FlagSet (gflags' global flags do not fit commands
// whose flags differ). Accepted forms: --name=value, --name value, -name;
// booleans also as --name and --noname. '-' and '_' in names are the same,
// so meshbench's --pub-url and the CLI's --zk_root style both work. Flags may
// come before or after positional arguments; "--" ends the flags.
//
// Thread safety: none; used once at start-up.

#include <cstdint>
#include <string>
#include <vector>

namespace zmesh::cli {

class FlagSet {
 public:
  explicit FlagSet(std::string command) : command_(std::move(command)) {}

  void String(const std::string& name, std::string* target, const std::string& help);
  void Int(const std::string& name, int64_t* target, const std::string& help);
  void Double(const std::string& name, double* target, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  // The flag's value is overwritten in argv after parsing, so it does not
  // stay visible in ps(1).
  void Secret(const std::string& name);

  // false with *error on an unknown flag, a missing or malformed value.
  // "--help" sets help_requested().
  bool Parse(int argc, char** argv, std::vector<std::string>* positional, std::string* error);
  bool help_requested() const { return help_; }
  std::string Usage(const std::string& synopsis) const;

 private:
  enum class Type { kString, kInt, kDouble, kBool };
  struct Flag {
    std::string name;  // normalized: '_' only
    Type type;
    void* target;
    std::string help;
    std::string default_text;
    bool secret = false;
  };
  Flag* Find(const std::string& normalized);
  bool Set(Flag* flag, const std::string& value, std::string* error);

  std::string command_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace zmesh::cli

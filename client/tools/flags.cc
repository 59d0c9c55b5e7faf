#include "client/tools/flags.h"

#include <charconv>
#include <cstring>
#include <sstream>

namespace zmesh::cli {
namespace {

std::string Normalize(std::string name) {
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

}  // namespace

void FlagSet::String(const std::string& name, std::string* target, const std::string& help) {
  flags_.push_back(Flag{Normalize(name), Type::kString, target, help, *target});
}
void FlagSet::Int(const std::string& name, int64_t* target, const std::string& help) {
  flags_.push_back(Flag{Normalize(name), Type::kInt, target, help, std::to_string(*target)});
}
void FlagSet::Double(const std::string& name, double* target, const std::string& help) {
  std::ostringstream os;
  os << *target;
  flags_.push_back(Flag{Normalize(name), Type::kDouble, target, help, os.str()});
}
void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  flags_.push_back(Flag{Normalize(name), Type::kBool, target, help, *target ? "true" : "false"});
}
void FlagSet::Secret(const std::string& name) {
  if (Flag* f = Find(Normalize(name))) f->secret = true;
}

FlagSet::Flag* FlagSet::Find(const std::string& normalized) {
  for (Flag& f : flags_) {
    if (f.name == normalized) return &f;
  }
  return nullptr;
}

bool FlagSet::Set(Flag* flag, const std::string& value, std::string* error) {
  switch (flag->type) {
    case Type::kString:
      *static_cast<std::string*>(flag->target) = value;
      return true;
    case Type::kInt: {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || end != value.data() + value.size()) {
        *error = "--" + flag->name + ": not an integer: '" + value + "'";
        return false;
      }
      *static_cast<int64_t*>(flag->target) = v;
      return true;
    }
    case Type::kDouble: {
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size()) {
        *error = "--" + flag->name + ": not a number: '" + value + "'";
        return false;
      }
      *static_cast<double*>(flag->target) = v;
      return true;
    }
    case Type::kBool:
      if (value == "true" || value == "1" || value == "yes") {
        *static_cast<bool*>(flag->target) = true;
      } else if (value == "false" || value == "0" || value == "no") {
        *static_cast<bool*>(flag->target) = false;
      } else {
        *error = "--" + flag->name + ": not a boolean: '" + value + "'";
        return false;
      }
      return true;
  }
  return false;
}

bool FlagSet::Parse(int argc, char** argv, std::vector<std::string>* positional, std::string* error) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) positional->push_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-' || (arg[1] >= '0' && arg[1] <= '9')) {
      positional->push_back(arg);
      continue;
    }
    const size_t dashes = arg[1] == '-' ? 2 : 1;
    std::string body = arg.substr(dashes);
    std::string value;
    bool has_value = false;
    char* value_chars = nullptr;  // where the value lives in argv, to scrub
    if (const size_t eq = body.find('='); eq != std::string::npos) {
      value = body.substr(eq + 1);
      value_chars = argv[i] + dashes + eq + 1;
      body.resize(eq);
      has_value = true;
    }
    const std::string name = Normalize(body);
    if (name == "help" || name == "h") {
      help_ = true;
      continue;
    }
    Flag* flag = Find(name);
    if (flag == nullptr && name.rfind("no", 0) == 0 && !has_value) {
      Flag* negated = Find(name.substr(2));
      if (negated != nullptr && negated->type == Type::kBool) {
        *static_cast<bool*>(negated->target) = false;
        continue;
      }
    }
    if (flag == nullptr) {
      *error = "unknown flag --" + body + " for '" + command_ + "'";
      return false;
    }
    if (!has_value) {
      if (flag->type == Type::kBool) {
        *static_cast<bool*>(flag->target) = true;
        continue;
      }
      if (i + 1 >= argc) {
        *error = "--" + flag->name + " needs a value";
        return false;
      }
      value = argv[++i];
      value_chars = argv[i];
    }
    if (!Set(flag, value, error)) return false;
    if (flag->secret && value_chars != nullptr) std::memset(value_chars, 'x', std::strlen(value_chars));
  }
  return true;
}

std::string FlagSet::Usage(const std::string& synopsis) const {
  std::ostringstream os;
  os << "usage: " << synopsis << "\n\nflags:\n";
  for (const Flag& f : flags_) {
    os << "  --" << f.name;
    if (f.type != Type::kBool) os << "=VALUE";
    os << "\n      " << f.help;
    if (!f.default_text.empty() && !f.secret) os << " (default: " << f.default_text << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace zmesh::cli

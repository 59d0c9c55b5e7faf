#pragma once

// Subjects as NATS defines them: tokens separated by '.'; in subscriptions a
// token may be '*' (exactly one token) or, as the last token, '>' (one or more
// tokens). Shared by the server (index, permissions) and the client library.

#include <string_view>

namespace zmesh::proto {

inline constexpr char kTokenSeparator = '.';

// A subscription subject: non-empty tokens, no whitespace or control
// character inside a token, '>' only as the last token. Mirrors nats-server's
// IsValidSubject, and refuses control characters as well.
bool IsValidSubject(std::string_view subject);

// A publish subject: a valid subject with no wildcard token.
bool IsValidLiteralSubject(std::string_view subject);

// True when some token is exactly '*' or '>'.
bool HasWildcard(std::string_view subject);

// Does `pattern` (which may contain wildcards) match the literal `subject`?
// Both are assumed valid; an invalid input simply does not match.
bool SubjectMatches(std::string_view pattern, std::string_view subject);

// Does every subject matched by `sub` also match `pattern`? Used by permission
// checks on subscriptions: allowing "foo.>" allows subscribing to "foo.*.bar".
bool SubjectIsSubsetOf(std::string_view sub, std::string_view pattern);

// Iterates over the tokens of a subject without allocating.
class TokenIterator {
 public:
  explicit TokenIterator(std::string_view subject) : rest_(subject), done_(subject.empty()) {}

  // Stores the next token in *token; false when there are no more tokens.
  bool Next(std::string_view* token) {
    if (done_) return false;
    size_t dot = rest_.find(kTokenSeparator);
    if (dot == std::string_view::npos) {
      *token = rest_;
      done_ = true;
    } else {
      *token = rest_.substr(0, dot);
      rest_.remove_prefix(dot + 1);
    }
    return true;
  }

 private:
  std::string_view rest_;
  bool done_;
};

}  // namespace zmesh::proto

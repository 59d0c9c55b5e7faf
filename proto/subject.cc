#include "proto/subject.h"

namespace zmesh::proto {
namespace {

// Whitespace and control characters: nothing that could end or split a
// protocol line, here or when the subject is copied into another node's MSG.
bool IsSpaceOrControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7f;
}

bool IsWildcardToken(std::string_view t) { return t == "*" || t == ">"; }

}  // namespace

bool IsValidSubject(std::string_view subject) {
  if (subject.empty()) return false;
  bool saw_full_wildcard = false;
  TokenIterator it(subject);  // yields empty tokens for "a..b", ".a" and "a."
  std::string_view token;
  while (it.Next(&token)) {
    if (token.empty() || saw_full_wildcard) return false;
    for (char c : token) {
      if (IsSpaceOrControl(c)) return false;
    }
    if (token == ">") saw_full_wildcard = true;
  }
  return true;
}

bool IsValidLiteralSubject(std::string_view subject) {
  return IsValidSubject(subject) && !HasWildcard(subject);
}

bool HasWildcard(std::string_view subject) {
  TokenIterator it(subject);
  std::string_view token;
  while (it.Next(&token)) {
    if (IsWildcardToken(token)) return true;
  }
  return false;
}

bool SubjectMatches(std::string_view pattern, std::string_view subject) {
  TokenIterator p(pattern), s(subject);
  std::string_view pt, st;
  while (p.Next(&pt)) {
    if (pt == ">") return s.Next(&st);  // '>' needs at least one more token
    if (!s.Next(&st)) return false;
    if (pt != "*" && pt != st) return false;
  }
  return !s.Next(&st);
}

bool SubjectIsSubsetOf(std::string_view sub, std::string_view pattern) {
  TokenIterator p(pattern), s(sub);
  std::string_view pt, st;
  while (p.Next(&pt)) {
    if (pt == ">") return s.Next(&st);
    if (!s.Next(&st)) return false;
    if (st == ">") return false;            // sub reaches further than a single-token pattern
    if (pt == "*") continue;                // '*' covers any single token, '*' included
    if (st == "*" || pt != st) return false;  // a literal covers only itself
  }
  return !s.Next(&st);
}

}  // namespace zmesh::proto

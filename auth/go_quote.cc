#include "auth/go_quote.h"

#include <cstdint>

namespace zmesh::auth {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(std::string* out, uint32_t value, int digits) {
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
    out->push_back(kHex[(value >> shift) & 0xf]);
}

// Decodes one UTF-8 sequence at the front of `s` as Go's utf8.DecodeRune does:
// rejects overlong forms, surrogates and values past U+10FFFF. Returns its
// length, or 0 when the first byte does not start a valid sequence.
int DecodeRune(std::string_view s, uint32_t* rune) {
  auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xc0) == 0x80; };
  uint8_t c = b(0);
  if (c >= 0xc2 && c <= 0xdf && cont(1)) {
    *rune = ((c & 0x1fu) << 6) | (b(1) & 0x3fu);
    return 2;
  }
  if (c >= 0xe0 && c <= 0xef && cont(1) && cont(2)) {
    *rune = ((c & 0x0fu) << 12) | ((b(1) & 0x3fu) << 6) | (b(2) & 0x3fu);
    if (*rune < 0x800 || (*rune >= 0xd800 && *rune <= 0xdfff)) return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4 && cont(1) && cont(2) && cont(3)) {
    *rune = ((c & 0x07u) << 18) | ((b(1) & 0x3fu) << 12) | ((b(2) & 0x3fu) << 6) | (b(3) & 0x3fu);
    if (*rune < 0x10000 || *rune > 0x10ffff) return 0;
    return 4;
  }
  return 0;
}

// Non-ASCII code points Go's unicode.IsPrint rejects: C1 controls, spaces
// other than U+0020 (Zs, Zl, Zp), format characters (Cf), private use (Co)
// and noncharacters.
bool IsPrintable(uint32_t r) {
  if (r <= 0xa0 || r == 0xad) return false;  // C1 controls, NBSP, soft hyphen
  if ((r >= 0x600 && r <= 0x605) || r == 0x61c || r == 0x6dd || r == 0x70f) return false;
  if (r == 0x890 || r == 0x891 || r == 0x8e2 || r == 0x1680 || r == 0x180e) return false;
  if ((r >= 0x2000 && r <= 0x200f) || (r >= 0x2028 && r <= 0x202f)) return false;
  if ((r >= 0x205f && r <= 0x2064) || (r >= 0x2066 && r <= 0x206f) || r == 0x3000) return false;
  if ((r >= 0xe000 && r <= 0xf8ff) || (r >= 0xfdd0 && r <= 0xfdef) || r == 0xfeff) return false;
  if (r >= 0xfff9 && r <= 0xfffb) return false;
  if ((r & 0xfffe) == 0xfffe) return false;  // U+xFFFE and U+xFFFF in every plane
  if (r == 0x110bd || r == 0x110cd || (r >= 0x13430 && r <= 0x1343f)) return false;
  if ((r >= 0x1bca0 && r <= 0x1bca3) || (r >= 0x1d173 && r <= 0x1d17a)) return false;
  if (r == 0xe0001 || (r >= 0xe0020 && r <= 0xe007f) || r >= 0xf0000) return false;
  return true;
}

}  // namespace

std::string GoQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  while (!s.empty()) {
    auto c = static_cast<uint8_t>(s[0]);
    if (c < 0x80) {
      s.remove_prefix(1);
      switch (c) {
        case '"':
          out += "\\\"";
          continue;
        case '\\':
          out += "\\\\";
          continue;
        case '\a':
          out += "\\a";
          continue;
        case '\b':
          out += "\\b";
          continue;
        case '\f':
          out += "\\f";
          continue;
        case '\n':
          out += "\\n";
          continue;
        case '\r':
          out += "\\r";
          continue;
        case '\t':
          out += "\\t";
          continue;
        case '\v':
          out += "\\v";
          continue;
      }
      if (c < 0x20 || c == 0x7f) {
        out += "\\x";
        AppendHex(&out, c, 2);
      } else {
        out.push_back(static_cast<char>(c));
      }
      continue;
    }
    uint32_t rune = 0;
    int len = DecodeRune(s, &rune);
    if (len == 0) {
      out += "\\x";
      AppendHex(&out, c, 2);
      s.remove_prefix(1);
      continue;
    }
    if (IsPrintable(rune)) {
      out.append(s.substr(0, len));
    } else if (rune < 0x10000) {
      out += "\\u";
      AppendHex(&out, rune, 4);
    } else {
      out += "\\U";
      AppendHex(&out, rune, 8);
    }
    s.remove_prefix(len);
  }
  out.push_back('"');
  return out;
}

}  // namespace zmesh::auth

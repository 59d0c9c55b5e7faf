#pragma once

// Go's %q (strconv.Quote) for the texts nats-server builds with it, so that
// our error strings match the server's byte for byte, e.g.
//   Permissions Violation for Publish to "a.\"b\\"   (subject a."b\)
// Thread safe (pure function).

#include <string>
#include <string_view>

namespace zmesh::auth {

// Wraps `s` in double quotes, escaping like Go: \" and \\, the C escapes
// \a \b \f \n \r \t \v, other ASCII controls and invalid UTF-8 bytes as \xHH,
// non-printable code points as \uHHHH / \UHHHHHHHH; printable UTF-8 is kept.
// "Printable" follows Go's unicode.IsPrint for controls, spaces, format
// characters, private use and noncharacters; unassigned code points, which Go
// also escapes, are kept as they are.
std::string GoQuote(std::string_view s);

}  // namespace zmesh::auth

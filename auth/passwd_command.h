#pragma once

// `zmesh passwd [--cost N] [user]`: makes a users-file hash.
//
//   $ zmesh passwd alice >> users.txt      # asks twice, without echo
//   $ echo 's3cret' | zmesh passwd         # prints just the hash
//
// The password comes from standard input. When that is a terminal (`in` is
// std::cin and fd 0 is a tty) it is asked for twice with echo off, and the
// two must agree; otherwise the first line is read (a trailing "\n" or
// "\r\n" removed). An empty password is refused. Prompts and errors go to
// `err`; the result is the last line written to `out`: the bcrypt hash, or
// "user:hash" when a user name is given. --cost N (also --cost=N) sets the
// bcrypt cost, 4..31, default 11.
//
// The zmesh CLI dispatches `zmesh passwd ...` here with argv[0] = "passwd".

#include <iosfwd>

namespace zmesh::auth {

// Returns the process exit code: 0 on success, 1 on failure (no password,
// mismatch, empty), 2 on a usage error. Not thread safe when reading a
// terminal (changes the terminal's mode); otherwise thread compatible.
int RunPasswdCommand(int argc, char** argv, std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace zmesh::auth

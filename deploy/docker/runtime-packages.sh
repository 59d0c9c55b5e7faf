#!/usr/bin/env bash
# runtime-packages.sh BINARY... — prints the Debian packages that provide the
# shared libraries the given binaries load (one per line, sorted). The
# Dockerfile's build stage runs it so that the runtime stage installs exactly
# those packages and nothing of the toolchain; it follows the binaries when
# their dependencies change instead of a hand-kept list going stale.
# Needs ldd and dpkg-query (any Debian system).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

libs=$(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
[ -n "$libs" ] || { echo "runtime-packages: no shared libraries found in $*" >&2; exit 1; }

for lib in $libs; do
  # dpkg knows the path it installed, which may be the /usr/lib or /lib
  # spelling (merged /usr): try the path as given, then as resolved.
  pkg=$(dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null ||
    dpkg-query -S "${lib#/usr}" 2>/dev/null || dpkg-query -S "/usr$lib" 2>/dev/null) ||
    { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
  echo "${pkg%%:*}"
done | sort -u

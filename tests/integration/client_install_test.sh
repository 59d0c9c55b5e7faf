#!/usr/bin/env bash
# Installs the client package (component "client") into a temporary prefix,
# builds examples/ against it with find_package(zmesh) and hello_zmesh.cc
# again with pkg-config, then runs hello_zmesh against a nats-server.
# usage: client_install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d /tmp/zmesh-install-test-XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then { kill -9 "$server_pid"; wait "$server_pid"; } 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --component client --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/include/zmesh/client.h"
test -x "$work/prefix/bin/zmesh"

cmake -S "$src/examples" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"

pcdir=$(dirname "$(find "$work/prefix" -name zmesh.pc | head -1)")
libdir=$(PKG_CONFIG_PATH="$pcdir" pkg-config --variable=libdir zmesh)
# shellcheck disable=SC2046
c++ -std=c++17 -o "$work/hello_pc" "$src/examples/hello_zmesh.cc" \
  $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs zmesh) -Wl,-rpath,"$libdir"

nats=${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}
"$nats" -a 127.0.0.1 -p -1 > "$work/nats.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/nats.log" | head -1)
  [ -n "$port" ] && break
  sleep 0.05
done
test -n "$port" || { cat "$work/nats.log"; exit 1; }

"$work/build/hello_zmesh" "nats://127.0.0.1:$port"
"$work/hello_pc" "nats://127.0.0.1:$port" > /dev/null
echo "client_install_test: OK (find_package and pkg-config builds ran against nats-server on port $port)"

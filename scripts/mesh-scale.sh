#!/usr/bin/env bash
# mesh-scale.sh — forms an N-node full mesh on 127.0.0.1 with one private
# ZooKeeper and reports how long it took and what it cost ZooKeeper.
#
#   scripts/mesh-scale.sh [N]        (default 256)
#
# Environment: BASE_PORT (default 20000: clients 20000.., peers 22000..,
# monitoring 24000..), ZK_PORT (default 12281), BIN_DIR (default build/bin),
# TIMEOUT_S (default 600), KEEP=1 leaves the cluster running (stop it with
# deploy/local-cluster.sh stop --state-dir <printed dir>).
#
# All nodes start at once (deploy/local-cluster.sh start), each with one I/O
# thread. "Formed" means every node's /peerz lists N-1 peers, each linked and
# synced. The ZooKeeper figures come from its `srvr` four-letter command
# (packets received/sent by the server) before the nodes start and once the
# mesh is formed. Not a test: it prints a report and exits non-zero only if
# the mesh did not form in time.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-256}
BASE_PORT=${BASE_PORT:-20000}
ZK_PORT=${ZK_PORT:-12281}
BIN_DIR=${BIN_DIR:-$PWD/build/bin}
TIMEOUT_S=${TIMEOUT_S:-600}
STATE_DIR=$(mktemp -d /tmp/zmesh-scale.XXXXXX)

stop() {
  if [ "${KEEP:-0}" != 1 ]; then
    deploy/local-cluster.sh stop --state-dir "$STATE_DIR" >/dev/null 2>&1 || true
  fi
}
trap stop EXIT

zk_packets() {  # "received sent"
  python3 - "$ZK_PORT" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"srvr")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
rx = tx = 0
for line in data.decode().splitlines():
    if line.startswith("Received:"):
        rx = int(line.split()[1])
    if line.startswith("Sent:"):
        tx = int(line.split()[1])
print(rx, tx)
EOF
}

ulimit -n 65536 2>/dev/null || true
echo "mesh-scale: $N nodes, state in $STATE_DIR"
deploy/local-cluster.sh start --state-dir "$STATE_DIR" --nodes "$N" --base-port "$BASE_PORT" --zk-port "$ZK_PORT" --bin "$BIN_DIR" \
  --wait "$TIMEOUT_S" >"$STATE_DIR/start.log" 2>&1 &
start_pid=$!
t0=$(date +%s.%N)
formed=0
python3 - "$N" "$BASE_PORT" "$TIMEOUT_S" "$t0" <<'EOF' || formed=$?
import json, sys, time, urllib.request
n, base, timeout, t0 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def formed(i):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 4000 + i}/peerz", timeout=5) as r:
            peers = json.load(r).get("peers", [])
    except Exception:
        return 0
    return sum(1 for p in peers if p.get("linked") and p.get("synced"))
done = set()
last = 0
while time.time() - t0 < timeout:
    for i in range(n):
        if i not in done and formed(i) == n - 1:
            done.add(i)
    if len(done) == n:
        print(f"mesh-scale: full mesh of {n} nodes ({n * (n - 1) // 2} links) formed in {time.time() - t0:.1f} s")
        sys.exit(0)
    if time.time() - last > 10:
        last = time.time()
        print(f"mesh-scale: {time.time() - t0:.0f} s: {len(done)} of {n} nodes fully linked", flush=True)
    time.sleep(1)
print(f"mesh-scale: NOT formed within {timeout:.0f} s: {len(done)} of {n} nodes fully linked")
sys.exit(1)
EOF
wait "$start_pid" || true
read -r rx tx < <(zk_packets)
links=$((N * (N - 1) / 2))
# Each join fires the membership watch of every node already there, which
# re-reads the children and reads the new node's data: so the figure that
# scales is packets per (joining node, node already there) pair.
echo "mesh-scale: ZooKeeper packets for the whole formation: received $rx, sent $tx;" \
     "per join $((rx / N)) received / $((tx / N)) sent (about $(python3 -c "print(f'{$rx / $links:.1f}')") received per node pair)"
rss_kb=0
for pidf in "$STATE_DIR"/node*/pid; do
  pid=$(awk 'NR == 1 {print $1}' "$pidf" 2>/dev/null || true)
  [ -n "$pid" ] && [ -r "/proc/$pid/status" ] && rss_kb=$((rss_kb + $(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")))
done
echo "mesh-scale: RSS of all nodes $((rss_kb / 1024)) MiB, $((rss_kb / N)) KiB per node"
# What the formed mesh costs at rest (no clients): the CPU all nodes use
# over 10 s, 10 s after it formed (utime + stime from /proc/<pid>/stat).
if [ "$formed" = 0 ]; then
  sleep 10
  python3 - "$N" "$STATE_DIR" <<'EOF'
import glob, os, sys, time
n, state = int(sys.argv[1]), sys.argv[2]
pids = [open(f).read().split()[0] for f in glob.glob(f"{state}/node*/pid")]
def ticks():
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total, time.monotonic()
t0, w0 = ticks()
time.sleep(10)
t1, w1 = ticks()
share = (t1 - t0) / os.sysconf("SC_CLK_TCK") / (w1 - w0) * 100
print(f"mesh-scale: at rest, all nodes together use {share:.1f} % of one core ({share / n:.3f} % per node)")
EOF
fi
exit "$formed"

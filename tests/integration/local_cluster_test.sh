#!/usr/bin/env bash
# deploy/local-cluster.sh end to end: start a 3-node cluster (private
# ZooKeeper) in a temporary state dir on free loopback ports, roll it with
# `rolling-restart` (each node SIGTERMed, restarted on the same ports, and
# the mesh healthy again before the next), then check that every node runs
# as a new process and reports /healthz 200, and stop it.
# usage: local_cluster_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
src=$1
bin=$2
state=$(mktemp -d /tmp/zmesh-local-cluster-test-XXXXXX)
lc=("$src/deploy/local-cluster.sh")
fail() { echo "local_cluster_test: FAIL: $*" >&2; exit 1; }
cleanup() {
  "${lc[@]}" stop --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

# Free ports: the script refuses to start on a busy one (preflight), so try
# a few random bases; ports P..P+2, P+2000.., P+4000.. and the ZooKeeper port.
started=0
for _ in 1 2 3 4 5; do
  base=$((20000 + RANDOM % 9000))
  if "${lc[@]}" start --state-dir "$state" --base-port "$base" --zk-port $((base + 6000)) --bin "$bin" \
      >"$state/start.log" 2>&1; then
    started=1
    break
  fi
  "${lc[@]}" stop --state-dir "$state" >/dev/null 2>&1 || true
done
[ "$started" = 1 ] || { cat "$state/start.log" >&2; fail "could not start a cluster in 5 attempts"; }

pids_before=$(cat "$state"/node{1,2,3}/pid | cut -d' ' -f1)
"${lc[@]}" rolling-restart --state-dir "$state" >"$state/roll.log" 2>&1 ||
  { cat "$state/roll.log" >&2; fail "rolling-restart failed"; }
grep -q "rolling restart done" "$state/roll.log" || fail "no completion line"
# One node at a time: each was back (mesh healthy) before the next went down.
[ "$(grep -c 'SIGTERM' "$state/roll.log")" = 3 ] || fail "expected 3 nodes restarted: $(cat "$state/roll.log")"
[ "$(grep -c "every node's /healthz is 200" "$state/roll.log")" = 3 ] || fail "a node came back without a healthy mesh"
pids_after=$(cat "$state"/node{1,2,3}/pid | cut -d' ' -f1)
for p in $pids_after; do
  if grep -qx "$p" <<<"$pids_before"; then fail "pid $p was not restarted"; fi
done
"${lc[@]}" status --state-dir "$state" >"$state/status.log" || { cat "$state/status.log" >&2; fail "status after the roll"; }
[ "$(grep -c 'healthz 200' "$state/status.log")" = 3 ] || { cat "$state/status.log" >&2; fail "not every node healthy"; }
# Settings of a running cluster cannot be changed by a roll.
if "${lc[@]}" rolling-restart --state-dir "$state" --nodes 4 >/dev/null 2>&1; then fail "--nodes accepted"; fi
echo "local_cluster_test: OK ($(grep -c SIGTERM "$state/roll.log") nodes rolled)"

#!/usr/bin/env bash
# Subscribe + Flush: what the interest barrier costs and what it buys.
# natscheck's subflush scenario (the standard Go client) subscribes on node 1,
# flushes, and at once publishes on nodes 2 and 3, ROUNDS times; it reports
# the Flush latency (p50, p99) and the messages lost. Runs against a 3-node
# zmesh mesh (deploy/local-cluster.sh, loopback) and a 3-node nats-server
# cluster (routes on loopback), REPS times each, alternating.
#
#   scripts/bench-subflush.sh [ROUNDS] [REPS]        (after a build into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1000}
reps=${2:-3}
natscheck=${NATSCHECK:-build/bin/natscheck}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  deploy/local-cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

deploy/local-cluster.sh start >/dev/null
for i in 1 2 3; do
  nats-server -a 127.0.0.1 -p $((14221 + i)) -cluster "nats://127.0.0.1:$((16221 + i))" -cluster_name bench \
    -routes nats://127.0.0.1:16222,nats://127.0.0.1:16223,nats://127.0.0.1:16224 >"$work/nats$i.log" 2>&1 &
  pids+=($!)
done
# Bounded wait for the routes: each server logs its two route connections.
for _ in $(seq 100); do
  n=$(cat "$work"/nats*.log | grep -c "Route connection created" || true)
  [ "$n" -ge 6 ] && break
  sleep 0.1
done

run() { # NAME SUB PUB1 PUB2
  # natscheck exits non-zero when messages were lost: that is a result here.
  set +o pipefail
  "$natscheck" subflush --msgs="$rounds" --timeout=10 --deadline=300 --sub-url="$2" --pub-url="$3,$4" 2>/dev/null |
    tail -n 1 | python3 -c 'import json,sys; j=json.load(sys.stdin); print(sys.argv[1], j.get("flush_p50_us"), j.get("flush_p99_us"), j.get("lost"), j.get("published"))' "$1" || true
}
echo "server flush_p50_us flush_p99_us lost published"
for _ in $(seq "$reps"); do
  run nats-server nats://127.0.0.1:14222 nats://127.0.0.1:14223 nats://127.0.0.1:14224
  run zmesh nats://127.0.0.1:4222 nats://127.0.0.1:4223 nats://127.0.0.1:4224
done

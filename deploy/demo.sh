#!/usr/bin/env bash
# demo.sh — shows a message crossing the mesh started by deploy/local-cluster.sh:
# a subscriber on the first node, a publisher on the last one.
#
#   deploy/local-cluster.sh start && deploy/demo.sh [--state-dir D] [--bin DIR] [--subject S] [--timeout S]
#
# Uses the zmesh CLI (zmesh sub / zmesh pub / zmesh nodes) from --bin (default:
# the directory the cluster's zmesh-server came from). Without a usable CLI it
# falls back to speaking the NATS protocol itself over bash's /dev/tcp.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT

STATE_DIR="$REPO_ROOT/.local-cluster"
CLI_DIR=""
SUBJECT="demo.greeting"
TIMEOUT_S=15
WORK=""
SUB_PID=""

log() { printf 'demo: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-0}"
}

parse_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      --state-dir) [ $# -ge 2 ] || die "$1 needs a value"; STATE_DIR=$(abspath "$2"); shift ;;
      --bin) [ $# -ge 2 ] || die "$1 needs a value"; CLI_DIR=$(abspath "$2"); shift ;;
      --subject) [ $# -ge 2 ] || die "$1 needs a value"; SUBJECT=$2; shift ;;
      --timeout) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--timeout wants seconds"; TIMEOUT_S=$2; shift ;;
      -h|--help) usage 0 ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
  done
  [[ $SUBJECT =~ ^[A-Za-z0-9_.-]+$ ]] || die "--subject: letters, digits, '.', '_' and '-' only"
}

# The ports and binaries of the running cluster, as local-cluster.sh recorded them.
load_cluster() {
  local env="$STATE_DIR/cluster.env"
  [ -f "$env" ] || die "no cluster in $STATE_DIR; run deploy/local-cluster.sh start first"
  NODES="" BASE_PORT="" ZK_PORT="" ZK_ROOT="" BIN_DIR="" HTTP=""
  # shellcheck source=/dev/null
  . "$env"
  [ -n "$CLI_DIR" ] || CLI_DIR=$BIN_DIR
  [ "$NODES" -ge 2 ] || die "the demo needs at least 2 nodes (the cluster has $NODES)"
  "$SCRIPT_DIR/local-cluster.sh" status --state-dir "$STATE_DIR" >/dev/null ||
    die "the cluster is not fully up; see: deploy/local-cluster.sh status"
}

cleanup() {
  # Only the subscriber this script started, by its PID.
  if [ -n "$SUB_PID" ] && kill -0 "$SUB_PID" 2>/dev/null; then kill "$SUB_PID" 2>/dev/null || true; fi
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}

# The CLI is usable when `zmesh sub --help` knows the flags this demo uses.
cli_usable() {
  [ -x "$CLI_DIR/zmesh" ] || return 1
  local help
  help=$("$CLI_DIR/zmesh" sub --help 2>&1 || true)
  grep -q -- '--raw' <<<"$help" && grep -q -- '--count' <<<"$help" && grep -q -- '--servers' <<<"$help"
}

# ---- with the zmesh CLI ----
demo_cli() { # SUB_URL PUB_URL
  local sub_url=$1 pub_url=$2 zmesh="$CLI_DIR/zmesh" attempt=0 end
  # Keeps the CLI's node cache out of ~/.cache/zmesh.
  local cache=(--node_cache="$WORK/node-cache")

  log "live nodes in ZooKeeper (zmesh nodes --zk=127.0.0.1:$ZK_PORT --zk_root=$ZK_ROOT):"
  "$zmesh" nodes --zk="127.0.0.1:$ZK_PORT" --zk_root="$ZK_ROOT" "${cache[@]}" | sed 's/^/  /' >&2 ||
    log "(zmesh nodes failed; continuing)"

  "$zmesh" sub --servers="$sub_url" "${cache[@]}" --count=1 --raw "$SUBJECT" >"$WORK/received" 2>"$WORK/sub.err" &
  SUB_PID=$!
  log "node 1: zmesh sub --servers=$sub_url --count=1 --raw $SUBJECT"

  wait_for_interest

  # Delivery is at most once: a message published before the subscription's
  # interest has reached the publisher's node is dropped, not queued. So the
  # publisher repeats (a new message every second) until the subscriber has
  # its one message.
  end=$((SECONDS + TIMEOUT_S))
  while kill -0 "$SUB_PID" 2>/dev/null; do
    if [ "$SECONDS" -ge "$end" ]; then show_sub_err; die "nothing arrived within ${TIMEOUT_S}s"; fi
    attempt=$((attempt + 1))
    log "node $NODES: zmesh pub --servers=$pub_url $SUBJECT 'hello from node $NODES (#$attempt)'"
    if ! "$zmesh" pub --servers="$pub_url" "${cache[@]}" "$SUBJECT" "hello from node $NODES (#$attempt)" \
      >/dev/null 2>"$WORK/pub.err"; then
      cat "$WORK/pub.err" >&2
      die "zmesh pub failed"
    fi
    wait_for_exit "$SUB_PID" 1 && break
  done
  if ! wait "$SUB_PID"; then SUB_PID=""; show_sub_err; die "zmesh sub failed"; fi
  SUB_PID=""
  [ -s "$WORK/received" ] || die "zmesh sub exited without a message"
  report "$(head -n 1 "$WORK/received")"
}

# Best effort, with monitoring on: wait until the last node has learned the
# first node's interest (GET /subsz?test=SUBJECT counts it as "remote").
wait_for_interest() {
  [ "${HTTP:-0}" = 1 ] || return 0
  local port=$((BASE_PORT + 4000 + NODES - 1)) n=100
  while [ "$n" -gt 0 ]; do
    if http_body "$port" "/subsz?test=$SUBJECT" | grep -Eq '"remote": *[1-9]'; then
      log "node $NODES: /subsz?test=$SUBJECT shows node 1's interest (it crossed the mesh in the other direction)"
      local security
      security=$(http_body "$port" /peerz | grep -o '"security": *"[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
      [ -n "$security" ] && log "node $NODES: peer links are $security (GET /peerz)"
      return 0
    fi
    n=$((n - 1))
    sleep 0.05
  done
}

http_body() { # PORT PATH -> the response body
  {
    exec 5<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&5
    timeout 2 cat <&5 | sed '1,/^\r\{0,1\}$/d'
    exec 5<&-
  } 2>/dev/null
}

show_sub_err() { [ -s "$WORK/sub.err" ] && { log "zmesh sub said:"; cat "$WORK/sub.err" >&2; }; true; }

wait_for_exit() { # PID SECONDS -> 0 once the process is gone
  local n=$(($2 * 20))
  while kill -0 "$1" 2>/dev/null; do
    [ "$n" -gt 0 ] || return 1
    n=$((n - 1))
    sleep 0.05
  done
}

# ---- fallback: the NATS protocol by hand ----
# Reads lines from fd 3 until one matches PATTERN, answering server PINGs.
nats_expect() { # PATTERN SECONDS -> prints the matching line
  local line end=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$end" ]; do
    IFS= read -r -t 1 line <&3 || continue
    line=${line%$'\r'}
    # shellcheck disable=SC2254  # $1 is a glob pattern on purpose
    case $line in
      PING) printf 'PONG\r\n' >&3 ;;
      -ERR*) die "server error: $line" ;;
      $1) printf '%s\n' "$line"; return 0 ;;
    esac
  done
  return 1
}

demo_tcp() { # SUB_PORT PUB_PORT
  local sub_port=$1 pub_port=$2 attempt=0 end payload
  log "the zmesh CLI is not usable here; speaking NATS over /dev/tcp instead"
  exec 3<>"/dev/tcp/127.0.0.1/$sub_port" || die "cannot connect to 127.0.0.1:$sub_port"
  nats_expect 'INFO *' 5 >/dev/null || die "no INFO from 127.0.0.1:$sub_port"
  printf 'CONNECT {"verbose":false,"pedantic":false,"name":"demo-sub"}\r\nSUB %s 1\r\nPING\r\n' "$SUBJECT" >&3
  nats_expect PONG 5 >/dev/null || die "no PONG from 127.0.0.1:$sub_port"
  log "node 1: SUB $SUBJECT on 127.0.0.1:$sub_port"
  wait_for_interest

  end=$((SECONDS + TIMEOUT_S))
  while [ "$SECONDS" -lt "$end" ]; do
    attempt=$((attempt + 1))
    payload="hello from node $NODES (#$attempt)"
    # A fresh publisher connection per attempt keeps fd 3 the only reader.
    (
      exec 3<>"/dev/tcp/127.0.0.1/$pub_port" || exit 1
      nats_expect 'INFO *' 5 >/dev/null || exit 1
      printf 'CONNECT {"verbose":false,"pedantic":false,"name":"demo-pub"}\r\nPUB %s %d\r\n%s\r\nPING\r\n' \
        "$SUBJECT" "${#payload}" "$payload" >&3
      nats_expect PONG 5 >/dev/null
    ) || die "cannot publish on 127.0.0.1:$pub_port"
    log "node $NODES: PUB $SUBJECT '$payload' on 127.0.0.1:$pub_port"
    if nats_expect "MSG $SUBJECT 1 *" 1 >/dev/null; then
      IFS= read -r -t 2 payload <&3 || die "MSG without a payload"
      report "${payload%$'\r'}"
      exec 3<&-
      return 0
    fi
  done
  die "nothing arrived within ${TIMEOUT_S}s"
}

report() { # PAYLOAD
  echo "node 1 received: $1"
  log "the message crossed the mesh: published on node $NODES (port $((BASE_PORT + NODES - 1))), delivered to a subscriber on node 1 (port $BASE_PORT)"
}

main() {
  parse_args "$@"
  load_cluster
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/zmesh-demo.XXXXXX")
  trap cleanup EXIT
  local sub_port=$BASE_PORT pub_port=$((BASE_PORT + NODES - 1))
  if cli_usable; then
    demo_cli "nats://127.0.0.1:$sub_port" "nats://127.0.0.1:$pub_port"
  else
    demo_tcp "$sub_port" "$pub_port"
  fi
}

main "$@"

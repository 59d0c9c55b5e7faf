#!/usr/bin/env bash
# local-cluster.sh — a private ZooKeeper plus N zmesh-server nodes on 127.0.0.1.
#
#   deploy/local-cluster.sh start  [options]   start (or complete) the cluster; prints the client URLs
#   deploy/local-cluster.sh status [options]   each process alive/dead, each node's /healthz
#   deploy/local-cluster.sh stop   [options]   SIGTERM the recorded PIDs (nodes, then ZooKeeper)
#   deploy/local-cluster.sh rolling-restart [--bin DIR]
#                                              restart the nodes one at a time the way
#                                              docs/operations.md §9 says (an upgrade with --bin)
#
# Options (start records them in the state dir; status, stop and rolling-restart
# use the recorded ones, so they need at most --state-dir; rolling-restart
# takes --bin to move the nodes to other binaries):
#   --nodes N          number of nodes (default 3)
#   --base-port P      node i (1..N) listens for clients on P+i-1, for peers on P+2000+i-1 and
#                      for monitoring on P+4000+i-1 (default 4222: 4222.., 6222.., 8222..)
#   --zk-port P        ZooKeeper client port (default 2181)
#   --zk-root PATH     mesh root in ZooKeeper (default /zmesh/default)
#   --threads N        I/O threads per node (default 1: N nodes share this machine's cores)
#   --state-dir D      where pids, logs, the secret and ZooKeeper's data live (default <repo>/.local-cluster)
#   --bin DIR          directory holding zmesh-server (default <repo>/build/bin)
#   --wait S           seconds to wait for each process to come up or go down (default 30)
#   --no-http          do not pass --http_listen (status then shows no /healthz)
#
# Everything binds to 127.0.0.1. ZooKeeper is started as described in
# shared/ZOOKEEPER.md Part 2 (Debian's zookeeper.jar + slf4j-simple; no
# zkServer.sh, nothing in /etc or /var). stop signals only the PIDs that start
# recorded, after checking each one is still the very process started (PID and
# start time), so it can never hit an unrelated process that reused a PID.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT

# ---- defaults (start may override them; status/stop take them from cluster.env) ----
NODES=3
BASE_PORT=4222
ZK_PORT=2181
ZK_ROOT=/zmesh/default
THREADS=1
STATE_DIR="$REPO_ROOT/.local-cluster"
BIN_DIR="$REPO_ROOT/build/bin"
WAIT_S=30
HTTP=1
GIVEN=()  # names of the options given on the command line, to compare with a running cluster

# ZooKeeper: tick 500 ms lets nodes negotiate the 4 s session the nodes ask for
# (ZooKeeper clamps to 2..20 ticks).
readonly ZK_TICK_MS=500
readonly ZK_SESSION_TIMEOUT_MS=4000
readonly ZK_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
readonly ZK_JVM=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn)
# Local nodes leave quickly: the production lame duck (2 s + 30 s) would make
# every `stop` take half a minute.
readonly LAME_DUCK_FLAGS=(--lame_duck_grace_ms=300 --lame_duck_duration_ms=1000)

log() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-0}"
}

# An absolute path for a user-given one, relative to the caller's cwd.
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# A number >= MIN for OPTION, or die.
want_uint() { # OPTION VALUE MIN
  if ! is_uint "$2" || [ "$2" -lt "$3" ] || [ "$2" -gt 65535 ]; then die "$1 wants a number >= $3"; fi
  echo "$2"
}

parse_args() {
  while [ $# -gt 0 ]; do
    local opt=$1 val=""
    case $opt in
      --*=*) val=${opt#*=}; opt=${opt%%=*} ;;
      --no-http|-h|--help) ;;
      --*) [ $# -ge 2 ] || die "$opt needs a value"; val=$2; shift ;;
      *) die "unexpected argument '$opt' (see --help)" ;;
    esac
    shift
    case $opt in
      --nodes) NODES=$(want_uint "$opt" "$val" 1) ;;
      --base-port) BASE_PORT=$(want_uint "$opt" "$val" 1) ;;
      --zk-port) ZK_PORT=$(want_uint "$opt" "$val" 1) ;;
      --zk-root) [[ $val == /* ]] || die "--zk-root must start with /"; ZK_ROOT=$val ;;
      --threads) THREADS=$(want_uint "$opt" "$val" 1) ;;
      --state-dir) STATE_DIR=$(abspath "$val") ;;
      --bin) BIN_DIR=$(abspath "$val") ;;
      --wait) WAIT_S=$(want_uint "$opt" "$val" 1) ;;
      --no-http) HTTP=0 ;;
      -h|--help) usage 0 ;;
      *) die "unknown option $opt (see --help)" ;;
    esac
    GIVEN+=("$opt")
  done
  [ $((BASE_PORT + 4000 + NODES)) -le 65535 ] || die "--base-port $BASE_PORT leaves no room for $NODES nodes"
}

# ---- ports and paths of node i (1-based) ----
client_port() { echo $((BASE_PORT + $1 - 1)); }
peer_port() { echo $((BASE_PORT + 2000 + $1 - 1)); }
http_port() { echo $((BASE_PORT + 4000 + $1 - 1)); }
node_dir() { echo "$STATE_DIR/node$1"; }
zk_dir() { echo "$STATE_DIR/zk"; }

# ---- recorded settings ----
# cluster.env pins the settings a running cluster was started with, so that
# status and stop (and a second start) talk about the same ports and PIDs.
save_env() {
  {
    echo "# written by deploy/local-cluster.sh start; read by status, stop and deploy/demo.sh"
    printf 'NODES=%q\nBASE_PORT=%q\nZK_PORT=%q\nZK_ROOT=%q\nTHREADS=%q\nBIN_DIR=%q\nHTTP=%q\n' \
      "$NODES" "$BASE_PORT" "$ZK_PORT" "$ZK_ROOT" "$THREADS" "$BIN_DIR" "$HTTP"
  } >"$STATE_DIR/cluster.env"
}

# Loads cluster.env over the current settings (status, stop, and start while
# something still runs use the recorded ones).
load_env() {
  local f="$STATE_DIR/cluster.env"
  [ -f "$f" ] || return 1
  # shellcheck source=/dev/null
  . "$f"
}

# start on a running cluster: a setting given on the command line that
# contradicts the recorded one is an error, since silently using other ports
# than the running cluster's would make status and stop lie.
check_given() { # the values given on the command line, in save_env's order
  local n=$1 b=$2 z=$3 r=$4 t=$5 d=$6 h=$7 opt
  for opt in "${GIVEN[@]+"${GIVEN[@]}"}"; do
    case $opt in
      --nodes) [ "$n" = "$NODES" ] || die "the cluster in $STATE_DIR runs with --nodes $NODES; stop it first" ;;
      --base-port) [ "$b" = "$BASE_PORT" ] || die "the cluster in $STATE_DIR runs with --base-port $BASE_PORT; stop it first" ;;
      --zk-port) [ "$z" = "$ZK_PORT" ] || die "the cluster in $STATE_DIR runs with --zk-port $ZK_PORT; stop it first" ;;
      --zk-root) [ "$r" = "$ZK_ROOT" ] || die "the cluster in $STATE_DIR runs with --zk-root $ZK_ROOT; stop it first" ;;
      --threads) [ "$t" = "$THREADS" ] || die "the cluster in $STATE_DIR runs with --threads $THREADS; stop it first" ;;
      --bin) [ "$d" = "$BIN_DIR" ] || die "the cluster in $STATE_DIR runs binaries from $BIN_DIR; stop it first" ;;
      --no-http) [ "$h" = "$HTTP" ] || die "the cluster in $STATE_DIR runs with monitoring on; stop it first" ;;
    esac
  done
}

# ---- processes ----
# The start time (clock ticks since boot, field 22 of /proc/PID/stat) makes
# "PID + start time" unique for the machine's uptime: a PID that was reused by
# another process does not match, so we never signal a stranger.
proc_starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the command name may contain spaces and parentheses
  # shellcheck disable=SC2086  # split the fields on purpose
  set -- $stat
  echo "${20}"
}

# Alive = the recorded PID still runs as the recorded process and is not a
# zombie (kill -0 succeeds on a zombie we are not the parent of).
pid_alive() { # PIDFILE
  local pid start now state
  [ -f "$1" ] || return 1
  read -r pid start <"$1" || return 1
  now=$(proc_starttime "$pid") || return 1
  [ "$now" = "$start" ] || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "${state:0:1}" != Z ]
}

recorded_pid() { local pid _; read -r pid _ <"$1"; echo "$pid"; }

# Starts a command in its own session (so a closed terminal or a Ctrl-C in it
# does not reach it) with its output appended to LOG, and records PID + start
# time. setsid forks only when it is a process group leader, which a
# background job of a shell without job control never is: $! is the server's
# own PID. With job control on ($- has m) that would not hold, so refuse.
spawn() { # PIDFILE LOG CMD...
  local pidfile=$1 logfile=$2 pid start
  shift 2
  [[ $- != *m* ]] || die "job control is on; run this script as a program, not sourced"
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  pid=$!
  start=$(proc_starttime "$pid") || { echo "$pid ?" >"$pidfile"; return 0; }
  echo "$pid $start" >"$pidfile"
}

# SIGTERM once (a second one would cut a node's lame duck short), so that
# several processes can wind down at the same time.
term_pid() { # PIDFILE
  if pid_alive "$1"; then kill -TERM "$(recorded_pid "$1")" 2>/dev/null || true; fi
}

# After term_pid: a bounded wait, then SIGKILL — only while the PID is still ours.
reap_pid() { # NAME PIDFILE END_SECONDS
  local name=$1 pidfile=$2 end=$3 pid
  [ -f "$pidfile" ] || return 0
  pid=$(recorded_pid "$pidfile")
  if wait_gone "$pidfile" "$end"; then
    log "$name: stopped (pid $pid)"
  else
    log "$name: pid $pid still running after ${WAIT_S}s; sending SIGKILL"
    if pid_alive "$pidfile"; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait_gone "$pidfile" $((SECONDS + 5)) || die "$name: pid $pid survived SIGKILL"
    log "$name: killed (pid $pid)"
  fi
  rm -f "$pidfile"
}

wait_gone() { # PIDFILE END_SECONDS
  local end=$2
  while pid_alive "$1"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# ---- tiny TCP clients (bash /dev/tcp: no nc or curl needed) ----
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

zk4() { # PORT WORD -> the four-letter word's answer
  { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s' "$2" >&3 && timeout 2 cat <&3; exec 3<&-; } 2>/dev/null
}
zk_mode() { zk4 "$1" srvr | sed -n 's/^Mode: //p'; }

# The first line a node sends: "INFO {...}" once it accepts clients.
nats_info() { # PORT
  local line=""
  { exec 3<>"/dev/tcp/127.0.0.1/$1" && IFS= read -r -t 2 line <&3; exec 3<&-; } 2>/dev/null || true
  line=${line%$'\r'}
  [[ $line == "INFO "* ]] && printf '%s\n' "$line"
}

# GET PATH on 127.0.0.1:PORT; prints "STATUS BODY".
http_get() { # PORT PATH
  local status="" body="" line
  {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    IFS=' ' read -r -t 2 _ status _ <&3 || true
    while IFS= read -r -t 2 line <&3; do [ "${line%$'\r'}" = "" ] && break; done  # headers
    body=$(timeout 2 cat <&3 | tr -s ' \r\n' ' ')
    exec 3<&-
  } 2>/dev/null
  [ -n "$status" ] || return 1
  printf '%s %s\n' "$status" "${body% }"
}

show_log_tail() { # NAME LOG
  log "---- last lines of $2 ----"
  tail -n 25 "$2" >&2 2>/dev/null || true
  log "---- end of $1's log ----"
}

# ---- ZooKeeper ----
zk_write_cfg() {
  local d
  d=$(zk_dir)
  mkdir -p "$d/data"
  cat >"$d/zoo.cfg" <<EOF
# written by deploy/local-cluster.sh; see shared/ZOOKEEPER.md Part 2
tickTime=$ZK_TICK_MS
initLimit=10
syncLimit=5
dataDir=$d/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,mntr,cons
EOF
}

zk_start() {
  local d mode end
  d=$(zk_dir)
  if pid_alive "$d/pid"; then
    log "zookeeper: already running (pid $(recorded_pid "$d/pid"))"
    return 0
  fi
  command -v java >/dev/null || die "java not found (run scripts/install-deps.sh: default-jre-headless)"
  local jar
  for jar in ${ZK_CP//:/ }; do
    [ -r "$jar" ] || die "$jar missing (run scripts/install-deps.sh: zookeeper, libslf4j-java)"
  done
  # A fresh ZooKeeper: old data would resurrect the previous run's sessions and
  # their ephemeral znodes for a session timeout.
  rm -rf "$d/data"
  zk_write_cfg
  [ -f "$d/zk.log" ] && mv -f "$d/zk.log" "$d/zk.log.prev"
  spawn "$d/pid" "$d/zk.log" java "${ZK_JVM[@]}" -cp "$ZK_CP" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg"
  # Readiness is a Mode: line from srvr; ruok says imok before it serves.
  end=$((SECONDS + WAIT_S))
  while :; do
    mode=$(zk_mode "$ZK_PORT")
    [ -n "$mode" ] && break
    if ! pid_alive "$d/pid"; then
      show_log_tail zookeeper "$d/zk.log"
      die "zookeeper exited during start"
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      show_log_tail zookeeper "$d/zk.log"
      die "zookeeper did not serve on 127.0.0.1:$ZK_PORT within ${WAIT_S}s"
    fi
    sleep 0.1
  done
  log "zookeeper: serving on 127.0.0.1:$ZK_PORT ($mode, pid $(recorded_pid "$d/pid"))"
}

# ---- nodes ----
# Flags that this build of zmesh-server knows, so the script works with a
# binary from before or after a flag was added (e.g. the lame-duck ones).
SERVER_FLAGS=""
server_supports() { # FLAG_NAME
  if [ -z "$SERVER_FLAGS" ]; then
    SERVER_FLAGS=$(timeout 10 "$BIN_DIR/zmesh-server" --helpfull 2>&1 || true)
  fi
  grep -q -- "-$1 " <<<"$SERVER_FLAGS"
}

ensure_secret() {
  local f="$STATE_DIR/cluster-secret"
  [ -s "$f" ] && { chmod 600 "$f"; return 0; }
  # 32 random bytes as hex; written under umask 077 so it is never readable by others.
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$f" && echo >>"$f")
  log "generated the cluster secret $f (mode 0600)"
}

# One flagfile per node: the exact configuration is on disk, and the command
# line doubles as an example of gflags' --flagfile format.
node_write_flags() { # I
  local i=$1 d
  d=$(node_dir "$i")
  {
    echo "# written by deploy/local-cluster.sh start"
    echo "--node_id=node$i"
    echo "--listen=127.0.0.1:$(client_port "$i")"
    echo "--peer_listen=127.0.0.1:$(peer_port "$i")"
    [ "$HTTP" = 1 ] && echo "--http_listen=127.0.0.1:$(http_port "$i")"
    echo "--zk=127.0.0.1:$ZK_PORT"
    echo "--zk_root=$ZK_ROOT"
    echo "--zk_session_timeout_ms=$ZK_SESSION_TIMEOUT_MS"
    echo "--cluster_secret_file=$STATE_DIR/cluster-secret"
    echo "--threads=$THREADS"
    echo "--ports_file=$d/ports.json"
    if server_supports lame_duck_duration_ms; then printf '%s\n' "${LAME_DUCK_FLAGS[@]}"; fi
  } >"$d/node.flags"
}

node_spawn() { # I
  local i=$1 d
  d=$(node_dir "$i")
  mkdir -p "$d"
  node_write_flags "$i"
  rm -f "$d/ports.json"
  [ -f "$d/node.log" ] && mv -f "$d/node.log" "$d/node.log.prev"
  spawn "$d/pid" "$d/node.log" "$BIN_DIR/zmesh-server" --flagfile="$d/node.flags"
}

# Ready = the ports file exists (written once the client port accepts) and a
# client connection gets the INFO line.
node_wait_ready() { # I END_SECONDS
  local i=$1 end=$2 d
  d=$(node_dir "$i")
  while :; do
    if [ -s "$d/ports.json" ] && nats_info "$(client_port "$i")" >/dev/null; then
      return 0
    fi
    if ! pid_alive "$d/pid"; then
      show_log_tail "node$i" "$d/node.log"
      die "node$i exited during start"
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      show_log_tail "node$i" "$d/node.log"
      die "node$i did not accept clients on 127.0.0.1:$(client_port "$i") within ${WAIT_S}s"
    fi
    sleep 0.1
  done
}

print_urls() {
  local i urls=""
  echo "zmesh local cluster ($NODES nodes) in $STATE_DIR"
  echo "  zookeeper  127.0.0.1:$ZK_PORT  root $ZK_ROOT"
  for i in $(seq 1 "$NODES"); do
    printf '  node%-3s    nats://127.0.0.1:%s' "$i" "$(client_port "$i")"
    [ "$HTTP" = 1 ] && printf '  http://127.0.0.1:%s/healthz' "$(http_port "$i")"
    printf '  log %s\n' "$(node_dir "$i")/node.log"
    urls+="${urls:+,}nats://127.0.0.1:$(client_port "$i")"
  done
  echo "servers: $urls"
}

# ---- commands ----
STARTED_NODES=""  # pidfiles of the nodes this invocation started (newline-separated)
STARTED_ZK=0

cmd_start() {
  local running=0 i end pf started=()
  local given=("$NODES" "$BASE_PORT" "$ZK_PORT" "$ZK_ROOT" "$THREADS" "$BIN_DIR" "$HTTP")
  mkdir -p "$STATE_DIR"
  # Something still running: complete that cluster, with its settings.
  # Nothing running: a fresh start with this command line's settings.
  if load_env && any_alive; then
    running=1
    check_given "${given[@]}"
  else
    NODES=${given[0]} BASE_PORT=${given[1]} ZK_PORT=${given[2]} ZK_ROOT=${given[3]}
    THREADS=${given[4]} BIN_DIR=${given[5]} HTTP=${given[6]}
  fi
  [ -x "$BIN_DIR/zmesh-server" ] ||
    die "$BIN_DIR/zmesh-server not found; build it (cmake --build build) or pass --bin DIR"
  if [ "$running" = 1 ] && all_alive; then
    log "already running"
    print_urls
    return 0
  fi
  [ "$running" = 1 ] && log "partly running: starting only the missing processes"
  save_env
  # A failed start stops what this invocation started (the logs stay), so a
  # retry begins from a known state; processes that were already running are
  # left alone.
  preflight_ports
  trap 'on_start_failure' EXIT
  if ! pid_alive "$(zk_dir)/pid"; then STARTED_ZK=1; fi
  zk_start
  ensure_secret
  # All missing nodes start at once: each one links to whichever nodes are
  # registered when it joins, so the order does not matter.
  for i in $(seq 1 "$NODES"); do
    pf="$(node_dir "$i")/pid"
    pid_alive "$pf" && continue
    node_spawn "$i"
    STARTED_NODES+="$pf"$'\n'
    started+=("$i")
  done
  end=$((SECONDS + WAIT_S))
  for i in "${started[@]+"${started[@]}"}"; do
    node_wait_ready "$i" "$end"
    log "node$i: accepting clients on 127.0.0.1:$(client_port "$i") (pid $(recorded_pid "$(node_dir "$i")/pid"))"
  done
  trap - EXIT
  print_urls
}

# Every port a process about to start will bind must be free; checked before
# anything starts, so a conflict costs nothing to undo.
preflight_ports() {
  local i p
  if ! pid_alive "$(zk_dir)/pid" && port_in_use "$ZK_PORT"; then
    die "port 127.0.0.1:$ZK_PORT is taken by another process (choose --zk-port)"
  fi
  for i in $(seq 1 "$NODES"); do
    pid_alive "$(node_dir "$i")/pid" && continue
    for p in "$(client_port "$i")" "$(peer_port "$i")" $([ "$HTTP" = 1 ] && http_port "$i"); do
      if port_in_use "$p"; then
        die "node$i: port 127.0.0.1:$p is taken by another process (choose --base-port)"
      fi
    done
  done
}

on_start_failure() {
  local rc=$?
  [ "$rc" -eq 0 ] && return
  trap - EXIT
  log "start failed; stopping what this start launched (logs are kept in $STATE_DIR)"
  if [ -n "$STARTED_NODES" ]; then stop_pidfiles "${STARTED_NODES%$'\n'}" || true; fi
  if [ "$STARTED_ZK" = 1 ]; then stop_pidfiles "$(zk_dir)/pid" || true; fi
  exit "$rc"
}

any_alive() {
  local i
  pid_alive "$(zk_dir)/pid" && return 0
  for i in $(seq 1 "$NODES"); do pid_alive "$(node_dir "$i")/pid" && return 0; done
  return 1
}

all_alive() {
  local i
  pid_alive "$(zk_dir)/pid" || return 1
  for i in $(seq 1 "$NODES"); do pid_alive "$(node_dir "$i")/pid" || return 1; done
}

cmd_stop() {
  local i end
  if ! load_env; then
    log "nothing recorded in $STATE_DIR; nothing to stop"
    return 0
  fi
  stop_pidfiles "$(node_pidfiles)"
  stop_pidfiles "$(zk_dir)/pid"
  log "stopped; logs are in $STATE_DIR"
}

node_pidfiles() {
  local i
  for i in $(seq 1 "$NODES"); do echo "$(node_dir "$i")/pid"; done
}

# Stops a group of recorded processes together: SIGTERM to all, then one
# shared bounded wait. Nodes go first as one group (their lame-duck waits
# overlap), ZooKeeper last so that each node can delete its znode on the way
# out. Pidfiles whose process is gone (or whose PID now belongs to another
# process) are only removed.
stop_pidfiles() { # newline-separated PIDFILEs
  local pf end name
  local -a files
  mapfile -t files <<<"$1"
  for pf in "${files[@]}"; do
    [ -f "$pf" ] || continue
    if pid_alive "$pf"; then
      term_pid "$pf"
    else
      log "$(pid_name "$pf"): not running (pid $(recorded_pid "$pf") is gone or now belongs to another process)"
      rm -f "$pf"
    fi
  done
  end=$((SECONDS + WAIT_S))
  for pf in "${files[@]}"; do
    name=$(pid_name "$pf")
    reap_pid "$name" "$pf" "$end"
  done
}

pid_name() { # PIDFILE -> node3 / zookeeper
  local d
  d=$(basename "$(dirname "$1")")
  [ "$d" = zk ] && d=zookeeper
  echo "$d"
}

cmd_status() {
  local i d alive=0 total state h mode
  if ! load_env; then
    echo "no cluster recorded in $STATE_DIR"
    return 3
  fi
  total=$((NODES + 1))
  d=$(zk_dir)
  if pid_alive "$d/pid"; then
    mode=$(zk_mode "$ZK_PORT")
    printf 'zookeeper  pid %-7s alive  127.0.0.1:%s  %s\n' "$(recorded_pid "$d/pid")" "$ZK_PORT" "${mode:-not serving}"
    alive=$((alive + 1))
  else
    printf 'zookeeper  %-11s dead   127.0.0.1:%s\n' "" "$ZK_PORT"
  fi
  for i in $(seq 1 "$NODES"); do
    d=$(node_dir "$i")
    if pid_alive "$d/pid"; then
      state="pid $(printf '%-7s' "$(recorded_pid "$d/pid")") alive"
      alive=$((alive + 1))
    else
      state="$(printf '%-11s' '') dead "
    fi
    h=""
    if [ "$HTTP" = 1 ]; then
      h=$(http_get "$(http_port "$i")" /healthz || true)
      h="healthz ${h:-unreachable}"
    fi
    printf 'node%-6s %s  nats://127.0.0.1:%s  %s\n' "$i" "$state" "$(client_port "$i")" "$h"
  done
  [ "$alive" -eq "$total" ] && return 0
  [ "$alive" -eq 0 ] && return 3
  return 1
}

# One node at a time, the documented way (docs/operations.md §9): SIGTERM
# (lame duck: its znode goes, clients move to the other nodes), wait for the
# exit, start it again with the same ports and flags (from --bin when given:
# an upgrade), wait until it accepts clients, then until every node's
# /healthz answers 200 (joined, linked and synced with everyone) before the
# next one.
cmd_rolling_restart() {
  local i d end given_bin=$BIN_DIR gave_bin=0 opt
  for opt in "${GIVEN[@]+"${GIVEN[@]}"}"; do
    case $opt in
      --bin) gave_bin=1 ;;
      --wait|--state-dir) ;;
      *) die "rolling-restart keeps the cluster's settings; only --bin, --wait and --state-dir apply" ;;
    esac
  done
  load_env || die "no cluster recorded in $STATE_DIR; start one first"
  [ "$gave_bin" = 1 ] && BIN_DIR=$given_bin
  [ -x "$BIN_DIR/zmesh-server" ] || die "$BIN_DIR/zmesh-server not found"
  [ "$HTTP" = 1 ] || die "rolling-restart waits for /healthz; this cluster runs with --no-http"
  all_alive || die "not every process of the cluster runs (see status); start it first"
  mesh_wait_healthy $((SECONDS + WAIT_S)) || die "the mesh is not healthy before the restart (see status)"
  save_env  # the binaries the nodes run from now on
  for i in $(seq 1 "$NODES"); do
    d=$(node_dir "$i")
    log "node$i: SIGTERM (lame duck: clients move to the other nodes)"
    term_pid "$d/pid"
    reap_pid "node$i" "$d/pid" $((SECONDS + WAIT_S))
    node_spawn "$i"
    end=$((SECONDS + WAIT_S))
    node_wait_ready "$i" "$end"
    mesh_wait_healthy "$end" || die "node$i: the mesh did not become healthy within ${WAIT_S}s (see status and $d/node.log)"
    log "node$i: back (pid $(recorded_pid "$d/pid")); every node's /healthz is 200"
  done
  log "rolling restart done"
}

# Every node's /healthz answers 200, checked until END_SECONDS.
mesh_wait_healthy() { # END_SECONDS
  local end=$1 i ok
  while :; do
    ok=1
    for i in $(seq 1 "$NODES"); do
      case $(http_get "$(http_port "$i")" /healthz || true) in
        200\ *) ;;
        *) ok=0; break ;;
      esac
    done
    [ "$ok" = 1 ] && return 0
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

main() {
  [ $# -ge 1 ] || usage 2
  local cmd=$1
  shift
  parse_args "$@"
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    rolling-restart) cmd_rolling_restart ;;
    -h|--help|help) usage 0 ;;
    *) die "unknown command '$cmd' (start|stop|status|rolling-restart)" ;;
  esac
}

main "$@"

#!/usr/bin/env bash
# lint.sh — checks everything under deploy/ that can be checked without a
# Docker engine or a systemd machine:
#
#   deploy/lint.sh [--bin DIR]     (DIR holds a built zmesh-server; default <repo>/build/bin)
#
#   shell      bash -n and shellcheck on every script in deploy/
#   flags      every --flag in the flagfiles, the compose file and the
#              Dockerfile is defined in server/flags.cc (or is a glog/gflags
#              flag), and docs/operations.md has a row for every flag
#   flagfiles  zmesh-server really starts with each flagfile (ZooKeeper,
#              secrets and ports overridden: a standalone node on 127.0.0.1)
#   systemd    the two units differ only where they should; systemd-analyze
#              verify, and the offline security exposure score
#   compose    YAML syntax and the expected services, secret and ports;
#              `docker compose config` when the compose plugin exists
#
# A missing tool skips its check (and says so); it never fails the run.
# Ends with "lint: N passed, N failed, N skipped"; exit 1 if anything failed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
BIN_DIR="$REPO_ROOT/build/bin"
PASSED=0 FAILED=0 SKIPPED=0
WORK=""

pass() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { SKIPPED=$((SKIPPED + 1)); printf 'skip  %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# Runs a check; its output is shown only when it fails.
check() { # NAME CMD...
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name"
    printf '%s\n' "$out" | sed 's/^/      /'
  fi
}

scripts() { find "$SCRIPT_DIR" -name '*.sh' -type f | sort; }

lint_shell() {
  local f
  for f in $(scripts); do check "bash -n ${f#"$REPO_ROOT"/}" bash -n "$f"; done
  if have shellcheck; then
    # shellcheck disable=SC2046  # one argument per script
    check "shellcheck deploy/**/*.sh" shellcheck -x $(scripts)
  else
    skip "shellcheck (not installed; scripts/install-deps.sh installs it)"
  fi
}

# The flag names zmesh-server defines, plus the logging/flagfile flags that
# glog and gflags add to every binary.
known_flags() {
  sed -n 's/^DEFINE_[a-z0-9]*(\([a-z0-9_]*\),.*/\1/p' "$REPO_ROOT/server/flags.cc"
  printf '%s\n' flagfile log_dir v vmodule logtostderr alsologtostderr stderrthreshold minloglevel
}

# Every "--name" that is meant for zmesh-server in the deploy files.
used_flags() {
  {
    grep -ho '^--[a-z0-9_]*' "$SCRIPT_DIR"/flags/*.flags
    grep -ho '^# --[a-z0-9_]*' "$SCRIPT_DIR"/flags/*.flags | sed 's/^# //'
    grep -o -- '- --[a-z0-9_]*' "$SCRIPT_DIR/docker/docker-compose.yml" | sed 's/^- //'
    grep '^CMD' "$SCRIPT_DIR/docker/Dockerfile" | grep -o -- '--[a-z0-9_]*'
    grep -ho -- '--[a-z0-9_]*=' "$SCRIPT_DIR"/systemd/*.service | tr -d =
  } | sed 's/^--//' | sort -u
}

check_flag_names() {
  local unknown
  unknown=$(comm -13 <(known_flags | sort -u) <(used_flags))
  [ -z "$unknown" ] || { echo "not defined in server/flags.cc: $unknown"; return 1; }
}

# Starts zmesh-server with a flagfile as a standalone node on loopback (the
# overrides after --flagfile win) and waits for its ports file; SIGTERM then
# must end it with status 0.
try_flagfile() { # FLAGFILE
  local ports="$WORK/ports.$$.$RANDOM" log="$WORK/flagfile.log" pid
  rm -f "$ports"
  "$BIN_DIR/zmesh-server" --flagfile="$1" --zk= --advertise= --listen=127.0.0.1:0 \
    --peer_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --users_file= --zk_credentials_file= \
    --cluster_secret_file= --tls_cert= --tls_key= --tls_ca= --peer_tls=false --log_dir= \
    --ports_file="$ports" >"$log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 100); do
    [ -s "$ports" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; return 1; }
    sleep 0.05
  done
  [ -s "$ports" ] || { kill -KILL "$pid"; cat "$log"; echo "no ports file after 5 s"; return 1; }
  kill -TERM "$pid"
  wait "$pid" || { cat "$log"; return 1; }
}

# The operations guide promises a table row for every flag.
check_flags_documented() {
  local missing="" f
  while read -r f; do
    grep -q -- "^| \`--$f\` |" "$REPO_ROOT/docs/operations.md" || missing+=" --$f"
  done < <(sed -n 's/^DEFINE_[a-z0-9]*(\([a-z0-9_]*\),.*/\1/p' "$REPO_ROOT/server/flags.cc")
  [ -z "$missing" ] || { echo "no row in docs/operations.md for:$missing"; return 1; }
}

# gflags pitfalls that would go unnoticed: a line that is neither a comment
# nor a flag turns the following flags off (it is a program-name filter), and
# "# ..." after a value becomes part of the value.
check_flagfile_syntax() {
  local bad
  bad=$(grep -Hn -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' -e '^--[a-z0-9_]*=[^#]*$' \
    "$SCRIPT_DIR"/flags/*.flags) || true
  [ -z "$bad" ] || { echo "not a comment and not a plain --flag=value line:"; echo "$bad"; return 1; }
}

lint_flags() {
  check "flagfile syntax" check_flagfile_syntax
  check "flag names known to server/flags.cc" check_flag_names
  check "every flag documented in docs/operations.md" check_flags_documented
  if [ ! -x "$BIN_DIR/zmesh-server" ]; then
    skip "flagfiles start zmesh-server (no $BIN_DIR/zmesh-server; pass --bin)"
    return
  fi
  local f
  for f in "$SCRIPT_DIR"/flags/*.flags; do
    check "zmesh-server --flagfile=${f#"$REPO_ROOT"/} starts" try_flagfile "$f"
  done
}

# The plain unit and the template must not drift apart.
units_in_step() {
  local a="$SCRIPT_DIR/systemd/zmesh-server.service" b="$SCRIPT_DIR/systemd/zmesh-server@.service"
  diff <(grep -v '^#' "$a" | grep -v '^Description=' | sed 's#/etc/zmesh/node.flags#/etc/zmesh/%i.flags#') \
    <(grep -v '^#' "$b" | grep -v '^Description=')
}

# systemd-analyze verify insists that ExecStart= exists: verify copies whose
# ExecStart points at the built binary (or /bin/true without one).
verify_units() {
  local exe=/bin/true u
  [ -x "$BIN_DIR/zmesh-server" ] && exe="$BIN_DIR/zmesh-server"
  for u in zmesh-server.service zmesh-server@.service; do
    sed "s#/usr/local/bin/zmesh-server#$exe#" "$SCRIPT_DIR/systemd/$u" >"$WORK/$u"
  done
  cp "$WORK/zmesh-server@.service" "$WORK/zmesh-server@node.service"
  systemd-analyze verify "$WORK/zmesh-server.service" "$WORK/zmesh-server@node.service"
}

lint_systemd() {
  check "systemd units in step" units_in_step
  if ! have systemd-analyze; then
    skip "systemd-analyze verify (systemd-analyze not installed)"
    return
  fi
  check "systemd-analyze verify" verify_units
  local score
  if score=$(systemd-analyze security --offline=yes "$WORK/zmesh-server.service" 2>/dev/null | tail -n 1); then
    pass "systemd-analyze security: ${score#→ }"
  else
    skip "systemd-analyze security --offline (needs systemd >= 252)"
  fi
}

compose_shape() {
  python3 - "$SCRIPT_DIR/docker/docker-compose.yml" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
errors = []
want = {"zookeeper", "zmesh1", "zmesh2", "zmesh3"}
if set(services) != want:
    errors.append(f"services {sorted(services)} != {sorted(want)}")
if not services.get("zookeeper", {}).get("image", "").startswith("zookeeper:3.8"):
    errors.append("zookeeper must use the official zookeeper:3.8 image")
host_ports = []
for name in ("zmesh1", "zmesh2", "zmesh3"):
    s = services.get(name, {})
    cmd = s.get("command", [])
    if f"--node_id={name}" not in cmd:
        errors.append(f"{name}: --node_id={name} missing")
    if "--cluster_secret_file=/run/secrets/zmesh_cluster_secret" not in cmd:
        errors.append(f"{name}: no cluster secret")
    if "zmesh_cluster_secret" not in s.get("secrets", []):
        errors.append(f"{name}: secret not mounted")
    if not any(c.startswith("--http_listen=") for c in cmd):
        errors.append(f"{name}: no --http_listen (the HEALTHCHECK needs it)")
    host_ports += [p.rsplit(":", 1)[0] for p in s.get("ports", [])]
if len(host_ports) != len(set(host_ports)):
    errors.append(f"host ports collide: {host_ports}")
if "file" not in doc.get("secrets", {}).get("zmesh_cluster_secret", {}):
    errors.append("secret zmesh_cluster_secret must come from a file")
print("\n".join(errors))
sys.exit(1 if errors else 0)
EOF
}

lint_compose() {
  if python3 -c 'import yaml' 2>/dev/null; then
    check "docker-compose.yml: YAML and shape" compose_shape
  else
    skip "docker-compose.yml (python3 yaml not installed)"
  fi
  if have docker && docker compose version >/dev/null 2>&1; then
    # config needs the secret file to exist; an empty stand-in is enough.
    local secret="$SCRIPT_DIR/docker/cluster-secret" made=0
    [ -e "$secret" ] || { : >"$secret"; made=1; }
    check "docker compose config" docker compose -f "$SCRIPT_DIR/docker/docker-compose.yml" config -q
    [ "$made" = 0 ] || rm -f "$secret"
  else
    skip "docker compose config (no docker compose plugin)"
  fi
}

main() {
  while [ $# -gt 0 ]; do
    case $1 in
      --bin) [ $# -ge 2 ] || { echo "--bin needs a directory" >&2; exit 2; }
        case $2 in /*) BIN_DIR=$2 ;; *) BIN_DIR="$PWD/$2" ;; esac; shift ;;
      -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
  done
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/zmesh-deploy-lint.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  lint_shell
  lint_flags
  lint_systemd
  lint_compose
  echo "lint: $PASSED passed, $FAILED failed, $SKIPPED skipped"
  [ "$FAILED" -eq 0 ]
}

main "$@"

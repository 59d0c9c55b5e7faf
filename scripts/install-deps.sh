#!/usr/bin/env bash
# Installs every Debian package zmesh needs to build, test, benchmark and run its
# demo. Idempotent: packages already present are skipped, and apt is not touched
# at all when everything is installed. Debian 12 (bookworm).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-16 libclang-rt-16-dev
  # libraries
  libevent-dev libzookeeper-mt-dev libssl-dev libcrypt-dev
  libgflags-dev libgoogle-glog-dev nlohmann-json3-dev libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # tests: a private ZooKeeper server, nats-server to compare against, the Go NATS client
  zookeeper zookeeper-bin default-jre-headless libslf4j-java
  nats-server golang-go golang-github-nats-io-go-nats-dev
  # tests: the NATS C client; promtool and prometheus read /metrics
  libnats-dev prometheus
  # tests and tools: openssl CLI (test certificates), python3 (benchmark driver), procps (ps)
  openssl python3 procps iproute2
  # deploy/lint.sh: shell script linting
  shellcheck
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present" >&2
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

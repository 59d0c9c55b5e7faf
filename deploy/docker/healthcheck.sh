#!/usr/bin/env bash
# healthcheck.sh [PORT] — the image's HEALTHCHECK: exit 0 when the node's
# GET /healthz answers 200 (joined the mesh, linked and synced with every live
# peer), 1 otherwise. Plain bash /dev/tcp, so the runtime image needs no curl.
# PORT defaults to $ZMESH_HTTP_PORT, else 8222; the node must run with
# --http_listen on that port (0.0.0.0 or 127.0.0.1).
set -euo pipefail

port=${1:-${ZMESH_HTTP_PORT:-8222}}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
IFS=' ' read -r -t 3 _ status _ <&3 || exit 1
[ "$status" = 200 ]

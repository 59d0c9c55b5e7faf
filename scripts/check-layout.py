#!/usr/bin/env python3
"""check-layout.py — keeps the seams the architecture depends on.

    scripts/check-layout.py [REPO_ROOT]

Checks, over the project's own C++ sources (quoted #includes only):

  layers   each folder includes only the folders below it (LAYERS). The one
           exception is the composition root, server/server.cc, which builds
           the mesh and the monitor on top of the node.
  cycles   no cycle among the headers: a header never reaches itself again
           through other headers.
  size     no source file over MAX_LINES lines, unless LONG_FILES names it
           with the reason.

Prints every violation and ends with "layout: N problems"; exit 1 if any.
Runs in ctest as layout_test.
"""

import os
import re
import sys

# Folder -> the project folders its files may include (besides their own).
LAYERS = {
    "proto": set(),
    "auth": {"proto"},
    "zk": set(),
    "zk/testing": {"zk"},
    "client": {"proto", "zk"},
    "client/tools": {"client", "auth", "proto", "zk"},
    "server": {"proto", "auth", "zk"},
    "server/mesh": {"server", "proto", "auth", "zk"},
    "server/monitor": {"server", "server/mesh", "proto"},
}
# Files that wire the layers together and so may include any of them.
COMPOSITION_ROOTS = {"server/server.cc"}

MAX_LINES = 550
# Files allowed over MAX_LINES, and why.
LONG_FILES = {
    "tests/go/natscheck/main.go":
        "natscheck: every nats.go scenario the integration tests run, as subcommands of one "
        "program sharing its flags and result reporting",
    "tests/integration/tls_test.cc":
        "TLS on both ports with generated certificates: the client-port, zmesh::Client, "
        "client-certificate and peer-certificate suites share one PKI fixture",
    "tests/integration/rolling_restart_test.cc":
        "one scenario: a rolling restart of 3 nodes under zmesh::Client, nats.go and raw "
        "traffic, with the per-client checks of what each may lose",
    "tests/integration/mesh_promises_test.cc":
        "one test per mesh promise that had none (issue 9 item 5), each with the scripted "
        "peer or fault that makes it able to fail",
    "tests/integration/mesh_test.cc":
        "the mesh's end-to-end delivery cases over one fixture (faults and partitions "
        "already live in their own files)",
    "tests/unit/client_failover_test.cc":
        "the failover policy's cases over one fake-server fixture",
    "tests/integration/mesh_traffic.cc":
        "the traffic generators and their receipts (exactly-once, order) for every mesh test",
    "tests/integration/monitor_test.cc":
        "one test per monitoring endpoint over one node",
    "tests/integration/zk_registry_test.cc":
        "the registry against a real ZooKeeper: sessions, expiry, restarts",
    "tests/unit/zk_registry_state_test.cc":
        "the registry's state machine against the fake keeper, one test per transition",
    "tests/unit/mesh_layer_test.cc":
        "the mesh layer's unit cases over one scripted-peer fixture",
    "tests/integration/protocol_compat_test.cc":
        "a data table of malformed input and nats-server's exact answers, one row per case",
    "deploy/local-cluster.sh":
        "one operator script (start, stop, status, rolling-restart) with its argument handling",
}

SOURCE_DIRS = ["auth", "proto", "zk", "client", "server", "tests", "bench", "deploy", "scripts"]
SOURCE_EXT = (".cc", ".h", ".go", ".sh", ".py")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def sources(root):
    for top in SOURCE_DIRS:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = [x for x in dirs if x not in ("corpus", "vendor", "node_modules")]
            for f in files:
                if f.endswith(SOURCE_EXT):
                    yield os.path.relpath(os.path.join(d, f), root)


def includes(root, path):
    with open(os.path.join(root, path), errors="replace") as f:
        return [m.group(1) for m in map(INCLUDE.match, f) if m]


def folder_of(path):
    return os.path.dirname(path)


def check_layers(root, files, problems):
    for path in files:
        if not path.endswith((".cc", ".h")):
            continue
        own = folder_of(path)
        if own not in LAYERS or path in COMPOSITION_ROOTS:
            continue
        for inc in includes(root, path):
            target = folder_of(inc)
            if target == own or target not in LAYERS:  # same folder, or not ours (third-party)
                continue
            if target not in LAYERS[own]:
                problems.append(f"layers: {path} includes {inc} ({own}/ may include only "
                                f"{', '.join(sorted(LAYERS[own])) or 'nothing of ours'})")


def check_cycles(root, files, problems):
    headers = {p for p in files if p.endswith(".h")}
    graph = {h: [i for i in includes(root, h) if i in headers] for h in headers}
    state = {}  # 1 = on the current path, 2 = done
    path = []

    def visit(h):
        state[h] = 1
        path.append(h)
        for nxt in graph[h]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                problems.append("cycles: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[h] = 2

    for h in sorted(headers):
        if h not in state:
            visit(h)


def check_sizes(root, files, problems):
    for path in sorted(files):
        with open(os.path.join(root, path), errors="replace") as f:
            lines = sum(1 for _ in f)
        if lines > MAX_LINES and path not in LONG_FILES:
            problems.append(f"size: {path} has {lines} lines (over {MAX_LINES}); split it, "
                            f"or name it in LONG_FILES in scripts/check-layout.py with the reason")
    for path in sorted(LONG_FILES):
        if path not in files:
            problems.append(f"size: LONG_FILES names {path}, which does not exist")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    files = set(sources(root))
    problems = []
    check_layers(root, files, problems)
    check_cycles(root, files, problems)
    check_sizes(root, files, problems)
    for p in problems:
        print(p)
    print(f"layout: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

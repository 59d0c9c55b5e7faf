#!/usr/bin/env python3
"""A stand-in for zmesh-server that misbehaves on request, so that
server_checks_test can prove the harness's teardown checks fail a test.

Understands the flags the harnesses pass (--listen, --ports_file) and ignores
the rest; answers every client with one INFO line. Its own flags:
  --fake_on_term=none|asan|ubsan|lsan|tsan  what to print on stderr at SIGTERM
  --fake_exit=N                             exit status after SIGTERM (default 0)
"""
import json
import os
import signal
import socket
import sys

REPORTS = {
    "none": "",
    "asan": ("=================================================================\n"
             "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n"
             "READ of size 8 at 0x602000000010 thread T1\n"
             "    #0 0x55d0 in zmesh::server::Fake() server/fake.cc:1\n"
             "SUMMARY: AddressSanitizer: heap-use-after-free server/fake.cc:1 in Fake\n"),
    "ubsan": ("server/fake.cc:12:7: runtime error: signed integer overflow: "
              "2147483647 + 1 cannot be represented in type 'int'\n"
              "SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior server/fake.cc:12:7\n"),
    "lsan": ("==4242==ERROR: LeakSanitizer: detected memory leaks\n"
             "Direct leak of 64 byte(s) in 1 object(s) allocated from:\n"
             "SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s).\n"),
    "tsan": ("WARNING: ThreadSanitizer: data race (pid=4242)\n"
             "  Write of size 8 at 0x7b0400000000 by thread T2:\n"
             "SUMMARY: ThreadSanitizer: data race server/fake.cc:3 in Fake\n"),
}


def main():
    flags = {}
    for arg in sys.argv[1:]:
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            flags[name] = value
    report = REPORTS[flags.get("fake_on_term", "none")]
    exit_code = int(flags.get("fake_exit", "0"))

    # Teardown sends a second SIGTERM right after the first, which Python may
    # deliver while this handler runs; a run prints its report once.
    handling = []

    def on_term(signum, frame):
        if handling:
            return
        handling.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stderr.write(report)
        sys.stderr.flush()
        os._exit(exit_code)

    signal.signal(signal.SIGTERM, on_term)

    host, port = flags.get("listen", "127.0.0.1:0").rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(16)
    bound = "%s:%d" % (host, listener.getsockname()[1])
    sys.stderr.write("fake zmesh-server listening on %s\n" % bound)
    sys.stderr.flush()
    if "ports_file" in flags:
        tmp = flags["ports_file"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"client": bound, "peer": host + ":0", "http": host + ":0"}, f)
        os.rename(tmp, flags["ports_file"])
    while True:
        conn, _ = listener.accept()
        try:
            conn.sendall(b'INFO {"server_id":"fake","proto":1}\r\n')
        except OSError:
            pass
        conn.close()


if __name__ == "__main__":
    main()

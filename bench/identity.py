#!/usr/bin/env python3
"""Median latency that the process-identity lookup adds to a connection,
with N other processes running (default 500).

Two egressd instances side by side: one whose rule names a binary (so every
CONNECT is looked up in /proc), one whose rule does not.  Both deny, so no
upstream is involved; the difference of the medians is the lookup.

usage: bench/identity.py [EGRESSD] [PROCESSES] [REQUESTS]
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

egressd = sys.argv[1] if len(sys.argv) > 1 else "build/rel/egressd"
nproc = int(sys.argv[2]) if len(sys.argv) > 2 else 500
requests = int(sys.argv[3]) if len(sys.argv) > 3 else 400


def start(conf_text, work):
    conf = os.path.join(work, f"{abs(hash(conf_text))}.ini")
    log = conf + ".log"
    open(conf, "w").write(conf_text)
    p = subprocess.Popen([egressd, "-c", conf], stderr=open(log, "w"))
    for _ in range(200):
        text = open(log).read()
        if "listening on" in text:
            return p, int(text.split("listening on 127.0.0.1:")[1].split('"')[0])
        time.sleep(0.01)
    raise SystemExit("egressd did not start")


def one(port):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    s.recv(4096)
    dt = time.perf_counter() - t0
    s.close()
    return dt


def main():
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(nproc)]
    work = tempfile.mkdtemp()
    base = "[proxy]\nlisten = 127.0.0.1:0\nlog_level = info\n[allow x]\nhost = example.com\n"
    with_id, port_a = start(base + "binary = /nonexistent/tool\n", work)
    without, port_b = start(base + "port = 1\n", work)
    samples = {port_a: [], port_b: []}
    try:
        for _ in range(20):  # warm-up: first-use hashing, caches
            one(port_a), one(port_b)
        for _ in range(requests):  # interleaved, so that both see the same machine
            samples[port_a].append(one(port_a))
            samples[port_b].append(one(port_b))
    finally:
        for p in [with_id, without] + sleepers:
            p.kill()
    med_a, med_b = statistics.median(samples[port_a]), statistics.median(samples[port_b])
    print(f"processes running: {len(sleepers)} sleepers + the rest of the machine; requests: {requests}")
    print(f"median with lookup:    {med_a * 1e6:8.1f} us")
    print(f"median without lookup: {med_b * 1e6:8.1f} us")
    print(f"added by the lookup:   {(med_a - med_b) * 1e6:8.1f} us")


main()

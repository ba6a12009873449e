#!/usr/bin/env python3
"""A mixed load against one egressd for M minutes, reloaded every 30 s,
with its memory sampled: does it grow after warm-up?

Starts an nginx origin, the mock backend and egressd (interception on, an
admin endpoint for its counters), then runs side by side, in slices of
--slice seconds, until the time is up:

  tunnel     new CONNECT tunnel, GET /small, close            (loadgen tunnel)
  forward    absolute-form http:// GETs on a kept-alive connection (forward)
  tls-stream streamed chat completions inside one intercepted TLS
             connection, 20 pieces each                         (tls-keep)
  tls-new    the same over a new intercepted TLS connection each time,
             full handshake                                     (tls-new)

and sends SIGHUP every --reload seconds, alternating between two valid
configurations.  egressd's RSS, descriptors and threads are sampled every
--sample seconds into build/soak-<time>.csv.  Printed at the end: RSS at the
end of warm-up and at the end, the growth in %, the slope of RSS over the
samples after warm-up, operations and errors per kind, reloads, and
egressd's warnings.  Everything it started is stopped, even on error.

usage: bench/soak.py [--minutes M] [--warmup S] [--sample S] [--reload S]
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the bench's process and /proc helpers)

BODY = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def config(port, admin, mock, w, variant):
    """Two valid configurations; B adds a deny rule, a second route and a smaller
    certificate cache, so that a reload rebuilds policy, routes and TLS state."""
    conf = f"""[proxy]
listen = 127.0.0.1:{port}
workers = 16
max_workers = 256
log_level = warn
idle_timeout = 10m
unsafe_allow_loopback = yes
admin = 127.0.0.1:{admin}
[tls]
ca_cert = {w}/egressd-ca.pem
ca_key = {w}/egressd-ca.key
bundle = {w}/egressd-bundle.pem
cert_cache = {256 if variant == 'A' else 128}
[inference]
host = inference.test
[route backend]
endpoint = http://127.0.0.1:{mock}/v1
protocols = openai_chat_completions
"""
    if variant == "B":
        conf += f"""[route models]
endpoint = http://127.0.0.1:{mock}/v1
protocols = model_discovery
[deny soak-b]
host = 192.0.2.1, blocked.example
"""
    return conf + "[allow local]\nhost = 127.0.0.1\nport = 1-65535\n"


def write_config(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def metrics(admin):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError as e:
        return {"error": str(e)}
    out = {}
    for line in text.splitlines():
        m = re.match(r'egressd_reloads_total\{result="(\w+)"\} (\d+)', line)
        if m:
            out[f"reloads_{m.group(1)}"] = int(m.group(2))
    return out


class Stream:
    """One kind of load: loadgen slices, one after the other, summed."""

    def __init__(self, name, args):
        self.name, self.args = name, [str(a) for a in args]
        self.proc, self.ops, self.errors, self.slices, self.bad_slices = None, 0, 0, 0, 0

    def poll(self, until, slice_s):
        if self.proc is not None:
            if self.proc.poll() is None:
                return
            out = self.proc.stdout.read()
            vals = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
            try:
                self.ops += int(vals["ops"])
                self.errors += int(vals["errors"])
            except (KeyError, ValueError):
                self.bad_slices += 1
            self.slices += 1
            bench.procs.remove(self.proc)
            self.proc = None
        left = int(until - time.time())
        if left >= 1:
            self.proc = bench.start([bench.LOADGEN, self.name, *self.args, "--seconds",
                                     min(slice_s, left)], stdout=subprocess.PIPE, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=60, help="seconds (at most half the run)")
    ap.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
    ap.add_argument("--reload", type=float, default=30, help="seconds between SIGHUPs")
    ap.add_argument("--slice", type=int, default=10, help="seconds per loadgen run")
    ap.add_argument("--pause-us", type=int, default=2000, help="between one stream's operations")
    ap.add_argument("--tls-new-pause-us", type=int, default=20000, help="between full handshakes")
    args = ap.parse_args()
    bench.raise_nofile(65536)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    w = tempfile.mkdtemp(prefix="egressd-soak-")
    os.chmod(w, 0o755)
    try:
        return soak(w, args)
    finally:
        bench.stop_all(w)


def soak(w, args):
    duration = args.minutes * 60
    warmup = min(args.warmup, duration / 2)
    ports = {k: bench.free_port() for k in ("origin", "origin_tls", "egressd", "admin")}
    bench.make_certs(w)
    bench.start_nginx(w, ports["origin"], ports["origin_tls"])
    mock = bench.start([bench.MOCK, "/dev/null"], stdout=subprocess.PIPE, text=True)
    ports["mock"] = int(bench.readline(mock.stdout, 15) or 0)
    confpath = f"{w}/egressd.ini"
    write_config(confpath, config(ports["egressd"], ports["admin"], ports["mock"], w, "A"))
    log = f"{w}/egressd.log"
    eg = bench.start([bench.EGRESSD, "-c", confpath], stderr=open(log, "wb"))
    bench.wait_port(ports["egressd"])
    bench.wait_port(ports["admin"])
    print(f"soak {args.minutes:g} min (warm-up {warmup:.0f} s): {bench.machine()}", flush=True)

    proxy, origin = f"127.0.0.1:{ports['egressd']}", f"127.0.0.1:{ports['origin']}"
    tls = ["--proxy", proxy, "--target", origin, "--host", "inference.test:443", "--cafile",
           f"{w}/egressd-ca.pem", "--path", "/v1/chat/completions?chunks=20", "--method", "POST",
           "--body", BODY, "--concurrency", 1]
    streams = [
        Stream("tunnel", ["--proxy", proxy, "--target", origin, "--path", "/small", "--concurrency", 1,
                          "--pause-us", args.pause_us]),
        Stream("forward", ["--proxy", proxy, "--target", origin, "--path", "/small", "--concurrency", 1,
                           "--pause-us", args.pause_us]),
        Stream("tls-keep", tls + ["--pause-us", args.pause_us]),
        Stream("tls-new", tls + ["--pause-us", args.tls_new_pause_us]),
    ]
    os.makedirs(bench.BUILD, exist_ok=True)
    csv_path = os.path.join(bench.BUILD, time.strftime("soak-%Y%m%d-%H%M%S.csv"))
    samples = []
    start = time.time()
    until = start + duration
    next_sample, next_reload, variant, sighups = start, start + args.reload, "A", 0
    with open(csv_path, "w") as csv:
        csv.write("t_s,rss_kib,fds,threads,config," + ",".join(f"{s.name}_ops,{s.name}_errors"
                                                                for s in streams) + "\n")
        while time.time() < until and eg.poll() is None:
            for s in streams:
                s.poll(until, args.slice)
            now = time.time()
            if now >= next_reload:
                variant = "B" if variant == "A" else "A"
                write_config(confpath, config(ports["egressd"], ports["admin"], ports["mock"], w, variant))
                eg.send_signal(signal.SIGHUP)
                sighups += 1
                next_reload += args.reload
            if now >= next_sample:
                snap = bench.snapshot(eg.pid)
                t = now - start
                samples.append((t, snap["rss"], snap["fds"], snap["threads"]))
                csv.write(f"{t:.1f},{snap['rss']},{snap['fds']},{snap['threads']},{variant}," +
                          ",".join(f"{s.ops},{s.errors}" for s in streams) + "\n")
                csv.flush()
                next_sample += args.sample
            time.sleep(0.2)
        # the last slices end by themselves within --slice seconds
        deadline = time.time() + args.slice + 30
        while any(s.proc is not None for s in streams) and time.time() < deadline:
            for s in streams:
                s.poll(0, args.slice)
            time.sleep(0.2)
    alive = eg.poll() is None
    end_snap = bench.snapshot(eg.pid) if alive else None
    counters = metrics(ports["admin"]) if alive else {}
    t0 = time.time()
    bench.stop_proc(eg, 40)
    stop_s = time.time() - t0
    report(args, warmup, samples, streams, counters, sighups, alive, end_snap, eg.returncode, stop_s, log, csv_path)
    return 0


def slope_kib_per_min(points):
    """Least-squares slope of RSS over time, KiB per minute."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(r for _, r in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (r - my) for t, r in points) / sxx * 60 if sxx else float("nan")


def report(args, warmup, samples, streams, counters, sighups, alive, end_snap, rc, stop_s, log, csv_path):
    warm = next((s for s in samples if s[0] >= warmup), samples[-1] if samples else None)
    last = samples[-1] if samples else None
    after = [(t, r) for t, r, _, _ in samples if t >= warmup]
    print(f"\n### soak: {args.minutes:g} minutes, {len(samples)} samples every {args.sample:g} s, "
          f"SIGHUP every {args.reload:g} s\n")
    if warm and last:
        growth = (last[1] - warm[1]) / warm[1] * 100
        peak = max(r for _, r in after) if after else last[1]
        print("| RSS KiB at warm-up end | RSS KiB at end | growth | peak after warm-up | slope after warm-up "
              "| fds warm-up → end | threads warm-up → end |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {warm[1]} (t={warm[0]:.0f} s) | {last[1]} (t={last[0]:.0f} s) | {growth:+.2f} % | {peak} "
              f"| {slope_kib_per_min(after):+.1f} KiB/min | {warm[2]} → {last[2]} | {warm[3]} → {last[3]} |")
        print(f"\nTarget: growth under 5 % after warm-up: {'met' if growth < 5 else 'MISSED'}.\n")
    print("| kind | operations | errors | loadgen slices (unreadable) |")
    print("|---|---|---|---|")
    for s in streams:
        print(f"| {s.name} | {s.ops} | {s.errors} | {s.slices} ({s.bad_slices}) |")
    print(f"\nreloads: {sighups} SIGHUPs sent; egressd counted {counters}")
    print(f"egressd alive at the end: {'yes' if alive else 'NO'}; after SIGTERM exit code {rc} "
          f"in {stop_s:.1f} s; last snapshot {end_snap}")
    count, lines = bench.log_excerpt(log, r'"level":"(warn|error)"')
    print(f"egressd warn/error log: {count} lines" + "".join(f"\n  {l}" for l in lines))
    print(f"samples: {csv_path}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""egressd side by side with tinyproxy, squid (squid-openssl with ssl-bump
for interception and for request rules) and direct connections, on
loopback, in one run.

Starts an nginx origin (plain and TLS), the mock backend, egressd, tinyproxy
and squid, each configured for the same work with logging off, runs every
loadgen mode at concurrency 1, 8 and 32, measures the RSS
of 1,000 idle tunnels, prints one Markdown table with egressd's ratios, and
stops everything it started.

Every cell is the median of --rounds rounds in which the peers take turns
(--seconds each), so that the peers compared share the same moments of a
noisy machine.

--modes picks some of the modes (MODES below); --peers some of the peers;
--baseline PATH adds another egressd build as the peer "baseline" (same
configuration, without the inspected destination, which an older build
may not know, unless --baseline-inspects), to compare two builds side by
side.

usage: bench/run.py [--seconds N] [--rounds N] [--quick] [--modes a,b] [--peers a,b]
                    [--baseline PATH [--baseline-inspects]]
       bench/run.py --budget-alias [--seconds N] [--rounds N]
       bench/run.py --hold [N] [--peers egressd,tinyproxy,squid]   (docs/reliability.md)
       bench/run.py --slow [--slow-clients K] [--slow-seconds S]

--budget-alias measures only the inference added latency, side by side:
egressd as in the tables, egressd whose route has a model_map hit and a
budget counting every request and its tokens, and the backend directly.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(TOP, "build")
LOADGEN = os.path.join(BUILD, "loadgen")
EGRESSD = os.environ.get("EGRESSD", os.path.join(BUILD, "rel", "egressd"))  # another build to compare
MOCK = os.path.join(BUILD, "mock-backend")
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def stop_all(w):
    """Every process started here stopped (SIGTERM, then SIGKILL after 10 s), w removed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    shutil.rmtree(w, ignore_errors=True)


def start(cmd, nofile=None, **kw):
    """Start a process of the bench, stopped at the end whatever happens;
    nofile: its RLIMIT_NOFILE (soft and hard), for the hold mode."""
    if nofile:
        kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    p = subprocess.Popen([str(a) for a in cmd], **kw)
    procs.append(p)
    return p


def raise_nofile(want):
    """RLIMIT_NOFILE to want, or as near as this process may go; the limit set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        return want
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def run(cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def make_certs(w):
    """A bench CA, and a certificate for the TLS origin: inference.test
    behind squid's bump, localhost for the inspected destination."""
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=bench CA", "-days", "2", "-keyout", f"{w}/ca.key", "-out", f"{w}/ca.pem",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=inference.test", "-keyout", f"{w}/origin.key", "-out", f"{w}/origin.csr"])
    with open(f"{w}/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:inference.test,DNS:localhost\n")
    run(["openssl", "x509", "-req", "-in", f"{w}/origin.csr", "-CA", f"{w}/ca.pem", "-CAkey", f"{w}/ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", f"{w}/ext.cnf", "-out", f"{w}/origin.pem"])


def start_nginx(w, port, tls_port, conns=8192):
    os.makedirs(f"{w}/www/v1", exist_ok=True)
    with open(f"{w}/www/small", "w") as f:
        f.write("x" * 100)
    with open(f"{w}/www/v1/models", "w") as f:
        f.write('{"object":"list","data":[{"id":"m1","object":"model","owned_by":"bench"}]}')
    with open(f"{w}/www/big", "wb") as f:
        f.truncate(256 << 20)
    conf = f"""
daemon off; worker_processes 1; pid {w}/nginx.pid; error_log {w}/nginx.err;
worker_rlimit_nofile {min(2 * conns, resource.getrlimit(resource.RLIMIT_NOFILE)[1])};
events {{ worker_connections {conns}; }}
http {{
  access_log off; sendfile on; tcp_nodelay on; keepalive_timeout 600s; keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {w}/nt; proxy_temp_path {w}/np; fastcgi_temp_path {w}/nf;
  uwsgi_temp_path {w}/nu; scgi_temp_path {w}/ns;
  server {{ listen 127.0.0.1:{port}; root {w}/www;
    location /v1/ {{ default_type application/json; }} }}
  server {{ listen 127.0.0.1:{tls_port} ssl; root {w}/www;
    ssl_certificate {w}/origin.pem; ssl_certificate_key {w}/origin.key;
    location /v1/ {{ default_type application/json; }} }}
}}"""
    with open(f"{w}/nginx.conf", "w") as f:
        f.write(conf)
    start(["nginx", "-c", f"{w}/nginx.conf", "-p", w])
    wait_port(port)
    wait_port(tls_port)


# The inspected destination (DESIGN section 10): the TLS origin, reached as
# localhost (a name, so that the minted leaf, SNI and the origin's certificate
# check are those of a real host).  Both proxies allow read-only methods on
# the same paths and deny the rest; egressd verifies the origin against the
# bench CA (upstream_ca), squid against the same file.
INSPECT_HOST = "localhost"
INSPECT_PATHS = "/small, /v1/**"
SQUID_INSPECT_PATHS = "^/small$ ^/v1/"


def start_egressd(w, port, origin, mock_port, max_workers=1200, nofile=None, log_level="error",
                  binary=None, name="egressd", inspect_port=None, route_extra="", sections=""):
    """egressd (or the build `binary`, its files named after `name`); with
    inspect_port, a rule with request keys makes INSPECT_HOST:inspect_port
    an inspected destination; route_extra goes into the inference route,
    sections at the end (the --budget-alias variant)."""
    inspect = "" if inspect_port is None else f"""[allow inspected]
host = {INSPECT_HOST}
port = {inspect_port}
access = read-only
paths = {INSPECT_PATHS}
"""
    conf = f"""[proxy]
listen = 127.0.0.1:{port}
workers = 16
max_workers = {max_workers}
log_level = {log_level}
idle_timeout = 10m
unsafe_allow_loopback = yes
[tls]
ca_cert = {w}/{name}-ca.pem
ca_key = {w}/{name}-ca.key
bundle = {w}/{name}-bundle.pem
upstream_ca = {w}/ca.pem
[inference]
host = inference.test
[route backend]
endpoint = http://127.0.0.1:{mock_port}/v1
protocols = openai_chat_completions
{route_extra}
[route models]
endpoint = http://127.0.0.1:{origin}/v1
protocols = model_discovery
{inspect}[allow local]
host = 127.0.0.1
port = 1-65535
{sections}"""
    with open(f"{w}/{name}.ini", "w") as f:
        f.write(conf)
    p = start([binary or EGRESSD, "-c", f"{w}/{name}.ini"], nofile=nofile,
              stderr=open(f"{w}/{name}.log", "wb"))
    wait_port(port)
    return p


def start_tinyproxy(w, port, max_clients=1200, nofile=None):
    with open(f"{w}/tinyproxy.conf", "w") as f:
        f.write(f"Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients {max_clients}\nAllow 127.0.0.1\n"
                f"LogLevel Critical\nLogFile \"{w}/tinyproxy.log\"\nPidFile \"{w}/tinyproxy.pid\"\n"
                "DisableViaHeader Yes\n")
    p = start(["tinyproxy", "-d", "-c", f"{w}/tinyproxy.conf"], nofile=nofile)
    wait_port(port)
    return p


def start_squid(w, port, bump_port, inspect_port, max_fds=8192, nofile=None):
    """squid with a second port for ssl-bump; requests to the inspected
    destination are decided by an http_access method and path rule, as
    egressd's [allow inspected] decides them."""
    db = f"{w}/ssl_db"
    with open(f"{w}/hosts", "w") as f:
        f.write(f"127.0.0.1 inference.test {INSPECT_HOST}\n")
    run(["/usr/lib/squid/security_file_certgen", "-c", "-s", db, "-M", "16MB"])
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=squid bump CA", "-days", "2", "-keyout", f"{w}/squid-ca.key", "-out",
         f"{w}/squid-ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign"])
    conf = f"""http_port 127.0.0.1:{port}
http_port 127.0.0.1:{bump_port} ssl-bump cert={w}/squid-ca.pem key={w}/squid-ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s {db} -M 16MB
sslcrtd_children 8 startup=2 idle=1
ssl_bump bump all
tls_outgoing_options cafile={w}/ca.pem
hosts_file {w}/hosts
acl inspected dstdomain {INSPECT_HOST}
acl inspected_port port {inspect_port}
acl CONNECT method CONNECT
acl read_only method GET HEAD OPTIONS
acl inspected_paths urlpath_regex {SQUID_INSPECT_PATHS}
http_access allow CONNECT inspected inspected_port
http_access allow inspected inspected_port read_only inspected_paths
http_access deny inspected
http_access allow all
access_log none
cache_store_log none
cache deny all
cache_mem 8 MB
pid_filename {w}/squid.pid
cache_log {w}/squid-cache.log
coredump_dir {w}
max_filedescriptors {max_fds}
workers 1
shutdown_lifetime 1 seconds
"""
    with open(f"{w}/squid.conf", "w") as f:
        f.write(conf)
    if os.geteuid() == 0:
        run(["chown", "-R", "proxy:proxy", db])
        os.chmod(w, 0o755)
        for name in os.listdir(w):
            if name.startswith("squid"):
                run(["chown", "proxy:proxy", f"{w}/{name}"])
    p = start(["squid", "-N", "-f", f"{w}/squid.conf"], nofile=nofile)
    wait_port(port)
    wait_port(bump_port)
    return p


def loadgen(mode, proxy, target, conc, secs, **kw):
    cmd = [LOADGEN, mode, "--proxy", proxy, "--target", target, "--concurrency", str(conc),
           "--seconds", str(secs)]
    for k, v in kw.items():
        cmd += ["--" + k, str(v)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60).stdout
    vals = dict(kv.split("=") for kv in out.split())
    return {k: float(v) for k, v in vals.items() if k not in ("mode",)}


# The tables' modes, in the order they run, and their peers' columns.
MODES = ("tunnel", "keepalive", "forward", "bulk", "tls-new", "tls-resume", "tls-keep", "inspect-keep",
         "inspect-new", "inference-latency", "stream", "inspect-latency", "idle")
TABLE_PEERS = ("egressd", "baseline", "tinyproxy", "squid", "direct")


PIDS = {}  # peer name -> pid, for the CPU each proxy spends per operation


def cpu_ticks(pid):
    """User plus system CPU ticks of pid and its children (squid's helpers)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def side_by_side(runs, rounds):
    """Run each peer's loadgen call in turn, `rounds` times over, and keep the
    median of every figure: a disturbance on this shared machine then spoils
    one round of one peer, not a whole cell.  Each round starts with the
    next peer, so that none always runs first (right after the previous
    cell, or after another peer's load).  Each proxy's own CPU time per
    operation is kept too (cpu_us): it does not depend on how the two cores
    were shared with the load generator and the origin."""
    got = {p: [] for p in runs}
    hz = os.sysconf("SC_CLK_TCK")
    names = list(runs)
    for i in range(rounds):
        for p in names[i % len(names):] + names[:i % len(names)]:
            call = runs[p]
            pid = PIDS.get(p)
            before = cpu_ticks(pid) if pid else 0
            r = call()
            if pid:
                r["cpu_us"] = (cpu_ticks(pid) - before) * 1e6 / hz / max(r["ops"], 1)
            got[p].append(r)
    return {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in got.items()}


def status_sum(pids, field):
    """The sum of a numeric /proc/PID/status field over pids (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(field + r":\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


def rss_kb(pids):
    return status_sum(pids, "VmRSS")


def tree(pid):
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    kids = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        kids.setdefault(pp, []).append(p)
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += kids.get(p, [])
    return seen


def idle_tunnels(port, target, pid, n=1000):
    before = rss_kb(tree(pid))
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        socks.append(s)
    ok = 0
    for s in socks:
        try:
            ok += b" 200 " in s.recv(200)
        except OSError:
            pass
    time.sleep(1)
    after = rss_kb(tree(pid))
    for s in socks:
        s.close()
    return (after - before) / max(ok, 1), ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=1, help="per round")
    ap.add_argument("--rounds", type=int, default=3, help="side-by-side rounds per cell (median kept)")
    ap.add_argument("--quick", action="store_true", help="concurrency 8 only")
    ap.add_argument("--budget-alias", action="store_true",
                    help="instead of the tables: inference added latency with a budget and a model alias")
    ap.add_argument("--hold", type=int, nargs="?", const=1000, metavar="N",
                    help="instead of the tables: hold N concurrent tunnels per proxy (default 1000)")
    ap.add_argument("--slow", action="store_true",
                    help="instead of the tables: a normal client beside --slow-clients slow ones")
    ap.add_argument("--peers", default=None,
                    help="which peers: the tables default to all of " + ",".join(TABLE_PEERS) +
                         " (baseline with --baseline), hold and slow to egressd,tinyproxy,squid")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="the tables' modes, among " + ",".join(MODES))
    ap.add_argument("--baseline", metavar="PATH",
                    help="another egressd build, run side by side as the peer 'baseline'")
    ap.add_argument("--baseline-name", help="what the baseline was built from (default: its git tree's HEAD)")
    ap.add_argument("--baseline-inspects", action="store_true",
                    help="the baseline knows request rules: it gets the inspected destination and the inspect modes")
    ap.add_argument("--probe-ops", type=int, default=300, help="hold: sequential new tunnels per latency probe")
    ap.add_argument("--inflight", type=int, default=256, help="hold: tunnels being set up at once")
    ap.add_argument("--open-seconds", type=int, default=120, help="hold: bound on opening the N")
    ap.add_argument("--hold-seconds", type=int, default=600, help="hold: bound on holding them")
    ap.add_argument("--proxy-nofile", type=int, default=0,
                    help="hold: the proxies' RLIMIT_NOFILE (default: as high as allowed), to see them past it")
    ap.add_argument("--hold-log-level", default="info",
                    help="hold: egressd's log_level (info, as shipped: every connection's end is counted; "
                         "its log line buffers touch more of each worker's stack than warn)")
    ap.add_argument("--settle-seconds", type=int, default=45,
                    help="hold: after release, wait at most this for threads and fds to come back")
    ap.add_argument("--slow-clients", type=int, default=1000, help="slow: K")
    ap.add_argument("--slow-seconds", type=int, default=30, help="slow: how long the slow clients run")
    ap.add_argument("--base-seconds", type=int, default=10, help="slow: the normal client alone")
    ap.add_argument("--slow-max-workers", type=int, default=2048,
                    help="slow: also egressd with this max_workers (0: only the example configuration)")
    args = ap.parse_args()
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        ap.error(f"unknown modes {','.join(sorted(unknown))}; modes: {','.join(MODES)}")
    n = args.hold or 0
    nofile = raise_nofile(max(65536, 6 * n + 4096))  # for us, the load generator and every proxy
    pnofile = min(args.proxy_nofile, nofile) if args.proxy_nofile else nofile
    if nofile < 4 * n + 1024:
        print(f"note: RLIMIT_NOFILE is {nofile} and cannot be raised here (raising a hard limit needs "
              f"CAP_SYS_RESOURCE): every process of this run, proxies included, is capped at {nofile} "
              f"descriptors", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally below runs
    w = tempfile.mkdtemp(prefix="egressd-bench-")
    try:
        ports = {k: free_port() for k in ("origin", "origin_tls", "mock", "egressd", "tinyproxy", "squid",
                                          "squid_bump")}
        if args.budget_alias:
            return run_budget_alias(w, ports, args)
        make_certs(w)
        start_nginx(w, ports["origin"], ports["origin_tls"], conns=max(8192, n + args.slow_clients + 2048))
        mock = start([MOCK, "/dev/null"], stdout=subprocess.PIPE, text=True)
        ports["mock"] = int(readline(mock.stdout, 15) or 0)
        eg = start_egressd(w, ports["egressd"], ports["origin"], ports["mock"],
                           max_workers=min(16384, max(1200, n + 256)), nofile=pnofile,
                           log_level=args.hold_log_level if n else "error", inspect_port=ports["origin_tls"])
        if args.baseline:
            ports["baseline"] = free_port()
            base = start_egressd(w, ports["baseline"], ports["origin"], ports["mock"], binary=args.baseline,
                                 name="baseline",
                                 inspect_port=ports["origin_tls"] if args.baseline_inspects else None)
            PIDS["baseline"] = base.pid
        tp = start_tinyproxy(w, ports["tinyproxy"], max_clients=max(1200, n + 256, args.slow_clients + 256),
                             nofile=pnofile)
        sq = start_squid(w, ports["squid"], ports["squid_bump"], ports["origin_tls"],
                         max_fds=max(8192, 3 * n + 1024), nofile=pnofile)
        if args.hold:
            run_hold(w, ports, eg, tp, sq, args)
        if args.slow:
            run_slow(w, ports, tp, sq, args)
        if not args.hold and not args.slow:
            report(w, ports, eg, tp, sq, args)
    finally:
        stop_all(w)


def check_inspection(w, ports, peers):
    """The inspected destination really is inspected by each proxy: a GET on
    an allowed path passes, a DELETE is refused (403) by the proxy's rule.
    The numbers below would mean nothing otherwise."""
    url = f"https://{INSPECT_HOST}:{ports['origin_tls']}/small"
    got = {}
    for p, (addr, ca) in peers.items():
        if p == "direct":
            continue
        codes = []
        for method in ("GET", "DELETE"):
            r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "",
                                "-x", f"http://{addr}", "--cacert", ca, "-X", method, "--max-time", "10", url],
                               capture_output=True, text=True, timeout=30)
            codes.append(r.stdout.strip() or r.stderr.strip()[:80])
        got[p] = codes
    line = ", ".join(f"{p} GET {c[0]} DELETE {c[1]}" for p, c in got.items())
    print(f"inspection check ({url}): {line}", flush=True)
    if any(c != ["200", "403"] for c in got.values()):
        raise SystemExit("the inspected destination is not inspected as configured: no inspect figures")


def report(w, ports, eg, tp, sq, args):
    secs, rounds = args.seconds, args.rounds
    PIDS.update(egressd=eg.pid, tinyproxy=tp.pid, squid=sq.pid)
    modes = args.modes.split(",")
    chosen = (args.peers or ",".join(TABLE_PEERS)).split(",")
    cols = [p for p in TABLE_PEERS if p in chosen and (p != "baseline" or args.baseline)]
    cpu_cols = [p for p in cols if p != "direct"]
    concs = [8] if args.quick else [1, 8, 32]
    origin = f"127.0.0.1:{ports['origin']}"
    addr = {p: f"127.0.0.1:{ports[p]}" for p in cols if p != "direct"}
    addr["direct"] = "direct"
    mock = f"127.0.0.1:{ports['mock']}"
    rows, cpu_rows = [], []
    print(f"bench: {machine()}")
    if args.baseline:
        where = os.path.dirname(os.path.abspath(args.baseline))
        commit = args.baseline_name or subprocess.run(
            ["git", "-C", where, "log", "-1", "--format=commit %h %s"], capture_output=True,
            text=True).stdout.strip()[:80]
        print(f"baseline: {args.baseline} ({commit or 'not in a git tree'})")
    print(f"modes: {','.join(modes)}; {rounds} rounds of {secs} s per cell\n", flush=True)

    def compare(candidates, call):
        """The chosen peers among candidates, side by side; call(peer) -> loadgen's figures."""
        return side_by_side({p: (lambda p=p: call(p)) for p in cols if p in candidates}, rounds)

    def emit(row):
        rows.append(row)
        print(row, flush=True)

    def line(what, conc, results, key):
        e = results.get("egressd", {}).get(key)
        cells = " | ".join(f"{results[p][key]:.1f}" if p in results else "-" for p in cols)
        ratios = ", ".join(f"{e / results[a][key]:.2f}x {a}" for a in cols
                           if a != "egressd" and e is not None and results.get(a, {}).get(key))
        emit(f"| {what} | {conc} | {cells} | {ratios} |")
        if "cpu_us" in results.get("egressd", {}) and key == "rate":
            us = {p: results[p]["cpu_us"] for p in cpu_cols if p in results}
            cpu_rows.append(f"| {what.split()[0]} | {conc} | " + " | ".join(
                f"{us[p]:.0f}" if p in us else "-" for p in cpu_cols) + " | " +
                ", ".join(f"{us['egressd'] / us[p]:.2f}x {p}" for p in cpu_cols
                          if p != "egressd" and us.get(p)) + " |")

    def text_row(what, conc, cells, note):
        emit(f"| {what} | {conc} | " + " | ".join(cells.get(p, "") for p in cols) + f" | {note} |")

    def latency(what, res, target):
        """Added latency: each proxy's median and p99 over direct's."""
        cells = {p: f"median {res[p]['median_us'] - res['direct']['median_us']:.0f} us, "
                    f"p99 {res[p]['p99_us'] - res['direct']['p99_us']:.0f} us"
                 for p in res if p != "direct"}
        cells["direct"] = f"direct median {res['direct']['median_us']:.0f} us"
        text_row(what, 1, cells, target)

    print("| mode | conc | " + " | ".join(cols) + " | egressd ratio |")
    print("|---|---|" + "---|" * len(cols) + "---|")
    for mode in ("tunnel", "keepalive", "forward"):
        for c in concs if mode in modes else []:
            res = compare(addr, lambda p: loadgen(mode, addr[p], origin, c, secs, path="/small"))
            line(f"{mode} req/s", c, res, "rate")
    for c in ([1] if args.quick else [1, 8]) if "bulk" in modes else []:
        res = compare(addr, lambda p: loadgen("bulk", addr[p], origin, c, secs, path="/big"))
        line("bulk MB/s", c, res, "mb_s")
    bump = {"egressd": (addr.get("egressd"), f"{w}/egressd-ca.pem", "inference.test:443"),
            "baseline": (addr.get("baseline"), f"{w}/baseline-ca.pem", "inference.test:443"),
            "squid": (f"127.0.0.1:{ports['squid_bump']}", f"{w}/squid-ca.pem",
                      f"inference.test:{ports['origin_tls']}")}
    for mode in ("tls-new", "tls-resume", "tls-keep"):
        for c in concs if mode in modes else []:
            res = compare(bump, lambda p: loadgen(mode, bump[p][0], origin, c, secs, path="/v1/models",
                                                  host=bump[p][2], cafile=bump[p][1]))
            line(f"{mode} req/s", c, res, "rate")
    # Inspected requests (DESIGN section 10): CONNECT localhost:PORT, TLS
    # with the proxy's minted leaf, GET /small, re-encrypted to nginx; direct
    # is the same TLS client straight to nginx.
    otls, ihost = f"127.0.0.1:{ports['origin_tls']}", f"{INSPECT_HOST}:{ports['origin_tls']}"
    inspect = {p: v for p, v in (("egressd", (addr.get("egressd"), f"{w}/egressd-ca.pem")),
                                 ("baseline", (addr.get("baseline"), f"{w}/baseline-ca.pem")),
                                 ("squid", (f"127.0.0.1:{ports['squid_bump']}", f"{w}/squid-ca.pem")),
                                 ("direct", ("direct", f"{w}/ca.pem")))
               if p in cols and (p != "baseline" or args.baseline_inspects)}

    def inspected(mode, conc):
        return compare(inspect, lambda p: loadgen(mode, inspect[p][0], otls, conc, secs, path="/small",
                                                  host=ihost, cafile=inspect[p][1]))

    if {"inspect-keep", "inspect-new", "inspect-latency"} & set(modes):
        check_inspection(w, ports, inspect)
    for mode, lg in (("inspect-keep", "tls-keep"), ("inspect-new", "tls-new")):
        for c in concs if mode in modes else []:
            line(f"{mode} req/s", c, inspected(lg, c), "rate")
    if "egressd" in cols and "direct" in cols and "inference-latency" in modes:
        body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
        res = side_by_side({"egressd": lambda: loadgen("forward", addr["egressd"], mock, 1, secs,
                                                       path="/v1/chat/completions", host="inference.test",
                                                       method="POST", body=body),
                            "direct": lambda: loadgen("keepalive", "direct", mock, 1, secs,
                                                      path="/v1/chat/completions", method="POST", body=body)},
                           rounds)
        latency("inference added latency", res, "target < 100 us")
    if "egressd" in cols and "direct" in cols and "stream" in modes:
        stream_body = '{"model":"m","stream":true}'
        path = "/v1/chat/completions?stamp=1&chunks=20"
        res = side_by_side({"egressd": lambda: loadgen("stream", addr["egressd"], mock, 1, secs,
                                                       path=path, host="inference.test:80", method="POST",
                                                       body=stream_body),
                            "direct": lambda: loadgen("stream", "direct", mock, 1, secs, path=path,
                                                      method="POST", body=stream_body)}, rounds)
        text_row("streamed piece delay", 1, {
            "egressd": f"median {res['egressd']['median_us']:.0f} us, p99 {res['egressd']['p99_us']:.0f} us",
            "direct": f"median {res['direct']['median_us']:.0f} us"}, "target < 1 ms")
    if "direct" in cols and "inspect-latency" in modes:
        latency("inspect added latency", inspected("tls-keep", 1), "target < 150 us")
    if "idle" in modes:
        procs_by = {"egressd": eg, "tinyproxy": tp, "squid": sq}
        idle = {p: idle_tunnels(ports[p], origin, procs_by[p].pid) for p in cpu_cols if p in procs_by}
        cells = {p: f"{per:.1f} ({ok} open)" for p, (per, ok) in idle.items()}
        cells["direct"] = "-"
        text_row("idle tunnel RSS KiB", 1000, cells, "target <= 16")
    print("\nEach proxy's own CPU time per operation (us; lower is better):\n")
    print("| mode | conc | " + " | ".join(cpu_cols) + " | egressd / peer |")
    print("|---|---|" + "---|" * len(cpu_cols) + "---|")
    for r in cpu_rows:
        print(r, flush=True)


# ---- inference with a budget and an alias (docs/benchmarks.md) ---------------------------------

BENCH_CHAT = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'


def run_budget_alias(w, ports, args):
    """The inference added latency of the tables, and the same with the route
    rewriting "m" through model_map and a budget admitting every request
    and counting its tokens (limits far away: nothing is refused)."""
    print(f"inference latency with a budget and an alias: {machine()}", flush=True)
    mock = start([MOCK, "/dev/null"], stdout=subprocess.PIPE, text=True)
    ports["mock"] = int(readline(mock.stdout, 15) or 0)
    ports["variant"] = free_port()
    start_egressd(w, ports["egressd"], ports["origin"], ports["mock"])
    start_egressd(w, ports["variant"], ports["origin"], ports["mock"], name="egressd-budget-alias",
                  route_extra="model_map = gpt-4o=llama-70b, m=llama-bench, gpt-*=llama-any\n",
                  sections="[budget bench]\nroutes = backend\ntokens = 1000000000000\n"
                           "requests = 1000000000000\nwindow = 24h\n")
    mockaddr = f"127.0.0.1:{ports['mock']}"

    def through(port):
        return lambda: loadgen("forward", f"127.0.0.1:{port}", mockaddr, 1, args.seconds,
                               path="/v1/chat/completions", host="inference.test", method="POST",
                               body=BENCH_CHAT)

    res = side_by_side({"egressd": through(ports["egressd"]),
                        "budget+alias": through(ports["variant"]),
                        "direct": lambda: loadgen("keepalive", "direct", mockaddr, 1, args.seconds,
                                                  path="/v1/chat/completions", method="POST",
                                                  body=BENCH_CHAT)}, args.rounds)
    print("| egressd | configuration | added median | added p99 | direct median |")
    print("|---|---|---|---|---|")
    d = res["direct"]
    for name, what in (("egressd", "as in the tables"), ("budget+alias", "budget and model_map hit")):
        r = res[name]
        print(f"| {name} | {what} | {r['median_us'] - d['median_us']:.0f} us | "
              f"{r['p99_us'] - d['p99_us']:.0f} us | {d['median_us']:.0f} us |", flush=True)


# ---- reliability: hold N tunnels, slow clients (docs/reliability.md) ---------------------------

def machine():
    """One line saying when, where and what was measured."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    def git(*a):
        return subprocess.run(["git", "-C", TOP, *a], capture_output=True, text=True).stdout.strip() or "?"

    src = ("proxy", "policy", "tls", "inference")  # egressd's code
    code = git("log", "-1", "--format=%h", "--", *src)
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *src) != "?"
    load = open("/proc/loadavg").read().split()[:3]
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPU ({cpu}), Linux {os.uname().release}, "
            f"load {' '.join(load)}; egressd {EGRESSD} built from commit {code}"
            f"{' plus uncommitted changes' if dirty else ''} (tree at {git('rev-parse', '--short', 'HEAD')})")


def raw_loadgen(args, timeout):
    """Run loadgen; its key=value line as a dict of strings (never waits past timeout)."""
    try:
        out = subprocess.run([LOADGEN, *map(str, args)], capture_output=True, text=True,
                             timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    line = out.strip().splitlines()[-1] if out.strip() else "error=no_output"
    return dict(kv.split("=", 1) for kv in line.split())


def probe(addr, origin, ops, timeout=120):
    """`ops` sequential new tunnels (tunnel + request + close): p50 and p99 in ms."""
    r = raw_loadgen(["tunnel", "--proxy", addr, "--target", origin, "--path", "/small",
                     "--concurrency", 1, "--ops", ops, "--seconds", timeout - 10], timeout)
    try:
        return {"p50": round(float(r["median_us"]) / 1e3, 3), "p99": round(float(r["p99_us"]) / 1e3, 3),
                "ops": int(r["ops"]),
                "errors": int(r["errors"])}
    except (KeyError, ValueError):
        return {"p50": float("nan"), "p99": float("nan"), "ops": 0, "errors": ops, "raw": r}


def fd_count(pids):
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def threads(pids):
    return status_sum(pids, "Threads")


def kernel_stack_kb():
    """System-wide kernel stacks (KiB): each thread has one, which RSS does not show."""
    with open("/proc/meminfo") as f:
        return int(re.search(r"KernelStack:\s+(\d+)", f.read()).group(1))


def rss_by_kind(pids):
    """RSS (KiB) by kind of mapping, from smaps: where the memory of the tunnels lives."""
    kinds = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as f:
                text = f.read()
        except OSError:
            continue
        kind = None
        for line in text.splitlines():
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$", line)
            if m:
                size = (int(m.group(2), 16) - int(m.group(1), 16)) // 1024
                name = m.group(5)
                kind = (name if name.startswith("[") else "files" if name else
                        "anon <= 1 MiB (thread stacks)" if size <= 1024 else "anon > 1 MiB (malloc arenas)")
            elif line.startswith("Rss:") and kind:
                kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def snapshot(pid):
    pids = tree(pid)
    return {"fds": fd_count(pids), "rss": rss_kb(pids), "threads": threads(pids), "kstack": kernel_stack_kb()}


def readline(stream, timeout):
    """One line from a child's stdout, or "" after timeout seconds."""
    got = []
    t = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return got[0] if got else ""


def stop_proc(p, timeout=30):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def log_excerpt(path, pattern, limit=3):
    """How many lines of a log match, and the first few distinct ones."""
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if re.search(pattern, l)]
    except OSError:
        return 0, []
    first = []
    for l in lines:
        key = re.sub(r'"ts":"[^"]*",?|^\S+ \S+ |\d+', "", l)[:120]
        if key not in [k for k, _ in first]:
            first.append((key, l[:300]))
        if len(first) >= limit:
            break
    return len(lines), [l for _, l in first]


def hold(name, addr, proc, origin, n, args):
    """Open n tunnels through one proxy and keep them while measuring it."""
    out = {"name": name}
    out["probe0"] = probe(addr, origin, args.probe_ops)
    time.sleep(1)
    out["before"] = snapshot(proc.pid)
    out["kinds0"] = rss_by_kind(tree(proc.pid))
    h = start([LOADGEN, "hold", "--proxy", addr, "--target", origin, "--path", "/small", "--count", n,
               "--inflight", args.inflight, "--seconds", args.hold_seconds, "--open-seconds",
               args.open_seconds], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = readline(h.stdout, args.open_seconds + 30).strip()
        out["open_raw"] = line or "(no answer from loadgen hold)"
        opened = dict(kv.split("=", 1) for kv in line.split()) if line else {}
        out["ok"] = int(opened.get("ok", 0))
        out["failed"] = int(opened.get("errors", n))
        out["open_s"] = float(opened.get("open_s", "nan"))
        time.sleep(2)  # let the proxy settle: pools grown, buffers released
        out["held"] = snapshot(proc.pid)
        out["held_kinds"] = rss_by_kind(tree(proc.pid))
        out["before_kinds"] = out.pop("kinds0")
        out["probe1"] = probe(addr, origin, args.probe_ops)
        out["held_after_probe"] = snapshot(proc.pid)
        h.stdin.close()  # release
        out["end_raw"] = readline(h.stdout, 60).strip() or "(no answer from loadgen hold)"
    finally:
        stop_proc(h, 60)
    # back to where it started?  (egressd's extra workers leave after 30 s idle)
    t0 = time.time()
    while time.time() - t0 < args.settle_seconds:
        time.sleep(1)
        out["released"] = snapshot(proc.pid)
        rel = out["released"]  # (a thread-per-connection proxy may keep a few fds per thread: pipes)
        if rel["threads"] <= out["before"]["threads"] + 8 and rel["fds"] <= out["before"]["fds"] + 4 * rel["threads"]:
            break
    out["settle_s"] = time.time() - t0
    out["alive"] = proc.poll() is None
    return out


def print_hold(results, n):
    def ms(p, key):
        return f"{p[key]:.2f}" if p["ops"] else "n/a"

    def per(r, key):
        return (r["held"][key] - r["before"][key]) / r["ok"] if r["ok"] else float("nan")

    print(f"\n### hold: {n} concurrent tunnels per proxy\n")
    print("| proxy | opened / N | failed | time to open s | fds per tunnel | RSS KiB per tunnel | kernel stack "
          "KiB per tunnel | threads held | new tunnel p50 ms N=0 → N | new tunnel p99 ms N=0 → N | probe errors "
          "N=0 / N | after release: fds, threads, RSS MiB (s) | alive |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        a, b, rel = r["probe0"], r["probe1"], r["released"]
        print(f"| {r['name']} | {r['ok']} / {n} | {r['failed']} | {r['open_s']:.1f} | {per(r, 'fds'):.2f} "
              f"| {per(r, 'rss'):.1f} | {per(r, 'kstack'):.1f} | {r['held']['threads']} "
              f"| {ms(a, 'p50')} → {ms(b, 'p50')} | {ms(a, 'p99')} → {ms(b, 'p99')} | {a['errors']} / {b['errors']} "
              f"| {rel['fds']}, {rel['threads']}, {rel['rss'] / 1024:.1f} ({r['settle_s']:.0f} s) "
              f"| {'yes' if r['alive'] else 'NO'} |")
    print("\nTargets (DESIGN §9, at 10,000): at most 3 fds and 16 KiB per tunnel, new tunnel p99 < 5 ms.")
    print("\nRaw figures:\n")
    for r in results:
        print(f"{r['name']}:")
        print(f"  before  {r['before']}")
        print(f"  held    {r['held']}  (after the probe: {r['held_after_probe']})")
        if "held_kinds" in r:
            print(f"  RSS KiB by mapping, before: {r['before_kinds']}")
            print(f"  RSS KiB by mapping, held:   {r['held_kinds']}")
        print(f"  release {r['released']}  ({r['settle_s']:.0f} s after)")
        print(f"  probe N=0 {r['probe0']}")
        print(f"  probe N   {r['probe1']}")
        print(f"  {r['open_raw']}")
        print(f"  {r['end_raw']}")
        for what, (count, lines) in r.get("logs", {}).items():
            print(f"  {what}: {count} lines" + "".join(f"\n    {l}" for l in lines))
    sys.stdout.flush()


def run_hold(w, ports, eg, tp, sq, args):
    n = args.hold
    origin = f"127.0.0.1:{ports['origin']}"
    peers = {"egressd": (f"127.0.0.1:{ports['egressd']}", eg), "tinyproxy": (f"127.0.0.1:{ports['tinyproxy']}", tp),
             "squid": (f"127.0.0.1:{ports['squid']}", sq)}
    print(f"hold N={n}: {machine()}", flush=True)
    results = []
    for name in (args.peers or "egressd,tinyproxy,squid").split(","):
        addr, proc = peers[name]
        print(f"{name}: opening {n} tunnels ...", flush=True)
        r = hold(name, addr, proc, origin, n, args)
        r["logs"] = proxy_logs(w, name)
        results.append(r)
        print(f"  {r['open_raw']}\n  {r['end_raw']}", flush=True)
    print_hold(results, n)


def log_summary(path, limit=10):
    """egressd's JSON log in counts: (level, event, reason or message without numbers) -> lines."""
    counts = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                what = d.get("reason") or d.get("end") or re.sub(r"\d+", "N", d.get("msg", ""))[:80]
                key = f'{d.get("level")} {d.get("event")} {what}' + (f' ({d["detail"]})' if "detail" in d else "")
                key = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:N", key)
                counts[key] = counts.get(key, 0) + 1
    except OSError:
        return 0, []
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return sum(counts.values()), [f"{n:7d}  {k}" for k, n in top]


def proxy_logs(w, name):
    if name == "egressd":
        return {"egressd log (counted by level, event, reason)": log_summary(f"{w}/egressd.log")}
    if name == "squid":
        return {"squid cache.log warnings": log_excerpt(f"{w}/squid-cache.log", r"WARNING|ERROR|FATAL")}
    return {"tinyproxy log": log_excerpt(f"{w}/tinyproxy.log", r"ERROR|CRITICAL|WARNING")}


def start_egressd_example(w, port, origin, max_workers=None):
    """conf/egressd.ini as shipped (header_timeout 10s, workers 16,
    max_workers 512, queue 1024, JSON logs at info), with its state under
    the bench's directory and one allow rule for the loopback origin."""
    with open(os.path.join(TOP, "conf", "egressd.ini")) as f:
        conf = f.read()
    tag = f"example-{max_workers}" if max_workers else "example"
    os.makedirs(f"{w}/{tag}", exist_ok=True)
    conf = conf.replace("/var/lib/egressd", f"{w}/{tag}")
    conf = re.sub(r"(?m)^listen = .*$", f"listen = 127.0.0.1:{port}\nunsafe_allow_loopback = yes", conf)
    conf = re.sub(r"(?m)^header_timeout = .*$", "header_timeout = 10s", conf)
    if max_workers:
        conf = re.sub(r"(?m)^max_workers = .*$", f"max_workers = {max_workers}", conf)
    conf += f"\n[allow bench-origin]\nhost = 127.0.0.1\nport = {origin.rsplit(':', 1)[1]}\n"
    with open(f"{w}/{tag}.ini", "w") as f:
        f.write(conf)
    p = start([EGRESSD, "-c", f"{w}/{tag}.ini"], stderr=open(f"{w}/{tag}.log", "wb"))
    wait_port(port)
    return p, f"{w}/{tag}.log"


def slow(name, addr, proc, origin, args):
    """A normal client's new tunnels, alone and beside K slow clients."""
    out = {"name": name}
    base = raw_loadgen(["tunnel", "--proxy", addr, "--target", origin, "--path", "/small", "--concurrency", 1,
                        "--seconds", args.base_seconds], args.base_seconds + 60)
    out["base"] = base
    sl = start([LOADGEN, "slow", "--proxy", addr, "--target", origin, "--count", args.slow_clients,
                "--seconds", args.slow_seconds], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the slow clients are connected and sending
        out["during"] = raw_loadgen(["tunnel", "--proxy", addr, "--target", origin, "--path", "/small",
                                     "--concurrency", 1, "--seconds", args.slow_seconds - 5],
                                    args.slow_seconds + 60)
        out["slow_raw"] = readline(sl.stdout, args.slow_seconds + 30).strip() or "(no answer from loadgen slow)"
    finally:
        stop_proc(sl, 30)
    time.sleep(2)
    out["after"] = raw_loadgen(["tunnel", "--proxy", addr, "--target", origin, "--path", "/small",
                                "--concurrency", 1, "--seconds", 3], 60)
    out["alive"] = proc.poll() is None
    return out


def print_slow(results, args):
    def f(r, key, scale=1e3):
        try:
            return f"{float(r[key]) / scale:.2f}"
        except (KeyError, ValueError):
            return "?"

    print(f"\n### slow clients: {args.slow_clients} clients sending a CONNECT head at one byte a second, "
          f"{args.slow_seconds} s\n")
    print("| proxy | normal p50 ms alone → beside | normal p99 ms alone → beside | added median ms | normal ops "
          "(errors) alone / beside | slow connections | cut 408 | cut other status | closed | reset | "
          "time to cut median / p90 / max s | still open at end | normal p50 ms after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        b, d, s, a = r["base"], r["during"], dict(kv.split("=", 1) for kv in r["slow_raw"].split() if "=" in kv), \
            r["after"]
        try:
            added = f"{(float(d['median_us']) - float(b['median_us'])) / 1e3:.2f}"
        except (KeyError, ValueError):
            added = "?"
        others = sum(int(v) for k, v in s.items() if k.startswith("status_") and k != "status_408")
        print(f"| {r['name']} | {f(b, 'median_us')} → {f(d, 'median_us')} | {f(b, 'p99_us')} → {f(d, 'p99_us')} "
              f"| {added} | {b.get('ops', '?')} ({b.get('errors', '?')}) / {d.get('ops', '?')} ({d.get('errors', '?')}) "
              f"| {s.get('attempts', '?')} | {s.get('cut_408', '?')} | {others} | {s.get('cut_eof', '?')} "
              f"| {s.get('cut_reset', '?')} | {s.get('cut_median_s', '?')} / {s.get('cut_p90_s', '?')} / "
              f"{s.get('cut_max_s', '?')} | {s.get('open_at_end', '?')} | {f(a, 'median_us')} |")
    print("\nTarget (security issue): the median delay the slow clients add stays under 100 ms.")
    print("\nRaw figures:\n")
    for r in results:
        print(f"{r['name']}:")
        for k in ("base", "during", "after"):
            print(f"  normal {k}: " + " ".join(f"{a}={b}" for a, b in r[k].items()))
        print(f"  {r['slow_raw']}")
        print(f"  alive after: {'yes' if r['alive'] else 'NO'}")
        for what, (count, lines) in r.get("logs", {}).items():
            print(f"  {what}: {count} lines" + "".join(f"\n    {l}" for l in lines))
    sys.stdout.flush()


def run_slow(w, ports, tp, sq, args):
    origin = f"127.0.0.1:{ports['origin']}"
    print(f"slow clients K={args.slow_clients}: {machine()}", flush=True)
    results = []
    for name in (args.peers or "egressd,tinyproxy,squid").split(","):
        if name == "egressd":
            variants = [("egressd (example conf)", None)]
            if args.slow_max_workers:
                variants.append((f"egressd (example, max_workers {args.slow_max_workers})", args.slow_max_workers))
            for label, mw in variants:
                port = free_port()
                proc, log = start_egressd_example(w, port, origin, mw)
                print(f"{label}: ...", flush=True)
                r = slow(label, f"127.0.0.1:{port}", proc, origin, args)
                r["logs"] = {"egressd log (counted by level, event, reason)": log_summary(log)}
                stop_proc(proc)
                results.append(r)
        else:
            proc = tp if name == "tinyproxy" else sq
            print(f"{name}: ...", flush=True)
            r = slow(name, f"127.0.0.1:{ports[name]}", proc, origin, args)
            r["logs"] = proxy_logs(w, name)
            results.append(r)
        time.sleep(2)
    print_slow(results, args)


if __name__ == "__main__":
    sys.exit(main())

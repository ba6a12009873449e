#!/usr/bin/env python3
"""egressd side by side with tinyproxy, squid (squid-openssl with ssl-bump
for interception) and direct connections, on loopback, in one run.

Starts an nginx origin (plain and TLS), the mock backend, egressd, tinyproxy
and squid, each configured for the same work with logging off, runs every
loadgen mode at concurrency 1, 8 and 32, measures the RSS
of 1,000 idle tunnels, prints one Markdown table with egressd's ratios, and
stops everything it started.

Every cell is the median of --rounds rounds in which the peers take turns
(--seconds each), so that the peers compared share the same moments of a
noisy machine.

usage: bench/run.py [--seconds N] [--rounds N] [--quick]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
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


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def run(cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def make_certs(w):
    """A bench CA, and a certificate for the TLS origin behind squid."""
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=bench CA", "-days", "2", "-keyout", f"{w}/ca.key", "-out", f"{w}/ca.pem",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=inference.test", "-keyout", f"{w}/origin.key", "-out", f"{w}/origin.csr"])
    with open(f"{w}/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:inference.test\n")
    run(["openssl", "x509", "-req", "-in", f"{w}/origin.csr", "-CA", f"{w}/ca.pem", "-CAkey", f"{w}/ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", f"{w}/ext.cnf", "-out", f"{w}/origin.pem"])


def start_nginx(w, port, tls_port):
    os.makedirs(f"{w}/www/v1", exist_ok=True)
    with open(f"{w}/www/small", "w") as f:
        f.write("x" * 100)
    with open(f"{w}/www/v1/models", "w") as f:
        f.write('{"object":"list","data":[{"id":"m1","object":"model","owned_by":"bench"}]}')
    with open(f"{w}/www/big", "wb") as f:
        f.truncate(256 << 20)
    conf = f"""
daemon off; worker_processes 1; pid {w}/nginx.pid; error_log {w}/nginx.err;
events {{ worker_connections 8192; }}
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


def start_egressd(w, port, origin, mock_port):
    conf = f"""[proxy]
listen = 127.0.0.1:{port}
workers = 16
max_workers = 1200
log_level = error
idle_timeout = 10m
unsafe_allow_loopback = yes
[tls]
ca_cert = {w}/egressd-ca.pem
ca_key = {w}/egressd-ca.key
bundle = {w}/egressd-bundle.pem
[inference]
host = inference.test
[route backend]
endpoint = http://127.0.0.1:{mock_port}/v1
protocols = openai_chat_completions
[route models]
endpoint = http://127.0.0.1:{origin}/v1
protocols = model_discovery
[allow local]
host = 127.0.0.1
port = 1-65535
"""
    with open(f"{w}/egressd.ini", "w") as f:
        f.write(conf)
    p = start([EGRESSD, "-c", f"{w}/egressd.ini"])
    wait_port(port)
    return p


def start_tinyproxy(w, port):
    with open(f"{w}/tinyproxy.conf", "w") as f:
        f.write(f"Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 1200\nAllow 127.0.0.1\n"
                f"LogLevel Critical\nLogFile \"{w}/tinyproxy.log\"\nPidFile \"{w}/tinyproxy.pid\"\n"
                "DisableViaHeader Yes\n")
    p = start(["tinyproxy", "-d", "-c", f"{w}/tinyproxy.conf"])
    wait_port(port)
    return p


def start_squid(w, port, bump_port):
    db = f"{w}/ssl_db"
    with open(f"{w}/hosts", "w") as f:
        f.write("127.0.0.1 inference.test\n")
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
http_access allow all
access_log none
cache_store_log none
cache deny all
cache_mem 8 MB
pid_filename {w}/squid.pid
cache_log {w}/squid-cache.log
coredump_dir {w}
max_filedescriptors 8192
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
    p = start(["squid", "-N", "-f", f"{w}/squid.conf"])
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
    one round of one peer, not a whole cell.  Each proxy's own CPU time per
    operation is kept too (cpu_us): it does not depend on how the two cores
    were shared with the load generator and the origin."""
    got = {p: [] for p in runs}
    hz = os.sysconf("SC_CLK_TCK")
    for _ in range(rounds):
        for p, call in runs.items():
            pid = PIDS.get(p)
            before = cpu_ticks(pid) if pid else 0
            r = call()
            if pid:
                r["cpu_us"] = (cpu_ticks(pid) - before) * 1e6 / hz / max(r["ops"], 1)
            got[p].append(r)
    return {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in got.items()}


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


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
    args = ap.parse_args()
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 idle tunnels
    w = tempfile.mkdtemp(prefix="egressd-bench-")
    try:
        ports = {k: free_port() for k in ("origin", "origin_tls", "mock", "egressd", "tinyproxy", "squid",
                                          "squid_bump")}
        make_certs(w)
        start_nginx(w, ports["origin"], ports["origin_tls"])
        mock = subprocess.Popen([MOCK, "/dev/null"], stdout=subprocess.PIPE, text=True)
        procs.append(mock)
        ports["mock"] = int(mock.stdout.readline())
        eg = start_egressd(w, ports["egressd"], ports["origin"], ports["mock"])
        tp = start_tinyproxy(w, ports["tinyproxy"])
        sq = start_squid(w, ports["squid"], ports["squid_bump"])
        report(w, ports, eg, tp, sq, args)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(w, ignore_errors=True)


def report(w, ports, eg, tp, sq, args):
    secs, rounds = args.seconds, args.rounds
    PIDS.update(egressd=eg.pid, tinyproxy=tp.pid, squid=sq.pid)
    cpu_rows = []
    concs = [8] if args.quick else [1, 8, 32]
    origin = f"127.0.0.1:{ports['origin']}"
    peers = {"egressd": f"127.0.0.1:{ports['egressd']}", "tinyproxy": f"127.0.0.1:{ports['tinyproxy']}",
             "squid": f"127.0.0.1:{ports['squid']}", "direct": "direct"}
    rows = []

    def line(what, conc, results, key, against):
        e = results["egressd"][key]
        cells = " | ".join(f"{results[p][key]:.1f}" if p in results else "-" for p in
                           ("egressd", "tinyproxy", "squid", "direct"))
        ratios = ", ".join(f"{e / results[a][key]:.2f}x {a}" for a in against if results.get(a, {}).get(key))
        rows.append(f"| {what} | {conc} | {cells} | {ratios} |")
        print(rows[-1], flush=True)
        if "cpu_us" in results["egressd"] and key == "rate":
            us = {p: results[p]["cpu_us"] for p in ("egressd", "tinyproxy", "squid") if p in results}
            cpu_rows.append(f"| {what.split()[0]} | {conc} | " + " | ".join(
                f"{us[p]:.0f}" if p in us else "-" for p in ("egressd", "tinyproxy", "squid")) + " | " +
                ", ".join(f"{us['egressd'] / us[p]:.2f}x {p}" for p in ("tinyproxy", "squid")
                          if us.get(p)) + " |")

    print("| mode | conc | egressd | tinyproxy | squid | direct | egressd ratio |")
    print("|---|---|---|---|---|---|---|")
    for mode, key, extra in (("tunnel", "rate", {"path": "/small"}),
                             ("keepalive", "rate", {"path": "/small"}),
                             ("forward", "rate", {"path": "/small"})):
        for c in concs:
            res = side_by_side({p: (lambda a=addr: loadgen(mode, a, origin, c, secs, **extra))
                                for p, addr in peers.items()}, rounds)
            line(f"{mode} req/s", c, res, key, ("tinyproxy", "squid", "direct"))
    for c in [1] if args.quick else [1, 8]:
        res = side_by_side({p: (lambda a=addr: loadgen("bulk", a, origin, c, secs, path="/big"))
                            for p, addr in peers.items()}, rounds)
        line("bulk MB/s", c, res, "mb_s", ("tinyproxy", "squid", "direct"))
    bump = {"egressd": (f"127.0.0.1:{ports['egressd']}", f"{w}/egressd-ca.pem", "inference.test:443"),
            "squid": (f"127.0.0.1:{ports['squid_bump']}", f"{w}/squid-ca.pem",
                      f"inference.test:{ports['origin_tls']}")}
    for mode in ("tls-new", "tls-resume", "tls-keep"):
        for c in concs:
            res = side_by_side({p: (lambda a=addr, ca=ca, h=host: loadgen(
                mode, a, origin, c, secs, path="/v1/models", host=h, cafile=ca))
                for p, (addr, ca, host) in bump.items()}, rounds)
            line(f"{mode} req/s", c, res, "rate", ("squid",))
    body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    mock = f"127.0.0.1:{ports['mock']}"
    res = side_by_side({"egressd": lambda: loadgen("forward", peers["egressd"], mock, 1, secs,
                                                   path="/v1/chat/completions", host="inference.test",
                                                   method="POST", body=body),
                        "direct": lambda: loadgen("keepalive", "direct", mock, 1, secs,
                                                  path="/v1/chat/completions", method="POST", body=body)},
                       rounds)
    added = res["egressd"]["median_us"] - res["direct"]["median_us"]
    added99 = res["egressd"]["p99_us"] - res["direct"]["p99_us"]
    rows.append(f"| inference added latency | 1 | median {added:.0f} us, p99 {added99:.0f} us | | | "
                f"direct median {res['direct']['median_us']:.0f} us | target < 100 us |")
    print(rows[-1], flush=True)
    stream_body = '{"model":"m","stream":true}'
    path = "/v1/chat/completions?stamp=1&chunks=20"
    res = side_by_side({"egressd": lambda: loadgen("stream", peers["egressd"], mock, 1, secs, path=path,
                                                   host="inference.test:80", method="POST",
                                                   body=stream_body),
                        "direct": lambda: loadgen("stream", "direct", mock, 1, secs, path=path,
                                                  method="POST", body=stream_body)}, rounds)
    rows.append(f"| streamed piece delay | 1 | median {res['egressd']['median_us']:.0f} us, "
                f"p99 {res['egressd']['p99_us']:.0f} us | | | median {res['direct']['median_us']:.0f} us "
                f"| target < 1 ms |")
    print(rows[-1], flush=True)
    idle = {}
    for name, port, proc in (("egressd", ports["egressd"], eg), ("tinyproxy", ports["tinyproxy"], tp),
                             ("squid", ports["squid"], sq)):
        per, ok = idle_tunnels(port, origin, proc.pid)
        idle[name] = (per, ok)
    rows.append("| idle tunnel RSS KiB | 1000 | " + " | ".join(
        f"{idle[n][0]:.1f} ({idle[n][1]} open)" for n in ("egressd", "tinyproxy", "squid")) + " | - | target <= 16 |")
    print(rows[-1], flush=True)
    print("\nEach proxy's own CPU time per operation (us; lower is better):\n")
    print("| mode | conc | egressd | tinyproxy | squid | egressd / peer |")
    print("|---|---|---|---|---|---|")
    for r in cpu_rows:
        print(r, flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""The core proxy end to end: the real binary, driven by curl, python
requests and raw sockets, against local origins."""
import hashlib
import json
import socket
import subprocess
import threading
import time

import requests

from conftest import (connect_error, connect_via, parse_error, pattern_sha256, proxy_config, read_head, read_response,
                      TcpServer)


def curl(*args, timeout=60):
    r = subprocess.run(["curl", "-sS", "--noproxy", "", *args], capture_output=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode()


def allow_local(ports="1-65535", name="local", hosts="127.0.0.1, localhost"):
    return f"[allow {name}]\nhost = {hosts}\nport = {ports}\n"


# ---- allow, deny, and the decision order ---------------------------------------

def test_connect_and_forward_allowed(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    rc, out, err = curl("-p", "-x", e.url, f"http://127.0.0.1:{origin}/hello")
    assert rc == 0, err
    assert out == b"hello\n"
    rc, out, err = curl("-x", e.url, f"http://localhost:{origin}/hello")
    assert rc == 0, err
    assert out == b"hello\n"
    conn = e.events("connect", action="allow")
    assert conn and conn[0]["host"] == "127.0.0.1" and conn[0]["rule"] == "local"
    for key in ("ts", "level", "src", "port", "reason", "status"):
        assert key in conn[0], key
    close = e.events("close")
    assert close and close[0]["bytes_up"] > 0 and close[0]["bytes_down"] > 0
    assert "duration_ms" in close[0]
    fwd = e.events("forward", action="allow")
    assert fwd and fwd[0]["status"] == 200 and fwd[0]["bytes_down"] == 6


def test_denied_gets_json_403(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local(ports="1")))
    s = e.connect()
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % origin)
    code, headers, body = parse_error(read_response(s))
    assert code == 403
    assert headers["x-egressd-error"] == "policy_denied"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body["error"] == "policy_denied"
    assert "rule" not in body
    rc, out, err = curl("-i", "-x", e.url, f"http://127.0.0.1:{origin}/hello")
    assert b"403 egressd policy: 127.0.0.1:%d is not allowed (" % origin in out, out
    assert b"policy_denied" in out
    deny = e.events("connect", action="deny")
    assert deny and deny[0]["status"] == 403 and deny[0]["host"] == "127.0.0.1"


def test_explicit_deny_beats_allow(start_egressd, origin):
    rules = allow_local() + "[deny no-localhost]\nhost = localhost\n"
    e = start_egressd(proxy_config(rules=rules))
    r = requests.get(f"http://localhost:{origin}/hello", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403
    assert r.json() == {"error": "policy_denied", "detail": "denied by rule", "rule": "no-localhost"}
    r = requests.get(f"http://127.0.0.1:{origin}/hello", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 200 and r.text == "hello\n"


# ---- address checks and dialling errors -------------------------------------------

def test_ssrf_loopback_denied_without_unsafe_flag(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local(hosts="127.0.0.1, localhost, ::ffff:127.0.0.1"),
                                   loopback=False))
    for target in (f"localhost:{origin}", f"127.0.0.1:{origin}", f"[::ffff:127.0.0.1]:{origin}"):
        code, headers, body = connect_error(e.port, target)
        assert code == 403, target
        assert headers["x-egressd-error"] == "ssrf_denied" == body["error"]
        assert "loopback" in body["detail"] and body["rule"] == "local"


def test_ssrf_metadata_always_blocked(start_egressd):
    e = start_egressd(proxy_config(rules="[allow meta]\nhost = 169.254.169.254\nport = 80\n"
                                   "allowed_ips = 169.254.0.0/16\n"))
    rc, out, _ = curl("-i", "-x", e.url, "http://169.254.169.254/latest/meta-data/")
    assert b"403" in out.split(b"\r\n")[0] and b"ssrf_denied" in out and b"link-local" in out


def test_dns_failure_502(start_egressd):
    e = start_egressd(proxy_config("dns_timeout = 2s",
                                   rules="[allow nx]\nhost = does-not-exist.invalid\n"))
    code, headers, body = connect_error(e.port, "does-not-exist.invalid:443")
    assert code == 502 and body["error"] == "dns_failure"


def test_unreachable_502(start_egressd):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    e = start_egressd(proxy_config(rules=allow_local()))
    code, headers, body = connect_error(e.port, f"127.0.0.1:{port}")
    assert code == 502 and body["error"] == "upstream_unreachable"
    assert "refused" in body["detail"]


def test_connect_timeout_504(start_egressd):
    # A listener whose accept queue is full drops further SYNs: connect hangs.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    time.sleep(0.2)
    e = start_egressd(proxy_config("connect_timeout = 500ms", rules=allow_local()))
    code, headers, body = connect_error(e.port, f"127.0.0.1:{port}")
    assert code == 504 and body["error"] == "upstream_timeout"
    for f in fillers:
        f.close()
    full.close()


# ---- request heads ---------------------------------------------------------------

def test_head_too_large_431(start_egressd):
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    code, headers, body = parse_error(read_response(s))
    assert code == 431 and body["error"] == "headers_too_large"


def test_head_timeout_408(start_egressd):
    e = start_egressd(proxy_config("header_timeout = 500ms", rules=allow_local()))
    s = e.connect()
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n")  # and then nothing
    code, headers, body = parse_error(read_response(s))
    assert code == 408 and body["error"] == "request_timeout"


def test_malformed_400(start_egressd):
    e = start_egressd(proxy_config(rules=allow_local()))
    cases = [
        b"CONNECT 127.0.0.1:80 HTTP/1.1\nHost: x\n\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"CONNECT 0x7f.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT user@127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://u:p@127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ]
    for raw in cases:
        s = e.connect()
        s.sendall(raw)
        code, headers, body = parse_error(read_response(s))
        assert code == 400, raw
        assert body["error"] == "bad_request" and body["detail"], raw


def test_https_absolute_form_400_use_connect(start_egressd):
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"GET https://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    code, headers, body = parse_error(read_response(s))
    assert code == 400 and body["error"] == "use_connect"


# ---- tunnels ---------------------------------------------------------------------

def test_bytes_behind_connect_are_delivered(start_egressd, echo_server):
    e = start_egressd(proxy_config(rules=allow_local()))
    s, status, rest = connect_via(e.port, f"127.0.0.1:{echo_server}", extra=b"early bytes")
    assert status == "HTTP/1.1 200 Connection Established"
    got = rest
    while len(got) < len(b"early bytes"):
        got += s.recv(100)
    assert got == b"early bytes"


def test_half_close_gets_whole_response(start_egressd):
    answer = b"x" * (3 << 20)

    def after_eof(conn):
        while conn.recv(65536):
            pass  # read the request to its end
        conn.sendall(answer)

    srv = TcpServer(after_eof)
    e = start_egressd(proxy_config(rules=allow_local()))
    s, status, rest = connect_via(e.port, f"127.0.0.1:{srv.port}")
    assert " 200 " in status
    s.sendall(b"request body")
    s.shutdown(socket.SHUT_WR)
    got = rest + read_response(s)
    assert got == answer
    close = e.events("close")
    assert close[0]["bytes_up"] == 12 and close[0]["bytes_down"] == len(answer)
    srv.close()


def test_100mb_transfer_checksum(start_egressd, origin):
    n = 100 * 1024 * 1024 + 12345
    e = start_egressd(proxy_config(rules=allow_local()))
    for mode in ("-p", None):
        args = ["-o", "-", "-x", e.url, f"http://127.0.0.1:{origin}/big?{n}"]
        if mode:
            args.insert(0, mode)
        p = subprocess.Popen(["curl", "-sS", "--noproxy", "", *args], stdout=subprocess.PIPE)
        h = hashlib.sha256()
        total = 0
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            h.update(chunk)
        assert p.wait(timeout=120) == 0
        assert total == n, mode
        assert h.hexdigest() == pattern_sha256(n), mode


def test_upload_through_tunnel(start_egressd, echo_server):
    e = start_egressd(proxy_config(rules=allow_local()))
    s, status, rest = connect_via(e.port, f"127.0.0.1:{echo_server}")
    payload = bytes(range(256)) * 40000  # ~10 MB
    received = bytearray(rest)

    def reader():
        while len(received) < len(payload):
            d = s.recv(1 << 20)
            if not d:
                return
            received.extend(d)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(payload)
    t.join(60)
    assert bytes(received) == payload


# ---- the pool and the queue ------------------------------------------------------

def test_pool_grows_beyond_workers(start_egressd, echo_server):
    e = start_egressd(proxy_config(rules=allow_local()).replace("workers = 4\nmax_workers = 32",
                                                                "workers = 2\nmax_workers = 8"))
    tunnels = []
    for i in range(6):  # each holds a worker for as long as it is open
        s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
        assert " 200 " in status, i
        tunnels.append(s)
    for i, s in enumerate(tunnels):
        s.sendall(b"ping %d" % i)
        assert s.recv(100) == b"ping %d" % i
    for s in tunnels:
        s.close()


def test_full_queue_503(start_egressd, echo_server):
    e = start_egressd(proxy_config(rules=allow_local()).replace(
        "workers = 4\nmax_workers = 32", "workers = 1\nmax_workers = 1\nqueue = 1\nqueue_timeout = 30s"))
    busy, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")  # the only worker
    assert " 200 " in status
    waiting = e.connect()  # takes the only queue slot
    time.sleep(0.3)
    third = e.connect()
    code, headers, body = parse_error(read_response(third))
    assert code == 503 and body["error"] == "overloaded"
    busy.close()  # the worker frees up and serves the queued one
    waiting.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo_server)
    assert b" 200 " in waiting.recv(100)


# ---- forward proxying ------------------------------------------------------------

def test_forward_headers_rewritten(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"GET http://127.0.0.1:%d/headers?q=1 HTTP/1.1\r\nHost: wrong.example\r\n"
              b"Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
              b"Connection: X-Drop\r\nX-Drop: gone\r\nX-Keep: kept\r\nTE: trailers\r\n\r\n" % origin)
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert status.startswith(b"HTTP/1.1 200")
    assert headers["via"] == "1.1 egressd"
    body = json.loads(f.read(int(headers["content-length"])))
    got = {k.lower(): v for k, v in body}
    names = [k.lower() for k, _ in body]
    assert got["__target__"] == "/headers?q=1"
    assert names.count("host") == 1 and got["host"] == f"127.0.0.1:{origin}"
    assert got["x-keep"] == "kept" and got["via"] == "1.1 egressd"
    for gone in ("proxy-authorization", "proxy-connection", "x-drop", "te", "connection"):
        assert gone not in got, gone


def test_forward_keepalive_and_bodies(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    with requests.Session() as sess:
        sess.proxies = {"http": e.url}
        for i in range(3):
            assert sess.get(f"http://127.0.0.1:{origin}/hello", timeout=10).text == "hello\n"
        body = b"z" * 100000
        r = sess.post(f"http://127.0.0.1:{origin}/echo", data=body, timeout=10)
        assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)}"
        r = sess.post(f"http://127.0.0.1:{origin}/echo", data=iter([b"abc", b"defg"]), timeout=10)
        assert r.text == f"{hashlib.sha256(b'abcdefg').hexdigest()} 7"  # chunked upload
        r = sess.get(f"http://127.0.0.1:{origin}/chunked", timeout=10)
        assert r.text == "one two three"
        r = sess.head(f"http://127.0.0.1:{origin}/hello", timeout=10)
        assert r.status_code == 200 and r.content == b""
        assert sess.get(f"http://127.0.0.1:{origin}/hello", timeout=10).text == "hello\n"
    fwd = e.events("forward", count=8)
    assert len(fwd) == 8
    assert len({l["src"] for l in fwd}) == 1, "one client connection carried every request"


def test_forward_close_delimited_and_curl(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    rc, out, err = curl("-i", "-x", e.url, f"http://127.0.0.1:{origin}/close")
    assert rc == 0, err
    assert out.endswith(b"until close") and b"Connection: close" in out
    rc, out, err = curl("-0", "-x", e.url, f"http://127.0.0.1:{origin}/chunked")
    assert rc == 0 and out == b"one two three", (err, out)  # HTTP/1.0 client, no chunks


def test_expect_100_continue(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    body = b"q" * 5000
    p = subprocess.run(["curl", "-sS", "--noproxy", "", "-x", e.url, "-H", "Expect: 100-continue",
                        "--expect100-timeout", "20", "--data-binary", "@-",
                        f"http://127.0.0.1:{origin}/echo"], input=body, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == f"{hashlib.sha256(body).hexdigest()} {len(body)}"


# ---- command line ----------------------------------------------------------------

def test_check_and_explain(tmp_path):
    from conftest import EGRESSD
    good = tmp_path / "good.ini"
    good.write_text("[allow gh]\nhost = github.com\n[deny meta]\nhost = 169.254.169.254\n")
    r = subprocess.run([EGRESSD, "-t", "-c", str(good)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout
    bad = tmp_path / "bad.ini"
    bad.write_text("[proxy]\nworkers = none\n[allow x]\nhost = *.com\n")
    r = subprocess.run([EGRESSD, "-t", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{bad}:2: workers" in r.stderr and f"{bad}:4: host '*.com'" in r.stderr
    r = subprocess.run([EGRESSD, "--explain", "github.com:443", "-c", str(good)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "allow by [allow gh] (line 1)" in r.stdout
    r = subprocess.run([EGRESSD, "--explain", "169.254.169.254:80", "-c", str(good)],
                       capture_output=True, text=True)
    assert "deny by [deny meta]" in r.stdout
    r = subprocess.run([EGRESSD, "-V"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("egressd ")


# ---- HTTPS through a tunnel, with python requests ---------------------------------

def test_requests_https_through_connect(start_egressd, tmp_path):
    import http.server
    import ssl
    from conftest import OriginHandler, ThreadingServer, stop_http_server
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    srv = ThreadingServer(("127.0.0.1", 0), OriginHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    port = srv.server_address[1]
    e = start_egressd(proxy_config(rules=allow_local()))
    with requests.Session() as sess:
        sess.proxies = {"https": e.url}
        for _ in range(2):
            r = sess.get(f"https://localhost:{port}/hello", verify=str(cert), timeout=10)
            assert r.status_code == 200 and r.text == "hello\n"
    r = requests.get(f"https://localhost:{port}/hello", proxies={"https": e.url}, verify=str(cert),
                     timeout=10)
    assert r.text == "hello\n"
    stop_http_server(srv, thread)


def test_fd_exhaustion_is_answered_and_survived(tmp_path, echo_server):
    """With a tiny open-file limit, accept() fails with EMFILE: egressd gives
    up its reserve descriptor to tell waiting clients 503 at once (they once
    sat in the kernel's queue until their own timeouts), keeps running, and
    serves again once descriptors are free."""
    from conftest import Egressd
    conf = proxy_config(rules=allow_local()).replace("workers = 4\nmax_workers = 32",
                                                     "workers = 2\nmax_workers = 64")
    e = Egressd(tmp_path, conf)
    subprocess.run(["prlimit", f"--pid={e.proc.pid}", "--nofile=24:24"], check=True)
    tunnels = []
    for _ in range(30):  # each holds two descriptors: the limit is soon reached
        try:
            s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
        except OSError:
            break
        if " 200 " not in status:
            break
        tunnels.append(s)
    assert 0 < len(tunnels) < 30
    late = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    late.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo_server)
    code, headers, body = parse_error(read_response(late))  # an answer, not a hang
    assert code == 503 and body["error"] == "overloaded", body
    assert e.proc.poll() is None, "still running"
    assert any("file descriptors" in l.get("msg", "") or "file descriptors" in l.get("detail", "")
               for l in e.lines()), "the exhaustion was met and logged"
    for s in tunnels:
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline:  # the tunnels' ends are seen, their descriptors come back
        s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
        if " 200 " in status:
            break
        s.close()
        time.sleep(0.2)
    assert " 200 " in status
    s.sendall(b"ping")
    assert s.recv(10) == b"ping"
    s.close()
    assert e.stop() == 0


def test_busy_workers_mean_503_not_a_hang(start_egressd, echo_server):
    """Every worker holds a tunnel: a connection that waits in the queue gets
    503 after queue_timeout (they once waited for a worker forever)."""
    e = start_egressd(proxy_config(rules=allow_local()).replace(
        "workers = 4\nmax_workers = 32", "workers = 2\nmax_workers = 2\nqueue = 64\nqueue_timeout = 500ms"))
    held = [connect_via(e.port, f"127.0.0.1:{echo_server}")[0] for _ in range(2)]
    waiting = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo_server)
        waiting.append(s)
    for s in waiting:
        code, headers, body = parse_error(read_response(s))
        assert code == 503 and body["error"] == "overloaded"
        assert "busy" in body["detail"]
    for s in held:
        s.close()
    s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
    deadline = time.time() + 5
    while " 200 " not in status and time.time() < deadline:
        time.sleep(0.1)
        s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
    assert " 200 " in status

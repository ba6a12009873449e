"""Helpers for the integration tests: run the real egressd binary on a
free port, and local origins for it to reach (HTTP, HTTPS, raw TCP).

Everything listens on 127.0.0.1 with port 0; egressd logs the port it
bound, and the tests read it from there.  When egressd stops, its log is
checked for sanitizer reports, so a memory error fails the test that
caused it.
"""
import hashlib
import http.server
import json
import os
import random
import signal
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

EGRESSD = os.environ.get("EGRESSD", os.path.join(os.path.dirname(__file__), "../../build/san/egressd"))
MOCK_BACKEND = os.environ.get("MOCK_BACKEND",
                              os.path.join(os.path.dirname(__file__), "../../build/mock-backend"))
# Waits on egressd's own progress (start, log lines, stop) are multiplied by
# this: bench/memcheck.sh runs egressd under valgrind, many times slower.
WAIT_SCALE = float(os.environ.get("EGRESSD_WAIT_SCALE", "1"))

BLOCK = random.Random(42).randbytes(1 << 20)


def pattern_bytes(n):
    """Yield n deterministic bytes in 1 MiB blocks."""
    while n > 0:
        chunk = BLOCK[: min(n, len(BLOCK))]
        n -= len(chunk)
        yield chunk


def pattern_sha256(n):
    h = hashlib.sha256()
    for chunk in pattern_bytes(n):
        h.update(chunk)
    return h.hexdigest()


class Egressd:
    def __init__(self, tmp_path, config, name="egressd", env=None, prefix=(), binary=EGRESSD):
        self.tmp = tmp_path
        self.conf = tmp_path / f"{name}.ini"
        self.conf.write_text(config)
        self.logpath = tmp_path / f"{name}.log"
        self.logfile = open(self.logpath, "wb")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", **(env or {}))
        self.conf.chmod(0o644)
        self.proc = subprocess.Popen([*prefix, binary, "-c", str(self.conf)], stdout=self.logfile,
                                     stderr=self.logfile, env=env)
        self.port = int(self._wait_msg("listening on").rsplit(":", 1)[1])
        self._wait_msg(" started with ")  # logged once everything, admin endpoint included, is up

    def _wait_msg(self, text):
        deadline = time.time() + 10 * WAIT_SCALE
        while time.time() < deadline:
            for line in self.lines():
                if text in line.get("msg", ""):
                    return line["msg"]
            if self.proc.poll() is not None:
                raise RuntimeError("egressd exited: " + self.logpath.read_text())
            time.sleep(0.02)
        raise RuntimeError(f"egressd did not log {text!r}: " + self.logpath.read_text())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def raw_lines(self):
        return self.logpath.read_text(errors="replace").splitlines()

    def lines(self):
        out = []
        for raw in self.raw_lines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
        return out

    def events(self, event, wait=2.0, count=1, **match):
        """Log lines of one event whose fields match; waits for count of them."""
        deadline = time.time() + wait * WAIT_SCALE
        while True:
            found = [l for l in self.lines() if l.get("event") == event
                     and all(l.get(k) == v for k, v in match.items())]
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40 * WAIT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("egressd did not stop on SIGTERM")
        self.logfile.close()
        text = self.logpath.read_text(errors="replace")
        assert "ERROR: AddressSanitizer" not in text, text
        assert "ERROR: LeakSanitizer" not in text, text
        assert "runtime error:" not in text, text
        assert "WARNING: ThreadSanitizer" not in text, text
        return self.proc.returncode

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s


def reload(e, text=None, wait_for="reloaded"):
    """Rewrite egressd's configuration (when text is given), SIGHUP it, and
    wait for the log line that says how the reload went."""
    if text is not None:
        e.conf.write_text(text)
    before = len(e.raw_lines())
    e.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline:
        if any(wait_for in l for l in e.raw_lines()[before:]):
            return e.raw_lines()[before:]
        time.sleep(0.02)
    raise AssertionError("no reload line: " + "\n".join(e.raw_lines()[before:]))


def proxy_config(extra_proxy="", rules="", loopback=True):
    return (
        "[proxy]\nlisten = 127.0.0.1:0\nworkers = 4\nmax_workers = 32\n"
        f"unsafe_allow_loopback = {'yes' if loopback else 'no'}\n{extra_proxy}\n{rules}\n"
    )


@pytest.fixture
def start_egressd(tmp_path):
    started = []

    def start(config, name="egressd", env=None):
        e = Egressd(tmp_path, config, name, env)
        started.append(e)
        return e

    yield start
    for e in started:
        assert e.stop() == 0


# ---- origins -----------------------------------------------------------------

class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, body, ctype="text/plain", status=200, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/hello":
            self._send(b"hello\n")
        elif path == "/headers":
            self._send(json.dumps([[k, v] for k, v in self.headers.items()] + [["__target__", self.path]]).encode(),
                       "application/json")
        elif path == "/big":
            n = int(query)
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for chunk in pattern_bytes(n):
                self.wfile.write(chunk)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        else:
            self._send(b"not found\n", status=404)

    do_HEAD = do_GET

    def do_POST(self):
        body = self._body()
        self._send(hashlib.sha256(body).hexdigest().encode() + b" %d" % len(body))


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    # no SO_REUSEADDR: with it, Linux may hand a port 0 bind the port of a
    # listener that is still alive (a closed test server whose accept() had
    # not returned), and connections meant for one server reach the other
    allow_reuse_address = False


def stop_http_server(srv, thread):
    """shutdown() waits for serve_forever without a limit: give it one."""
    if thread.is_alive():
        stopper = threading.Thread(target=srv.shutdown, daemon=True)
        stopper.start()
        stopper.join(10)
    srv.server_close()


@pytest.fixture
def origin():
    srv = ThreadingServer(("127.0.0.1", 0), OriginHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    stop_http_server(srv, t)


class TcpServer:
    """A raw TCP server running handler(conn) per connection."""

    def __init__(self, handler, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))  # no SO_REUSEADDR: see ThreadingServer
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            conn.settimeout(30)
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        # shutdown wakes the thread blocked in accept(); a bare close would
        # leave the listener alive in the kernel for as long as it blocks
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def echo_handler(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


@pytest.fixture
def echo_server():
    s = TcpServer(echo_handler)
    yield s.port
    s.close()


def connect_via(proxy_port, target, extra=b""):
    """Open a CONNECT tunnel; returns (socket, status line, leftover bytes)."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()) + extra)
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(65536)
        if not data:
            break
        head += data
    status, _, rest = head.partition(b"\r\n\r\n")
    return s, status.split(b"\r\n")[0].decode(), rest


def read_response(s):
    """Read a whole egressd error response (it always closes)."""
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            return data
        data += d


def parse_error(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return status, headers, json.loads(body)


def connect_error(proxy_port, target):
    """CONNECT that must fail: returns (status, headers, JSON body)."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
    return parse_error(read_response(s))


class MockBackend:
    """tests/helpers/mock_backend.c: records every request it gets."""

    def __init__(self, tmp_path):
        self.record = tmp_path / "backend-requests.jsonl"
        self.record.write_text("")
        self.proc = subprocess.Popen([MOCK_BACKEND, str(self.record)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def requests(self):
        return [json.loads(l) for l in self.record.read_text().splitlines() if l]

    def last(self):
        return self.requests()[-1]

    def release(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /control/release HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def backend(tmp_path):
    b = MockBackend(tmp_path)
    yield b
    b.stop()


API_KEY = "sk-egressd-test-key-0123456789"
ANTHROPIC_KEY = "sk-ant-egressd-test-key-9876543210"


def inference_config(tmp_path, backend_port, extra="", routes=None, inference_extra="", tls_extra=""):
    if routes is None:
        routes = (f"[route openai]\nendpoint = http://127.0.0.1:{backend_port}/v1\nprovider = openai\n"
                  "api_key_env = TEST_OPENAI_KEY\n"
                  f"[route claude]\nendpoint = http://127.0.0.1:{backend_port}\nprovider = anthropic\n"
                  "api_key_env = TEST_ANTHROPIC_KEY\n")
    return (
        "[proxy]\nlisten = 127.0.0.1:0\nworkers = 4\n" + extra + "\n"
        f"[tls]\nca_cert = {tmp_path}/ca.pem\nca_key = {tmp_path}/ca.key\nbundle = {tmp_path}/bundle.pem\n"
        + tls_extra + "\n"
        "[inference]\nhost = inference.local, api.openai.com, api.anthropic.com\n" + inference_extra + "\n"
        + routes
    )


INFERENCE_ENV = {"TEST_OPENAI_KEY": API_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}


def read_head(f):
    """Status line and lower-cased headers of a response, from a socket file."""
    status = f.readline()
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.lower()] = v.strip()
    return status, headers


# ---- test hosts in network namespaces -----------------------------------------

NS_ORIGIN = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"hello from the namespace\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.HTTPServer((sys.argv[1], 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def start_ns_origin(ns, ip):
    """An HTTP origin on ip inside network namespace ns: (process, port)."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", NS_ORIGIN, ip],
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


# ---- a TLS origin with its own CA (inspection, secrets) ---------------------------------------

def make_test_ca(d, name="localhost"):
    """A CA and a leaf for name (DNS, plus IP 127.0.0.1): (ca, cert, key) paths."""
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    ca_key, ca = d / "origin-ca.key", d / "origin-ca.pem"
    key, csr, crt = d / "origin.key", d / "origin.csr", d / "origin.pem"
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=origin test CA", "-days", "1", "-keyout", str(ca_key), "-out", str(ca),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
        f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    ext = d / "origin-ext.cnf"
    ext.write_text(f"subjectAltName=DNS:{name},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(crt))
    return ca, crt, key


class RecordingHandler(OriginHandler):
    """OriginHandler that records every request (method, path, headers,
    body) and answers any method; /stream sends two chunks with a pause the
    test ends (release), /ws is served by the WebSocket server."""
    records = None
    release = None

    def _record(self, body=b""):
        self.records.append({"method": self.command, "path": self.path,
                             "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                             "resumed": getattr(self.connection, "session_reused", None)})

    def do_GET(self):
        self._record()
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nfirst\r\n")
            self.wfile.flush()
            self.release.wait(20)
            self.wfile.write(b"6\r\nsecond\r\n0\r\n\r\n")
            return
        if self.path.split("?")[0] in ("/hello", "/big", "/chunked", "/close", "/headers"):
            return OriginHandler.do_GET(self)
        self._send(b"%s %s\n" % (self.command.encode(), self.path.encode()))

    def do_HEAD(self):
        self._record()
        self._send(b"head\n")

    def _with_body(self):
        body = self._body()
        self._record(body)
        self._send(hashlib.sha256(body).hexdigest().encode() + b" %d" % len(body))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _with_body


class TlsOrigin:
    def __init__(self, d, base=None):
        self.ca, crt, key = make_test_ca(d)
        handler = type("H", (base or RecordingHandler,), {"records": [], "release": threading.Event()})
        self.records, self.release = handler.records, handler.release
        self.srv = ThreadingServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        stop_http_server(self.srv, self.thread)


@pytest.fixture
def tls_origin(tmp_path):
    o = TlsOrigin(tmp_path)
    yield o
    o.close()

"""Regression tests for the security audit's findings: each one drove the
real binary into a bypass, a crash or a silent close before its fix."""
import gzip
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (INFERENCE_ENV, TcpServer, inference_config, parse_error, proxy_config, read_head,
                      read_response, reload)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def allow_local(ports="1-65535"):
    return f"[allow local]\nhost = 127.0.0.1, localhost\nport = {ports}\n"


class Recorder:
    """A raw origin: records every byte, answers each request head with
    `answer` (None: never answers)."""

    def __init__(self, answer=None):
        self.data = b""
        self.answer = answer
        self.srv = TcpServer(self._handle)
        self.port = self.srv.port

    def _handle(self, conn):
        conn.settimeout(3)
        answered = False
        try:
            while True:
                d = conn.recv(65536)
                if not d:
                    return
                self.data += d
                if self.answer is not None and not answered and b"\r\n\r\n" in self.data:
                    conn.sendall(self.answer)
                    answered = True
        except OSError:
            pass

    def close(self):
        self.srv.close()


@pytest.fixture
def recorder():
    made = []

    def make(answer=None):
        r = Recorder(answer)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# ---- forward path: framing ------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"FFFFFFFFFFFFFFFFF\r\n",  # overflows
    b"-5\r\nhello\r\n0\r\n\r\n",  # negative
    b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
    b"5 \r\nhello\r\n0\r\n\r\n",  # a space
    b"5\nhello\r\n0\r\n\r\n",  # bare LF
    b"5\r\nhelloXX\r\n0\r\n\r\n",  # data not followed by CRLF
    b"0\r\nX: a\r\n b\r\n\r\n",  # obs-fold in a trailer
])
def test_malformed_chunked_body_is_answered_400(start_egressd, recorder, body):
    origin = recorder()
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"POST http://127.0.0.1:%d/up HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" % origin.port + body)
    code, headers, js = parse_error(read_response(s))
    assert code == 400 and js["error"] == "bad_request", js
    assert headers["x-egressd-error"] == "bad_request"
    assert e.events("forward", status=400)


def test_connection_header_cannot_remove_framing(start_egressd, recorder):
    """`Connection: Content-Length` once made egressd drop the length and
    relay the body: the origin read it as a second, unlogged request."""
    origin = recorder(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    e = start_egressd(proxy_config(rules=allow_local()))
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    s = e.connect()
    s.sendall(b"POST http://127.0.0.1:%d/a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Connection: Content-Length, Transfer-Encoding, Host\r\nContent-Length: %d\r\n\r\n%s"
              % (origin.port, len(smuggled), smuggled))
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert status.startswith(b"HTTP/1.1 200")
    assert f.read(2) == b"ok"
    time.sleep(0.3)
    head, _, body = origin.data.partition(b"\r\n\r\n")
    lines = [l.lower() for l in head.split(b"\r\n")]
    assert b"content-length: %d" % len(smuggled) in lines, head
    assert b"host: 127.0.0.1:%d" % origin.port in lines
    assert body == smuggled, "the body is the body, framed as egressd framed it"


def test_response_framing_is_kept(start_egressd, recorder):
    origin = recorder(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin.port)
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert headers.get("content-length") == "5"
    assert f.read(5) == b"hello"


BIG_HEAD = (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Long-%02d:%s\r\n" % (i, b"v" * 480) for i in range(80))
            + b"Content-Length: 5\r\n\r\nhello")


@pytest.mark.parametrize("inspected", [False, True])
def test_response_head_between_32_and_64_KiB_is_relayed_whole(start_egressd, recorder, inspected):
    """The upstream buffer takes a 64 KiB response head; the rebuilt head
    (a space after each colon, Via) once had only 32.5 KiB and the client
    got a silent close."""
    origin = recorder(BIG_HEAD)
    rules = allow_local() if not inspected else (
        f"[allow local]\nhost = 127.0.0.1\nport = {origin.port}\naccess = read-only\n")
    e = start_egressd(proxy_config(rules=rules))
    s = e.connect()
    if inspected:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin.port)
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % origin.port)
    else:
        s.sendall(b"GET http://127.0.0.1:%d/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin.port)
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert status.startswith(b"HTTP/1.1 200"), status
    assert all(headers[f"x-long-{i:02d}"] == "v" * 480 for i in range(80))
    assert f.read(5) == b"hello"


def test_transfer_codings_of_a_response_pass_through(start_egressd, recorder):
    """`gzip, chunked` from the origin reached the client as a bare
    `chunked`, and the client took gzip bytes for the content."""
    data = gzip.compress(b"hello, coded world")
    origin = recorder(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin.port)
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert status.startswith(b"HTTP/1.1 200") and headers["transfer-encoding"] == "gzip, chunked"
    body = b""
    while (size := int(f.readline(), 16)) > 0:
        body += f.read(size)
        f.readline()
    assert gzip.decompress(body) == b"hello, coded world"


def test_kept_forward_connection_follows_reloads(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    f = s.makefile("rb")
    req = b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin
    s.sendall(req)
    status, headers = read_head(f)
    assert status.startswith(b"HTTP/1.1 200") and f.read(int(headers["content-length"])) == b"hello\n"
    reload(e, proxy_config(rules=allow_local(ports="1")))
    s.sendall(req)
    status, headers = read_head(f)
    assert status.startswith(b"HTTP/1.1 403"), "no longer allowed after the reload"
    assert headers["x-egressd-error"] == "policy_denied"


# ---- interception --------------------------------------------------------------------

@pytest.fixture
def proxy(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port), env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    return e


def intercepted(e, tls=False):
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"CONNECT inference.local:%d HTTP/1.1\r\nHost: x\r\n\r\n" % (443 if tls else 80))
    assert b" 200 " in s.recv(100)
    if tls:
        ctx = ssl.create_default_context(cafile=e.bundle)
        s = ctx.wrap_socket(s, server_hostname="inference.local")
    return s


def post(s, path, body, extra=b""):
    s.sendall(b"POST %s HTTP/1.1\r\nHost: inference.local\r\nContent-Type: application/json\r\n%s"
              b"Content-Length: %d\r\n\r\n%s" % (path.encode(), extra, len(body), body))
    f = s.makefile("rb")
    status, headers = read_head(f)
    return int(status.split()[1]), headers, f


@pytest.mark.parametrize("tls", [False, True])
def test_bad_request_line_in_interception_gets_400(proxy, tls):
    s = intercepted(proxy, tls)
    s.sendall(b"GE/T /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n")
    raw = read_response(s)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), raw
    assert json.loads(body)["error"]["code"] == "bad_request"


AMBIGUOUS = [
    b'{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}',
    b'{"model\\u0000":"gpt-4o","messages":[]}',
    b'{"model":"gpt-4o-mini","Model":"gpt-4o"}',
    b'{"model":"gpt-4o-mini\\u0000x","messages":[]}',
    b'{"model":"gpt-4o-mini","messages":[]} {"model":"gpt-4o"}',
]


@pytest.mark.parametrize("body", AMBIGUOUS)
def test_a_model_the_backend_could_read_otherwise_is_refused(start_egressd, backend, tmp_path, body):
    routes = (f"[route mini]\nendpoint = http://127.0.0.1:{backend.port}/v1\nmodels = gpt-4o-mini\n"
              f"[route forced]\nendpoint = http://127.0.0.1:{backend.port}/v1\nmodel = cheap\n")
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    s = intercepted(e)
    code, headers, f = post(s, "/v1/chat/completions", body)
    assert code == 400, body
    err = json.loads(f.read(int(headers["content-length"])))["error"]
    assert err["code"] == "bad_request"
    assert backend.requests() == [], "nothing reached the backend"
    line = e.events("inference", status=400)
    assert line and line[0]["reason"] == "bad_request"


def test_forced_model_rewrites_the_one_model(start_egressd, backend, tmp_path):
    routes = f"[route forced]\nendpoint = http://127.0.0.1:{backend.port}/v1\nmodel = cheap\n"
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    s = intercepted(e)
    code, headers, f = post(s, "/v1/chat/completions", b'{"mod\\u0065l":"gpt-4o","messages":[]}')
    assert code == 200
    assert json.loads(backend.last()["body"])["model"] == "cheap"


@pytest.mark.parametrize("path", ["/v1/models/..", "/v1/models/%2F", "/v1/models/%2e%2e",
                                  "/v1/models/a%2fb", "/v1/models/%2E%2E", "/v1/models/..%5c"])
def test_model_id_cannot_walk_the_backend(proxy, backend, path):
    s = intercepted(proxy)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: inference.local\r\n\r\n" % path.encode())
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 400"), raw
    assert backend.requests() == []


def test_long_key_and_long_head_do_not_overflow(start_egressd, backend, tmp_path):
    """An 8 KiB client head plus a 4,000-byte key wrote past the buffer of
    the backend head (found by AddressSanitizer)."""
    key = "k" * 4090
    (tmp_path / "key").write_text(key)
    routes = (f"[route r]\nendpoint = http://127.0.0.1:{backend.port}/{'p' * 200}/v1\n"
              f"api_key_file = {tmp_path}/key\n")
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    s = intercepted(e)
    body = json.dumps(CHAT).encode()
    agent = b"a" * (8192 - 220)
    code, headers, f = post(s, "/v1/chat/completions", body, extra=b"User-Agent: %s\r\n" % agent)
    assert code == 200, code
    rec = {k.lower(): v for k, v in backend.last()["headers"]}
    assert rec["authorization"] == "Bearer " + key and rec["user-agent"] == agent.decode()
    assert key not in e.logpath.read_text()


def test_trailing_comma_is_a_line_numbered_error_not_a_crash(start_egressd, backend, tmp_path):
    good = inference_config(tmp_path, backend.port)
    e = start_egressd(good, env=INFERENCE_ENV)
    bad = good + f"[route r]\nendpoint = http://127.0.0.1:{backend.port}/v1\nmodels = gpt-4*,\n"
    (tmp_path / "bad.ini").write_text(bad)
    from conftest import EGRESSD
    r = subprocess.run([EGRESSD, "-t", "-c", str(tmp_path / "bad.ini")], capture_output=True, text=True,
                       env=dict(os.environ, **INFERENCE_ENV), timeout=30)
    assert r.returncode == 1 and "empty item" in r.stderr, r.stderr
    assert f"bad.ini:{bad.count(chr(10))}:" in r.stderr, "the line of the models key"
    reload(e, bad, wait_for="reload failed")
    assert e.proc.poll() is None, "the daemon survived the bad reload"
    s = intercepted(e)
    code, headers, f = post(s, "/v1/chat/completions", json.dumps(CHAT).encode())
    assert code == 200, "and still serves with the old configuration"


def test_half_written_config_does_not_become_deny_all(start_egressd, origin):
    e = start_egressd(proxy_config(rules=allow_local()))
    reload(e, "", wait_for="reload failed")
    s = e.connect()
    s.sendall(b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin)
    status, _ = read_head(s.makefile("rb"))
    assert status.startswith(b"HTTP/1.1 200")


def test_deny_on_an_address_applies_to_names_resolving_to_it(start_egressd, origin):
    rules = ("[deny loopback-literal]\nhost = 127.0.0.1\n"
             f"[allow by-name]\nhost = localhost\nport = {origin}\n")
    e = start_egressd(proxy_config(rules=rules))
    s = e.connect()
    s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % origin)
    code, headers, js = parse_error(read_response(s))
    assert code == 403 and js["error"] == "policy_denied" and js["rule"] == "loopback-literal", js
    s = e.connect()
    s.sendall(b"GET http://localhost:%d/hello HTTP/1.1\r\nHost: localhost\r\n\r\n" % origin)
    code, headers, js = parse_error(read_response(s))
    assert code == 403 and js["rule"] == "loopback-literal"
    line = e.events("connect", action="deny")[0]
    assert line["rule"] == "loopback-literal" and line["status"] == 403


def test_ca_key_open_to_others_is_refused(tmp_path, backend):
    from conftest import EGRESSD
    conf = inference_config(tmp_path, backend.port)
    (tmp_path / "e.ini").write_text(conf)
    env = dict(os.environ, **INFERENCE_ENV)
    first = subprocess.Popen([EGRESSD, "-c", str(tmp_path / "e.ini")], stderr=subprocess.PIPE, text=True,
                             env=env)
    deadline = time.time() + 20  # the first start creates the CA, 0600
    while not (tmp_path / "ca.key").exists() and time.time() < deadline:
        time.sleep(0.05)
    first.terminate()
    first.wait(timeout=20)
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "ca.key").chmod(0o644)
    r = subprocess.run([EGRESSD, "-c", str(tmp_path / "e.ini")], capture_output=True, text=True, env=env,
                       timeout=20)
    assert r.returncode != 0
    assert "open to other users" in r.stderr and "0644" in r.stderr, r.stderr


# ---- slow clients inside interception: deadlines cover a whole phase --------------------

def client_hello():
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="inference.local")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def trickle(send, data, closed, pause=0.25):
    """Send data a byte at a time; how many bytes went before closed() said
    the other side gave up (len(data) when it never did)."""
    for i in range(len(data)):
        if closed():
            return i
        try:
            send(data[i:i + 1])
        except OSError:
            return i
        time.sleep(pause)
    return len(data)


def peer_spoke(s):
    """Has the other side answered or closed?"""
    import select
    return lambda: bool(select.select([s], [], [], 0)[0]) or (isinstance(s, ssl.SSLSocket) and s.pending() > 0)


@pytest.fixture
def slow_proxy(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port, extra="header_timeout = 2s"),
                      env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    return e


def test_slow_tls_handshake_is_cut_at_header_timeout(slow_proxy):
    hello = client_hello()
    assert len(hello) > 100  # ~25 s at 4 bytes a second: far beyond the 2 s deadline
    s = socket.create_connection(("127.0.0.1", slow_proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in s.recv(100)
    s.sendall(hello[:5])  # a whole record header: classified as TLS, the handshake starts
    sent = 5 + trickle(s.sendall, hello[5:], peer_spoke(s))
    assert sent < len(hello), "egressd kept waiting for a handshake sent a byte at a time"
    assert slow_proxy.events("close", reason="tls_handshake_failed")


def test_slow_head_inside_tls_is_cut_at_header_timeout(slow_proxy):
    s = intercepted(slow_proxy, tls=True)
    head = b"GET /v1/models HTTP/1.1\r\nHost: inference.local\r\nUser-Agent: slow-slow-slow\r\n\r\n"
    sent = trickle(s.sendall, head, peer_spoke(s))
    assert sent < len(head)
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 408"), raw


def test_slow_body_inside_interception_is_cut(slow_proxy, backend):
    s = intercepted(slow_proxy, tls=True)
    body = json.dumps(CHAT).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    sent = trickle(s.sendall, body, peer_spoke(s))
    assert sent < len(body)
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 408"), raw
    assert backend.requests() == []


def test_head_cut_short_is_answered(start_egressd):
    e = start_egressd(proxy_config(rules=allow_local()))
    s = e.connect()
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n")
    s.shutdown(socket.SHUT_WR)  # half-closed: it can still read the answer
    code, headers, js = parse_error(read_response(s))
    assert code == 400 and js["error"] == "bad_request"


def test_model_names_reach_the_log_as_valid_json(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port), env=INFERENCE_ENV)
    s = intercepted(e)
    code, headers, f = post(s, "/v1/chat/completions", b'{"model":"gpt\\u0001\\u2028\\"x","messages":[]}')
    assert code == 200
    f.read(int(headers.get("content-length", 0)) or 0)
    s = intercepted(e)
    code, headers, f = post(s, "/v1/chat/completions", b'{"model":"gpt\xff\xfe","messages":[]}')
    assert code == 400, "invalid UTF-8 is not JSON"
    for raw in e.raw_lines():  # every line parses
        json.loads(raw)
    line = e.events("inference", status=200)[0]
    assert line["model"] == 'gpt\x01\u2028"x'

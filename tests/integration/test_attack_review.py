"""An attacker's review of request rules (DESIGN section 10) and secrets
(section 11): requests a sandbox could send to slip past a rule, to get a
real value somewhere it is not bound to, or to get one into egressd's log.
Each test holds the request bytes of one attempt."""
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys

import pytest

from conftest import TcpServer, TlsOrigin, RecordingHandler, connect_via, make_test_ca, proxy_config, read_head
from test_inspect import config as inspect_config
from test_inspect import rules as inspect_rules
from test_inspect import ask, inspected, tls_tunnel  # noqa: F401 (inspected: a fixture)
from test_secrets import PH, REAL, GIT, allow, assert_never_leaked, config, curl, secret


def head(method, path, port, *fields):
    lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: localhost:%d" % port, *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# ---- paths an origin reads as others ---------------------------------------------------------

@pytest.mark.parametrize("path", [b"/repos/acme/..;/other/x", b"/repos/acme/..;a=b/other/x",
                                  b"/repos/acme/.;/x", b"/repos/acme/x/..;"])
def test_dot_segments_with_params_are_dot_segments(inspected, path):
    """Tomcat, Jetty and Spring cut ';params' before resolving dot segments:
    '/repos/acme/..;/other/x' is '/repos/other/x' to them, outside the
    allow rule's '/repos/acme/**'."""
    s = tls_tunnel(inspected, inspected.origin.port)
    code, _, body = ask(s, head(b"GET", path, inspected.origin.port))
    assert code == 400 and json.loads(body)["error"] == "bad_request", body
    assert inspected.origin.records == [], "never forwarded"


def test_a_trailing_slash_does_not_dodge_a_deny_rule(start_egressd, tls_origin, tmp_path):
    """Most routers (Express, Rails, Spring before 6) read '/x/' as '/x'."""
    text = (f"[deny no-secrets]\nhost = localhost\nport = {tls_origin.port}\n"
            "paths = /repos/*/*/actions/secrets, /admin\n"
            f"[allow origin]\nhost = localhost\nport = {tls_origin.port}\n")
    e = start_egressd(inspect_config(tmp_path, tls_origin, text))
    e.bundle = str(tmp_path / "bundle.pem")
    s = tls_tunnel(e, tls_origin.port)
    for path in (b"/repos/a/b/actions/secrets/", b"/Repos/a/b/actions/secrets//", b"/admin/", b"/admin/;x"):
        code, _, body = ask(s, head(b"GET", path, tls_origin.port))
        assert code == 403 and json.loads(body)["rule"] == "no-secrets", path
    assert ask(s, head(b"GET", b"/", tls_origin.port))[0] == 200, "the root is not the empty path"
    assert [r["path"] for r in tls_origin.records] == ["/"]


def test_a_refused_expect_100_continue_is_answered_at_once(inspected):
    """A client waiting for 100 Continue sends no body: draining it first
    held the 403 back until header_timeout (a worker held as long)."""
    port = inspected.origin.port
    s = tls_tunnel(inspected, port)
    s.settimeout(5)  # header_timeout is 10 s
    s.sendall(head(b"DELETE", b"/repos/acme/x", port, b"Expect: 100-continue", b"Content-Length: 5"))
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert b" 403 " in status and headers["connection"] == "close", "the body never came: nothing more is read"
    assert inspected.origin.records == []


# ---- where a real value may go ---------------------------------------------------------------

@pytest.fixture
def bound(start_egressd, tls_origin, tmp_path, origin):
    """A secret bound to the TLS origin; the plain origin is allowed too."""
    e = start_egressd(config(tmp_path, tls_origin, allow(tls_origin.port) + allow(origin, "127.0.0.1"),
                             secret(tmp_path, tls_origin.port)))
    e.bundle = str(tmp_path / "bundle.pem")
    e.origin = tls_origin
    e.plain = origin
    return e


def test_basic_credentials_in_a_second_authorization_field_are_seen(bound):
    """Only the first Authorization field was decoded: a placeholder in the
    Basic credentials of a second one went to an unbound destination."""
    basic = base64.b64encode(f"x:{PH}".encode())
    s = bound.connect()
    s.sendall(b"GET http://127.0.0.1:%d/headers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x\r\n"
              b"Authorization: Basic %s\r\n\r\n" % (bound.plain, basic))
    f = s.makefile("rb")
    status, headers = read_head(f)
    body = f.read(int(headers["content-length"]))
    assert b" 403 " in status and json.loads(body)["error"] == "secret_not_allowed", body


def tls_echo(tmp_path):
    """A TLS server that sends back what it reads (an origin that is not HTTP)."""
    d = tmp_path / "echo"
    d.mkdir()
    ca, crt, key = make_test_ca(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)

    def handler(conn):
        with ctx.wrap_socket(conn, server_side=True) as t:
            while data := t.recv(65536):
                t.sendall(data)
    server = TcpServer(handler)
    server.ca = str(ca)
    return server


def test_a_value_never_reaches_the_log_through_a_malformed_answer(start_egressd, tmp_path):
    """A bound destination that answers with the request's own bytes: the
    502 described the upstream's first bytes, value included, in the log."""
    echo = tls_echo(tmp_path)
    try:
        e = start_egressd(config(tmp_path, echo, allow(echo.port), secret(tmp_path, echo.port)))
        e.bundle = str(tmp_path / "bundle.pem")
        s = tls_tunnel(e, echo.port)
        s.sendall(head(b"GET", b"/" + PH.encode(), echo.port, b"Connection: close"))
        raw = b""
        while data := s.recv(65536):
            raw += data
        assert raw.startswith(b"HTTP/1.1 502"), raw
        e.events("request", count=1)
        assert REAL[:12].encode() not in raw, "not even a part of it in the answer"
        assert REAL[:12].encode() not in e.logpath.read_bytes(), "nor in the log"
    finally:
        echo.close()


def test_a_value_never_crosses_the_network_in_the_clear(start_egressd, tls_origin, origin, tmp_path):
    """A secret bound to a port (443 by default) is meant for HTTPS; plain
    HTTP to that port, through CONNECT or as an http:// URL, sent the value
    unencrypted to whatever answered the name's addresses."""
    e = start_egressd(config(tmp_path, tls_origin, allow(origin), secret(tmp_path, origin)))
    with_connect = b"GET /headers HTTP/1.1\r\nHost: localhost:%d\r\nAuthorization: Bearer %s\r\n\r\n"
    s, status, _ = connect_via(e.port, f"localhost:{origin}")
    assert " 200 " in status
    code, _, body = ask(s, with_connect % (origin, PH.encode()))
    assert REAL.encode() not in body and code == 403, body
    s = e.connect()
    code, _, body = ask(s, b"GET http://localhost:%d/headers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                        % (origin, PH.encode()))
    assert REAL.encode() not in body and code == 403, body


ESCAPE = """
import socket, ssl, sys
port, proxy, bundle, ph = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", proxy), timeout=10)
s.sendall(b"CONNECT localhost:%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % port)
assert b" 200 " in s.recv(4096)
t = ssl.create_default_context(cafile=bundle).wrap_socket(s, server_hostname="localhost")
t.sendall(b"GET /user HTTP/1.1\\r\\nHost: localhost:%d\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n" % (port, ph.encode()))
print(t.recv(4096).split(b"\\r\\n")[0].decode())
"""


def test_a_child_of_a_bound_program_is_not_that_program(start_egressd, tls_origin, tmp_path):
    """binary = /usr/bin/git admits git's ancestors' children: any program
    the sandbox starts through `git -c alias.x='!prog' x` gets the value."""
    git = os.path.realpath(GIT)
    text = config(tmp_path, tls_origin, allow(tls_origin.port),
                  secret(tmp_path, tls_origin.port, extra=f"binary = {git}\n"))
    e = start_egressd(text)
    (tmp_path / "escape.py").write_text(ESCAPE)
    cmd = f"!{sys.executable} {tmp_path}/escape.py {tls_origin.port} {e.port} {tmp_path}/bundle.pem {PH}"
    env = dict(os.environ, HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1")
    r = subprocess.run([GIT, "-c", f"alias.escape={cmd}", "escape"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all(REAL not in repr(rec) for rec in tls_origin.records), "python3 got git's token"
    assert " 403 " in r.stdout, r.stdout


class Tracing(RecordingHandler):
    """An origin that answers TRACE as Apache httpd does by default
    (TraceEnable On): the request head sent back as the body."""

    def do_TRACE(self):
        self._record()
        echo = (self.requestline + "\r\n" + str(self.headers)).encode()
        self._send(echo, "message/http")


@pytest.mark.parametrize("method", [b"TRACE", b"TRACK", b"trace"])
def test_a_value_never_goes_into_a_request_the_origin_sends_back(start_egressd, tmp_path, method):
    """TRACE (and IIS's TRACK) asks the origin to echo the request: the
    sandbox would read the value in the answer."""
    o = TlsOrigin(tmp_path, base=Tracing)
    try:
        e = start_egressd(config(tmp_path, o, allow(o.port), secret(tmp_path, o.port)))
        e.bundle = str(tmp_path / "bundle.pem")
        s = tls_tunnel(e, o.port)
        code, _, body = ask(s, head(method, b"/", o.port, b"Authorization: Bearer " + PH.encode()))
        assert REAL.encode() not in body
        assert code == 403 and json.loads(body)["error"] == "secret_not_allowed", body
        code, _, body = ask(s, head(b"GET", b"/user", o.port, b"Authorization: Bearer " + PH.encode()))
        assert code == 200, "the connection goes on, and a GET gets the value"
    finally:
        o.close()
    assert [r["method"] for r in o.records] == ["GET"]


def test_a_name_that_does_not_resolve_is_a_502_not_a_crash(start_egressd):
    """dial() left its result's rule unset when DNS failed, and the tunnel
    logged whatever the stack held there: a crash (or stack bytes in the
    log) for one CONNECT to an allowed name that does not resolve."""
    e = start_egressd(proxy_config(rules="[allow gone]\nhost = gone.invalid, *.gone.invalid\nport = 443, 80\n"))
    for target in ("gone.invalid:443", "x.gone.invalid:443"):
        s, status, _ = connect_via(e.port, target)
        assert " 502 " in status, status
    s = e.connect()
    code, _, body = ask(s, b"GET http://gone.invalid/ HTTP/1.1\r\nHost: gone.invalid\r\n\r\n")
    assert code == 502 and json.loads(body)["error"] == "dns_failure"
    assert e.events("connect", count=2, status=502)


# ---- what holds ---------------------------------------------------------------------------------

def test_deny_rule_spellings_that_hold(start_egressd, tls_origin, tmp_path):
    """Spellings an origin reads alike: denied, or refused before any rule."""
    text = (f"[deny no-delete]\nhost = localhost\nport = {tls_origin.port}\nmethods = DELETE\n"
            f"[deny no-secrets]\nhost = localhost\nport = {tls_origin.port}\npaths = /repos/**/secrets/**\n"
            f"[allow origin]\nhost = localhost\nport = {tls_origin.port}\n")
    e = start_egressd(inspect_config(tmp_path, tls_origin, text))
    e.bundle = str(tmp_path / "bundle.pem")
    port = tls_origin.port
    s = tls_tunnel(e, port)
    for method, path, want in ((b"GET", b"/repos/x/%73ecrets/k", 403), (b"GET", b"/repos/x/SeCrEtS;a=1/k", 403),
                               (b"GET", b"/repos///x/secrets/k?a=/../", 403), (b"delete", b"/repos/x", 403),
                               (b"Delete", b"/repos/x", 403), (b"GET", b"/repos/x/secrets%2fk", 400),
                               (b"GET", b"/repos/x/secrets/%2e%2E/k", 400), (b"GET", b"//repos/x/secrets/k", 403),
                               (b"GET", b"http://localhost/repos/x/secrets/k", 400)):
        if want == 400:
            s = tls_tunnel(e, port)  # refused before any rule: the connection ends
        code, _, body = ask(s, head(method, path, port))
        assert code == want, (method, path, body)
    s = tls_tunnel(e, port)  # HTTP/1.0 without Host: decided all the same
    s.sendall(b"GET /repos/x/secrets/k HTTP/1.0\r\n\r\n")
    assert s.makefile("rb").readline().startswith(b"HTTP/1.1 403")
    assert tls_origin.records == [], "none of them left"


def test_a_request_inside_a_body_is_not_swapped(bound):
    """A body is data: a request written inside it (smuggled, for an origin
    that would read it as the next one) keeps its placeholder."""
    inner = b"GET /user HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n" % PH.encode()
    s = tls_tunnel(bound, bound.origin.port)
    port = bound.origin.port
    pipelined = (head(b"POST", b"/a", port, b"Content-Length: %d" % len(inner)) + inner
                 + head(b"GET", b"/b", port, b"Authorization: Bearer " + PH.encode()))
    s.sendall(pipelined)
    f = s.makefile("rb")
    for _ in range(2):
        status, headers = read_head(f)
        assert b" 200 " in status
        f.read(int(headers["content-length"]))
    first, second = bound.origin.records
    assert first["body"] == inner, "untouched"
    assert second["headers"]["authorization"] == f"Bearer {REAL}", "the pipelined request is its own"
    assert_never_leaked(bound)


class Status101(RecordingHandler):
    """An origin with an endpoint that answers any status it is asked for
    (httpbin's /status/N): a 101 that is not a WebSocket handshake, after
    which it reads the next request as HTTP."""

    def do_GET(self):
        if self.path != "/ws":
            return RecordingHandler.do_GET(self)
        self._record()
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "websocket")
        self.end_headers()


def test_a_101_that_is_no_websocket_handshake_opens_nothing(start_egressd, tmp_path):
    """After a 101 the bytes go raw: a 101 without the Sec-WebSocket-Accept
    that the client's key asks for would let the next requests past the
    rules (the DELETE below was never decided)."""
    o = TlsOrigin(tmp_path, base=Status101)
    try:
        e = start_egressd(inspect_config(tmp_path, o, inspect_rules(o.port)))
        e.bundle = str(tmp_path / "bundle.pem")
        s = tls_tunnel(e, o.port)
        s.sendall(head(b"GET", b"/ws", o.port, b"Connection: Upgrade", b"Upgrade: websocket",
                       b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))
        f = s.makefile("rb")
        status, _ = read_head(f)
        assert b" 101 " not in status, status
    finally:
        o.close()
    assert [r["method"] for r in o.records] == ["GET"]

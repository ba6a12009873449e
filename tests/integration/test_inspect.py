"""Request rules on any host (DESIGN section 10): inspected HTTPS and HTTP
through the real binary, against a TLS origin with its own CA, driven by
curl, python requests, raw sockets and the websockets library."""
import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import threading

import pytest
import requests

from conftest import (EGRESSD, TlsOrigin, connect_via, parse_error, pattern_sha256, proxy_config, read_head,
                      read_response, reload)


def rules(port, extra="", read_paths="/repos/acme/**, /user, /big, /stream, /hello, /ws"):
    return (f"[allow origin-read]\nhost = localhost\nport = {port}\naccess = read-only\n"
            f"paths = {read_paths}\nmessage = ask the operator for write access\n{extra}"
            f"[allow origin-issues]\nhost = localhost\nport = {port}\nmethods = POST\n"
            "paths = /repos/acme/*/issues\n")


def config(tmp_path, origin, rules_text, extra_proxy="", upstream_ca=None):
    ca = upstream_ca or origin.ca
    return (proxy_config(extra_proxy=extra_proxy, rules=rules_text)
            + f"[tls]\nca_cert = {tmp_path}/ca.pem\nca_key = {tmp_path}/ca.key\n"
            f"bundle = {tmp_path}/bundle.pem\nupstream_ca = {ca}\n")


@pytest.fixture
def inspected(start_egressd, tls_origin, tmp_path):
    e = start_egressd(config(tmp_path, tls_origin, rules(tls_origin.port)))
    e.bundle = str(tmp_path / "bundle.pem")
    e.origin = tls_origin
    return e


def curl(e, url, *args):
    r = subprocess.run(["curl", "-sS", "--noproxy", "", "-x", e.url, "--cacert", e.bundle, "-w", "\n%{http_code}",
                        url, *args], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def tls_tunnel(e, port, host="localhost"):
    """CONNECT, then TLS as the sandbox would: trusting egressd's bundle."""
    s, status, _ = connect_via(e.port, f"{host}:{port}")
    assert " 200 " in status, status
    ctx = ssl.create_default_context(cafile=e.bundle)
    return ctx.wrap_socket(s, server_hostname=host)


def ask(s, head):
    s.sendall(head)
    f = s.makefile("rb")
    status, headers = read_head(f)
    body = f.read(int(headers["content-length"])) if "content-length" in headers else b""
    return int(status.split()[1]), headers, body


# ---- deciding each request ---------------------------------------------------------------

def test_get_allowed_delete_denied(inspected):
    port = inspected.origin.port
    code, body = curl(inspected, f"https://localhost:{port}/repos/acme/tool")
    assert code == 200 and body == b"GET /repos/acme/tool\n"
    code, body = curl(inspected, f"https://localhost:{port}/repos/acme/tool", "-X", "DELETE")
    assert code == 403
    err = json.loads(body)
    assert err["error"] == "policy_denied" and err["rule"] == "origin-read"
    assert err["method"] == "DELETE" and err["path"] == "/repos/acme/tool"
    assert err["message"] == "ask the operator for write access"
    assert [r["method"] for r in inspected.origin.records] == ["GET"], "the DELETE never left"
    reqs = inspected.events("request", count=2)
    assert {(r["method"], r["action"], r["status"]) for r in reqs} == {("GET", "allow", 200),
                                                                        ("DELETE", "deny", 403)}
    assert all(r["path"] == "/repos/acme/tool" and r["rule"] == "origin-read" for r in reqs)
    code, body = curl(inspected, f"https://localhost:{port}/repos/acme/tool/issues", "-d", "x=1")
    assert code == 200, "POST to the issues glob: the second rule"


def test_keep_alive_across_allowed_and_denied(inspected):
    port = inspected.origin.port
    with requests.Session() as sess:
        sess.proxies = {"https": inspected.url}
        sess.trust_env = False  # REQUESTS_CA_BUNDLE would override sess.verify
        sess.verify = inspected.bundle
        base = f"https://localhost:{port}"
        assert sess.get(f"{base}/repos/acme/a").status_code == 200
        r = sess.delete(f"{base}/repos/acme/a", data=b"x" * 1000)
        assert r.status_code == 403 and r.json()["method"] == "DELETE"
        assert sess.get(f"{base}/repos/acme/b").status_code == 200
        assert sess.get(f"{base}/repos/other/c").status_code == 403, "a path outside the globs"
    assert len(inspected.events("connect", count=1)) == 1, "one tunnel carried them all"
    assert [r["path"] for r in inspected.origin.records] == ["/repos/acme/a", "/repos/acme/b"]


@pytest.mark.parametrize("path", ["/repos/acme/../x", "/repos/./acme/x", "/repos/acme/%2e%2e/x",
                                  "/repos/acme%2Fx", "/repos/acme%2fx", "/repos/acme%5Cx", "/repos/a\\b",
                                  "https://localhost/repos/acme/x", "/repos/acme/%zz"])
def test_unsafe_paths_refused_before_any_rule(inspected, path):
    s = tls_tunnel(inspected, inspected.origin.port)
    code, headers, body = ask(s, b"GET %s HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (path.encode(),
                                                                                     inspected.origin.port))
    assert code == 400 and json.loads(body)["error"] == "bad_request", body
    assert inspected.origin.records == []


def test_host_must_name_the_connect_host(inspected):
    port = inspected.origin.port
    s = tls_tunnel(inspected, port)
    for host in (b"evil.example", b"localhost:1", b"localhost"):
        code, headers, body = ask(s, b"GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        assert code == 421 and json.loads(body)["error"] == "misdirected_request", host
    code, headers, body = ask(s, b"GET /hello HTTP/1.1\r\nHost: LOCALHOST.:%d\r\n\r\n" % port)
    assert code == 200, "case and a trailing dot do not matter; the connection went on"


def test_audit_forwards_what_would_be_denied(start_egressd, tls_origin, tmp_path):
    e = start_egressd(config(tmp_path, tls_origin, rules(tls_origin.port, extra="audit = yes\n")))
    e.bundle = str(tmp_path / "bundle.pem")
    code, body = curl(e, f"https://localhost:{tls_origin.port}/repos/acme/x", "-X", "DELETE")
    assert code == 200, "audited: forwarded"
    line = e.events("request", action="audit")
    assert line and line[0]["method"] == "DELETE" and line[0]["rule"] == "origin-read"


def test_policy_wide_audit_lets_connections_and_requests_through(start_egressd, tls_origin, tmp_path, origin):
    text = config(tmp_path, tls_origin, rules(tls_origin.port), extra_proxy="audit = yes")
    e = start_egressd(text)
    e.bundle = str(tmp_path / "bundle.pem")
    code, body = curl(e, f"https://localhost:{tls_origin.port}/repos/other/x", "-X", "PUT", "-d", "x")
    assert code == 200
    assert e.events("request", action="audit")
    r = requests.get(f"http://127.0.0.1:{origin}/hello", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 200, "no rule names it: audited, let through"
    assert e.events("forward", action="audit")


# ---- bodies, both ways ----------------------------------------------------------------------

def test_big_download_through_an_inspected_tunnel(inspected):
    n = 100 * 1024 * 1024
    r = subprocess.run(["curl", "-sS", "--noproxy", "", "-x", inspected.url, "--cacert", inspected.bundle,
                        f"https://localhost:{inspected.origin.port}/big?{n}"], capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == n and hashlib.sha256(r.stdout).hexdigest() == pattern_sha256(n)


def test_a_streamed_answer_arrives_piece_by_piece(inspected):
    s = tls_tunnel(inspected, inspected.origin.port)
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % inspected.origin.port)
    f = s.makefile("rb")
    status, headers = read_head(f)
    assert headers.get("transfer-encoding") == "chunked"
    assert f.readline() == b"5\r\n" and f.read(5) == b"first", "the first piece, before the origin goes on"
    inspected.origin.release.set()
    f.readline()
    assert f.readline() == b"6\r\n" and f.read(6) == b"second"


def test_new_connections_resume_the_origin_session(inspected):
    port = inspected.origin.port
    for _ in range(3):
        assert curl(inspected, f"https://localhost:{port}/hello")[0] == 200
    assert [r["resumed"] for r in inspected.origin.records] == [False, True, True], \
        "egressd offers the session it kept: no second full handshake to the origin"


def test_an_origin_that_does_not_verify_gets_502(start_egressd, tls_origin, tmp_path):
    e = start_egressd(config(tmp_path, tls_origin, rules(tls_origin.port),
                             upstream_ca="/etc/ssl/certs/ca-certificates.crt"))
    e.bundle = str(tmp_path / "bundle.pem")
    code, body = curl(e, f"https://localhost:{tls_origin.port}/hello")
    assert code == 502 and json.loads(body)["error"] == "upstream_tls", body
    assert tls_origin.records == []
    e.events("close", count=1)
    lines = e.events("request", count=2, wait=0.5)
    assert len(lines) == 1 and lines[0]["status"] == 502, "one line for one request"
    assert "\n" not in lines[0]["detail"] and "not trusted" in lines[0]["detail"]


def test_the_upstream_is_dialled_before_the_200(start_egressd, tls_origin, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    e = start_egressd(config(tmp_path, tls_origin, rules(port)))
    s, status, _ = connect_via(e.port, f"localhost:{port}")
    assert " 502 " in status or " 504 " in status, "the CONNECT itself fails: " + status
    assert e.events("connect", count=1)[0]["status"] in (502, 504)


# ---- upgrades -----------------------------------------------------------------------------

def ws_server(tmp_path, tls):
    """A WebSocket echo server (the websockets library): (port, stop)."""
    import websockets
    ready, holder = threading.Event(), {}
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp_path / "origin.pem", tmp_path / "origin.key")

    async def echo(ws, path=None):
        async for msg in ws:
            await ws.send(msg)

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # websockets 10 looks the loop up when serve() is called
        holder["loop"] = loop

        async def start():
            return await websockets.serve(echo, "127.0.0.1", 0, ssl=ctx)

        server = loop.run_until_complete(start())
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)
    return holder["port"], lambda: (holder["loop"].call_soon_threadsafe(holder["loop"].stop), t.join(5))


def test_websocket_through_an_inspected_https_tunnel(start_egressd, tls_origin, tmp_path):
    import websockets
    port, stop = ws_server(tmp_path, tls=True)
    try:
        rules_text = f"[allow ws]\nhost = localhost\nport = {port}\naccess = read-only\npaths = /echo\n"
        e = start_egressd(config(tmp_path, tls_origin, rules_text))
        bundle = str(tmp_path / "bundle.pem")
        raw, status, _ = connect_via(e.port, f"localhost:{port}")
        assert " 200 " in status

        async def talk():
            ctx = ssl.create_default_context(cafile=bundle)
            async with websockets.connect(f"wss://localhost:{port}/echo", sock=raw, ssl=ctx,
                                          server_hostname="localhost") as ws:
                await ws.send("hello through egressd")
                return await ws.recv()

        assert asyncio.run(talk()) == "hello through egressd"
        line = e.events("request", method="GET", path="/echo")
        assert line and line[0]["status"] == 101
    finally:
        stop()


def ws_frame(text):
    payload, mask = text.encode(), os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_websocket_on_the_forward_path(start_egressd, tmp_path):
    port, stop = ws_server(tmp_path, tls=False)
    try:
        e = start_egressd(proxy_config(rules=f"[allow ws]\nhost = 127.0.0.1\nport = {port}\n"))
        s = e.connect()
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (port, port, key))
        f = s.makefile("rb")
        status, headers = read_head(f)
        assert status.startswith(b"HTTP/1.1 101"), status
        assert headers["upgrade"].lower() == "websocket"
        s.sendall(ws_frame("over the forward path"))
        first, length = f.read(2)
        assert first == 0x81 and f.read(length) == b"over the forward path"
    finally:
        stop()


def test_h2c_and_an_http2_preface_are_refused(inspected):
    s = tls_tunnel(inspected, inspected.origin.port)
    code, headers, body = ask(s, b"GET /hello HTTP/1.1\r\nHost: localhost:%d\r\nConnection: Upgrade, "
                                 b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
                              % inspected.origin.port)
    assert code == 403 and json.loads(body)["error"] == "unsupported_protocol"
    s = tls_tunnel(inspected, inspected.origin.port)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 403") and b"unsupported_protocol" in raw


# ---- the forward path, reloads, the command line -----------------------------------------------

def test_the_same_rules_on_absolute_form_requests(start_egressd, origin):
    text = proxy_config(rules=f"[allow o]\nhost = 127.0.0.1\nport = {origin}\naccess = read-only\n"
                              "paths = /hello, /headers\n")
    e = start_egressd(text)
    proxies = {"http": e.url}
    assert requests.get(f"http://127.0.0.1:{origin}/hello", proxies=proxies, timeout=10).status_code == 200
    r = requests.post(f"http://127.0.0.1:{origin}/hello", data=b"x", proxies=proxies, timeout=10)
    assert r.status_code == 403 and r.json()["method"] == "POST" and r.json()["path"] == "/hello"
    assert requests.get(f"http://127.0.0.1:{origin}/big?1", proxies=proxies, timeout=10).status_code == 403
    s = e.connect()
    code, headers, body = ask(s, b"GET http://127.0.0.1:%d/a/../hello HTTP/1.1\r\nHost: x\r\n\r\n" % origin)
    assert code == 400
    lines = e.events("request", count=4)
    assert {l["action"] for l in lines} == {"allow", "deny"}
    assert [l["status"] for l in lines if l["action"] == "allow"] == [200]


def test_a_method_override_field_counts_as_a_second_method(inspected, start_egressd, origin):
    port = inspected.origin.port
    base = f"https://localhost:{port}/repos/acme/tool"
    code, body = curl(inspected, base, "-X", "GET", "-H", "X-HTTP-Method-Override: DELETE")
    assert code == 403 and json.loads(body)["rule"] == "origin-read", "read-only lists GET, not DELETE"
    code, _ = curl(inspected, base, "-H", "X-HTTP-Method: GET", "-H", "X-HTTP-Method-Override: GET")
    assert code == 403, "two overrides cannot be read one way"
    assert curl(inspected, base, "-H", "X-HTTP-Method-Override: GET")[0] == 200
    assert [r["method"] for r in inspected.origin.records] == ["GET"]
    e = start_egressd(proxy_config(rules=f"[deny no-delete]\nhost = 127.0.0.1\nport = {origin}\n"
                                         f"methods = DELETE\n[allow o]\nhost = 127.0.0.1\nport = {origin}\n"))
    proxies = {"http": e.url}
    r = requests.post(f"http://127.0.0.1:{origin}/hello", data=b"x", proxies=proxies, timeout=10,
                      headers={"X-HTTP-Method-Override": "delete"})
    assert r.status_code == 403 and r.json()["rule"] == "no-delete"
    assert requests.post(f"http://127.0.0.1:{origin}/hello", data=b"x", proxies=proxies,
                         timeout=10).status_code == 200


def test_deny_rules_on_requests_and_on_destinations(start_egressd, tls_origin, tmp_path, origin):
    text = (f"[deny no-secrets]\nhost = localhost\nport = {tls_origin.port}\npaths = /repos/**/secrets/**\n"
            "message = secrets stay with the operator\n"
            f"[deny closed]\nhost = 127.0.0.1\nport = {origin}\nmessage = this service is closed\n"
            f"[allow origin]\nhost = localhost\nport = {tls_origin.port}\n")
    e = start_egressd(config(tmp_path, tls_origin, text))
    e.bundle = str(tmp_path / "bundle.pem")
    base = f"https://localhost:{tls_origin.port}"
    assert curl(e, f"{base}/repos/acme/x")[0] == 200, "the deny rule's paths leave the rest to the allow rule"
    for path in ("/repos/acme/actions/secrets/K", "/REPOS/acme//x/Secrets/k", "/repos/acme/secrets/k;v=1"):
        code, body = curl(e, base + path)
        assert code == 403, path
        err = json.loads(body)
        assert err["rule"] == "no-secrets" and err["message"] == "secrets stay with the operator", path
    code, body = curl(e, f"http://127.0.0.1:{origin}/hello")
    assert code == 403 and json.loads(body)["message"] == "this service is closed"
    s, status, rest = connect_via(e.port, f"127.0.0.1:{origin}")
    assert " 403 " in status and json.loads(rest + read_response(s))["message"] == "this service is closed"
    assert [r["path"] for r in tls_origin.records] == ["/repos/acme/x"]


def test_a_kept_inspected_connection_follows_reloads(start_egressd, tls_origin, tmp_path):
    e = start_egressd(config(tmp_path, tls_origin, rules(tls_origin.port)))
    e.bundle = str(tmp_path / "bundle.pem")
    s = tls_tunnel(e, tls_origin.port)
    head = b"GET /hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % tls_origin.port
    assert ask(s, head)[0] == 200
    reload(e, config(tmp_path, tls_origin, rules(tls_origin.port, read_paths="/user")))
    assert ask(s, head)[0] == 403, "the next request is decided by the new rules"
    reload(e, config(tmp_path, tls_origin, f"[allow plain]\nhost = localhost\nport = {tls_origin.port}\n"))
    raw = s.sendall(head) or read_response(s)
    assert raw.startswith(b"HTTP/1.1 403") and b"no longer inspected" in raw


def test_explain_and_check(tmp_path, tls_origin):
    conf = tmp_path / "e.ini"
    conf.write_text(config(tmp_path, tls_origin, rules(tls_origin.port)))
    run = lambda *a: subprocess.run([EGRESSD, *a, "-c", str(conf)], capture_output=True, text=True, timeout=30)
    out = run("--explain", f"localhost:{tls_origin.port}").stdout
    assert "inspect by [allow origin-read]" in out
    out = run("--explain", f"localhost:{tls_origin.port}", "--method", "DELETE", "--path", "/repos/acme/x").stdout
    assert "deny" in out and "origin-read" in out and "write access" in out
    out = run("--explain", f"localhost:{tls_origin.port}", "--method", "POST", "--path",
              "/repos/acme/x/issues").stdout
    assert "allow by [allow origin-issues]" in out
    bad = config(tmp_path, tls_origin, "[allow a]\nhost = x.test\nmethods = GET, get\npaths = nope\n"
                                       "access = writeish\n")
    conf.write_text(bad)
    r = run("-t")
    assert r.returncode == 1
    for text in ("methods: 'get'", "paths: 'nope'", "access: 'writeish'"):
        assert text in r.stderr, r.stderr
    conf.write_text(config(tmp_path, tls_origin, "[allow gh]\nhost = api.example.com\nmethods = GET\n"
                                                 "[deny all]\nhost = **.example.com\n"))
    r = run("-t")
    assert r.returncode == 0 and "warning: rule 'gh' can never allow anything" in r.stderr, r.stderr

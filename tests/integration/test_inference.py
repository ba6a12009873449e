"""Interception end to end: curl, python requests and raw sockets through the
real binary to tests/helpers/mock_backend.c, over TLS and plaintext."""
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from conftest import (API_KEY, ANTHROPIC_KEY, INFERENCE_ENV, inference_config, read_head, read_response)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def proxy(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port), env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    e.ca = str(tmp_path / "ca.pem")
    return e


def curl(e, url, *args, data=None, timeout=30):
    cmd = ["curl", "-sS", "--noproxy", "", "-x", e.url, "--cacert", e.bundle, "-w", "\n%{http_code}", url]
    if data is not None:
        cmd += ["-H", "content-type: application/json", "--data-binary", "@-"]
    r = subprocess.run(cmd + list(args), input=data.encode() if data else None, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


# ---- every protocol, over TLS and over plaintext ------------------------------------

CALLS = [
    ("POST", "/v1/chat/completions", CHAT, "chat.completion"),
    ("POST", "/v1/completions", {"model": "gpt-4o", "prompt": "hi"}, "chat.completion"),
    ("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"}, "chat.completion"),
    ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}, "embedding"),
    ("GET", "/v1/models", None, "m1"),
    ("GET", "/v1/models/m1", None, "m1"),
    ("POST", "/v1/messages", {"model": "claude-x", "max_tokens": 5, "messages": []}, "hello from mock"),
]


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_every_protocol(proxy, backend, scheme):
    for method, path, body, expect in CALLS:
        data = json.dumps(body) if body is not None else None
        code, out = curl(proxy, f"{scheme}://inference.local{path}", data=data)
        assert code == 200, (path, out)
        assert expect.encode() in out, (path, out)
        rec = backend.last()
        assert rec["method"] == method
        assert rec["path"] == path, "one /v1, not two"
        headers = {k.lower(): v for k, v in rec["headers"]}
        if path == "/v1/messages":
            assert headers["x-api-key"] == ANTHROPIC_KEY
            assert headers["anthropic-version"] == "2023-06-01"
            assert "authorization" not in headers
        else:
            assert headers["authorization"] == f"Bearer {API_KEY}"
        assert headers["host"] == f"127.0.0.1:{backend.port}"
    lines = proxy.events("inference", count=len(CALLS))
    assert len(lines) == len(CALLS)
    assert {l["protocol"] for l in lines} == {"openai_chat_completions", "openai_completions",
                                              "openai_responses", "openai_embeddings",
                                              "model_discovery", "anthropic_messages"}
    assert lines[0]["route"] == "openai" and lines[0]["model"] == "gpt-4o" and lines[0]["status"] == 200
    assert lines[0]["tokens_in"] == 11 and lines[0]["tokens_out"] == 3
    log = proxy.logpath.read_text()
    assert API_KEY not in log and ANTHROPIC_KEY not in log


def test_plaintext_after_connect(proxy, backend):
    """The bug this design exists to avoid: POST bytes where a ClientHello was expected."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:80 HTTP/1.1\r\nHost: inference.local:80\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200 Connection Established")
    body = json.dumps(CHAT).encode()
    for _ in range(2):  # keep-alive inside the tunnel
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        f = s.makefile("rb")
        status, headers = read_head(f)
        assert status.startswith(b"HTTP/1.1 200")
        assert headers["transfer-encoding"] == "chunked"
        data = b""
        while (size := int(f.readline(), 16)) > 0:
            data += f.read(size)
            f.readline()
        f.readline()
        assert json.loads(data)["choices"][0]["message"]["content"] == "hello from mock"
    reqs = backend.requests()
    assert len(reqs) == 2 and reqs[0]["conn"] == reqs[1]["conn"], "the backend connection is reused"


def test_client_headers_filtered_and_key_replaced(proxy, backend):
    code, out = curl(proxy, "https://api.openai.com/v1/chat/completions", "-H",
                     "Authorization: Bearer sk-client-own-key", "-H", "X-Secret-Header: leak",
                     "-H", "OpenAI-Organization: org-1", "-H", "Cookie: a=b", "-A", "sdk/1.0",
                     data=json.dumps(CHAT))
    assert code == 200
    headers = {k.lower(): v for k, v in backend.last()["headers"]}
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["openai-organization"] == "org-1" and headers["user-agent"] == "sdk/1.0"
    assert "x-secret-header" not in headers and "cookie" not in headers
    assert set(headers) <= {"host", "authorization", "content-type", "accept", "user-agent",
                            "openai-organization", "content-length"}


def test_model_rewrite_is_byte_exact(start_egressd, backend, tmp_path):
    routes = (f"[route local]\nendpoint = http://127.0.0.1:{backend.port}/v1\nmodel = llama-3.1-8b\n"
              "api_key_env = TEST_OPENAI_KEY\n")
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    body = ('{"z":12345678901234567890123,"f":1.5e-300 , "model" : "gpt-4o",'
            '"u":"\\u00e9\\ud83d\\ude00","nested":{"model":"keep-me"},"a":[1,{"model":"x"}]}')
    code, out = curl(e, "https://inference.local/v1/chat/completions", data=body)
    assert code == 200
    sent = backend.last()["body"]
    assert sent == body.replace('"gpt-4o"', '"llama-3.1-8b"')
    assert e.events("inference")[0]["model"] == "gpt-4o"


def test_models_filter_and_no_route(start_egressd, backend, tmp_path):
    routes = (f"[route gpt]\nendpoint = http://127.0.0.1:{backend.port}/v1\nmodels = gpt-4*\n"
              "protocols = openai_chat_completions\n")
    e = start_egressd(inference_config(tmp_path, backend.port, routes=routes), env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    code, out = curl(e, "https://inference.local/v1/chat/completions", data=json.dumps(CHAT))
    assert code == 200
    code, out = curl(e, "https://inference.local/v1/chat/completions",
                     data=json.dumps({"model": "llama", "messages": []}))
    assert code == 400
    assert json.loads(out)["error"]["code"] == "no_route"
    code, out = curl(e, "https://inference.local/v1/messages", data=json.dumps({"model": "claude"}))
    assert code == 400
    body = json.loads(out)
    assert body["type"] == "error" and body["error"]["type"] == "no_route", "Anthropic shape"


def test_no_routes_at_all_503(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port, routes=""), env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    code, out = curl(e, "https://inference.local/v1/chat/completions", data=json.dumps(CHAT))
    assert code == 503 and json.loads(out)["error"]["code"] == "no_route"


def test_not_inference_403_then_close(proxy):
    code, out = curl(proxy, "https://inference.local/v1/files")
    assert code == 403
    assert json.loads(out)["error"]["code"] == "not_inference"
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:80 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(100)
    s.sendall(b"GET /admin HTTP/1.1\r\nHost: inference.local\r\n\r\n")
    raw = read_response(s)  # returns only when egressd closes
    assert b" 403 " in raw.split(b"\r\n")[0] and b"Connection: close" in raw


def test_body_too_large_413(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port, inference_extra="max_request_body = 1K"),
                      env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    big = json.dumps({"model": "gpt-4o", "pad": "x" * 5000})
    code, out = curl(e, "https://inference.local/v1/chat/completions", data=big)
    assert code == 413 and json.loads(out)["error"]["code"] == "body_too_large"
    assert backend.requests() == []


def test_backend_errors(start_egressd, backend, tmp_path, proxy):
    code, out = curl(proxy, "https://inference.local/v1/chat/completions?status=429",
                     data=json.dumps(CHAT))
    assert code == 429 and b"mock error 429" in out, "backend errors pass through"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    e = start_egressd(inference_config(tmp_path, port), name="down", env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    code, out = curl(e, "https://inference.local/v1/chat/completions", data=json.dumps(CHAT))
    assert code == 503
    err = json.loads(out)["error"]
    assert err["code"] == "upstream_unavailable" and str(port) not in err["message"]
    code, out = curl(e, "https://inference.local/v1/messages", data=json.dumps({"model": "c"}))
    assert code == 503 and json.loads(out)["error"]["type"] == "upstream_unavailable"


def test_streaming_is_incremental(proxy, backend):
    """The mock holds the stream after its first event until we release it:
    the first event must reach us before that."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in s.recv(100)
    ctx = ssl.create_default_context(cafile=proxy.bundle)
    t = ctx.wrap_socket(s, server_hostname="inference.local")
    body = json.dumps(dict(CHAT, stream=True)).encode()
    t.sendall(b"POST /v1/chat/completions?hold=1&chunks=2 HTTP/1.1\r\nHost: inference.local\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"chat.completion.chunk" not in got:
        got += t.recv(65536)
    assert b"piece0" not in got, "the rest is still held by the backend"
    backend.release()
    while b"0\r\n\r\n" not in got:
        got += t.recv(65536)
    assert b"piece0" in got and b"piece1" in got and b"data: [DONE]" in got
    line = proxy.events("inference")[0]
    assert line["tokens_out"] == 2 and line["tokens_in"] == 11


def test_cut_stream_gets_one_error_event(proxy, backend):
    code, out = curl(proxy, "https://inference.local/v1/chat/completions?cut=1",
                     data=json.dumps(dict(CHAT, stream=True)))
    assert code == 200
    events = [e for e in out.split(b"\n\n") if e.strip()]
    err = json.loads(events[-1].split(b"data: ", 1)[1])
    assert err["error"]["type"] == "proxy_stream_error"
    assert err["error"]["message"].startswith("response truncated: ")
    assert sum(b"proxy_stream_error" in e for e in events) == 1


def test_requests_library(proxy, backend):
    proxies = {"https": proxy.url, "http": proxy.url}
    r = requests.post("https://api.openai.com/v1/chat/completions", json=CHAT, proxies=proxies,
                      verify=proxy.bundle, timeout=10)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hello from mock"
    r = requests.post("http://inference.local/v1/embeddings", json={"model": "e", "input": "x"},
                      proxies=proxies, timeout=10)
    assert r.status_code == 200 and r.json()["data"][0]["embedding"] == [0.5, -0.25]
    assert r.headers["content-length"] == str(len(r.content)), "buffered: sent with a length"
    with requests.post("https://api.anthropic.com/v1/messages", json={"model": "c", "stream": True},
                       proxies=proxies, verify=proxy.bundle, stream=True, timeout=10) as r:
        text = b"".join(r.iter_content(None))
    assert b"message_stop" in text


# ---- the certificates -------------------------------------------------------------

def leaf_pem(proxy, host):
    r = subprocess.run(["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect",
                        f"{host}:443", "-servername", host, "-showcerts"],
                       input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode()
    return out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]


def test_leaf_passes_strict_verification(proxy, tmp_path):
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(leaf_pem(proxy, "inference.local") + "\n")
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", proxy.ca,
                        str(leaf)], capture_output=True, text=True)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(leaf)], capture_output=True,
                          text=True).stdout
    for part in ("DNS:inference.local", "TLS Web Server Authentication", "Subject Key Identifier",
                 "Authority Key Identifier", "CA:FALSE"):
        assert part in text, part
    # python's ssl with VERIFY_X509_STRICT, through the tunnel
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in s.recv(100)
    ctx = ssl.create_default_context(cafile=proxy.ca)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    t = ctx.wrap_socket(s, server_hostname="inference.local")
    assert t.version() == "TLSv1.2" and t.selected_alpn_protocol() in (None, "http/1.1")
    t.close()


def test_ip_literal_host_gets_ip_san(start_egressd, backend, tmp_path):
    # 18 handshakes at once on 4 base workers: the pool grows while they
    # mint, and on a slow machine (valgrind, a loaded CI) a socket may wait
    # longer than the default 1 s for a worker; minting is what is tested.
    cfg = inference_config(tmp_path, backend.port, extra="queue_timeout = 10s").replace("host = inference.local,", "host = 10.9.8.7, inference.local,")
    e = start_egressd(cfg, env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    code, out = curl(e, "https://10.9.8.7/v1/models")
    assert code == 200, out


def test_key_exchange_prefers_x25519_and_accepts_p256(proxy):
    """X25519 is egressd's cheaper key exchange; a client that offers only P-256 still gets in."""
    for groups, expect in (("X25519:P-256", "X25519"), ("P-256", "prime256v1")):
        r = subprocess.run(["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect",
                            "inference.local:443", "-servername", "inference.local", "-groups", groups,
                            "-CAfile", proxy.ca, "-verify_return_error"],
                           input=b"", capture_output=True, timeout=20)
        out = r.stdout.decode()
        assert "Verify return code: 0 (ok)" in out, out + r.stderr.decode()
        assert re.search(r"Server Temp Key: .*" + expect, out), out


def test_sni_mismatch_refused(proxy):
    r = subprocess.run(["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect",
                        "inference.local:443", "-servername", "evil.example"],
                       input=b"", capture_output=True, timeout=20)
    assert b"BEGIN CERTIFICATE" not in r.stdout
    line = proxy.events("close", reason="tls_handshake_failed")
    assert line and "SNI" in line[0]["detail"]


def test_unsupported_protocol_closed(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in s.recv(100)
    s.sendall(b"\x00\x01\x02 not a protocol")
    assert read_response(s) == b""
    assert proxy.events("close", reason="unsupported_protocol")


def test_https_backend_verified(start_egressd, backend, tmp_path):
    # a backend behind TLS with its own CA, which egressd is told to trust
    ca_key, ca_crt = tmp_path / "bca.key", tmp_path / "bca.pem"
    key, csr, crt = tmp_path / "b.key", tmp_path / "b.csr", tmp_path / "b.pem"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=backend test CA", "-days", "1", "-keyout", str(ca_key), "-out", str(ca_crt))
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
        "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(crt))
    # TLS in front of the mock backend
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    front = socket.socket()
    front.bind(("127.0.0.1", 0))
    front.listen(8)

    def pump(a, b):
        try:
            while (d := a.recv(65536)):
                b.sendall(d)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    stopped = threading.Event()

    def serve():
        while not stopped.is_set():
            try:
                c, _ = front.accept()
                t = ctx.wrap_socket(c, server_side=True)
            except OSError:
                continue
            b = socket.create_connection(("127.0.0.1", backend.port))
            threading.Thread(target=pump, args=(t, b), daemon=True).start()
            threading.Thread(target=pump, args=(b, t), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    port = front.getsockname()[1]
    try:
        for host, expect in (("localhost", 200), ("127.0.0.1", 503)):  # the second: name mismatch
            routes = f"[route tls]\nendpoint = https://{host}:{port}/v1\napi_key_env = TEST_OPENAI_KEY\n"
            cfg = inference_config(tmp_path, backend.port, routes=routes, tls_extra=f"upstream_ca = {ca_crt}")
            e = start_egressd(cfg, name=f"tls-{host}", env=INFERENCE_ENV)
            e.bundle = str(tmp_path / "bundle.pem")
            code, out = curl(e, "https://inference.local/v1/chat/completions", data=json.dumps(CHAT))
            assert code == expect, out
            if expect == 503:
                line = e.events("inference")[0]
                assert "certificate" in line.get("detail", "") or "verif" in line.get("detail", ""), line
    finally:
        stopped.set()
        front.shutdown(socket.SHUT_RDWR)  # wakes accept(): the listener really goes
        front.close()
        server.join(5)


def test_stream_idle_timeout_and_size_cap(start_egressd, backend, tmp_path):
    e = start_egressd(inference_config(tmp_path, backend.port,
                                       inference_extra="stream_idle_timeout = 500ms\nmax_response_body = 2K"),
                      env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    # held after the first event and never released: idle for longer than allowed
    code, out = curl(e, "https://inference.local/v1/chat/completions?hold=1",
                     data=json.dumps(dict(CHAT, stream=True)))
    assert code == 200 and b"proxy_stream_error" in out and b"sent nothing for too long" in out
    backend.release()
    # larger than max_response_body: cut there
    code, out = curl(e, "https://inference.local/v1/chat/completions?chunks=50",
                     data=json.dumps(dict(CHAT, stream=True)))
    assert code == 200 and b"exceeds max_response_body" in out
    assert len(out) < 2048 + 400
    lines = e.events("inference", count=2)
    assert [l["reason"] for l in lines] == ["stream_cut", "stream_cut"]


def test_pipelined_requests(proxy, backend):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:80 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in s.recv(100)
    one = b"GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n"
    s.sendall(one * 3)  # all three before reading any answer
    got = b""
    while got.count(b'"m1"') < 3:
        d = s.recv(65536)
        assert d, got
        got += d
    assert got.count(b"HTTP/1.1 200") == 3
    assert len(backend.requests()) == 3


def test_many_hosts_minted_in_parallel(start_egressd, backend, tmp_path):
    hosts = [f"h{i}.inference.test" for i in range(6)]
    # 18 handshakes at once on 4 base workers: the pool grows while they
    # mint, and on a slow machine (valgrind, a loaded CI) a socket may wait
    # longer than the default 1 s for a worker; minting is what is tested.
    cfg = inference_config(tmp_path, backend.port, extra="queue_timeout = 10s").replace(
        "host = inference.local,", "host = " + ", ".join(hosts) + ", inference.local,")
    e = start_egressd(cfg, env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    results = []

    def one(host):
        code, out = curl(e, f"https://{host}/v1/models")
        results.append(code)

    threads = [threading.Thread(target=one, args=(hosts[i % len(hosts)],)) for i in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 18


def test_empty_body_with_content_length_zero(proxy, backend):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"GET http://inference.local/v1/models HTTP/1.1\r\nHost: inference.local\r\n"
              b"Content-Length: 0\r\n\r\n")
    t0 = time.time()
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    assert time.time() - t0 < 5, "answered at once, not after a body timeout"


def test_headers_that_do_not_fit_the_backend_head_431(proxy, backend):
    """A head under 8 KiB whose forwarded lines grow past the buffer (a
    space after each colon): refused whole, never sent cut, where the cut
    line would run into the line with the key."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT inference.local:80 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    lines = b"".join(b"accept:%s\r\n" % (b"a" * 73) for _ in range(99))
    head = b"GET /v1/models HTTP/1.1\r\nHost:a\r\n" + lines + b"\r\n"
    assert len(head) <= 8192
    s.sendall(head)
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:200]
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["code"] == "headers_too_large"
    assert backend.requests() == []


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_expect_100_continue_is_answered(proxy, backend, scheme):
    """curl asks with `Expect: 100-continue` and waits a second for the 100
    before it sends a body over 1 KiB; egressd reads the body itself and
    answers the 100 at once, as the forward path does."""
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 4000}]})
    r = subprocess.run(["curl", "-sS", "-v", "--noproxy", "", "-x", proxy.url, "--cacert", proxy.bundle,
                        "-H", "Expect: 100-continue", "-H", "content-type: application/json",
                        "--data-binary", "@-", "-o", "/dev/null", "-w", "%{http_code}",
                        f"{scheme}://inference.local/v1/chat/completions"],
                       input=body.encode(), capture_output=True, timeout=30)
    assert r.stdout == b"200", r.stderr
    assert b"< HTTP/1.1 100 Continue" in r.stderr, r.stderr.decode(errors="replace")
    assert b"Done waiting for 100-continue" not in r.stderr
    assert backend.last()["body"] == body, "the body reached the backend whole"

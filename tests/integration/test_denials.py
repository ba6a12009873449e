"""Denials an agent can understand and act on: telling reason phrases, the
hint that admits a denied request, the denial record (admin and
http://egressd.local/denials), access requests, and egressd --suggest,
through the real binary."""
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import requests

from conftest import (EGRESSD, INFERENCE_ENV, connect_error, inference_config, parse_error, proxy_config,
                      read_response, reload)


def admin_config(tmp_path, rules="", extra=""):
    return proxy_config(extra_proxy=f"admin = unix:{tmp_path}/admin.sock\n{extra}", rules=rules)


def admin(tmp_path, target, method="GET"):
    """One request to the admin endpoint on its Unix socket: (status, body)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(tmp_path / "admin.sock"))
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: egressd\r\nConnection: close\r\n\r\n".encode())
    head, _, body = read_response(s).partition(b"\r\n\r\n")
    s.close()
    return int(head.split()[1]), body


def denials(tmp_path):
    status, body = admin(tmp_path, "/denials")
    assert status == 200, body
    return json.loads(body)


def metrics(tmp_path):
    status, body = admin(tmp_path, "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def session():
    s = requests.Session()
    s.trust_env = False  # this machine's REQUESTS_CA_BUNDLE and proxies are not ours
    return s


def local(e, method, path, body=None, headers=None):
    return session().request(method, f"http://egressd.local{path}", data=body, headers=headers,
                             proxies={"http": e.url}, timeout=10)


# ---- telling errors ----------------------------------------------------------------------------

def test_requests_shows_the_reason_phrase(start_egressd):
    e = start_egressd(proxy_config())
    with pytest.raises(requests.exceptions.ProxyError) as err:
        session().get("https://blocked.example/", proxies={"https": e.url}, timeout=10)
    text = str(err.value)
    assert "403 egressd policy: blocked.example:443 is not allowed (ask the operator to add an [allow] rule)" \
        in text, text


def test_status_lines_say_what_happened(start_egressd, origin):
    rules = (f"[deny meta]\nhost = metadata.test\nmessage = never the metadata service\n"
             f"[allow closed]\nhost = 127.0.0.1\nport = 1\n")
    e = start_egressd(proxy_config(rules=rules))
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"CONNECT metadata.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 403 egressd policy: metadata.test:443 is denied by rule meta "
                          b"(never the metadata service)\r\n"), raw
    code, _, body = parse_error(raw)
    assert "hint" not in body, "no allow rule would help against a deny rule"
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = read_response(s)
    assert raw.startswith(b"HTTP/1.1 502 egressd: 127.0.0.1:1 refused the connection or is unreachable "
                          b"(a network error, not a policy decision)\r\n"), raw
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"CONNECT bad\x01host.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    status_line = read_response(s).split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 400 egressd: malformed request")
    assert all(0x20 <= c < 0x7f for c in status_line), status_line


def test_hints_can_be_turned_off(start_egressd):
    e = start_egressd(proxy_config(extra_proxy="hints = no"))
    code, headers, body = connect_error(e.port, "blocked.example:443")
    assert code == 403 and "hint" not in body
    assert body["detail"] == "no rule allows this destination"


# ---- hints --------------------------------------------------------------------------------------

def test_hint_appended_and_reloaded_admits_the_request(start_egressd, origin):
    conf = proxy_config()
    e = start_egressd(conf)
    target = f"http://127.0.0.1:{origin}/hello"
    r = session().get(target, proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403
    hint = r.json()["hint"]
    assert hint == f"[allow 127.0.0.1]\nhost = 127.0.0.1\nport = {origin}\n"
    assert r.reason.startswith(f"egressd policy: 127.0.0.1:{origin} is not allowed")
    reload(e, conf + hint)
    r = session().get(target, proxies={"http": e.url}, timeout=10)
    assert r.status_code == 200 and r.text == "hello\n"
    # a tunnel too: the same hint admits the CONNECT
    code, _, body = connect_error(e.port, "127.0.0.1:1")
    assert body["hint"] == "[allow 127.0.0.1-2]\nhost = 127.0.0.1\nport = 1\n", "a name not yet taken"


def test_request_hint_has_the_request_keys(start_egressd, origin):
    conf = proxy_config(rules=f"[allow hello]\nhost = 127.0.0.1\nport = {origin}\nmethods = GET\n"
                              "paths = /hello\n")
    e = start_egressd(conf)
    url = f"http://127.0.0.1:{origin}/upload/a/b/c/d"
    r = session().post(url, data=b"payload", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["hint"] == (f"[allow 127.0.0.1]\nhost = 127.0.0.1\nport = {origin}\nmethods = POST\n"
                            "paths = /upload/a/b/c/d\n")
    assert r.reason.startswith(f"egressd policy: POST /upload/a/b/c/d on 127.0.0.1:{origin} is not allowed")
    reload(e, conf + body["hint"])
    r = session().post(url, data=b"payload", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 200 and r.text.endswith(" 7"), "the origin answered: admitted"
    r = session().post(f"http://127.0.0.1:{origin}/upload/other", data=b"x", proxies={"http": e.url},
                       timeout=10)
    assert r.status_code == 403, "the hint admits that request, not its neighbours"


# ---- the denial record --------------------------------------------------------------------------

def test_record_aggregates_denials(start_egressd, tmp_path):
    e = start_egressd(admin_config(tmp_path))
    targets = ["a.test:443", "b.test:443", "c.test:8443"]
    for i in range(100):
        code, _, _ = connect_error(e.port, targets[i % 3])
        assert code == 403
    rec = denials(tmp_path)
    assert rec["entries"] == 3 and rec["capacity"] == 1024
    counts = {(d["host"], d["port"]): d["count"] for d in rec["denials"]}
    assert counts == {("a.test", 443): 34, ("b.test", 443): 33, ("c.test", 8443): 33}
    first = rec["denials"][0]
    assert (first["host"], first["port"]) == ("a.test", 443), "most recently seen first"
    assert first["stage"] == "connect" and first["reason"] == "no rule allows this destination"
    assert first["first_seen"] <= first["last_seen"]
    m = metrics(tmp_path)
    assert m['egressd_denials_total{stage="connect"}'] == 100
    assert m['egressd_denials_total{stage="request"}'] == 0
    assert all(l.get("denial") == "connect" for l in e.events("connect", count=100, action="deny"))


def test_record_survives_reload_and_is_cleared_on_request(start_egressd, tmp_path):
    e = start_egressd(admin_config(tmp_path))
    connect_error(e.port, "a.test:443")
    reload(e, admin_config(tmp_path, extra="denial_record = 10"))
    rec = denials(tmp_path)
    assert rec["entries"] == 1 and rec["capacity"] == 10, "kept across the reload, resized"
    status, body = admin(tmp_path, "/denials/clear", method="POST")
    assert status == 200 and json.loads(body) == {"cleared": 1}
    assert denials(tmp_path)["entries"] == 0
    assert admin(tmp_path, "/denials/clear")[0] == 404, "clearing takes a POST"


def test_record_bound_holds_under_5000_denied_hosts(start_egressd, tmp_path):
    e = start_egressd(admin_config(tmp_path).replace("workers = 4", "workers = 8"))
    n, done = 5000, []

    def deny(start):
        for i in range(start, n, 8):
            code, _, _ = connect_error(e.port, f"h{i}.test:443")
            done.append(code)

    threads = [threading.Thread(target=deny, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.count(403) == n
    rec = denials(tmp_path)
    assert rec["entries"] == 1024 and len(rec["denials"]) == 1024
    assert rec["evicted"] == n - 1024
    hosts = {d["host"] for d in rec["denials"]}
    connect_error(e.port, "h0.test:443")  # surely among the evicted, unless it was among the last
    rec = denials(tmp_path)
    assert rec["denials"][0]["host"] == "h0.test" and rec["entries"] == 1024
    assert len(hosts) == 1024 and all(h.endswith(".test") for h in hosts)
    assert metrics(tmp_path)['egressd_denials_total{stage="connect"}'] == n + 1


def test_sandbox_reads_its_denials_never_dialled(start_egressd, tmp_path):
    # a rule that would allow the name: egressd.local is answered all the same
    e = start_egressd(admin_config(tmp_path, rules="[allow local]\nhost = egressd.local\nport = 80, 443\n"))
    connect_error(e.port, "blocked.example:443")
    r = local(e, "GET", "/denials")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    rec = r.json()
    assert [(d["host"], d["count"]) for d in rec["denials"]] == [("blocked.example", 1)]
    assert rec == denials(tmp_path)
    assert not [l for l in e.lines() if l.get("host") == "egressd.local" and l.get("action") == "allow"]
    r = local(e, "POST", "/denials")
    assert r.status_code == 404 and r.json()["error"] == "not_found", "read-only"
    code, _, body = connect_error(e.port, "egressd.local:443")
    assert code == 400 and "plain http://" in body["detail"]
    # kept alive: two answers on one connection
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"GET http://egressd.local/denials HTTP/1.1\r\nHost: egressd.local\r\n\r\n"
              b"GET http://egressd.local/denials?x=1 HTTP/1.1\r\nHost: egressd.local\r\nConnection: close\r\n\r\n")
    assert read_response(s).count(b"HTTP/1.1 200 OK") == 2


# ---- access requests -------------------------------------------------------------------------------

def test_access_request_round_trip(start_egressd, tmp_path):
    # a rule with binary: identity is configured, so the caller is named
    rules = "[allow tools]\nhost = tools.test\nbinary = /usr/bin/true\n"
    e = start_egressd(admin_config(tmp_path, rules=rules))
    ask = {"host": "PyPI.org", "port": 443, "method": "GET", "path": "/simple/numpy/",
           "reason": "pip install numpy for the analysis"}
    r = local(e, "POST", "/requests", json.dumps(ask))
    assert r.status_code == 201, r.text
    assert r.json() == {"id": 1, "status": "recorded", "allowed": False}
    status, body = admin(tmp_path, "/requests")
    got = json.loads(body)["requests"]
    assert len(got) == 1
    one = got[0]
    assert (one["host"], one["port"], one["method"], one["path"], one["reason"]) == (
        "pypi.org", 443, "GET", "/simple/numpy/", ask["reason"])
    assert one["pid"] == os.getpid() and one["binary"] == os.path.realpath(sys.executable)
    line = e.events("access_request")
    assert line and line[0]["host"] == "pypi.org" and line[0]["reason"] == ask["reason"]
    assert line[0]["pid"] == os.getpid()
    assert metrics(tmp_path)["egressd_access_requests_total"] == 1
    code, _, _ = connect_error(e.port, "pypi.org:443")
    assert code == 403, "asking allows nothing"
    # a client that waits for 100 Continue (curl does, past 1 KiB) gets it
    body = json.dumps({"host": "files.test", "port": 443, "path": "/" + "p" * 700, "reason": "r" * 500}).encode()
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"POST http://egressd.local/requests HTTP/1.1\r\nHost: egressd.local\r\n"
              b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(body)
    assert read_response(s).startswith(b"HTTP/1.1 201 Created\r\n")
    assert len(json.loads(admin(tmp_path, "/requests")[1])["requests"]) == 2


@pytest.mark.parametrize("body,why", [
    ("{not json", "not a valid JSON object"),
    (json.dumps({"port": 443, "reason": "x"}), "host: missing"),
    (json.dumps({"host": "pypi.org", "reason": "x"}), "port: missing"),
    (json.dumps({"host": "pypi.org", "port": 443}), "reason: missing"),
    (json.dumps({"host": "pypi.org", "port": 443, "reason": "x", "method": "get"}), "method:"),
    (json.dumps({"host": "pypi.org", "port": 443, "reason": "x" * 600}), "reason: the string is too long"),
    (json.dumps({"host": "pypi.org", "port": 443, "reason": "x" * 5000}), "larger than 4 KiB"),
])
def test_malformed_access_requests_get_400(start_egressd, tmp_path, body, why):
    e = start_egressd(admin_config(tmp_path))
    r = local(e, "POST", "/requests", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request" and why in r.json()["detail"]
    assert why in r.reason
    assert json.loads(admin(tmp_path, "/requests")[1]) == {"requests": []}


# ---- suggestions --------------------------------------------------------------------------------------

def test_suggest_from_a_log_proposes_rules_that_load(start_egressd, tmp_path):
    conf = admin_config(tmp_path)
    e = start_egressd(conf)
    for target in ["a.example.org:443", "b.example.org:443", "c.example.org:443", "pypi.org:443",
                   "pypi.org:443"]:
        assert connect_error(e.port, target)[0] == 403
    e.events("connect", count=5, action="deny")
    out = subprocess.run([EGRESSD, "--suggest", "-c", str(e.conf), "--from", str(e.logpath)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "[allow example.org]\nhost = *.example.org\nport = 443\n" in text, text
    assert "[allow pypi.org]\nhost = pypi.org\nport = 443\n" in text, text
    assert "; 2 denials: pypi.org:443 (2)\n" in text, text
    assert "2 proposed, 0 refused" in text
    both = tmp_path / "with-proposals.ini"
    both.write_text(conf + text)
    check = subprocess.run([EGRESSD, "-t", "-c", str(both)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    for target in ["a.example.org:443", "pypi.org:443"]:
        explain = subprocess.run([EGRESSD, "--explain", target, "-c", str(both)], capture_output=True,
                                 text=True, timeout=30).stdout
        assert " -> allow by [allow " in explain, explain
    # the same from the running egressd's record
    out = subprocess.run([EGRESSD, "--suggest", "-c", str(e.conf)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "host = *.example.org" in out.stdout and "host = pypi.org" in out.stdout
    assert "from unix:" in out.stdout


def test_suggest_leaves_out_what_a_deny_rule_refused(start_egressd, tmp_path):
    conf = admin_config(tmp_path, rules="[deny meta]\nhost = metadata.test\n")
    e = start_egressd(conf)
    connect_error(e.port, "metadata.test:80")
    connect_error(e.port, "ok.test:443")
    out = subprocess.run([EGRESSD, "--suggest", "-c", str(e.conf), "--admin", f"unix:{tmp_path}/admin.sock"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "host = ok.test" in out.stdout
    assert "metadata.test:80 (1): denied by deny rule meta" in out.stdout
    assert "host = metadata.test" not in out.stdout
    bad = subprocess.run([EGRESSD, "--suggest", "-c", str(e.conf), "--admin", f"unix:{tmp_path}/nothing.sock"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "no answer" in bad.stderr


# ---- inference hosts ----------------------------------------------------------------------------------

def test_request_rule_denies_an_inference_call_in_its_shape(start_egressd, backend, tmp_path):
    rules = ("[deny no-embeddings]\nhost = inference.local\npaths = /v1/embeddings\n"
             "message = embeddings go through the batch service\n")
    e = start_egressd(inference_config(tmp_path, backend.port, extra=f"admin = unix:{tmp_path}/admin.sock")
                      + rules, env=INFERENCE_ENV)
    r = session().post("http://inference.local/v1/embeddings", json={"model": "m", "input": "x"},
                       proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403
    assert r.json() == {"error": {"message": "embeddings go through the batch service",
                                  "type": "egressd_error", "code": "policy_denied"}}
    assert r.reason == ("egressd policy: POST /v1/embeddings is denied by rule no-embeddings "
                        "(embeddings go through the batch service)")
    assert not backend.requests(), "nothing reached the backend"
    r = session().post("http://inference.local/v1/chat/completions", json={"model": "m", "messages": []},
                       proxies={"http": e.url}, timeout=10)
    assert r.status_code == 200, "other calls pass"
    rec = denials(tmp_path)["denials"]
    assert [(d["host"], d["method"], d["path"], d["stage"]) for d in rec] == [
        ("inference.local", "POST", "/v1/embeddings", "request")]


# ---- secrets --------------------------------------------------------------------------------------------

def test_a_refused_secret_is_a_denial_of_its_own_stage(start_egressd, origin, tmp_path):
    token = tmp_path / "token"
    token.write_text("real-value-0123456789\n")
    token.chmod(0o600)
    placeholder = "egressd_placeholder_0123456789"
    secret = (f"[secret gh]\nvalue_file = {token}\nplaceholder = {placeholder}\nhosts = bound.test\n")
    rules = f"[allow origin]\nhost = 127.0.0.1\nport = {origin}\n"
    e = start_egressd(admin_config(tmp_path, rules=rules) + secret)
    r = session().get(f"http://127.0.0.1:{origin}/hello", headers={"Authorization": f"Bearer {placeholder}"},
                      proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "secret_not_allowed"
    assert r.reason.startswith(f"egressd policy: a secret may not be sent to 127.0.0.1:{origin} ("), r.reason
    assert "hint" not in r.json(), "an allow rule would not help"
    rec = denials(tmp_path)["denials"]
    assert [(d["host"], d["port"], d["stage"]) for d in rec] == [("127.0.0.1", origin, "secret")]
    assert "secret 'gh'" in rec[0]["reason"]
    assert metrics(tmp_path)['egressd_denials_total{stage="secret"}'] == 1
    assert "real-value" not in e.logpath.read_text()

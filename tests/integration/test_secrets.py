"""Secrets (DESIGN section 11) through the real binary: placeholders swapped
for real values only toward the hosts and programs they are bound to,
refused elsewhere, untouched in bodies, rotated by reload, never logged.
Driven by curl, python requests, git and raw sockets against a recording TLS
origin with its own CA and the mock inference backend."""
import base64
import json
import os
import shutil
import socket
import subprocess

import pytest
import requests

from conftest import (EGRESSD, INFERENCE_ENV, OriginHandler, RecordingHandler, TlsOrigin, connect_via,
                      proxy_config, read_response, reload)

REAL = "ghp_REALtoken0123456789abcdefABCDEF"
ROTATED = "ghp_ROTATEDtoken9876543210zyxwvuXYZ"
PH = "ghp_egressd_placeholder_000000000000"
CURL = os.path.realpath(shutil.which("curl"))
GIT = shutil.which("git") or "/usr/bin/git"  # scripts/install-deps.sh installs it


def secret(tmp_path, port, extra="", value=REAL, name="github"):
    f = tmp_path / f"{name}.token"
    f.write_text(value + "\n")
    f.chmod(0o600)
    return (f"[secret {name}]\nvalue_file = {f}\nplaceholder = {PH}\nhosts = localhost\nport = {port}\n"
            f"env = GITHUB_TOKEN, GH_TOKEN\n{extra}")


def config(tmp_path, origin, rules, secrets):
    return (proxy_config(rules=rules) + secrets
            + f"[tls]\nca_cert = {tmp_path}/ca.pem\nca_key = {tmp_path}/ca.key\n"
            f"bundle = {tmp_path}/bundle.pem\nupstream_ca = {origin.ca}\n")


def allow(port, host="localhost"):
    return f"[allow o-{port}]\nhost = {host}\nport = {port}\n"


@pytest.fixture
def bound(start_egressd, tls_origin, tmp_path):
    e = start_egressd(config(tmp_path, tls_origin, allow(tls_origin.port), secret(tmp_path, tls_origin.port)))
    e.bundle = str(tmp_path / "bundle.pem")
    e.origin = tls_origin
    return e


def curl(e, url, *args, binary=CURL):
    r = subprocess.run([binary, "-sS", "--noproxy", "", "-x", e.url, "--cacert", e.bundle, "-w", "\n%{http_code}",
                        url, *args], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def assert_never_leaked(e, *texts):
    log = e.logpath.read_bytes()
    for t in (REAL, ROTATED) + texts:
        assert t.encode() not in log, f"{t} in the log"


# ---- where a placeholder goes -----------------------------------------------------------

def test_bearer_reaches_the_origin_with_the_real_value(bound):
    port = bound.origin.port
    code, body = curl(bound, f"https://localhost:{port}/user", "-H", f"Authorization: Bearer {PH}")
    assert code == 200, body
    rec = bound.origin.records[-1]
    assert rec["headers"]["authorization"] == f"Bearer {REAL}"
    line = bound.events("request", count=1)[0]
    assert line["secrets"] == "github" and line["action"] == "allow"
    assert_never_leaked(bound)


def test_every_place_in_a_head(bound):
    port = bound.origin.port
    basic = base64.b64encode(f"x-access-token:{PH}".encode()).decode()
    encoded = "".join("%%%02X" % ord(c) if i % 3 == 0 else c for i, c in enumerate(PH))
    code, _ = curl(bound, f"https://localhost:{port}/repos/{PH}/x?token={encoded}&b=1",
                   "-H", f"Authorization: Basic {basic}", "-H", f"X-Api-Key: key={PH};",
                   "-H", "X-Other: untouched")
    assert code == 200
    rec = bound.origin.records[-1]
    h = rec["headers"]
    user, _, pw = base64.b64decode(h["authorization"].split()[1]).decode().partition(":")
    assert (user, pw) == ("x-access-token", REAL), "Basic decoded, swapped, encoded again"
    assert h["x-api-key"] == f"key={REAL};" and h["x-other"] == "untouched"
    assert rec["path"] == f"/repos/{REAL}/x?token={REAL}&b=1", "path segment and encoded query value"
    assert PH not in repr(rec)


def test_a_value_goes_into_a_url_percent_encoded(start_egressd, tls_origin, tmp_path):
    value = "a/b c?d"
    f = tmp_path / "v"
    f.write_text(value)
    text = (f"[secret odd]\nvalue_file = {f}\nplaceholder = {PH}\nhosts = localhost\nport = {tls_origin.port}\n")
    e = start_egressd(config(tmp_path, tls_origin, allow(tls_origin.port), text))
    e.bundle = str(tmp_path / "bundle.pem")
    assert curl(e, f"https://localhost:{tls_origin.port}/x/{PH}?q={PH}")[0] == 200
    assert tls_origin.records[-1]["path"] == "/x/a%2Fb%20c%3Fd?q=a%2Fb%20c%3Fd", "no new segment, no new query"


def test_misdirected_placeholders_are_refused_and_never_sent(start_egressd, tls_origin, origin, tmp_path):
    (tmp_path / "other").mkdir()
    other = TlsOrigin(tmp_path / "other")
    try:
        text = config(tmp_path, tls_origin, allow(tls_origin.port) + allow(other.port) + allow(origin, "127.0.0.1"),
                      secret(tmp_path, tls_origin.port))
        text = text.replace(f"upstream_ca = {tls_origin.ca}", f"upstream_ca = {tmp_path}/cas.pem")
        (tmp_path / "cas.pem").write_text(open(tls_origin.ca).read() + open(other.ca).read())
        e = start_egressd(text)
        e.bundle = str(tmp_path / "bundle.pem")
        # another port of the same host: the secret is not bound there
        code, body = curl(e, f"https://localhost:{other.port}/user", "-H", f"Authorization: Bearer {PH}")
        assert code == 403, body
        err = json.loads(body)
        assert err["error"] == "secret_not_allowed" and "'github'" in err["detail"]
        assert other.records == [], "nothing forwarded"
        # a plain http:// destination: the forward path refuses the same way
        code, body = curl(e, f"http://127.0.0.1:{origin}/hello?t={PH}")
        assert code == 403 and json.loads(body)["error"] == "secret_not_allowed"
        # a mention in a body is not an error
        code, body = curl(e, f"https://localhost:{other.port}/paste", "--data-binary", f"the token is {PH}")
        assert code == 200
        assert other.records[-1]["body"] == f"the token is {PH}".encode(), "forwarded untouched"
        refused = e.events("request", count=1, action="deny")
        assert refused and refused[0]["secrets"] == "github" and refused[0]["status"] == 403
        assert_never_leaked(e)
    finally:
        other.close()


def test_bound_to_a_program(start_egressd, tls_origin, tmp_path):
    text = config(tmp_path, tls_origin, allow(tls_origin.port),
                  secret(tmp_path, tls_origin.port, extra=f"binary = {CURL}\n"))
    e = start_egressd(text)
    e.bundle = str(tmp_path / "bundle.pem")
    url = f"https://localhost:{tls_origin.port}/user"
    assert curl(e, url, "-H", f"Authorization: Bearer {PH}")[0] == 200
    assert tls_origin.records[-1]["headers"]["authorization"] == f"Bearer {REAL}"
    with requests.Session() as s:
        s.trust_env = False
        s.proxies = {"https": e.url}
        r = s.get(url, headers={"Authorization": f"Bearer {PH}"}, verify=e.bundle, timeout=20)
    assert r.status_code == 403 and r.json()["error"] == "secret_not_allowed"
    assert "program" in r.json()["detail"]
    assert len(tls_origin.records) == 1, "python3's request never left"
    assert_never_leaked(e)


# ---- bodies ---------------------------------------------------------------------------------

@pytest.fixture
def in_body(start_egressd, tls_origin, tmp_path):
    e = start_egressd(config(tmp_path, tls_origin, allow(tls_origin.port),
                             secret(tmp_path, tls_origin.port, extra="in_body = yes\n")))
    e.bundle = str(tmp_path / "bundle.pem")
    e.origin = tls_origin
    return e


def test_in_body_with_content_length_and_chunked(in_body):
    url = f"https://localhost:{in_body.origin.port}/api"
    body = json.dumps({"token": PH, "again": PH})
    assert curl(in_body, url, "--data-binary", body, "-H", "Content-Type: application/json")[0] == 200
    rec = in_body.origin.records[-1]
    assert rec["body"] == body.replace(PH, REAL).encode()
    assert rec["headers"]["content-length"] == str(len(rec["body"])), "re-computed"
    assert curl(in_body, url, "--data-binary", body, "-H", "Transfer-Encoding: chunked",
                "-H", "Expect: 100-continue")[0] == 200
    assert in_body.origin.records[-1]["body"] == body.replace(PH, REAL).encode(), "chunked: re-framed"


def test_a_body_too_large_to_swap_is_refused(in_body, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (300 * 1024))
    code, body = curl(in_body, f"https://localhost:{in_body.origin.port}/api", "--data-binary", f"@{big}")
    assert code == 413 and json.loads(body)["error"] == "body_too_large"
    assert in_body.origin.records == [], "never forwarded unsubstituted"


def test_a_placeholder_in_an_inference_body_passes_untouched(start_egressd, backend, tmp_path, tls_origin):
    text = (f"[proxy]\nlisten = 127.0.0.1:0\nworkers = 4\n"
            f"[tls]\nca_cert = {tmp_path}/ca.pem\nca_key = {tmp_path}/ca.key\nbundle = {tmp_path}/bundle.pem\n"
            "[inference]\nhost = inference.local\n"
            f"[route openai]\nendpoint = http://127.0.0.1:{backend.port}/v1\nprovider = openai\n"
            "api_key_secret = openai\n"
            + secret(tmp_path, tls_origin.port, extra="in_body = yes\n")
            + secret(tmp_path, 443, value="sk-real-openai-key-0123456789", name="openai")
            .replace(f"placeholder = {PH}", "placeholder = sk-egressd-openai-placeholder")
            .replace("env = GITHUB_TOKEN, GH_TOKEN", "env = OPENAI_API_KEY").replace("localhost", "api.openai.com"))
    e = start_egressd(text)
    e.bundle = str(tmp_path / "bundle.pem")
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"my token is {PH}"}]}
    code, out = curl(e, "https://inference.local/v1/chat/completions", "--data-binary", json.dumps(chat),
                     "-H", "Authorization: Bearer sk-egressd-openai-placeholder")
    assert code == 200, out
    rec = backend.last()
    assert PH in rec["body"], "a mention is forwarded untouched"
    headers = {k.lower(): v for k, v in rec["headers"]}
    assert headers["authorization"] == "Bearer sk-real-openai-key-0123456789", "api_key_secret"
    assert_never_leaked(e, "sk-real-openai-key-0123456789")


# ---- git, rotation, the command line, metrics ----------------------------------------------------

class GitHandler(RecordingHandler):
    """A smart-HTTP stub: info/refs answers 401 until Basic carries the real
    token, then advertises one ref (protocol v0)."""
    token = REAL
    ref = "0123456789abcdef0123456789abcdef01234567"

    def do_GET(self):
        if not self.path.startswith("/repo.git/info/refs"):
            return RecordingHandler.do_GET(self)
        self._record()
        auth = self.headers.get("Authorization", "")
        want = "Basic " + base64.b64encode(f"agent:{self.token}".encode()).decode()
        if auth != want:
            return self._send(b"auth\n", status=401, extra=[("WWW-Authenticate", 'Basic realm="git"')])

        def pkt(s):
            return b"%04x%s" % (len(s) + 4, s)
        adv = (pkt(b"# service=git-upload-pack\n") + b"0000"
               + pkt(self.ref.encode() + b" HEAD\0multi_ack symref=HEAD:refs/heads/main\n")
               + pkt(self.ref.encode() + b" refs/heads/main\n") + b"0000")
        self._send(adv, "application/x-git-upload-pack-advertisement")


def test_git_over_https_with_the_placeholder_as_password(start_egressd, tmp_path):
    origin = TlsOrigin(tmp_path, base=GitHandler)
    try:
        # the program that holds the connection: git's HTTPS helper, not git
        # itself (whose aliases and hooks run any program as its children)
        text = config(tmp_path, origin, allow(origin.port),
                      secret(tmp_path, origin.port, extra="binary = /usr/lib/git-core/git-remote-https\n"))
        e = start_egressd(text)
        env = dict(os.environ, HTTPS_PROXY=e.url, https_proxy=e.url, GIT_SSL_CAINFO=str(tmp_path / "bundle.pem"),
                   GIT_TERMINAL_PROMPT="0", NO_PROXY="", no_proxy="", GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path))
        r = subprocess.run([GIT, "ls-remote", f"https://agent:{PH}@localhost:{origin.port}/repo.git"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        assert GitHandler.ref in r.stdout and "refs/heads/main" in r.stdout
        auths = [rec["headers"].get("authorization") for rec in origin.records]
        assert auths[-1] == "Basic " + base64.b64encode(f"agent:{REAL}".encode()).decode()
        assert PH not in repr(origin.records)
        assert_never_leaked(e)
    finally:
        origin.close()


def test_rotation_by_reload(bound, tmp_path):
    port = bound.origin.port
    assert curl(bound, f"https://localhost:{port}/user", "-H", f"Authorization: Bearer {PH}")[0] == 200
    (tmp_path / "github.token").write_text(ROTATED + "\n")
    reload(bound)
    assert curl(bound, f"https://localhost:{port}/user", "-H", f"Authorization: Bearer {PH}")[0] == 200
    assert [r["headers"]["authorization"] for r in bound.origin.records] == [f"Bearer {REAL}", f"Bearer {ROTATED}"]
    assert_never_leaked(bound)


def test_print_env_explain_and_check(tmp_path, tls_origin):
    conf = tmp_path / "e.ini"
    conf.write_text(config(tmp_path, tls_origin, allow(tls_origin.port), secret(tmp_path, tls_origin.port)))
    run = lambda *a: subprocess.run([EGRESSD, *a, "-c", str(conf)], capture_output=True, text=True, timeout=30)
    out = run("--print-env").stdout
    assert f"GITHUB_TOKEN={PH}\n" in out and f"GH_TOKEN={PH}\n" in out
    ex = run("--explain", f"localhost:{tls_origin.port}")
    assert "secret 'github'" in ex.stdout and PH in ex.stdout and "inspect" in ex.stdout
    for r in (out, ex.stdout, ex.stderr):
        assert REAL not in r
    bad = (f"[secret a]\nvalue_env = EGRESSD_TEST_NOT_SET\nhosts = x.test\nplaceholder = short\n"
           f"[secret b]\nvalue_file = {tmp_path}/github.token\nhosts = x.test\nplaceholder = {PH}xx\n"
           f"[secret c]\nvalue_file = {tmp_path}/github.token\nhosts = y.test\nplaceholder = {PH}\n"
           f"[secret d]\nvalue_file = {tmp_path}/nope\n")
    conf.write_text(proxy_config() + bad)
    r = run("-t")
    assert r.returncode == 1
    for text in ("EGRESSD_TEST_NOT_SET is not set", "placeholder: it must be 16", "one holds the other",
                 "nope", "secret 'd' has no hosts"):
        assert text in r.stderr, r.stderr
    assert REAL not in r.stderr


def test_secret_metrics(start_egressd, tls_origin, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    admin = s.getsockname()[1]
    s.close()
    text = config(tmp_path, tls_origin, allow(tls_origin.port), secret(tmp_path, tls_origin.port))
    e = start_egressd(text.replace("[proxy]\n", f"[proxy]\nadmin = 127.0.0.1:{admin}\n", 1))
    e.bundle = str(tmp_path / "bundle.pem")
    assert curl(e, f"https://localhost:{tls_origin.port}/u", "-H", f"Authorization: Bearer {PH}")[0] == 200
    m = requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
    assert 'egressd_secret_uses_total{secret="github",result="substituted"} 1' in m

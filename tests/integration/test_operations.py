"""Operating egressd: reloads (good, bad, under load, closing tunnels),
draining on SIGTERM, the admin endpoint, sd_notify, --print-env."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import requests

from conftest import (EGRESSD, INFERENCE_ENV, Egressd, connect_via, inference_config, proxy_config, read_response,
                      reload)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rules(ports):
    return f"[allow local]\nhost = 127.0.0.1, localhost\nport = {ports}\n"


def test_bad_reload_keeps_the_old_policy(start_egressd, echo_server):
    e = start_egressd(proxy_config(rules=rules("1-65535")))
    lines = reload(e, proxy_config(rules=rules("1-65535") + "[allow broken]\nhost = *.com\n"),
                   wait_for="reload failed")
    assert any(re.search(r"egressd\.ini:\d+: host '\*\.com'", l) for l in lines), lines
    s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
    assert " 200 " in status, "the old policy is still in force"


def test_reload_closes_tunnels_no_longer_allowed(start_egressd, echo_server):
    e = start_egressd(proxy_config(rules=rules("1-65535")))
    s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
    assert " 200 " in status
    s.sendall(b"before")
    assert s.recv(10) == b"before"
    reload(e, proxy_config(rules=rules("1")))
    s.settimeout(5)
    t0 = time.time()
    assert s.recv(10) == b"", "closed by egressd"
    assert time.time() - t0 < 3
    close = e.events("close")
    assert close and "reload" in close[0]["reason"]


def test_reload_under_load_fails_nothing(start_egressd, origin):
    e = start_egressd(proxy_config(rules=rules("1-65535")))
    failures, done = [], threading.Event()
    count = [0]

    def client():
        with requests.Session() as sess:
            sess.proxies = {"http": e.url}
            while not done.is_set():
                try:
                    r = sess.get(f"http://127.0.0.1:{origin}/hello", timeout=10)
                    if r.status_code != 200 or r.text != "hello\n":
                        failures.append(r.status_code)
                except requests.RequestException as err:
                    failures.append(str(err))
                count[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(50):  # both policies allow the destination; only the rule name changes
        reload(e, proxy_config(rules=rules("1-65535").replace("local", f"local{i}")))
    done.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert count[0] > 50
    assert len([l for l in e.raw_lines() if "reloaded" in l]) == 50


def test_reload_changes_routes(start_egressd, backend, tmp_path):
    cfg = inference_config(tmp_path, backend.port, routes="[route canned]\nendpoint = mock://x\n")
    e = start_egressd(cfg, env=INFERENCE_ENV)
    r = requests.get("http://inference.local/v1/models", proxies={"http": e.url}, timeout=10)
    assert r.json()["data"][0]["id"] == "mock-model"
    reload(e, inference_config(tmp_path, backend.port))
    r = requests.get("http://inference.local/v1/models", proxies={"http": e.url}, timeout=10)
    assert r.json()["data"][0]["id"] == "m1", "the backend route of the new file"


def test_sigterm_drains_a_stream_in_flight(tmp_path, backend):
    e = Egressd(tmp_path, inference_config(tmp_path, backend.port, extra="shutdown_timeout = 20s"),
                env=INFERENCE_ENV)
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    body = json.dumps({"model": "gpt-4o", "stream": True}).encode()
    s.sendall(b"POST http://inference.local/v1/chat/completions?hold=1 HTTP/1.1\r\nHost: inference.local\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"chat.completion.chunk" not in got:
        got += s.recv(65536)
    e.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert e.proc.poll() is None, "still draining"
    refused = socket.socket()
    assert refused.connect_ex(("127.0.0.1", e.port)) != 0, "no longer accepting"
    backend.release()
    while b"0\r\n\r\n" not in got:
        d = s.recv(65536)
        assert d, got
        got += d
    assert b"[DONE]" in got
    s.close()
    assert e.proc.wait(timeout=20) == 0
    assert e.stop() == 0


def scrape(port):
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def test_metrics_move_with_traffic(start_egressd, backend, tmp_path, echo_server):
    admin = free_port()
    cfg = inference_config(tmp_path, backend.port, extra=f"admin = 127.0.0.1:{admin}\nunsafe_allow_loopback = yes")
    cfg += rules("1-65535")
    e = start_egressd(cfg, env=INFERENCE_ENV)
    assert requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=5).text == "ok\n"
    before = scrape(admin)
    s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
    s.sendall(b"12345")
    assert s.recv(10) == b"12345"
    during = scrape(admin)
    assert during["egressd_tunnels_active"] == 1
    s.close()
    requests.get("http://example.com/", proxies={"http": e.url}, timeout=5)  # denied
    requests.get("http://inference.local/v1/models", proxies={"http": e.url}, timeout=5)
    requests.get("https://inference.local/v1/models", proxies={"https": e.url},
                 verify=str(tmp_path / "bundle.pem"), timeout=5)
    reload(e)
    time.sleep(0.2)
    after = scrape(admin)
    inc = lambda k: after.get(k, 0) - before.get(k, 0)
    assert inc('egressd_connections_total{action="allow"}') == 1
    assert inc('egressd_connections_total{action="deny"}') == 1
    assert inc('egressd_connections_total{action="intercept"}') == 2
    assert inc('egressd_bytes_total{direction="up"}') >= 5
    assert inc('egressd_inference_requests_total{route="openai",status="200"}') == 2
    assert after["egressd_cert_cache_misses_total"] == 1 and after["egressd_cert_cache_size"] == 1
    assert inc('egressd_reloads_total{result="ok"}') == 1
    assert after["egressd_tunnels_active"] == 0
    assert after['egressd_workers{state="total"}'] >= 4
    assert "egressd_queue_depth" in after
    assert requests.get(f"http://127.0.0.1:{admin}/other", timeout=5).status_code == 404


def test_sd_notify(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    conf = tmp_path / "n.ini"
    conf.write_text(proxy_config())
    log = open(tmp_path / "n.log", "wb")
    p = subprocess.Popen([EGRESSD, "-c", str(conf)], stderr=log, stdout=log,
                         env=dict(os.environ, NOTIFY_SOCKET=path))
    try:
        assert sock.recv(4096).startswith(b"READY=1")
        p.send_signal(signal.SIGHUP)
        msg = sock.recv(4096)
        assert msg.startswith(b"RELOADING=1\nMONOTONIC_USEC="), msg
        assert sock.recv(4096).startswith(b"READY=1")
        p.send_signal(signal.SIGTERM)
        assert sock.recv(4096).startswith(b"STOPPING=1")
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_print_env(tmp_path):
    conf = tmp_path / "e.ini"
    conf.write_text(inference_config(tmp_path, 1, routes="").replace("127.0.0.1:0", "127.0.0.1:3999"))
    r = subprocess.run([EGRESSD, "--print-env", "-c", str(conf)], capture_output=True, text=True)
    env = dict(l.split("=", 1) for l in r.stdout.splitlines())
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:3999" and env["https_proxy"] == env["HTTPS_PROXY"]
    for key in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
        assert env[key] == f"{tmp_path}/bundle.pem"
    assert env["NODE_EXTRA_CA_CERTS"] == f"{tmp_path}/ca.pem" and env["NODE_USE_ENV_PROXY"] == "1"


def intercepted_with_a_mock_route(start_egressd, backend, tmp_path):
    """egressd with a mock route, and a plain tunnel to inference.local: (egressd, socket)."""
    e = start_egressd(inference_config(tmp_path, backend.port, routes="[route canned]\nendpoint = mock://x\n"),
                      env=INFERENCE_ENV)
    s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
    s.sendall(b"CONNECT inference.local:80 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in s.recv(100)
    return e, s


def test_kept_intercepted_connection_follows_reloads(start_egressd, backend, tmp_path):
    e, s = intercepted_with_a_mock_route(start_egressd, backend, tmp_path)
    get = b"GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n"

    def models():
        s.sendall(get)
        got = b""
        while not got.endswith(b"}") and not got.endswith(b"}\r\n0\r\n\r\n"):
            d = s.recv(65536)
            if not d:
                return None
            got += d
        return got

    assert b"mock-model" in models()
    reload(e, inference_config(tmp_path, backend.port))  # the backend route now
    assert b'"m1"' in models(), "the next request on the same connection uses the new routes"
    reload(e, inference_config(tmp_path, backend.port).replace("inference.local, ", ""))
    answer = models()
    assert answer is not None and answer.startswith(b"HTTP/1.1 403"), answer
    assert b'"policy_denied"' in answer and b"Connection: close" in answer
    assert s.recv(100) == b"", "no longer intercepted: answered, then closed"


def test_first_intercepted_request_follows_a_reload_after_the_200(start_egressd, backend, tmp_path):
    e, s = intercepted_with_a_mock_route(start_egressd, backend, tmp_path)
    reload(e, inference_config(tmp_path, backend.port).replace("inference.local, ", ""))
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n")
    answer = read_response(s)
    assert answer.startswith(b"HTTP/1.1 403") and b'"policy_denied"' in answer, answer


def test_pool_grows_then_shrinks_to_base(start_egressd, echo_server):
    """Workers above `workers` leave after 30 s idle; the base ones stay and serve."""
    admin = free_port()
    cfg = proxy_config(extra_proxy=f"admin = 127.0.0.1:{admin}\n", rules=rules("1-65535")).replace(
        "workers = 4\nmax_workers = 32", "workers = 2\nmax_workers = 16")
    e = start_egressd(cfg)
    tunnels = [connect_via(e.port, f"127.0.0.1:{echo_server}")[0] for _ in range(10)]
    for i, s in enumerate(tunnels):
        s.sendall(b"ping %d" % i)
        assert s.recv(100) == b"ping %d" % i
    grown = scrape(admin)
    assert grown['egressd_workers{state="total"}'] >= 10 and grown['egressd_workers{state="busy"}'] == 10
    for s in tunnels:
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline and scrape(admin)['egressd_workers{state="busy"}'] > 0:
        time.sleep(0.05)
    grown = scrape(admin)
    # the idle workers serve new tunnels one after another, without growing further
    for i in range(20):
        s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
        s.sendall(b"again")
        assert s.recv(10) == b"again"
        s.close()
    assert scrape(admin)['egressd_workers{state="total"}'] == grown['egressd_workers{state="total"}']
    deadline = time.time() + 45
    while time.time() < deadline and scrape(admin)['egressd_workers{state="total"}'] > 2:
        time.sleep(1)
    assert scrape(admin)['egressd_workers{state="total"}'] == 2
    s, status, _ = connect_via(e.port, f"127.0.0.1:{echo_server}")
    s.sendall(b"base")
    assert s.recv(10) == b"base"
    s.close()
    assert e.stop() == 0


def test_first_request_follows_a_reload_after_accept(start_egressd, origin):
    """A connection accepted before a reload whose first request comes after
    it: decided under the configuration in force when the request came."""
    admin = free_port()
    e = start_egressd(proxy_config(extra_proxy=f"admin = 127.0.0.1:{admin}\n", rules=rules("1-65535")))
    s = e.connect()
    deadline = time.time() + 10  # until a worker holds the connection
    while time.time() < deadline and scrape(admin)['egressd_workers{state="busy"}'] < 1:
        time.sleep(0.02)
    assert scrape(admin)['egressd_workers{state="busy"}'] >= 1
    reload(e, proxy_config(extra_proxy=f"admin = 127.0.0.1:{admin}\n", rules=rules("1")))
    s.sendall(b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin)
    f = s.makefile("rb")
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 403"), status


def test_admin_endpoint_cannot_be_stalled(start_egressd):
    """Idle sockets once held the one-at-a-time admin endpoint 2 s each."""
    admin = free_port()
    e = start_egressd(proxy_config(extra_proxy=f"admin = 127.0.0.1:{admin}\n", rules=rules("1")))
    idle = [socket.create_connection(("127.0.0.1", admin), timeout=5) for _ in range(50)]
    for _ in range(3):
        r = requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=3)
        assert r.status_code == 200 and r.text == "ok\n"
    for s in idle:
        s.close()


def test_admin_idle_flood_evicts_the_idle_first(start_egressd):
    """More idle sockets than the admin table has slots: they push out each
    other, not a client halfway through its head, and a new client still
    gets in."""
    admin = free_port()
    e = start_egressd(proxy_config(extra_proxy=f"admin = 127.0.0.1:{admin}\n", rules=rules("1")))
    talking = socket.create_connection(("127.0.0.1", admin), timeout=5)
    talking.sendall(b"GET /healthz HTTP/1.1\r\n")
    # an answer to another client means the admin thread has accepted this one too
    assert requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=3).status_code == 200
    idle = [socket.create_connection(("127.0.0.1", admin), timeout=5) for _ in range(200)]
    r = requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=3)
    assert r.status_code == 200 and r.text == "ok\n", "a new client is not locked out"
    talking.sendall(b"Host: x\r\n\r\n")
    assert talking.recv(100).startswith(b"HTTP/1.1 200 "), "the client that was talking kept its slot"
    for s in idle:
        s.close()
    talking.close()


def test_admin_on_a_unix_socket(start_egressd, tmp_path):
    path = tmp_path / "admin.sock"
    e = start_egressd(proxy_config(extra_proxy=f"admin = unix:{path}\n", rules=rules("1")))
    r = subprocess.run(["curl", "-sS", "--unix-socket", str(path), "http://egressd/healthz"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout == "ok\n", r.stderr
    r = subprocess.run(["curl", "-sS", "--unix-socket", str(path), "http://egressd/metrics"],
                       capture_output=True, text=True, timeout=10)
    assert "egressd_refused_total" in r.stdout
    e.stop()
    assert not path.exists(), "removed at stop"

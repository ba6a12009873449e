"""Inference gateway depth, end to end through the real binary and the mock
backend: fallback and retries, token and request budgets (with the caller's
program), model aliases and the model list, per-route timeouts, and the
metrics that count all of it."""
import json
import os
import shutil
import socket
import subprocess
import time

import requests

from conftest import (API_KEY, ANTHROPIC_KEY, INFERENCE_ENV, inference_config, reload)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
CURL = os.path.realpath(shutil.which("curl"))


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(start_egressd, tmp_path, backend, routes, extra="", inference_extra=""):
    e = start_egressd(inference_config(tmp_path, backend.port, extra=extra, routes=routes,
                                       inference_extra=inference_extra), env=INFERENCE_ENV)
    e.bundle = str(tmp_path / "bundle.pem")
    return e


def call(e, path, body=None, host="inference.local", headers=()):
    """curl through egressd: (status, lower-cased headers, body bytes)."""
    hfile = e.tmp / "curl-headers.txt"
    cmd = [CURL, "-sS", "--noproxy", "", "-x", e.url, "--cacert", e.bundle, "-D", str(hfile), "-o", "-",
           f"https://{host}{path}"]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # the dump holds the CONNECT's 200 first: the answer is the last head in it
    heads = [h for h in hfile.read_bytes().decode().split("\r\n\r\n") if h.startswith("HTTP/")]
    lines = heads[-1].split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return status, hdrs, r.stdout


def backend_route(name, port, extra=""):
    return (f"[route {name}]\nendpoint = http://127.0.0.1:{port}/v1\nprovider = openai\n"
            f"api_key_env = TEST_OPENAI_KEY\n{extra}")


# ---- fallback and retries ----------------------------------------------------------

def test_refused_backend_falls_back_to_a_second_one(start_egressd, backend, tmp_path):
    down = closed_port()
    routes = (backend_route("primary", down, "model = primary-model\nfallback = second\nretries = 1\n")
              + backend_route("second", backend.port, "model = second-model\n"))
    e = start(start_egressd, tmp_path, backend, routes)
    status, _, out = call(e, "/v1/chat/completions", CHAT)
    assert status == 200 and json.loads(out)["choices"][0]["message"]["content"] == "hello from mock"
    recs = backend.requests()
    assert len(recs) == 1, "one request reached a backend: the second"
    assert json.loads(recs[0]["body"])["model"] == "second-model", "the fallback's own rewrite"
    assert dict((k.lower(), v) for k, v in recs[0]["headers"])["authorization"] == f"Bearer {API_KEY}"
    line = e.events("inference")[0]
    assert line["route"] == "second" and line["attempts"] == 3 and line["status"] == 200
    assert line["model"] == "gpt-4o", "the log names the model the client asked for"
    tries = e.events("inference_attempt", count=2)
    assert [(t["route"], t["reason"], t["attempt"], t["level"]) for t in tries] == [
        ("primary", "connect", 1, "warn"), ("primary", "connect", 2, "warn")]
    assert [t.get("next_route") for t in tries] == ["primary", "second"]
    # streamed, too: the client sees one clean stream
    status, _, out = call(e, "/v1/chat/completions", dict(CHAT, stream=True))
    assert status == 200 and out.count(b"data: [DONE]") == 1 and b"proxy_stream_error" not in out
    assert API_KEY not in e.logpath.read_text()


def test_500_twice_then_200_with_two_retries(start_egressd, backend, tmp_path):
    routes = (backend_route("two", backend.port, "models = gpt-4o\nretries = 2\n")
              + backend_route("one", backend.port, "models = gpt-4o-mini\nretries = 1\n")
              + backend_route("connect-only", backend.port, "models = o1\nretries = 2\nretry_on = connect\n"))
    e = start(start_egressd, tmp_path, backend, routes)
    status, _, out = call(e, "/v1/chat/completions?status=500&fail=2&key=a", CHAT)
    assert status == 200 and b"hello from mock" in out
    assert len(backend.requests()) == 3
    line = e.events("inference")[0]
    assert line["attempts"] == 3 and line["route"] == "two" and line["status"] == 200
    assert [t["reason"] for t in e.events("inference_attempt", count=2)] == ["5xx", "5xx"]
    # one retry is not enough: the client gets the last attempt's answer, the backend's 500
    status, _, out = call(e, "/v1/chat/completions?status=500&fail=2&key=b",
                          dict(CHAT, model="gpt-4o-mini"))
    assert status == 500 and b"mock error 500" in out
    assert e.events("inference", count=2)[1]["attempts"] == 2
    # retry_on = connect: a 500 is an answer, relayed at once
    status, _, out = call(e, "/v1/chat/completions?status=500&fail=2&key=c", dict(CHAT, model="o1"))
    assert status == 500 and e.events("inference", count=3)[2]["attempts"] == 1
    assert len(backend.requests()) == 3 + 2 + 1


def test_429_retried_only_when_named(start_egressd, backend, tmp_path):
    routes = (backend_route("patient", backend.port, "models = gpt-4o\nretries = 1\nretry_on = 429, 5xx\n")
              + backend_route("plain", backend.port, "retries = 1\n"))
    e = start(start_egressd, tmp_path, backend, routes)
    status, _, _ = call(e, "/v1/embeddings?status=429&fail=1&key=p", {"model": "gpt-4o", "input": "x"})
    assert status == 200, "429 is in this route's retry_on"
    status, _, _ = call(e, "/v1/embeddings?status=429&fail=1&key=q", {"model": "e", "input": "x"})
    assert status == 429, "the default retry_on is connect, 5xx"


def test_stream_cut_after_its_first_event_is_not_retried(start_egressd, backend, tmp_path):
    routes = (backend_route("primary", backend.port, "retries = 2\nfallback = second\n")
              + backend_route("second", backend.port))
    e = start(start_egressd, tmp_path, backend, routes)
    status, _, out = call(e, "/v1/chat/completions?cut=1", dict(CHAT, stream=True))
    assert status == 200
    events = [ev for ev in out.split(b"\n\n") if ev.strip()]
    err = json.loads(events[-1].split(b"data: ", 1)[1])
    assert err["error"]["type"] == "proxy_stream_error"
    assert len(backend.requests()) == 1, "once the first byte went out, nothing is sent again"
    line = e.events("inference")[0]
    assert line["attempts"] == 1 and line["reason"] == "stream_cut" and line["route"] == "primary"
    assert e.events("inference_attempt", wait=0.3) == []


# ---- budgets ----------------------------------------------------------------------

def test_token_budget_spent_by_streamed_usage(start_egressd, backend, tmp_path):
    routes = backend_route("openai", backend.port) + (
        f"[route claude]\nendpoint = http://127.0.0.1:{backend.port}\nprovider = anthropic\n"
        "api_key_env = TEST_ANTHROPIC_KEY\n"
        "[budget tokens]\nroutes = *\ntokens = 20\nwindow = 2s\n")
    e = start(start_egressd, tmp_path, backend, routes)
    stream = dict(CHAT, stream=True)
    for _ in range(2):  # 11 prompt + 3 completion tokens each, reported in the stream's last event
        status, _, out = call(e, "/v1/chat/completions", stream)
        assert status == 200 and b"[DONE]" in out
    status, headers, out = call(e, "/v1/chat/completions", stream)
    assert status == 429
    retry = int(headers["retry-after"])
    assert 1 <= retry <= 2 and headers["x-egressd-error"] == "budget_exceeded"
    err = json.loads(out)["error"]
    assert err["code"] == "rate_limit_exceeded" and "budget 'tokens'" in err["message"]
    status, headers, out = call(e, "/v1/messages", {"model": "claude-x", "max_tokens": 5, "messages": []})
    body = json.loads(out)
    assert status == 429 and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert len(backend.requests()) == 2, "refused requests never reach the backend"
    time.sleep(retry + 0.2)
    status, _, out = call(e, "/v1/chat/completions", stream)
    assert status == 200, "admitted again once the window let the usage go"
    refused = e.events("inference", count=5, status=429)
    assert refused[0]["reason"] == "budget_exceeded" and "tokens" in refused[0]["detail"]


def test_budget_bound_to_curl_leaves_python_alone(start_egressd, backend, tmp_path):
    routes = backend_route("openai", backend.port) + (
        f"[budget curl-only]\nroutes = openai\nbinary = {CURL}\nrequests = 1\nwindow = 1h\n")
    e = start(start_egressd, tmp_path, backend, routes)
    assert call(e, "/v1/chat/completions", CHAT)[0] == 200
    assert call(e, "/v1/chat/completions", CHAT)[0] == 429, "curl's one request per hour is spent"
    proxies = {"https": e.url}
    for _ in range(3):
        r = requests.post("https://inference.local/v1/chat/completions", json=CHAT, proxies=proxies,
                          verify=e.bundle, timeout=10)
        assert r.status_code == 200, "python3 is not counted"


def test_budget_survives_a_reload_that_keeps_its_name(start_egressd, backend, tmp_path):
    budget = "[budget daily]\nroutes = openai\nrequests = 1\nwindow = 1h\n"
    routes = backend_route("openai", backend.port)
    e = start(start_egressd, tmp_path, backend, routes + budget)
    assert call(e, "/v1/embeddings", {"model": "e", "input": "x"})[0] == 200
    assert call(e, "/v1/embeddings", {"model": "e", "input": "x"})[0] == 429
    cfg = e.conf.read_text()
    reload(e, cfg.replace("window = 1h", "window = 2h"))
    assert call(e, "/v1/embeddings", {"model": "e", "input": "x"})[0] == 429, "same name: usage kept"
    reload(e, cfg.replace("[budget daily]", "[budget weekly]"))
    assert call(e, "/v1/embeddings", {"model": "e", "input": "x"})[0] == 200, "a new name starts afresh"
    assert call(e, "/v1/models")[0] == 200, "a model listing is never refused"


# ---- aliases ----------------------------------------------------------------------

def test_model_map_rewrites_and_lists_aliases(start_egressd, backend, tmp_path):
    routes = backend_route("local", backend.port,
                           "model_map = gpt-4o=llama-3.1-70b, gpt-4o-mini=llama-3.1-8b, gpt-*=llama-any\n"
                           "model = llama-default\n")
    e = start(start_egressd, tmp_path, backend, routes)
    for asked, sent in (("gpt-4o", "llama-3.1-70b"), ("gpt-4o-mini", "llama-3.1-8b"),
                        ("gpt-3.5-turbo", "llama-any"), ("other", "llama-default")):
        body = ('{"model" : "%s","messages":[],"nested":{"model":"keep"}}' % asked)
        r = subprocess.run([CURL, "-sS", "--noproxy", "", "-x", e.url, "--cacert", e.bundle,
                            "https://inference.local/v1/chat/completions", "--data-binary", body],
                           capture_output=True, timeout=30)
        assert r.returncode == 0 and b"hello from mock" in r.stdout
        assert backend.last()["body"] == body.replace(f'"{asked}"', f'"{sent}"', 1)
    before = len(backend.requests())
    status, _, out = call(e, "/v1/models")
    assert status == 200
    listing = json.loads(out)
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["gpt-4o", "gpt-4o-mini"], "globs are not names"
    status, _, out = call(e, "/v1/models/gpt-4o-mini")
    assert status == 200 and json.loads(out)["id"] == "gpt-4o-mini"
    assert len(backend.requests()) == before, "egressd answered the model list itself"
    status, _, out = call(e, "/v1/models/m1")
    assert status == 200 and json.loads(out)["data"][0]["id"] == "m1", "other names: the backend's"


# ---- per-route timeouts -------------------------------------------------------------

def test_route_timeouts_override_inference(start_egressd, backend, tmp_path):
    routes = (backend_route("quick", backend.port, "models = gpt-4o\nstream_idle_timeout = 300ms\n"
                                                   "timeout = 400ms\n")
              + backend_route("patient", backend.port))
    e = start(start_egressd, tmp_path, backend, routes, inference_extra="timeout = 20s")
    status, _, out = call(e, "/v1/chat/completions?hold=1", dict(CHAT, stream=True))
    assert status == 200 and b"sent nothing for too long" in out
    backend.release()
    status, _, out = call(e, "/v1/embeddings?delay_ms=1000", {"model": "gpt-4o", "input": "x"})
    assert status == 503 and b"did not answer in time" in out
    status, _, out = call(e, "/v1/embeddings?delay_ms=1000", {"model": "e", "input": "x"})
    assert status == 200, "[inference] timeout = 20s for the route without its own"


# ---- metrics -----------------------------------------------------------------------

def scrape(port):
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200
    return {n: float(v) for n, v in (l.rsplit(" ", 1) for l in r.text.splitlines() if l and l[0] != "#")}


def test_usage_metrics_move(start_egressd, backend, tmp_path):
    admin = closed_port()
    routes = (backend_route("primary", closed_port(), "fallback = second\n")
              + backend_route("second", backend.port)
              + "[budget b]\nroutes = *\ntokens = 1000\nrequests = 10\nwindow = 1h\n")
    e = start(start_egressd, tmp_path, backend, routes, extra=f"admin = 127.0.0.1:{admin}")
    before = scrape(admin)
    assert before['egressd_budget_remaining{budget="b",kind="tokens"}'] == 1000
    assert before['egressd_budget_remaining{budget="b",kind="requests"}'] == 10
    assert call(e, "/v1/chat/completions", CHAT)[0] == 200  # 11 + 3 tokens, after one refused dial
    assert call(e, "/v1/chat/completions", dict(CHAT, stream=True))[0] == 200
    e.events("inference", count=2)
    after = scrape(admin)
    assert after['egressd_inference_attempts_total{route="primary",result="connect"}'] == 2
    assert after['egressd_inference_attempts_total{route="second",result="answered"}'] == 2
    assert after['egressd_inference_tokens_total{route="second",direction="input"}'] == 22
    assert after['egressd_inference_tokens_total{route="second",direction="output"}'] == 6
    assert after['egressd_inference_requests_total{route="second",status="200"}'] == 2
    assert after['egressd_budget_remaining{budget="b",kind="tokens"}'] == 1000 - 28
    assert after['egressd_budget_remaining{budget="b",kind="requests"}'] == 8


def test_mock_routes_as_fallback_and_under_a_budget(start_egressd, backend, tmp_path):
    routes = (backend_route("down", closed_port(), "models = gpt-4o\nfallback = canned\n")
              + "[route canned]\nendpoint = mock://canned\nmodel_map = o1=canned-o1\n"
              + "[budget mock]\nroutes = canned\nrequests = 2\nwindow = 1h\n")
    e = start(start_egressd, tmp_path, backend, routes)
    status, _, out = call(e, "/v1/chat/completions", CHAT)
    assert status == 200 and b"egressd mock backend" in out
    line = e.events("inference")[0]
    assert line["route"] == "canned" and line["attempts"] == 2 and line["tokens_in"] == 5
    status, _, out = call(e, "/v1/chat/completions", dict(CHAT, model="o1"))
    assert status == 200 and json.loads(out)["model"] == "canned-o1", "the mock answers as the alias"
    status, _, _ = call(e, "/v1/chat/completions", dict(CHAT, model="o1"))
    assert status == 429, "two requests counted on the mock route"
    # the fallback's budget is spent: it is passed over, and the first route's failure stands
    status, _, out = call(e, "/v1/chat/completions", CHAT)
    assert status == 503 and json.loads(out)["error"]["code"] == "upstream_unavailable"
    skipped = e.events("inference_attempt", count=3, reason="budget")
    assert skipped and skipped[0]["route"] == "canned" and "budget 'mock'" in skipped[0]["detail"]

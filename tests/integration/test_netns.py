"""The strict address path, without unsafe_allow_loopback: an origin on a
test host in a network namespace that this test creates, at an internal
(RFC 2544 benchmarking) address that only allowed_ips opens."""
import os
import shutil
import subprocess
import time

import pytest
import requests

from conftest import connect_error, connect_via, sh, start_ns_origin

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="network namespaces need root and iproute2")

HOST_IP, NS_IP = "198.18.7.1", "198.18.7.2"

@pytest.fixture
def test_host():
    tag = f"egt{os.getpid() % 100000}"
    ns, veth_host, veth_ns = f"{tag}ns", f"{tag}a", f"{tag}b"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns)
        sh("ip", "link", "set", veth_ns, "netns", ns)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", veth_host)
        sh("ip", "link", "set", veth_host, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{NS_IP}/24", "dev", veth_ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", veth_ns, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        origin, port = start_ns_origin(ns, NS_IP)
        yield port
        origin.terminate()
        origin.wait(timeout=10)
    finally:
        subprocess.run(["ip", "link", "del", veth_host], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_allowed_ips_open_an_internal_host(start_egressd, test_host):
    rules = f"[allow lab]\nhost = {NS_IP}\nport = {test_host}\nallowed_ips = 198.18.7.0/24\n"
    e = start_egressd("[proxy]\nlisten = 127.0.0.1:0\n" + rules, "open")
    r = requests.get(f"http://{NS_IP}:{test_host}/", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 200 and r.text == "hello from the namespace\n"
    s, status, _ = connect_via(e.port, f"{NS_IP}:{test_host}")
    assert " 200 " in status
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"namespace" not in got:
        got += s.recv(1000)
    s.close()


def test_internal_host_denied_without_allowed_ips(start_egressd, test_host):
    rules = (f"[allow lab]\nhost = {NS_IP}\nport = {test_host}\n"
             f"allowed_ips = 198.18.8.0/24\n")  # a neighbouring range, not this one
    e = start_egressd("[proxy]\nlisten = 127.0.0.1:0\n" + rules, "strict")
    code, headers, body = connect_error(e.port, f"{NS_IP}:{test_host}")
    assert code == 403 and body["error"] == "ssrf_denied"
    assert "benchmarking" in body["detail"] and body["rule"] == "lab"
    r = requests.get(f"http://{NS_IP}:{test_host}/", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403 and r.headers["X-Egressd-Error"] == "ssrf_denied"

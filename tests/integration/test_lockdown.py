"""scripts/lockdown.sh in a sandbox network namespace that the test creates:
with the rules in place a process that ignores the proxy cannot reach a test
host, and the same request through egressd (running as its own user) can."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import EGRESSD, Egressd, sh, start_ns_origin

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nftables and iproute2")

HERE = os.path.dirname(os.path.abspath(__file__))
LOCKDOWN = os.path.join(HERE, "../../scripts/lockdown.sh")
SANDBOX_IP, HOST_IP = "198.18.9.1", "198.18.9.2"
@pytest.fixture
def namespaces():
    tag = f"egl{os.getpid() % 100000}"
    sandbox, host = f"{tag}s", f"{tag}h"
    for ns in (sandbox, host):
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", f"{tag}a", "netns", sandbox, "type", "veth", "peer", "name", f"{tag}b",
           "netns", host)
        for ns, dev, ip in ((sandbox, f"{tag}a", SANDBOX_IP), (host, f"{tag}b", HOST_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        origin, port = start_ns_origin(host, HOST_IP)
        yield sandbox, port
        origin.terminate()
        origin.wait(timeout=10)
    finally:
        for ns in (sandbox, host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def curl_in(ns, *args):
    return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--noproxy", "", "--max-time", "5", *args],
                          capture_output=True, text=True)


def test_lockdown_forces_traffic_through_egressd(namespaces):
    sandbox, port = namespaces
    url = f"http://{HOST_IP}:{port}/"
    assert curl_in(sandbox, url).stdout == "hello from the namespace\n", "before the lockdown the host is reachable"
    work = tempfile.mkdtemp(prefix="egressd-lockdown-")
    os.chmod(work, 0o755)  # egressd runs as nobody here
    try:
        from pathlib import Path
        cfg = (f"[proxy]\nlisten = 127.0.0.1:0\n[allow lab]\nhost = {HOST_IP}\nport = {port}\n"
               "allowed_ips = 198.18.9.0/24\n")
        # a copy nobody can run, wherever the checkout lives
        binary = os.path.join(work, "egressd")
        shutil.copy(EGRESSD, binary)
        os.chmod(binary, 0o755)
        e = Egressd(Path(work), cfg, binary=binary,
                    prefix=["ip", "netns", "exec", sandbox, "setpriv", "--reuid=65534", "--regid=65534",
                            "--clear-groups"])
        os.chmod(e.conf, 0o644)
        sh("ip", "netns", "exec", sandbox, LOCKDOWN, "--user", "nobody")
        direct = curl_in(sandbox, url)
        assert direct.returncode != 0, "a process that ignores the proxy is refused"
        proxied = curl_in(sandbox, "-x", f"http://127.0.0.1:{e.port}", url)
        assert proxied.returncode == 0 and proxied.stdout == "hello from the namespace\n", proxied.stderr
        tunnel = curl_in(sandbox, "-p", "-x", f"http://127.0.0.1:{e.port}", url)
        assert tunnel.stdout == "hello from the namespace\n", tunnel.stderr
        assert e.stop() == 0
        sh("ip", "netns", "exec", sandbox, LOCKDOWN, "--remove")
        assert curl_in(sandbox, url).stdout == "hello from the namespace\n", "--remove takes the rules away"
    finally:
        shutil.rmtree(work, ignore_errors=True)

"""Rules by calling binary, with real programs: resolved from /proc, by
ancestors, with trust-on-first-use hashes, across network namespaces."""
import os
import shutil
import subprocess
import time

import pytest
import requests

from conftest import EGRESSD, proxy_config

CURL = os.path.realpath(shutil.which("curl"))


def rule(binaries, origin):
    return f"[allow tools]\nhost = 127.0.0.1\nport = {origin}\nbinary = {binaries}\n"


def fetch(binary, e, origin, *extra):
    r = subprocess.run([binary, "-sS", "--noproxy", "", "-o", "/dev/null", "-w", "%{http_code}", "-x", e.url,
                        *extra, f"http://127.0.0.1:{origin}/hello"], capture_output=True, text=True, timeout=30)
    return r.stdout


def test_curl_allowed_python_denied(start_egressd, origin):
    e = start_egressd(proxy_config(rules=rule(CURL, origin)))
    assert fetch(CURL, e, origin) == "200"
    r = requests.get(f"http://127.0.0.1:{origin}/hello", proxies={"http": e.url}, timeout=10)
    assert r.status_code == 403
    assert r.json()["detail"] == "the calling binary is not one the rule allows"
    allow, deny = e.events("forward", action="allow")[0], e.events("forward", action="deny")[0]
    assert allow["binary"] == CURL and allow["pid"] > 0
    assert deny["binary"].startswith("/usr/bin/python3") and deny["pid"] != allow["pid"]
    out = subprocess.run([EGRESSD, "--explain", f"127.0.0.1:{origin}", "--binary", "/usr/bin/curl", "-c",
                          str(e.conf)], capture_output=True, text=True).stdout
    assert "allow by [allow tools]" in out and CURL in out
    out = subprocess.run([EGRESSD, "--explain", f"127.0.0.1:{origin}", "--binary", "/usr/bin/python3", "-c",
                          str(e.conf)], capture_output=True, text=True).stdout
    assert "deny" in out and "not one the rule allows" in out


def test_copy_of_curl_elsewhere_denied(start_egressd, origin, tmp_path):
    copy = tmp_path / "curl-copy"
    shutil.copy(CURL, copy)
    e = start_egressd(proxy_config(rules=rule(CURL, origin)))
    assert fetch(str(copy), e, origin) == "403"
    assert fetch(CURL, e, origin) == "200"


def test_ancestor_rule_for_a_shell(start_egressd, origin, tmp_path):
    # a shell of our own, so that no shell of the test harness is an ancestor
    shell = tmp_path / "agent-shell"
    shutil.copy(os.path.realpath("/bin/sh"), shell)
    script = tmp_path / "run.sh"
    # curl is not the last command, so no shell may exec it: the shell stays its parent
    script.write_text(f"#!{shell}\n{CURL} \"$@\"\nstatus=$?\nexit $status\n")
    script.chmod(0o755)
    e = start_egressd(proxy_config(rules=rule(f"{tmp_path}/agent-*", origin)))
    assert fetch(str(script), e, origin) == "200", "allowed: curl's parent is the shell"
    assert fetch(CURL, e, origin) == "403", "curl alone is not"


def test_binary_replaced_in_place_is_denied(start_egressd, origin, tmp_path):
    tool = tmp_path / "tool"
    shutil.copy(CURL, tool)
    e = start_egressd(proxy_config(rules=rule(str(tool), origin)))
    assert fetch(str(tool), e, origin) == "200", "first use: trusted"
    assert fetch(str(tool), e, origin) == "200"
    time.sleep(0.05)
    with open(tool, "r+b") as f:  # same path, same inode, different content
        f.seek(0, os.SEEK_END)
        f.write(b"\0tampered")
    assert fetch(str(tool), e, origin) == "403"
    deny = e.events("forward", action="deny")[0]
    assert "binary integrity" in deny["reason"]


pytestmark_netns = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                      reason="network namespaces need root and iproute2")


@pytestmark_netns
def test_client_in_another_namespace(start_egressd, origin):
    tag = f"egi{os.getpid() % 100000}"
    ns, outside, inside = f"{tag}ns", f"{tag}a", f"{tag}b"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("ip", "netns", "add", ns)
    sandbox = None
    try:
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", ns)
        run("ip", "addr", "add", "198.18.6.1/24", "dev", outside)
        run("ip", "link", "set", outside, "up")
        run("ip", "-n", ns, "addr", "add", "198.18.6.2/24", "dev", inside)
        run("ip", "-n", ns, "link", "set", inside, "up")
        sandbox = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "120"])
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.time() + 10  # until the process has entered the namespace
        while os.readlink(f"/proc/{sandbox.pid}/ns/net") == ours and time.time() < deadline:
            time.sleep(0.02)
        assert os.readlink(f"/proc/{sandbox.pid}/ns/net") != ours
        conf = proxy_config(f"sandbox_pid = {sandbox.pid}", rules=rule(CURL, origin))
        e = start_egressd(conf.replace("listen = 127.0.0.1:0", "listen = 198.18.6.1:0"))
        proxy = f"http://198.18.6.1:{e.port}"
        r = subprocess.run(["ip", "netns", "exec", ns, CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "-x", proxy, f"http://127.0.0.1:{origin}/hello"], capture_output=True, text=True)
        assert r.stdout == "200", r.stderr + "\n".join(e.raw_lines())
        r = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c",
                            "import urllib.request, sys\n"
                            f"h = urllib.request.ProxyHandler({{'http': '{proxy}'}})\n"
                            "try:\n"
                            f"    urllib.request.build_opener(h).open('http://127.0.0.1:{origin}/hello')\n"
                            "except urllib.error.HTTPError as err:\n"
                            "    print(err.code)\n"], capture_output=True, text=True)
        assert r.stdout.strip() == "403", r.stderr + "\n".join(e.raw_lines())
        allow = e.events("forward", action="allow")[0]
        assert allow["binary"] == CURL
    finally:
        if sandbox is not None:
            sandbox.kill()
            sandbox.wait()
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


BORROW = r"""
import os, socket, sys, time
proxy, origin, allowed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", proxy), timeout=10)
s.set_inheritable(True)
child = os.fork()
if child == 0:
    grandchild = os.fork()
    if grandchild == 0:
        os.execv(allowed, [allowed, "20"])  # the allowed program inherits the socket
    deadline = time.time() + 10  # leave only once it runs the allowed program
    while time.time() < deadline:
        try:
            if os.readlink(f"/proc/{grandchild}/exe") == allowed:
                break
        except OSError:
            pass
        time.sleep(0.01)
    print(grandchild, flush=True)
    os._exit(0)  # the grandchild is orphaned: python is no ancestor of it
os.waitpid(child, 0)
s.sendall(b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % origin)
print(s.recv(200).split(b"\r\n")[0].decode(), flush=True)
"""


def test_identity_cannot_be_borrowed(start_egressd, origin, tmp_path):
    """A process no rule allows keeps its socket while an orphaned
    grandchild runs an allowed program: every holder is judged."""
    sleep = os.path.realpath(shutil.which("sleep"))
    e = start_egressd(proxy_config(rules=rule(sleep, origin)))
    r = subprocess.run(["/usr/bin/python3", "-c", BORROW, str(e.port), str(origin), sleep],
                       capture_output=True, text=True, timeout=30)
    grandchild, status = r.stdout.split("\n")[:2]
    try:
        assert " 403 " in status + " ", r.stdout + r.stderr
        deny = e.events("forward", action="deny")[0]
        assert "shared" in deny["reason"], deny
    finally:
        subprocess.run(["kill", grandchild], capture_output=True)


@pytestmark_netns
def test_deny_rule_with_binary_denies_when_identity_is_unknown(start_egressd, origin):
    """With the identity unknown (the socket is looked for in another
    namespace), a deny rule that names binaries once stepped aside and a
    later allow rule admitted the connection."""
    other = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.time() + 10
        while os.readlink(f"/proc/{other.pid}/ns/net") == ours and time.time() < deadline:
            time.sleep(0.02)
        rules = (f"[deny no-curl]\nhost = 127.0.0.1\nbinary = {CURL}\n"
                 f"[allow local]\nhost = 127.0.0.1\nport = {origin}\n")
        e = start_egressd(proxy_config(f"sandbox_pid = {other.pid}", rules=rules))
        assert fetch(CURL, e, origin) == "403"
        deny = e.events("forward", action="deny")[0]
        assert deny["rule"] == "no-curl" and "process identity" in deny["reason"], deny
    finally:
        other.kill()
        other.wait()


HIDE_IN_THREAD = r"""
import ctypes, os, socket, subprocess, sys, threading
proxy, origin, allowed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
CLONE_FILES = 0x400
libc = ctypes.CDLL(None, use_errno=True)
s = socket.create_connection(("127.0.0.1", proxy), timeout=10)
s.settimeout(None)  # blocking, for the child's plain reads
ready, done = threading.Event(), threading.Event()

def keep():  # this thread's own copy of the file table keeps the socket
    if libc.unshare(CLONE_FILES) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    ready.set()
    done.wait(30)

t = threading.Thread(target=keep, daemon=True)
t.start()
ready.wait(10)
send = ("import os, sys\nfd = int(sys.argv[1])\nsys.stdin.readline()\n"
        "os.write(fd, b'GET http://127.0.0.1:%d/hello HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n')\n"
        "print(os.read(fd, 200).split(b'\\r\\n')[0].decode(), flush=True)\n" % origin)
child = subprocess.Popen([allowed, "-c", send, str(s.fileno())], pass_fds=[s.fileno()],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
s.close()  # the leader's table no longer has it: only the thread's and the child's do
child.stdin.write("go\n")
child.stdin.flush()
print(child.stdout.readline().strip(), flush=True)
child.wait(10)
done.set()
"""


def test_holder_hidden_in_a_thread_file_table(start_egressd, origin, tmp_path):
    """A thread that unshared its file table keeps the socket while the
    process's own table does not: its process is a holder too, and it runs
    a program the rule does not allow."""
    allowed = tmp_path / "allowed-python"  # no ancestor of the test runs it
    shutil.copy(os.path.realpath("/usr/bin/python3"), allowed)
    e = start_egressd(proxy_config(rules=rule(str(allowed), origin)))
    r = subprocess.run(["/usr/bin/python3", "-c", HIDE_IN_THREAD, str(e.port), str(origin), str(allowed)],
                       capture_output=True, text=True, timeout=30)
    assert " 403 " in r.stdout + " ", r.stdout + r.stderr
    deny = e.events("forward", action="deny")[0]
    assert "shared" in deny["reason"], deny
    # the program alone is allowed: the test is not denied for another reason
    alone = subprocess.run([str(allowed), "-c", "import urllib.request as u\n"
                            f"h = u.ProxyHandler({{'http': '{e.url}'}})\n"
                            f"print(u.build_opener(h).open('http://127.0.0.1:{origin}/hello').status)"],
                           capture_output=True, text=True, timeout=30)
    assert alone.stdout.strip() == "200", alone.stdout + alone.stderr

"""make install, the man pages and the systemd unit."""
import os
import re
import shutil
import subprocess

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("dest")
    r = subprocess.run(["make", "-C", TOP, "--no-print-directory", "install", f"DESTDIR={dest}",
                        "PREFIX=/usr"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return dest


def test_install_puts_everything_in_place(installed):
    for path in ("usr/sbin/egressd", "etc/egressd/egressd.ini", "etc/egressd/egressd.ini.example",
                 "lib/systemd/system/egressd.service", "usr/share/man/man8/egressd.8",
                 "usr/share/man/man5/egressd.ini.5"):
        assert (installed / path).exists(), path
    assert os.access(installed / "usr/sbin/egressd", os.X_OK)
    unit = (installed / "lib/systemd/system/egressd.service").read_text()
    assert "ExecStart=/usr/sbin/egressd -c /etc/egressd/egressd.ini" in unit


@pytest.mark.parametrize("page", ["man8/egressd.8", "man5/egressd.ini.5"])
def test_man_pages_render_without_warnings(installed, page):
    if not shutil.which("man"):
        pytest.skip("man is not installed")
    r = subprocess.run(["man", "--warnings", "-l", str(installed / "usr/share/man" / page)],
                       capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "egressd" in r.stdout


def test_unit_verifies_and_is_hardened(installed, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "egressd.service"
    text = (installed / "lib/systemd/system/egressd.service").read_text()
    unit.write_text(text.replace("/usr/sbin/egressd", str(installed / "usr/sbin/egressd")))
    env = dict(os.environ, MANPATH=str(installed / "usr/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                       text=True, env=env)
    level = float(re.search(r"Overall exposure level for egressd.service: ([0-9.]+)", r.stdout).group(1))
    assert level <= 2.0, r.stdout
    for key in ("Type=notify", "ExecReload=", "WatchdogSec=", "StateDirectory=egressd", "NoNewPrivileges=yes",
                "ProtectSystem=strict", "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service"):
        assert key in text, key

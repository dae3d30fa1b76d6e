"""The fixtures themselves: a daemon that ends during a test without the test asking for it
fails that test; one the test stops or expects to end does not."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sbtest import DAEMON

HERE = Path(__file__).resolve().parent

INNER = r'''
import os, signal

def test_crash(daemon):
    daemon.client(role="admin").ok("status")
    os.kill(daemon.proc.pid, signal.SIGSEGV)
    daemon.proc.wait()

def test_exit_on_its_own(daemon):
    daemon.proc.send_signal(signal.SIGTERM)       # not through stop(): the fixture was not told
    daemon.proc.wait()

def test_stop_of_a_daemon_that_had_died(daemon):
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait()
    daemon.stop(signal.SIGKILL)

def test_killed_on_purpose(daemon):
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL

def test_stopped_on_purpose(daemon):
    assert daemon.stop() == 0

def test_expected_to_end(daemon):
    daemon.expect_exit()
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.wait()

def test_left_running(daemon):
    daemon.client(role="admin").ok("status")
'''


def test_a_daemon_that_ends_unasked_fails_its_test(tmp_path):
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(INNER)
    env = dict(os.environ, PYTHONPATH=str(HERE), COLUMNS="400", SHMBROKERD=os.path.abspath(DAEMON))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    summary = [line for line in r.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    bad = sorted({line.split("::")[1].split()[0] for line in summary})
    assert bad == ["test_crash", "test_exit_on_its_own", "test_stop_of_a_daemon_that_had_died"], r.stdout
    assert r.returncode == 1
    for line in summary:
        assert "the daemon exited during the test" in line or "the daemon had already exited" in line, line
    # the three call phases that passed count as passed, their teardowns as errors
    assert r.stdout.splitlines()[-1].startswith("1 failed, 6 passed, 3 errors"), r.stdout

"""The private daemon (shmbroker._private): started when no daemon is reachable, shared by
the process and the children it forks, gone with the process however it ends, never used
in place of a socket someone named."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import shmbroker
from shmbroker import _private, errors
from sbtest import ROOT, needs_root, python_as_user, segments, wait_for


def alive(pid: int) -> bool:
    """Whether process @pid runs (a zombie, whose parent has not reaped it, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def daemons_in(base: Path) -> list[int]:
    """The running processes started with a path under @base on their command line: the
    private daemons of a test, whoever started them."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(os.fsencode(base) + b"/") for a in argv[1:]) and alive(int(entry)):
                found.append(int(entry))
    return found


class Private:
    def __init__(self, base: Path):
        self.base = base                           # $XDG_RUNTIME_DIR of the test
        self.default = str(base / "absent.sock")   # a default socket nobody listens on

    def dirs(self) -> list[str]:
        return sorted(n for n in os.listdir(self.base) if n.startswith("shmbroker-"))


@pytest.fixture
def private(monkeypatch):
    """No daemon reachable: $SHMBROKER_SOCKET unset, a default socket that does not exist,
    and $XDG_RUNTIME_DIR a directory of the test's (short: socket paths are bounded). The
    private daemon of the test is stopped after it, and must be gone."""
    base = Path(tempfile.mkdtemp(prefix="sbp-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.delenv("SHMBROKER_SOCKET", raising=False)
    before = segments()
    assert _private.private_daemon_pid() is None, "a private daemon was left by an earlier test"
    try:
        yield Private(base)
    finally:
        pid = _private.private_daemon_pid()
        rc = _private.stop_private_daemon()
        assert pid is None or rc == 0, f"the private daemon ended with status {rc} on SIGTERM"
        assert _private.private_daemon_pid() is None
        left_dirs = Private(base).dirs()
        shutil.rmtree(base, ignore_errors=True)
        assert not daemons_in(base), "a private daemon still runs"
        assert not left_dirs, f"left in $XDG_RUNTIME_DIR: {left_dirs}"
        assert not segments() - before


def move_one_batch(path: str, pool: str = "p") -> None:
    with shmbroker.connect("producer", path) as p, shmbroker.connect("consumer", path) as c:
        out = p.create(pool, 1 << 16, 2)
        out.put(np.arange(1000, dtype=np.int64), meta={"n": 1}, seq=0)
        with c.open(pool).get(timeout=5) as batch:
            assert batch.meta == {"n": 1}
            assert np.array_equal(batch.array, np.arange(1000))


# --- which socket ---------------------------------------------------------------------------

def test_named_sockets_are_returned_unchanged_even_dead(private, monkeypatch):
    dead = str(private.base / "nobody.sock")
    assert _private.loader_socket(dead, default=private.default) == dead
    monkeypatch.setenv("SHMBROKER_SOCKET", dead + "2")
    assert _private.loader_socket(None, default=private.default) == dead + "2"
    assert _private.loader_socket(dead, default=private.default) == dead
    assert _private.private_daemon_pid() is None
    assert not daemons_in(private.base) and not private.dirs()


def test_a_reachable_default_is_used(private, daemon):
    assert _private.loader_socket(None, default=daemon.path) is None
    assert _private.private_daemon_pid() is None
    assert not daemons_in(private.base)


AS_USER = r"""
import json, os, sys
import shmbroker
from shmbroker import _private
path = _private.loader_socket(default=sys.argv[1])
with shmbroker.connect("producer", path) as c:
    c.create("p", 4096, 1)
print(json.dumps({"socket": path, "uid": os.getuid()}))
"""


@needs_root
def test_a_default_this_user_may_not_use_is_passed_over(daemon, tmp_path, monkeypatch):
    # The daemon listens in pytest's tmp_path, which only root may enter: EACCES for another user.
    monkeypatch.delenv("SHMBROKER_SOCKET", raising=False)
    assert os.stat(tmp_path).st_mode & 0o077 == 0
    (got,) = python_as_user(AS_USER, daemon.path)
    assert got["uid"] != 0 and got["socket"] and not got["socket"].startswith(str(tmp_path))
    assert not Path(got["socket"]).parent.exists()      # removed when that process exited


@pytest.mark.parametrize("default", ["absent", "stale"])
def test_without_a_daemon_one_is_started_and_shared(private, default):
    if default == "stale":       # a socket file nobody listens on: ECONNREFUSED
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(private.default)
    path = _private.loader_socket(None, default=private.default)
    assert path and Path(path).parent.parent == private.base, path
    pid = _private.private_daemon_pid()
    assert pid and alive(pid) and daemons_in(private.base) == [pid]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(Path(path).parent).st_mode & 0o777 == 0o700
    move_one_batch(path)
    assert _private.loader_socket(None, default=private.default) == path
    assert _private.loader_socket(default=private.default) == path
    assert _private.private_daemon_pid() == pid
    # Stopped as at exit: SIGTERM, exit status 0, its directory gone.
    assert _private.stop_private_daemon() == 0
    assert not alive(pid) and not private.dirs()


def test_one_daemon_for_concurrent_callers_and_it_outlives_the_calling_thread(private):
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(_private.loader_socket(default=private.default)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 8 and len(set(paths)) == 1
    pid = _private.private_daemon_pid()
    assert daemons_in(private.base) == [pid]
    # The daemon was started by one of those threads' calls, all of which have ended; the
    # parent-death signal follows the thread that forked it, which lives on.
    time.sleep(0.2)
    assert alive(pid)
    move_one_batch(paths[0])


def test_limits_fit_one_process_tree(private):
    path = _private.loader_socket(default=private.default)
    # More pools than the system daemon's max_pools (64) and max_pools_per_uid (16).
    with shmbroker.connect("producer", path) as c:
        pools = [c.create(f"p{i}", 4096, 1) for i in range(65)]
        assert len(c.status()["pools"]) == 65
        for p in pools:
            p.close()


def test_the_daemon_found_beside_the_library(monkeypatch):
    monkeypatch.delenv("SHMBROKERD", raising=False)
    assert _private.find_daemon() == str(ROOT / "build" / "shmbrokerd")


# --- the process tree ------------------------------------------------------------------------

def test_a_forked_child_uses_the_parents_daemon_and_never_stops_it(private):
    path = _private.loader_socket(default=private.default)
    pid = _private.private_daemon_pid()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            got = {"socket": _private.loader_socket(default=private.default), "pid": _private.private_daemon_pid(),
                   "stopped": _private.stop_private_daemon()}
            _private._at_exit()           # what the child's atexit would do
            move_one_batch(got["socket"], "child")
            os.write(w, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = json.loads(f.read() or "null")
    assert os.waitpid(child, 0)[1] == 0
    assert got == {"socket": path, "pid": pid, "stopped": None}
    assert alive(pid) and daemons_in(private.base) == [pid]
    move_one_batch(path)


SCRIPT = r"""
import json, sys
import numpy as np
import shmbroker
from shmbroker import _private
path = _private.loader_socket(default=sys.argv[1])
c = shmbroker.connect("producer", path)
pool = c.create("p", 1 << 16, 2)
pool.put(np.arange(10), seq=0)
print(json.dumps({"socket": path, "pid": _private.private_daemon_pid()}), flush=True)
sys.stdin.readline()          # until the test has looked
"""


@pytest.mark.parametrize("end", ["exit", "sigkill"])
def test_the_daemon_goes_with_its_process(private, end):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, private.default], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        started = json.loads(p.stdout.readline())
        assert alive(started["pid"]) and Path(started["socket"]).exists()
        if end == "sigkill":
            p.kill()
        else:
            p.stdin.write("exit\n")
            p.stdin.flush()
        assert p.wait(timeout=10) == (-signal.SIGKILL if end == "sigkill" else 0)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    wait_for(lambda: not alive(started["pid"]), timeout=5, what="the private daemon to end")
    assert not daemons_in(private.base)
    assert not Path(started["socket"]).exists()
    if end == "sigkill":
        # The killed process could not remove the daemon's directory: the next start does.
        assert private.dirs() == [Path(started["socket"]).parent.name]
        path = _private.loader_socket(default=private.default)
        assert private.dirs() == [Path(path).parent.name]
    else:
        assert not private.dirs()


# --- failures --------------------------------------------------------------------------------

def test_no_binary_is_a_clear_error(private, monkeypatch):
    monkeypatch.setenv("SHMBROKERD", str(private.base / "nope"))
    with pytest.raises(errors.NoDaemon, match=r"\$SHMBROKERD is '.*/nope', which is not an executable file"):
        _private.loader_socket(default=private.default)

    monkeypatch.delenv("SHMBROKERD")
    monkeypatch.setattr(_private, "_library_path", lambda: str(private.base / "lib" / "libshmbroker.so"))
    monkeypatch.setattr(_private, "SYSTEM_SBIN", ())
    monkeypatch.setenv("PATH", str(private.base))
    with pytest.raises(errors.NoDaemon) as e:
        _private.loader_socket(default=private.default)
    message = str(e.value)
    for words in (f"none at the default socket {private.default} (ENOENT", "no shmbrokerd was found",
                  str(private.base / "lib" / "shmbrokerd"), "not on $PATH", "set $SHMBROKERD",
                  "Install shmbroker", "$SHMBROKER_SOCKET"):
        assert words in message, message
    assert isinstance(e.value, errors.BrokerError) and isinstance(e.value, ConnectionError)
    assert _private.private_daemon_pid() is None and not private.dirs()


def fake_daemon(private, monkeypatch, body: str) -> None:
    script = private.base / "fake-shmbrokerd"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    monkeypatch.setenv("SHMBROKERD", str(script))


def test_a_daemon_that_fails_to_start_is_reported_with_its_log(private, monkeypatch):
    fake_daemon(private, monkeypatch, 'echo "<3>cannot listen on $2: Address already in use" >&2\nexit 1\n')
    with pytest.raises(errors.NoDaemon, match=r"exited with status 1 before it was ready(.|\n)*"
                                              r"  cannot listen on .*: Address already in use"):
        _private.loader_socket(default=private.default)
    assert _private.private_daemon_pid() is None and not private.dirs()


def test_a_daemon_that_never_gets_ready_is_stopped(private, monkeypatch):
    fake_daemon(private, monkeypatch, 'echo "starting" >&2\nexec sleep 30\n')
    monkeypatch.setattr(_private, "READY_SECONDS", 0.3)
    with pytest.raises(errors.NoDaemon, match=r"did not say it was ready within 0.3 s(.|\n)*  starting") as e:
        _private.loader_socket(default=private.default)
    pid = int(re.search(r"pid (\d+)\)", str(e.value)).group(1))
    assert not alive(pid) and not private.dirs()


def test_a_daemon_that_died_is_started_again(private):
    path = _private.loader_socket(default=private.default)
    pid = _private.private_daemon_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _private.private_daemon_pid() is None, timeout=5, what="the daemon's death to be seen")
    with pytest.warns(RuntimeWarning, match=rf"the private shmbrokerd \(pid {pid}\) had exited with status -9"):
        again = _private.loader_socket(default=private.default)
    assert again != path and _private.private_daemon_pid() not in (None, pid)
    move_one_batch(again)

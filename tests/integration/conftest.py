"""Fixtures: a daemon per test, and the promise that no segment outlives a test."""
from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The Python binding from the source tree (it finds build/libshmbroker.so from there).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client" / "python"))

from sbtest import Daemon, segment_info, segments  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_by_the_suite():
    before = segments()
    yield
    left = segments() - before
    assert not left, f"the suite left SysV segments behind: {sorted(left)}"


def daemon_problems(d: Daemon) -> list[str]:
    """Stop @d if it still runs; what went wrong with it: an exit during the test that the
    test did not ask for (a crash, or an exit on its own), a SIGTERM that did not end it
    with status 0, or a sanitizer report in its log."""
    problems = []
    if d.proc is not None:
        died = d.unexpected_exit()
        if died is not None:
            problems.append(f"the daemon exited during the test with status {died}")
        elif d.proc.poll() is None:
            rc = d.stop()
            if rc != 0:
                problems.append(f"the daemon ended with status {rc} on SIGTERM")
    log = d.log_text() if d.log.exists() else ""
    if "ERROR: AddressSanitizer" in log or "runtime error:" in log or "LeakSanitizer" in log:
        problems.append("the sanitizers reported an error")
    return [f"{p}; its log:\n{log}" for p in problems]


@pytest.fixture
def daemon_factory(tmp_path):
    """make(config=None, start=True, args=, env=, socket=): a daemon for this test. One
    that ends during the test without the test saying so (Daemon.stop(), expect_exit())
    fails the test."""
    started: list[Daemon] = []
    before = segments()

    def make(config: str | None = None, start: bool = True, **kw) -> Daemon:
        d = Daemon(tmp_path, config, **kw)
        started.append(d)
        return d.start() if start else d

    yield make
    gc.collect()     # views of segments that the test dropped
    problems = [p for d in started for p in daemon_problems(d)]   # every daemon stopped first
    assert not problems, "\n".join(problems)
    left = segments() - before
    if left:   # another chance for views in reference cycles, then say who holds what
        gc.collect()
        left = segments() - before
    assert not left, f"segments left behind: {[segment_info(s) for s in sorted(left)]}"


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory()


@pytest.fixture
def open_dir():
    """A directory other users can reach (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="shmbroker-test-")
    os.chmod(d, 0o777)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def open_daemon_factory(daemon_factory, open_dir):
    """make(config: dict): a daemon whose socket every user can reach (socket_mode 0666 in
    a directory open to all), for clients that run as another user."""
    made = []

    def make(config: dict | None = None) -> Daemon:
        made.append(None)
        sock = str(open_dir / f"s{len(made)}.sock")
        return daemon_factory(config=json.dumps({"socket_mode": "0666", **(config or {})}), socket=sock)
    return make


@pytest.fixture
def open_daemon(open_daemon_factory) -> Daemon:
    return open_daemon_factory({"limits": {"max_pools_per_uid": 2, "max_clients_per_uid": 3}})

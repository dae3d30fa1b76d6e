"""Fixtures: a daemon per test, and the promise that no segment outlives a test."""
from __future__ import annotations

import gc
import sys
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


@pytest.fixture
def daemon_factory(tmp_path):
    started: list[Daemon] = []
    before = segments()

    def make(config: str | None = None, start: bool = True, **kw) -> Daemon:
        d = Daemon(tmp_path, config, **kw)
        started.append(d)
        return d.start() if start else d

    yield make
    gc.collect()     # views of segments that the test dropped
    for d in started:
        if d.proc and d.proc.poll() is None:
            assert d.stop() == 0, d.log_text()
        log = d.log_text()
        assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log
        assert "LeakSanitizer" not in log, log
    left = segments() - before
    if left:   # another chance for views in reference cycles, then say who holds what
        gc.collect()
        left = segments() - before
    assert not left, f"segments left behind: {[segment_info(s) for s in sorted(left)]}"


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory()

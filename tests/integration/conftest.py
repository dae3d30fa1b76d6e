"""Fixtures: a daemon per test, and the promise that no segment outlives a test."""
from __future__ import annotations

import pytest

from sbtest import Daemon, segments


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
    for d in started:
        if d.proc and d.proc.poll() is None:
            assert d.stop() == 0, d.log_text()
        log = d.log_text()
        assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log
        assert "LeakSanitizer" not in log, log
    left = segments() - before
    assert not left, f"segments left behind: {sorted(left)}"


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory()

"""Configured and kernel limits, oversized lines, and clients that never read."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from sbtest import UNDER_VALGRIND, segments, wait_for

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changes kernel.shm* sysctls")


def limited(daemon_factory, **limits):
    return daemon_factory(config=json.dumps({"limits": limits}))


def test_max_pools(daemon_factory):
    d = limited(daemon_factory, max_pools=2)
    c = d.client(role="admin")
    c.ok("create", pool="a", slot_size=64, slots=1)
    c.ok("create", pool="b", slot_size=64, slots=1)
    r = c.rpc("create", pool="c", slot_size=64, slots=1)
    assert r["error"] == "limit" and "max_pools" in r["message"]


def test_max_bytes(daemon_factory):
    d = limited(daemon_factory, max_bytes="1MiB")
    c = d.client(role="admin")
    c.ok("create", pool="a", slot_size="512KiB", slots=1)
    r = c.rpc("create", pool="b", slot_size="768KiB", slots=1)
    assert r["error"] == "limit" and "max_bytes" in r["message"]
    c.ok("drop", pool="a")
    c.ok("create", pool="b", slot_size="768KiB", slots=1)   # the bytes came back


def test_sighup_applies_new_limits_and_a_bad_file_keeps_them(daemon_factory):
    d = limited(daemon_factory, max_pools=1)
    c = d.client(role="admin")
    c.ok("create", pool="a", slot_size=64, slots=1)
    assert "max_pools (1)" in c.err("create", "limit", pool="b", slot_size=64, slots=1)["message"]
    long_line = b'{"op":"status","pad":"' + b"x" * 400 + b'"}\n'
    c.send_raw(long_line)
    assert c.recv()["ok"]                                      # within the default max_line
    assert d.reload(json.dumps({"limits": {"max_pools": 2, "max_line": 256}}))
    c.ok("create", pool="b", slot_size=64, slots=1)            # room for one more
    assert "max_pools (2)" in c.err("create", "limit", pool="c", slot_size=64, slots=1)["message"]
    assert not d.reload('{"limits": {"max_pools": 0}}')        # refused: the limits stay
    assert "max_pools (2)" in c.err("create", "limit", pool="c", slot_size=64, slots=1)["message"]
    c.send_raw(long_line)                                      # over the new max_line
    r = c.recv()
    assert r["error"] == "limit" and "max_line" in r["message"]
    assert c.closed_by_peer()


def test_sizes_that_overflow_are_refused(daemon_factory):
    d = limited(daemon_factory, max_bytes=2**53)
    c = d.client(role="admin")
    r = c.rpc("create", pool="a", slot_size=2**53, slots=2**20)
    assert r["error"] == "limit", r
    r = c.rpc("create", pool="a", slot_size=1, slots=2**21)
    assert r["error"] == "bad_request", r


def test_max_clients(daemon_factory):
    d = limited(daemon_factory, max_clients=3)
    held = [d.client(role="admin") for _ in range(3)]
    extra = d.client()
    r = extra.recv()
    assert r["error"] == "limit" and "max_clients" in r["message"]
    assert extra.closed_by_peer()
    held[0].close()
    wait_for(lambda: len(held[1].ok("status")["clients"]) == 2, what="the daemon to see the close")
    d.client(role="admin").ok("status")   # room again


def test_line_over_max_line_closes_only_that_connection(daemon_factory):
    d = limited(daemon_factory, max_line=256)
    other = d.client(role="admin")
    c = d.client(role="admin")
    c.send_raw(b'{"op":"status","pad":"' + b"x" * 400 + b'"}\n')
    r = c.recv()
    assert r["error"] == "limit" and "max_line" in r["message"]
    assert c.closed_by_peer()
    other.ok("status")
    # a line without a newline that grows past the limit is cut off too
    c2 = d.client(role="admin")
    c2.send_raw(b"{" + b" " * 600)
    assert c2.recv()["error"] == "limit"
    assert c2.closed_by_peer()


@pytest.mark.skipif(UNDER_VALGRIND, reason="a flood against a daemon slowed 50 times proves nothing")
def test_client_that_never_reads_is_disconnected_and_others_are_served(daemon):
    a = daemon.client(role="admin")
    for i in range(8):
        a.ok("create", pool=f"p{i}", slot_size=64, slots=4)
    greedy = daemon.client(role="admin")
    sent = {"n": 0, "error": None}

    def flood():
        line = b'{"op":"status"}\n' * 256
        try:
            for _ in range(4000):
                greedy.sock.sendall(line)
                sent["n"] += 256
        except OSError as e:
            sent["error"] = e

    t = threading.Thread(target=flood)
    t.start()
    t0 = time.monotonic()
    while t.is_alive() and time.monotonic() - t0 < 30:
        a.ok("status", pool="p0")       # never stalls behind the flood
        time.sleep(0.01)
    t.join(timeout=30)
    assert sent["error"] is not None, "the daemon never disconnected a client that does not read"
    assert "does not read its replies" in daemon.log_text()
    assert a.ok("status")["pools"]


@contextlib.contextmanager
def sysctl(name: str, value: str):
    path = Path("/proc/sys/kernel") / name
    old = path.read_text()
    path.write_text(value)
    try:
        yield
    finally:
        path.write_text(old)


@root_only
def test_shmmax_is_named(daemon):
    c = daemon.client(role="admin")
    with sysctl("shmmax", str(1 << 20)):
        r = c.rpc("create", pool="big", slot_size="2MiB", slots=1)
    assert r["error"] == "limit" and "shmmax" in r["message"], r


@root_only
def test_shmall_is_named(daemon):
    c = daemon.client(role="admin")
    with sysctl("shmall", "16"):
        r = c.rpc("create", pool="big", slot_size="1MiB", slots=1)
    assert r["error"] == "limit" and "shmall" in r["message"], r


@root_only
def test_shmmni_is_named(daemon):
    c = daemon.client(role="admin")
    with sysctl("shmmni", str(len(segments()))):
        r = c.rpc("create", pool="one", slot_size=4096, slots=1)
    assert r["error"] == "limit" and "shmmni" in r["message"], r
    c.ok("create", pool="one", slot_size=4096, slots=1)


@pytest.mark.skipif(UNDER_VALGRIND, reason="valgrind's shmget() does not pass SHM_HUGETLB on")
def test_huge_pages_without_huge_pages(daemon):
    total = [l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("HugePages_Free")]
    if total and int(total[0].split()[1]) > 0:
        pytest.skip("this machine has free huge pages")
    c = daemon.client(role="admin")
    r = c.rpc("create", pool="h", slot_size="2MiB", slots=2, huge_pages=True)
    assert r["error"] == "limit" and "huge pages" in r["message"], r

"""shmbrokerctl: every subcommand, its exit codes, and a verified 2-producer run."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest

from sbtest import ROOT, Attachment, segment_info, wait_for, wait_waiting

CTL = os.environ.get("SHMBROKERCTL", str(ROOT / "build" / "shmbrokerctl"))


def ctl(daemon, *args, check=None, timeout=60):
    r = subprocess.run([CTL, "--socket", daemon.path, *args], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert r.returncode == check, (r.returncode, r.stdout, r.stderr)
    return r


def test_create_status_drop(daemon):
    out = ctl(daemon, "create", "train", "--slot-size", "1MiB", "--slots", "4", "--ordered", check=0).stdout
    assert "pool train: 4 slots of 1048576 bytes" in out
    st = json.loads(ctl(daemon, "status", "--json", check=0).stdout)
    p = st["pools"][0]
    assert (p["pool"], p["slots"], p["slot_size"], p["ordered"], p["persistent"]) == ("train", 4, 1 << 20, True, True)
    human = ctl(daemon, "status", check=0).stdout
    assert "train" in human and "1 MiB" in human and "PROD WAIT" in human
    assert "shmbrokerctl" in human       # the status client itself is listed
    ctl(daemon, "drop", "train", check=0)
    assert json.loads(ctl(daemon, "status", "--json", check=0).stdout)["pools"] == []


def test_exit_codes(daemon):
    r = ctl(daemon, "drop", "missing", check=1)
    assert "no_such_pool" in r.stderr
    ctl(daemon, "create", "p", "--slot-size", "64", "--slots", "1", check=0)
    assert "pool_exists" in ctl(daemon, "create", "p", "--slot-size", "64", "--slots", "1", check=1).stderr
    ctl(daemon, "frobnicate", check=2)
    ctl(daemon, "create", "p", "--slots", "1", check=2)
    ctl(daemon, "create", "p", "--slot-size", "lots", "--slots", "1", check=2)
    ctl(daemon, "drop", check=2)
    r = subprocess.run([CTL, "--socket", "/nonexistent.sock", "status"], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot connect" in r.stderr


@pytest.mark.parametrize("cmd", ["status", "create", "drop", "produce", "consume"])
def test_every_subcommand_has_help(daemon, cmd):
    r = ctl(daemon, cmd, "--help", check=0)
    assert r.stdout.startswith("Usage: shmbrokerctl") and cmd in r.stdout


def test_two_producers_one_consumer_every_byte_checked(daemon):
    ctl(daemon, "create", "t", "--slot-size", "256KiB", "--slots", "4", check=0)
    cons = subprocess.Popen([CTL, "--socket", daemon.path, "consume", "t", "--count", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prods = [subprocess.Popen([CTL, "--socket", daemon.path, "--name", f"p{i}", "produce", "t", "--count", "200",
                               "--size", str(200_000 + i), "--seq-start", str(i * 1000)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in prods:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    out, err = cons.communicate(timeout=60)
    assert cons.returncode == 0, err
    assert "consumed 400 batches" in out and "every byte checked" in out and "GB/s" in out
    assert f"{200 * 200_000 + 200 * 200_001} bytes" in out
    st = json.loads(ctl(daemon, "status", "--json", "t", check=0).stdout)["pools"][0]
    assert st["published"] == 400 and st["consumed"] == 400 and st["free"] == 4


def test_consume_detects_a_corrupted_batch(daemon):
    ctl(daemon, "create", "t", "--slot-size", "4096", "--slots", "2", check=0)
    p = daemon.client(role="producer")
    opened = p.ok("open", pool="t")
    seg = Attachment(opened["shmid"], int(segment_info(opened["shmid"])["size"]))
    try:
        s = p.ok("acquire", pool="t")
        seg.write(s["offset"], b"\x00" * 4096)   # not the pattern of seq 5
        p.ok("publish", pool="t", slot=s["slot"], nbytes=4096, seq=5)
        p.ok("end", pool="t")
    finally:
        seg.detach()
    r = ctl(daemon, "consume", "t", check=1)
    assert "differs from its pattern at byte 0" in r.stderr


def test_consume_stops_at_end_of_stream(daemon):
    ctl(daemon, "create", "t", "--slot-size", "1000", "--slots", "2", check=0)
    cons = subprocess.Popen([CTL, "--socket", daemon.path, "consume", "t", "--timeout-ms", "5000"],
                            stdout=subprocess.PIPE, text=True)
    wait_for(lambda: json.loads(ctl(daemon, "status", "--json", "t").stdout)["pools"][0]["users"] == 1,
             what="the consumer")
    ctl(daemon, "produce", "t", "--count", "5", check=0)
    out, _ = cons.communicate(timeout=30)
    assert cons.returncode == 0
    assert "consumed 5 batches, 5000 bytes" in out
    assert "timeout" in ctl(daemon, "consume", "t", "--timeout-ms", "50", check=1).stderr


CLEAR = "\033[H\033[2J"


def read_until(proc: subprocess.Popen, pred, so_far: str = "", timeout: float = 10.0) -> str:
    """@so_far and what @proc writes to its stdout (a pipe) after it, read until @pred of it
    all holds; fails after @timeout s."""
    out, end = so_far.encode(), time.monotonic() + timeout
    while not pred(out.decode(errors="replace")):
        left = end - time.monotonic()
        assert left > 0, f"timed out; the output so far: {out.decode(errors='replace')!r}"
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            assert chunk, f"the output ended; so far: {out.decode(errors='replace')!r}"
            out += chunk
    return out.decode(errors="replace")


def test_status_watch_redraws_until_interrupted(daemon):
    ctl(daemon, "create", "w", "--slot-size", "64", "--slots", "1", check=0)
    p = subprocess.Popen([CTL, "--socket", daemon.path, "status", "--watch"], stdout=subprocess.PIPE)
    try:
        first = read_until(p, lambda out: out.count(CLEAR) == 1 and "shmbrokerctl" in out)
        assert first.startswith(CLEAR) and "\nw " in first and "later" not in first
        ctl(daemon, "create", "later", "--slot-size", "64", "--slots", "1", check=0)
        # a later frame shows the pool made since: the screen is redrawn from a fresh status
        out = read_until(p, lambda out: "\nlater " in out.split(CLEAR)[-1], first)
        assert out.count(CLEAR) >= 2
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0


def test_status_shows_held_slots_and_waits(daemon):
    a = daemon.client(role="producer", name="holder")
    a.ok("create", pool="h", slot_size=64, slots=1)
    a.ok("acquire", pool="h")
    w = daemon.client(role="producer", name="waiter")
    w.ok("open", pool="h")
    w.send("acquire", pool="h")
    wait_waiting(a, "h", "acquire")
    out = ctl(daemon, "status", check=0).stdout
    lines = out.splitlines()
    holder = next(l for l in lines if "holder" in l)
    assert "h:0 writing" in holder and "acquire" not in holder.split()
    waiter = next(l for l in lines if "waiter" in l)
    assert "acquire" in waiter.split() and "writing" not in waiter


def test_status_counts_what_it_does_not_list(daemon):
    """A client holding more slots than the daemon lists shows the count of all of them."""
    a = daemon.client(role="producer", name="hoarder")
    a.ok("create", pool="many", slot_size=64, slots=100)
    a.ok("acquire", pool="many", max=100)
    hoarder = next(l for l in ctl(daemon, "status", check=0).stdout.splitlines() if "hoarder" in l)
    assert "many:0 writing" in hoarder and hoarder.endswith("(100 held in all)")

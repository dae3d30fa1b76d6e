"""shmbrokerctl: every subcommand, its exit codes, and a verified 2-producer run."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import threading
import time

import pytest

from sbtest import ROOT, Attachment, segment_info, segments, wait_for, wait_waiting

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


def test_consume_finds_one_wrong_byte_inside_a_batch(daemon):
    ctl(daemon, "create", "t", "--slot-size", "8192", "--slots", "1", check=0)
    ctl(daemon, "produce", "t", "--count", "1", "--size", "8000", check=0)
    admin = daemon.client(role="admin")
    shmid = admin.ok("open", pool="t")["shmid"]
    seg = Attachment(shmid, 8192)
    try:
        seg.write(5003, bytes([seg.read(5003, 1)[0] ^ 0x40]))     # slot 0 is the only one
    finally:
        seg.detach()
    r = ctl(daemon, "consume", "t", check=1)
    assert "differs from its pattern at byte 5003" in r.stderr, r.stderr


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


class Terminal:
    """A pseudo-terminal for a process's stdout or stderr: what it writes there, read as it comes."""

    def __init__(self):
        self.master, self.slave = pty.openpty()
        self.out = b""

    def started(self) -> None:
        """The process has the slave end: close ours, so that its exit ends the reads."""
        os.close(self.slave)

    def read_until(self, pred, timeout: float = 10.0) -> str:
        """What was written, read until @pred of it all holds, or until the process closed it;
        fails after @timeout s."""
        end = time.monotonic() + timeout
        while not pred(self.out.decode(errors="replace")):
            left = end - time.monotonic()
            assert left > 0, f"timed out; the output so far: {self.out.decode(errors='replace')!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 1 << 16)
                except OSError:          # EIO: every slave end is closed
                    chunk = b""
                if not chunk:
                    break
                self.out += chunk
        return self.out.decode(errors="replace")

    def close(self) -> None:
        os.close(self.master)


def test_status_watch_redraws_until_interrupted(daemon):
    ctl(daemon, "create", "w", "--slot-size", "64", "--slots", "1", check=0)
    term = Terminal()
    p = subprocess.Popen([CTL, "--socket", daemon.path, "status", "--watch"], stdout=term.slave)
    term.started()
    try:
        first = term.read_until(lambda out: out.count(CLEAR) == 1 and "shmbrokerctl" in out)
        assert first.startswith(CLEAR) and "\nw " in first and "later" not in first
        ctl(daemon, "create", "later", "--slot-size", "64", "--slots", "1", check=0)
        # a later frame shows the pool made since: the screen is redrawn from a fresh status
        out = term.read_until(lambda out: "\nlater " in out.split(CLEAR)[-1])
        assert out.count(CLEAR) >= 2
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        term.close()
    assert p.returncode == 0


def test_status_watch_into_a_pipe_writes_snapshots_without_escapes(daemon):
    """Into a pipe, --watch does not clear a screen: it writes each snapshot after the last, a
    blank line between them."""
    ctl(daemon, "create", "w", "--slot-size", "64", "--slots", "1", check=0)
    p = subprocess.Popen([CTL, "--socket", daemon.path, "status", "--watch"], stdout=subprocess.PIPE)
    try:
        out = read_until(p, lambda out: out.count("POOL ") >= 2 and out.endswith("\n"))
        p.send_signal(signal.SIGINT)
        out += p.communicate(timeout=10)[0].decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    assert "\033" not in out
    snapshots = out.split("\n\nPOOL ")
    assert len(snapshots) >= 2 and all("\nw " in snap and "shmbrokerctl" in snap for snap in snapshots)


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


def test_a_refusal_shows_the_daemons_explanation(daemon):
    """What the daemon says was wrong, and its code, not strerror() of the errno."""
    r = ctl(daemon, "create", "a/b c", "--slot-size", "64", "--slots", "1", check=1)
    assert r.stderr == ("shmbrokerctl: create: \"a/b c\" is not a pool name: a pool name is 1 to 64 letters, digits, "
                        "'.', '_' or '-', not starting with '.' or '-' (bad_request)\n")
    r = ctl(daemon, "drop", "a/b c", check=1)
    assert "is not a pool name" in r.stderr and "Invalid argument" not in r.stderr
    r = ctl(daemon, "create", "big", "--slot-size", "1TiB", "--slots", "1", check=1)
    assert "max_bytes" in r.stderr and r.stderr.rstrip().endswith("(limit)")
    ctl(daemon, "create", "p", "--slot-size", "64", "--slots", "1", check=0)
    r = ctl(daemon, "create", "p", "--slot-size", "64", "--slots", "1", check=1)
    assert r.stderr == 'shmbrokerctl: create: pool "p" exists (pool_exists)\n'


@pytest.mark.parametrize("args, line", [
    (["create", "p", "--slot-size", "0", "--slots", "1"], 'shmbrokerctl: --slot-size: "0" is too small (at least 1)'),
    (["create", "p", "--slot-size", "16EiB", "--slots", "1"],
     'shmbrokerctl: --slot-size: "16EiB" is too large (past 64 bits)'),
    (["create", "p", "--slot-size", "lots", "--slots", "1"],
     'shmbrokerctl: --slot-size: "lots" is not a size (a number of bytes, or one with a unit: 16MiB)'),
    (["create", "p", "--slot-size", "1", "--slots", "5000000000"],
     'shmbrokerctl: --slots: "5000000000" is too large (at most 4294967295)'),
    (["create", "p", "--slot-size", "1", "--slots", "x"], 'shmbrokerctl: --slots: "x" is not a number'),
    (["create", "p", "--slots", "1"], "shmbrokerctl create: --slot-size is needed"),
    (["create", "p", "--slot-size", "1", "--slots", "1", "--mode", "0999"],
     'shmbrokerctl: --mode: "0999" is not an octal mode (0600, 0660, ...)'),
    (["produce", "p", "--timeout-ms", "3000000000"],
     'shmbrokerctl: --timeout-ms: "3000000000" is too large (at most 2147483647)'),
    (["drop"], "shmbrokerctl drop: a POOL is needed"),
    (["drop", "p", "q"], 'shmbrokerctl: unexpected argument "q"'),
    (["status", "--frobnicate"], "shmbrokerctl: unrecognized option '--frobnicate'"),
])
def test_bad_usage_says_what_is_wrong_in_one_line(daemon, args, line):
    """One line naming the option and what is wrong, and where to read more: never the whole
    usage text."""
    r = ctl(daemon, *args, check=2)
    assert r.stderr.splitlines() == [line, f"Try 'shmbrokerctl {args[0]} --help'."], r.stderr
    assert r.stdout == ""


def test_bad_usage_without_a_command(daemon):
    r = ctl(daemon, check=2)
    assert r.stderr.splitlines() == ["shmbrokerctl: no command given", "Try 'shmbrokerctl --help'."]
    r = ctl(daemon, "frobnicate", check=2)
    assert r.stderr.splitlines() == ['shmbrokerctl: unknown command "frobnicate"', "Try 'shmbrokerctl --help'."]


def test_zero_is_a_value_not_a_missing_option(daemon):
    """--size 0 publishes empty batches; it is not taken for "no --size"."""
    ctl(daemon, "create", "z", "--slot-size", "4096", "--slots", "2", check=0)
    assert "produced 1 batches of 0 bytes" in ctl(daemon, "produce", "z", "--count", "1", "--size", "0", check=0).stderr
    assert "consumed 1 batches, 0 bytes" in ctl(daemon, "consume", "z", "--timeout-ms", "5000", check=0).stdout


def test_version_is_the_makefiles(daemon):
    version = re.search(r"^VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert ctl(daemon, "--version", check=0).stdout == f"shmbrokerctl {version}\n"
    assert "--version" in ctl(daemon, "--help", check=0).stdout


def produce_on(daemon, pool: str, *args: str, terminal: bool, command: str = "produce") -> tuple[int, str]:
    """Run produce (or @command) with its stderr on a terminal or a pipe: its exit status and
    its stderr."""
    argv = [CTL, "--socket", daemon.path, command, pool, *args]
    if not terminal:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return r.returncode, r.stderr
    term = Terminal()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=term.slave)
    term.started()
    try:
        out = term.read_until(lambda out: False, timeout=30)
    finally:
        term.close()
    return p.wait(timeout=30), out


def test_produce_into_a_full_pool_says_what_it_waits_for_on_a_terminal(daemon):
    ctl(daemon, "create", "full", "--slot-size", "4096", "--slots", "2", check=0)
    rc, err = produce_on(daemon, "full", "--count", "5", "--timeout-ms", "2500", terminal=True)
    assert rc == 1
    waits = re.findall(r"\r\033\[Kfull: 2 of 5 batches published; waiting (\d+) s for a free slot in pool full: "
                       r"0 consumers have it open \(2 ready, 0 being read, 0 being written\)", err)
    assert len(waits) >= 2 and waits == sorted(waits, key=int), err      # a line a second, redrawn
    # the progress line is cleared before the error, which ends the run on a line of its own
    assert err.endswith("\r\033[Kshmbrokerctl: acquire: no slot became free (timeout)\r\n")

    # a consumer that has the pool open (and holds a batch) is counted
    cons = daemon.client(role="consumer")
    cons.ok("open", pool="full")
    cons.ok("consume", pool="full")
    _, err = produce_on(daemon, "full", "--count", "3", "--timeout-ms", "1500", terminal=True)
    assert "1 consumer has it open (1 ready, 1 being read, 0 being written)" in err


def test_consume_from_an_empty_pool_says_what_it_waits_for_on_a_terminal(daemon):
    ctl(daemon, "create", "empty", "--slot-size", "4096", "--slots", "2", check=0)
    rc, err = produce_on(daemon, "empty", "--timeout-ms", "1500", terminal=True, command="consume")
    assert rc == 1
    assert re.search(r"empty: 0 batches consumed; waiting \d+ s for a batch in pool empty: 0 producers have it open",
                     err), err
    assert err.endswith("\r\033[Kshmbrokerctl: consume: no batch became ready (timeout)\r\n"), err


def test_produce_is_quiet_when_not_on_a_terminal(daemon):
    ctl(daemon, "create", "full", "--slot-size", "4096", "--slots", "1", check=0)
    rc, err = produce_on(daemon, "full", "--count", "3", "--timeout-ms", "1500", terminal=False)
    assert rc == 1 and err == "shmbrokerctl: acquire: no slot became free (timeout)\n"


def test_produce_shows_its_progress_on_a_terminal(daemon):
    ctl(daemon, "create", "t", "--slot-size", "4096", "--slots", "1", check=0)
    cons = daemon.client(role="consumer")
    cons.ok("open", pool="t")

    def consume_slowly():        # 120 batches, 10 ms each: the run lasts over a second
        for _ in range(120):
            slot = cons.ok("consume", pool="t")["slot"]
            time.sleep(0.01)
            cons.ok("release", pool="t", slot=slot)
    t = threading.Thread(target=consume_slowly)
    t.start()
    try:
        rc, err = produce_on(daemon, "t", "--count", "120", "--size", "8", terminal=True)
    finally:
        t.join(timeout=60)
    assert rc == 0
    counts = [int(n) for n in re.findall(r"\r\033\[Kt: (\d+) of 120 batches published", err)]
    assert counts and counts == sorted(counts) and counts[-1] < 120, err
    # the progress line is cleared before the summary
    assert re.search(r"\r\033\[Kproduced 120 batches of 8 bytes in [0-9.]+ s\r\n$", err), err


def ctl_in_another_ipc_namespace(daemon, *args: str) -> subprocess.CompletedProcess:
    """shmbrokerctl in an IPC namespace of its own (a container's, say), the daemon in ours."""
    for unshare in (["unshare", "--ipc"], ["unshare", "--user", "--map-root-user", "--ipc"]):
        if subprocess.run([*unshare, "true"], capture_output=True).returncode == 0:
            return subprocess.run([*unshare, CTL, "--socket", daemon.path, *args], capture_output=True, text=True,
                                  timeout=60)
    pytest.skip("cannot make an IPC namespace here")


def test_create_and_drop_need_no_attachment(daemon):
    """From another IPC namespace the pool's shmid names no segment (or another one): create
    and drop work all the same, as they never attach it."""
    before = segments()
    r = ctl_in_another_ipc_namespace(daemon, "create", "far", "--slot-size", "1MiB", "--slots", "2")
    assert r.returncode == 0, r.stderr
    assert "pool far: 2 slots of 1048576 bytes" in r.stdout
    pool = json.loads(ctl(daemon, "status", "--json", "far", check=0).stdout)["pools"][0]
    assert pool["persistent"] and pool["shmid"] in segments() - before
    r = ctl_in_another_ipc_namespace(daemon, "drop", "far")
    assert r.returncode == 0, r.stderr
    assert json.loads(ctl(daemon, "status", "--json", check=0).stdout)["pools"] == []

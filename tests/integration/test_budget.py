"""The clients' connection buffers together stay within max_buffered: past it, clients with
a long partial line or many unread replies are held back (not read, their requests not
handled) until they read or the total goes down; well-behaved clients go on, and nobody
held back loses a reply."""
from __future__ import annotations

import json
import socket
import time

from sbtest import wait_for

BUDGET = 4 << 20


def rss_kib(pid: int) -> int:
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))


def push(sock: socket.socket, data: bytes) -> int:
    """Send what the socket takes now, without blocking; the count sent."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:sent + (1 << 16)])
    except BlockingIOError:
        pass
    return sent


def peak(daemon, admin, seconds: float = 1.5) -> tuple[int, int]:
    """The largest daemon RSS (KiB) and status "buffered" seen over a short while, the
    status coming from a well-behaved client: it must be served throughout."""
    rss = buffered = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        st = admin.ok("status", held_max=1)
        buffered = max(buffered, st["buffered"])
        rss = max(rss, rss_kib(daemon.proc.pid))
        time.sleep(0.05)
    return rss, buffered


def test_half_lines_are_held_back_past_the_budget(daemon_factory):
    d = daemon_factory(config='{"limits": {"max_buffered": %d, "max_line": 2097152}}' % BUDGET)
    admin = d.client(role="admin")
    base = rss_kib(d.proc.pid)
    attackers = []
    for _ in range(60):                                   # 60 half-lines of 1.5 MiB: 90 MiB unbounded
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.connect(d.path)
        push(s, b'{"op":"status","pad":"' + b"x" * (3 << 19))
        attackers.append(s)
    rss, buffered = peak(d, admin)
    # Within the budget, plus what each held-back client had when the total went over it.
    assert buffered <= 2 * BUDGET + 60 * (256 << 10), buffered
    assert rss - base < 40 << 10, (base, rss)
    for s in attackers:
        s.close()
    wait_for(lambda: admin.ok("status")["buffered"] < BUDGET, what="the buffers to go")


def test_unread_replies_are_held_back_not_lost(daemon_factory):
    d = daemon_factory(config='{"limits": {"max_buffered": %d}}' % BUDGET)
    admin = d.client(role="admin", name="x" * 200)
    base = rss_kib(d.proc.pid)
    requests = b'{"op":"hello","role":"admin"}\n' + b'{"op":"status"}\n' * 3000
    greedy = []
    for _ in range(30):                                   # 30 x 3,000 replies of ~5 KiB, never read
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.path)
        greedy.append((s, push(s, requests)))
    rss, buffered = peak(d, admin)
    # The budget (buffers grow by doubling: twice it), plus what each held-back client has:
    # its input, and 64 KiB of replies plus the one that crossed it, in a doubled buffer.
    assert buffered <= 2 * BUDGET + 30 * (256 << 10), buffered
    assert rss - base < 60 << 10, (base, rss)
    # A held-back client that reads gets every reply it asked for, in order.
    s, sent = greedy[0]
    s.setblocking(True)
    s.settimeout(10)
    rest = requests[sent:]
    buf, replies = b"", 0
    while replies < 3001:
        if rest:
            rest = rest[push(s, rest):]
            s.setblocking(True)
            s.settimeout(10)
        chunk = s.recv(1 << 20)
        assert chunk, "the daemon dropped a client that reads"
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            assert json.loads(line)["ok"] is True
            replies += 1
    for t, _ in greedy:
        t.close()

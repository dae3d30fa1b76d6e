#!/usr/bin/python3
"""Load run: 1,000 concurrent clients; clients that send half a line and stall; clients
that pipeline thousands of requests and never read; a flood of connects and disconnects.
Meanwhile a producer and a consumer move batches (none may be lost) and a prober measures
the latency of a status round trip. Reports the daemon's peak RSS and p50/p99 latency.

    /usr/bin/python3 tests/load.py [--seconds 20] [--daemon build/shmbrokerd]
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
import shmbroker  # noqa: E402


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def rss_kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--daemon", default=str(ROOT / "build" / "shmbrokerd"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="shmbroker-load-")
    sock = os.path.join(tmp, "s.sock")
    conf = os.path.join(tmp, "c.conf")
    with open(conf, "w") as f:
        f.write('{"limits": {"max_clients": 4096, "max_clients_per_uid": 4096}}')
    daemon = subprocess.Popen([args.daemon, "--socket", sock, "--config", conf], stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        time.sleep(0.01)
    stop = threading.Event()
    report: dict = {}

    # the flow that must lose nothing
    def flow():
        with shmbroker.connect("producer", sock, name="load-producer") as p, \
             shmbroker.connect("consumer", sock, name="load-consumer") as c:
            out = p.create("load", slot_size=4096, slots=4)
            inp = c.open("load")
            sent = got = 0
            while not stop.is_set():
                out.put(np.full(512, sent % 251, np.uint8), seq=sent, timeout=10)
                sent += 1
                b = inp.get(timeout=10)
                assert b.array[0] == b.seq % 251
                b.release()
                got += 1
            report["flow"] = (sent, got)

    # a prober measuring a status round trip
    def probe():
        s = connect(sock)
        f = s.makefile("rwb")
        f.write(b'{"op":"hello","role":"admin"}\n')
        f.flush()
        f.readline()
        lat = []
        while not stop.is_set():
            t0 = time.perf_counter()
            f.write(b'{"op":"status","pool":"load"}\n')
            f.flush()
            f.readline()
            lat.append(time.perf_counter() - t0)
            time.sleep(0.005)
        report["latency"] = lat

    # connects and disconnects as fast as they go
    def flood():
        n = 0
        while not stop.is_set():
            try:
                s = connect(sock)
                s.sendall(b'{"op":"hello","role":"admin"}\n')
                s.close()
                n += 1
            except OSError:
                pass
        report["flood"] = n

    held = []
    for i in range(args.clients):
        s = connect(sock)
        if i % 10 == 0:
            s.sendall(b'{"op":"hello","role":"admin","name":"half-a-li')    # and then nothing
        held.append(s)
    greedy = []
    for i in range(10):
        s = connect(sock)
        s.setblocking(False)
        greedy.append(s)
    threads = [threading.Thread(target=t) for t in (flow, probe, flood)]
    for t in threads:
        t.start()
    sent_greedy = 0
    t_end = time.monotonic() + args.seconds
    line = b'{"op":"hello","role":"admin"}\n' + b'{"op":"status"}\n' * 2000
    while time.monotonic() < t_end:
        for s in greedy:
            try:
                sent_greedy += s.send(line)
            except OSError:
                pass
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    disconnected = 0
    for s in greedy:          # the daemon closed them: reading ends, rather than waiting
        try:
            s.setblocking(True)
            s.settimeout(2)
            while s.recv(1 << 20):
                pass
            disconnected += 1
        except socket.timeout:
            pass
        except OSError:
            disconnected += 1
    peak = rss_kib(daemon.pid, "VmHWM")
    alive = daemon.poll() is None
    for s in held:
        s.close()
    daemon.send_signal(signal.SIGTERM)
    rc = daemon.wait(timeout=20)
    lat = sorted(report.get("latency", [0]))
    p50 = statistics.median(lat) * 1e3
    p99 = lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0] * 1e3
    sent, got = report.get("flow", (0, 0))
    print(f"load: {args.clients} idle clients held ({args.clients // 10} with half a line), 10 clients pipelining "
          f"without reading ({sent_greedy >> 20} MiB sent, {disconnected} disconnected), "
          f"{report.get('flood', 0)} connects/disconnects in {args.seconds:.0f} s")
    print(f"load: daemon peak RSS {peak / 1024:.1f} MiB; status round trip p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"over {len(lat)} probes; batches moved {got}/{sent}; daemon alive until SIGTERM: {alive}, exit {rc}")
    ok = alive and rc == 0 and sent == got and sent > 0 and peak < 512 * 1024 and disconnected == len(greedy)
    print("load: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Who takes whose CPU: bench/loaders.py's shmbroker put/iterate row (2 producers, 1
consumer, 4 slots, 64-byte batches), trial after trial, with each process's context
switches per batch from /proc: voluntary ones (it slept) and involuntary ones (it was
preempted). A consumer preempted by the producers its releases wake runs at a fraction of
its speed; docs/fastpath.md says what the waits do about it.

    unshare --ipc --fork /usr/bin/python3 bench/preemption.py [--trials 8] [--count 6000] [--size 64]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
import shmbroker  # noqa: E402
from loaders import _sb_producer, read_all  # noqa: E402


def switches(pid: int | str = "self") -> tuple[int, int]:
    v = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                key, n = line.split(":")
                v[key] = int(n)
    return v["voluntary_ctxt_switches"], v["nonvoluntary_ctxt_switches"]


def producer(sock: str, name: str, n: int, size: int, ready, start, out) -> None:
    _sb_producer(sock, name, n, size, ready, start)
    out.put(switches())


def trial(sock: str, name: str, count: int, size: int) -> str:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    with shmbroker.connect("consumer", sock) as c:
        pool = c.create(name, slot_size=size, slots=4)
        start, ready = ctx.Event(), ctx.Semaphore(0)
        procs = [ctx.Process(target=producer, args=(sock, name, count // 2, size, ready, start, out))
                 for _ in range(2)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire()
        vol0, inv0 = switches()
        start.set()
        t0 = time.perf_counter()
        for batch in pool:
            read_all(batch.array)
        dt = time.perf_counter() - t0
        vol1, inv1 = switches()
        prods = [out.get() for _ in procs]
        for p in procs:
            p.join()
    per = [f"{v / (count // 2):.2f}/{i / (count // 2):.2f}" for v, i in prods]
    return (f"{count / dt:9.0f} batches/s; consumer slept/preempted per batch {(vol1 - vol0) / count:.2f}/"
            f"{(inv1 - inv0) / count:.2f}; producers {', '.join(per)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--count", type=int, default=6000)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="shmbroker-preemption-")
    sock = os.path.join(tmp, "s.sock")
    daemon = subprocess.Popen([str(ROOT / "build" / "shmbrokerd"), "--socket", sock, "--config", "/dev/null"],
                              stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(sock):
            time.sleep(0.01)
        for k in range(args.trials):
            print(f"trial {k}: {trial(sock, f'preemption-{k}', args.count, args.size)}", flush=True)
    finally:
        daemon.terminate()
        daemon.wait()
        os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

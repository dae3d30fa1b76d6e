#!/usr/bin/python3
"""Where a DataLoader's time goes at small batches: cProfile of the two sides, each in a
process of its own, 64 KiB batches of 16 samples written in place.

    /usr/bin/python3 bench/profile_loader.py --socket PATH [--count N]

Prints the top functions (by own time) of a worker's loop and of the trainer's loop.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
import numpy as np  # noqa: E402

import shmbroker  # noqa: E402
from loaders import BATCH_SAMPLES, SamplesInPlace, read_all  # noqa: E402

SIZE = 64 << 10


def top(prof: cProfile.Profile, n: int = 8) -> str:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(n)
    lines = [l for l in out.getvalue().splitlines() if l.strip()]
    start = next(i for i, l in enumerate(lines) if l.lstrip().startswith("ncalls"))
    return "\n".join(l.replace(str(ROOT) + "/", "").replace("/usr/lib/python3.11/", "") for l in lines[start:])


def drain(sock: str, name: str, ready) -> None:
    """The pool's consumer: creates it, then reads every batch until the stream ends."""
    with shmbroker.connect("consumer", sock) as c:
        pool = c.create(name, slot_size=SIZE + (64 << 10), slots=17)
        ready.set()
        for b in pool:
            read_all(np.frombuffer(b.data, np.uint8))


def worker_side(sock: str, count: int) -> str:
    """One DataLoader worker's loop (shmbroker._worker: a slot taken, the batch written in
    place by write_sample, published pipelined) into a pool a plain consumer drains."""
    from shmbroker import _worker
    ds = SamplesInPlace(count * BATCH_SAMPLES, SIZE // BATCH_SAMPLES)
    name = f"profile-{os.getpid()}"
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    d = ctx.Process(target=drain, args=(sock, name + "-g0", ready))
    d.start()
    ready.wait(10)
    out = _worker._Out({"socket": sock, "pool": name}, 0, None, ctx.Event())
    fetcher = _worker._WriteFetcher(ds, out)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for b in range(count):
        out.begin(0)
        out.put("d", b, fetcher.fetch(range(b * BATCH_SAMPLES, (b + 1) * BATCH_SAMPLES)))
    prof.disable()
    rate = count / (time.perf_counter() - t0)
    client, pool = out.pools.pop(0)
    pool.settle()
    pool.end()
    d.join()
    client.close()
    return f"one worker alone: {rate:.0f} batches/s\n" + top(prof)


def trainer_side(sock: str, count: int) -> str:
    ds = SamplesInPlace(count * BATCH_SAMPLES, SIZE // BATCH_SAMPLES)
    with shmbroker.DataLoader(ds, batch_size=BATCH_SAMPLES, num_workers=2, socket=sock, write_sample=True) as dl:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for batch in dl:
            read_all(np.asarray(batch))         # a tensor where torch is installed: the same memory
        prof.disable()
        rate = count / (time.perf_counter() - t0)
    return f"trainer with 2 workers: {rate:.0f} batches/s\n" + top(prof)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--count", type=int, default=3000)
    args = ap.parse_args()
    print(worker_side(args.socket, args.count))
    print()
    print(trainer_side(args.socket, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())

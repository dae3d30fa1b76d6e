#!/usr/bin/python3
"""Python batch transports side by side, in one run: 2 producers -> 1 consumer (or a
DataLoader with 2 workers), every byte written by the producer and read by the consumer.

    /usr/bin/python3 bench/loaders.py [--socket PATH | --daemon build/shmbrokerd] [--quick]

Rows: shmbroker put/iterate, shmbroker.DataLoader, multiprocessing.Queue with numpy
arrays, and torch.utils.data.DataLoader (when Debian's python3-torch is installed).
Figures: median over the trials, with min and max, of batches/s and GB/s.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
import shmbroker  # noqa: E402

BATCH_SAMPLES = 16


def read_all(a: np.ndarray) -> int:
    """Touch every byte: a sum over 64-bit words (memory-bound)."""
    flat = a.reshape(-1)
    n8 = flat.nbytes // 8 * 8
    s = int(flat[:n8].view(np.uint64).sum(dtype=np.uint64)) if n8 else 0
    return s + int(flat[n8:].sum())


class Samples:
    """Sample i: ``size`` bytes, all written when the sample is made."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return np.full(self.size, i % 251, np.uint8)


# --- producers and consumers ----------------------------------------------------------------

def _sb_producer(sock: str, pool: str, count: int, size: int, start) -> None:
    with shmbroker.connect("producer", sock) as c:
        p = c.open(pool)
        start.wait()
        for i in range(count):
            with p.acquire() as slot:
                a = slot.ndarray(size, np.uint8)
                a.fill(i % 251)                    # every byte written, in place
                slot.publish(a)
        p.end()


def run_sb_put(sock: str, size: int, count: int) -> float:
    ctx = mp.get_context("fork")
    name = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    with shmbroker.connect("consumer", sock) as c:
        pool = c.create(name, slot_size=size, slots=4)
        start = ctx.Event()
        procs = [ctx.Process(target=_sb_producer, args=(sock, name, count // 2, size, start)) for _ in range(2)]
        for p in procs:
            p.start()
        time.sleep(0.3)                            # both producers have the pool open
        start.set()
        t0 = time.perf_counter()
        n = 0
        for batch in pool:
            read_all(batch.array)
            n += 1
        dt = time.perf_counter() - t0
        for p in procs:
            p.join()
    assert n == count // 2 * 2, n
    return dt


def run_sb_loader(sock: str, size: int, count: int) -> float:
    ds = Samples(count * BATCH_SAMPLES, size // BATCH_SAMPLES)
    with shmbroker.DataLoader(ds, batch_size=BATCH_SAMPLES, num_workers=2, socket=sock) as dl:
        it = iter(dl)
        read_all(next(it))                         # workers started, first batch in
        t0 = time.perf_counter()
        n = 1
        for batch in it:
            read_all(batch)
            n += 1
        dt = time.perf_counter() - t0
    assert n == count, n
    return dt * count / (count - 1)


def _q_producer(q, count: int, size: int) -> None:
    for i in range(count):
        q.put(np.full(size, i % 251, np.uint8))
    q.put(None)


def run_mp_queue(size: int, count: int) -> float:
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize=4)
    procs = [ctx.Process(target=_q_producer, args=(q, count // 2, size)) for _ in range(2)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    done = n = 0
    while done < 2:
        a = q.get()
        if a is None:
            done += 1
            continue
        read_all(a)
        n += 1
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
    assert n == count // 2 * 2
    return dt


def run_torch(size: int, count: int, strategy: str) -> float:
    import torch
    import torch.multiprocessing
    from torch.utils.data import DataLoader, Dataset

    torch.multiprocessing.set_sharing_strategy(strategy)

    class TorchSamples(Dataset):
        def __init__(self, n, sz):
            self.n, self.sz = n, sz

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return torch.from_numpy(np.full(self.sz, i % 251, np.uint8))

    dl = DataLoader(TorchSamples(count * BATCH_SAMPLES, size // BATCH_SAMPLES), batch_size=BATCH_SAMPLES,
                    num_workers=2)
    it = iter(dl)
    read_all(next(it).numpy())
    t0 = time.perf_counter()
    n = 1
    for batch in it:
        read_all(batch.numpy())
        n += 1
    dt = time.perf_counter() - t0
    del it
    assert n == count
    return dt * count / (count - 1)


# --- the run ----------------------------------------------------------------------------------

def have_torch() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket")
    ap.add_argument("--daemon", default=str(ROOT / "build" / "shmbrokerd"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trials", type=int, default=None)
    args = ap.parse_args()
    trials = args.trials or (3 if args.quick else 5)
    tmp = tempfile.mkdtemp(prefix="shmbroker-bench-")
    daemon = None
    sock = args.socket
    if not sock:
        sock = os.path.join(tmp, "s.sock")
        daemon = subprocess.Popen([args.daemon, "--socket", sock, "--config", "/dev/null"], stderr=subprocess.DEVNULL)
        while not os.path.exists(sock):
            time.sleep(0.01)
    sizes = [(16 << 20, 60 if args.quick else 200), (64 << 10, 1000 if args.quick else 4000)]
    rows = [("shmbroker put/iterate", lambda s, c: run_sb_put(sock, s, c)),
            ("shmbroker.DataLoader", lambda s, c: run_sb_loader(sock, s, c)),
            ("multiprocessing.Queue", run_mp_queue)]
    if have_torch():
        rows.append(("torch DataLoader (file_descriptor)", lambda s, c: run_torch(s, c, "file_descriptor")))
        rows.append(("torch DataLoader (file_system)", lambda s, c: run_torch(s, c, "file_system")))
    else:
        print("(torch is not installed: apt-get install python3-torch for its rows)")
    try:
        print(f"{'system':36} {'batch':>8} {'batches/s (median, min-max)':>30} {'GB/s (median)':>14}")
        for size, count in sizes:
            results = {}
            for name, fn in rows:
                fn(size, max(count // 10, 8))       # warm-up
                times = [fn(size, count) for _ in range(trials)]
                rates = sorted(count / t for t in times)
                med = statistics.median(rates)
                results[name] = med
                print(f"{name:36} {size >> 10:>6}Ki {med:>12.1f} ({rates[0]:.1f}-{rates[-1]:.1f}) "
                      f"{med * size / 1e9:>14.3f}", flush=True)
            base = results["multiprocessing.Queue"]
            for name, med in results.items():
                print(f"    {name}: {med / base:.1f}x multiprocessing.Queue", end="")
                if "torch DataLoader (file_descriptor)" in results:
                    print(f", {med / results['torch DataLoader (file_descriptor)']:.1f}x torch (file_descriptor)", end="")
                print()
    finally:
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

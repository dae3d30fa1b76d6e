#!/usr/bin/python3
"""Python batch transports side by side, in one run: 2 producers -> 1 consumer (or a
DataLoader with 2 workers), every byte written by the producer and read by the consumer.

    /usr/bin/python3 bench/loaders.py [--socket PATH | --daemon build/shmbrokerd] [--quick]

Rows: shmbroker put/iterate, shmbroker.DataLoader (samples made by __getitem__ and
copied into the batch, as torch does; and written in place by write_sample()),
multiprocessing.Queue with numpy arrays, multiprocessing.Pipe.send_bytes, hand-written
multiprocessing.shared_memory slots with Queues of slot numbers, and
torch.utils.data.DataLoader with both sharing strategies (when Debian's python3-torch is
installed).
Figures: median over the trials, with min and max, of batches/s and GB/s.
"""
from __future__ import annotations

import argparse
import json
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
WARMUP = 8        # batches before the clock starts, as in bench/move.c: first touches of memory
TRIAL_SECONDS = 0.4     # main()'s trials, as bench/run.py's: each row's count sized to take about this


def batch_count(size: int, quick: bool) -> int:
    """The most batches a trial at @size takes: about half a second of the fastest Python
    rows on this kind of machine. bench/run.py sizes each row's trials to its trial time
    within that (a slower transport runs fewer batches); a trial much shorter than that is
    decided by where the kernel happened to place its three processes at its start."""
    n = 60000 if size <= 64 else 30000 if size <= 64 << 10 else 8000 if size <= 1 << 20 else \
        400 if size <= 16 << 20 else 100
    return n // 2 if quick else n


class Clock:
    """Starts after WARMUP batches; elapsed() is scaled to the whole count, so that every
    row is a rate over the same steady state."""

    def __init__(self, count: int):
        self.count, self.n, self.t0 = count, 0, None

    def tick(self) -> None:
        self.n += 1
        if self.n == WARMUP:
            self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return (time.perf_counter() - self.t0) * self.count / (self.n - WARMUP)


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


class SamplesInPlace(Samples):
    """The same samples, which shmbroker.DataLoader can also have written in place."""

    def write_sample(self, i: int, out: np.ndarray) -> None:
        out.fill(i % 251)


# --- producers and consumers ----------------------------------------------------------------

def _finish(clock: Clock, procs: list, count: int) -> float:
    """The steady-state time of a run of 2 producers, once they are gone; every batch arrived."""
    dt = clock.elapsed()
    for p in procs:
        p.join()
    assert clock.n == count // 2 * 2, clock.n
    return dt


def _sb_producer(sock: str, pool: str, count: int, size: int, ready, start) -> None:
    with shmbroker.connect("producer", sock) as c:
        p = c.open(pool)
        ready.release()
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
        start, ready = ctx.Event(), ctx.Semaphore(0)
        procs = [ctx.Process(target=_sb_producer, args=(sock, name, count // 2, size, ready, start))
                 for _ in range(2)]
        for p in procs:
            p.start()
        for _ in procs:                            # both have the pool open: neither ends a stream alone
            ready.acquire()
        start.set()
        clock = Clock(count)
        for batch in pool:
            read_all(batch.array)
            clock.tick()
        return _finish(clock, procs, count)


def run_sb_loader(sock: str, size: int, count: int, in_place: bool = False) -> float:
    ds = (SamplesInPlace if in_place else Samples)(count * BATCH_SAMPLES, max(size // BATCH_SAMPLES, 1))
    with shmbroker.DataLoader(ds, batch_size=BATCH_SAMPLES, num_workers=2, socket=sock, write_sample=in_place) as dl:
        clock = Clock(count)
        for batch in dl:
            read_all(np.asarray(batch))         # a tensor where torch is installed: the same memory
            clock.tick()
    assert clock.n == count, clock.n
    return clock.elapsed()


def _q_producer(q, count: int, size: int) -> None:
    for i in range(count):
        q.put(np.full(size, i % 251, np.uint8))
    q.put(None)


def run_mp_queue(size: int, count: int) -> float:
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize=4)
    procs = [ctx.Process(target=_q_producer, args=(q, count // 2, size)) for _ in range(2)]
    for p in procs:
        p.start()
    done, clock = 0, Clock(count)
    while done < 2:
        a = q.get()
        if a is None:
            done += 1
            continue
        read_all(a)
        clock.tick()
    return _finish(clock, procs, count)


def _pipe_producer(conn, count: int, size: int) -> None:
    for i in range(count):
        conn.send_bytes(np.full(size, i % 251, np.uint8))   # the buffer itself, no pickle
    conn.send_bytes(b"")
    conn.close()


def run_mp_pipe(size: int, count: int) -> float:
    from multiprocessing.connection import wait
    ctx = mp.get_context("fork")
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    procs = [ctx.Process(target=_pipe_producer, args=(w, count // 2, size)) for _, w in pipes]
    for p in procs:
        p.start()
    live, clock = [r for r, _ in pipes], Clock(count)
    while live:
        for r in wait(live):
            data = r.recv_bytes()
            if not data:
                live.remove(r)
                continue
            read_all(np.frombuffer(data, np.uint8))
            clock.tick()
    return _finish(clock, procs, count)


def _shm_producer(name: str, free, ready, count: int, size: int) -> None:
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(name=name)
    for i in range(count):
        k = free.get()
        np.ndarray(size, np.uint8, buffer=shm.buf, offset=k * size).fill(i % 251)
        ready.put(k)
    ready.put(-1)
    shm.close()


def run_mp_shared_memory(size: int, count: int) -> float:
    """What a trainer writes by hand: 4 slots in a multiprocessing.shared_memory block, slot
    numbers passed through two Queues (free and ready)."""
    from multiprocessing import shared_memory
    ctx = mp.get_context("fork")
    shm = shared_memory.SharedMemory(create=True, size=4 * size)
    try:
        free, ready = ctx.Queue(), ctx.Queue()
        for k in range(4):
            free.put(k)
        procs = [ctx.Process(target=_shm_producer, args=(shm.name, free, ready, count // 2, size)) for _ in range(2)]
        for p in procs:
            p.start()
        done, clock = 0, Clock(count)
        while done < 2:
            k = ready.get()
            if k < 0:
                done += 1
                continue
            read_all(np.ndarray(size, np.uint8, buffer=shm.buf, offset=k * size))
            free.put(k)
            clock.tick()
        return _finish(clock, procs, count)
    finally:
        shm.close()
        shm.unlink()


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

    dl = DataLoader(TorchSamples(count * BATCH_SAMPLES, max(size // BATCH_SAMPLES, 1)), batch_size=BATCH_SAMPLES,
                    num_workers=2)
    clock = Clock(count)
    for batch in dl:
        read_all(batch.numpy())
        clock.tick()
    assert clock.n == count
    return clock.elapsed()


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
    ap.add_argument("--sizes", help="batch sizes in bytes, comma-separated (default: 64KiB and 16MiB)")
    ap.add_argument("--json", help="also write the figures to this file, for bench/run.py")
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
    wanted = [int(x) for x in args.sizes.split(",")] if args.sizes else [16 << 20, 64 << 10]
    sizes = [(size, batch_count(size, args.quick)) for size in wanted]
    figures = []
    rows = [("shmbroker put/iterate", lambda s, c: run_sb_put(sock, s, c)),
            ("shmbroker.DataLoader", lambda s, c: run_sb_loader(sock, s, c)),
            ("shmbroker.DataLoader (write_sample)", lambda s, c: run_sb_loader(sock, s, c, in_place=True)),
            ("multiprocessing.Queue", run_mp_queue),
            ("multiprocessing.Pipe.send_bytes", run_mp_pipe),
            ("multiprocessing.shared_memory slots", run_mp_shared_memory)]
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
                warm = max(count // 100, 4 * WARMUP)
                rate = warm / fn(size, warm)                 # warm-up, and the row's pace
                n = max(4 * WARMUP, min(count, int(rate * TRIAL_SECONDS)))
                times = [fn(size, n) for _ in range(trials)]
                rates = sorted(n / t for t in times)
                med = statistics.median(rates)
                results[name] = med
                figures.append({"system": name, "size": size, "median": med, "min": rates[0], "max": rates[-1]})
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
    if args.json:
        Path(args.json).write_text(json.dumps({"trials": trials, "rows": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

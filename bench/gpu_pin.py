#!/usr/bin/python3
"""pin_memory on a machine with a GPU: the registered path checked, then measured.

    /usr/bin/python3 bench/gpu_pin.py [--size MIB] [--batches N] [--slots N] [--socket PATH]

(after `make`; it starts build/shmbrokerd on a socket of its own unless --socket names one).

1. Registration: the trainer's read-only attachment of a pool registered with CUDA
   (shmbroker._pin), and a writable one beside it, each "registered" or refused with CUDA's
   reason (a GPU whose cudaDevAttrHostRegisterReadOnlySupported is 0 refuses read-only).
2. Batches: a producer process writes batches of a known pattern into the pool; the
   trainer copies each to the GPU with non_blocking=True straight from the slot, releasing
   slots through the ReleaseFence, and every batch is checked on the GPU. The same without
   the fence shows the race it prevents (a slot rewritten under the DMA).
3. H2D copy rates from one batch: from the registered slot, through torch's pin_memory()
   copy (what torch's DataLoader does for every batch), and from pageable memory.
4. shmbroker.DataLoader(pin_memory=True) against torch's DataLoader(pin_memory=True): the
   same batches on the GPU, pinned, and their rates (when this DataLoader takes pin_memory).

Exit status: 0 every check passed, 1 a check failed, 77 no CUDA here (nothing checked).
--cpu-dry-run runs the same steps on the CPU with a stand-in CUDA runtime, to try the
script itself on a machine without a GPU (its figures mean nothing).
"""
from __future__ import annotations

import argparse
import ctypes
import inspect
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))

SKIP = 77


class StandIn:
    """For --cpu-dry-run: a CUDA runtime that registers anything, and events that are done."""

    def __init__(self):
        self.registered = {}

    def cudaHostRegister(self, addr, size, flags):
        self.registered[addr] = size
        return 0

    def cudaHostUnregister(self, addr):
        return 0 if self.registered.pop(addr, None) else 1

    class Event:
        def record(self):
            pass

        def query(self):
            return True

        def synchronize(self):
            pass


class Samples:
    """Sample i: ``size`` bytes of i % 251, and the label i."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return np.full(self.size, i % 251, np.uint8), i


def produce(sock: str, pool: str, size: int, count: int) -> None:
    """Batch i: ``size`` bytes of i % 251, in a producer process of its own."""
    import shmbroker
    with shmbroker.connect("producer", sock, name="gpu-pin-producer") as c:
        p = c.open(pool)
        for i in range(count):
            with p.acquire() as slot:
                slot.ndarray(size, np.uint8).fill(i % 251)
                slot.publish(nbytes=size, meta={"i": i})
        p.end()
    os._exit(0)


def read_only_supported(torch) -> str:
    """cudaDevAttrHostRegisterReadOnlySupported of the current device, from the libcudart
    torch loaded ("unknown" when torch links its runtime in)."""
    from shmbroker import _pin
    path = _pin._mapped_libcudart()
    if not path:
        return "unknown (no libcudart of its own in this process)"
    try:
        lib = _pin._load_libcudart(path)
        v = ctypes.c_int()
        rc = lib.cudaDeviceGetAttribute(ctypes.byref(v), _pin.DEV_ATTR_HOST_REGISTER_READ_ONLY_SUPPORTED,
                                        torch.cuda.current_device())
        return str(v.value) if rc == 0 else f"unknown (cudaDeviceGetAttribute: {rc})"
    except (OSError, AttributeError) as exc:
        return f"unknown ({exc})"


class Run:
    def __init__(self, args, torch, sock: str):
        self.args, self.torch, self.sock = args, torch, sock
        self.dry = args.cpu_dry_run
        self.device = torch.device("cpu" if self.dry else "cuda")
        self.size = args.size << 20
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failed.append(what)
        return ok

    def sync(self) -> None:
        if not self.dry:
            self.torch.cuda.synchronize()

    def registrar(self, strict: bool = False):
        from shmbroker import _pin
        return _pin.Registrar(cudart=StandIn() if self.dry else None, strict=strict)

    def pinner(self, registrar, fenced: bool = True):
        from shmbroker import _pin
        event = StandIn.Event if self.dry else None
        return _pin.Pinner(_pin.plan(True, "", True), registrar=registrar,
                           fence=_pin.ReleaseFence(enabled=fenced, event=event))

    def tensor(self, a: np.ndarray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # a read-only view: torch warns, and we only read
            return self.torch.from_numpy(a)

    # -- 1 -------------------------------------------------------------------------------
    def registration(self) -> None:
        import shmbroker
        from shmbroker import _pin
        print("1. registration of a pool's attachments")
        with shmbroker.connect("consumer", self.sock) as cons, shmbroker.connect("producer", self.sock) as prod:
            name = f"gpu-pin-reg-{os.getpid()}"
            for who, pool in (("read-only (a consumer's)", cons.create(name, slot_size=self.size, slots=2)),
                              ("writable (a producer's)", prod.open(name))):
                seg = pool._memory()
                r = self.registrar(strict=True)
                try:
                    hook = r.register(seg.addr, seg.size, seg.view.readonly)
                    pinned = self.dry or self.tensor(np.frombuffer(seg.view, np.uint8, 4096)).is_pinned()
                    self.check(pinned, f"{who} attachment registered ({r.runtime}), its tensors is_pinned()")
                    hook()
                except _pin.PinError as exc:
                    print(f"  note {who} attachment refused: {exc}")
                    if seg.view.readonly:
                        self.failed.append("the trainer's read-only attachment cannot be registered here")

    # -- 2 -------------------------------------------------------------------------------
    def batches(self, fenced: bool) -> int:
        """Batches from a producer process, each copied to the device from its slot and
        checked there; the count that arrived wrong."""
        import shmbroker
        n, slots = self.args.batches, self.args.slots
        name = f"gpu-pin-{'fenced' if fenced else 'unfenced'}-{os.getpid()}"
        wrong = 0
        with shmbroker.connect("consumer", self.sock) as c:
            pool = c.create(name, slot_size=self.size, slots=slots)
            registrar = self.registrar()
            pinner = self.pinner(registrar, fenced)
            pinner.segment(pool._memory())
            producer = mp.get_context("fork").Process(target=produce, args=(self.sock, name, self.size, n))
            producer.start()
            checks, got, t0 = [], 0, time.perf_counter()
            while True:
                pinner.poll()
                try:
                    batch = pool.get(timeout=0.01)
                except shmbroker.Timeout:
                    pinner.drain()           # the producer may be waiting for the slots we hold
                    continue
                except shmbroker.EndOfStream:
                    break
                x = self.tensor(np.frombuffer(batch.data, np.uint8))
                if got == 0 and fenced:
                    self.check(registrar.covers(x.data_ptr(), x.numel()) and (self.dry or x.is_pinned()),
                               "a batch in the pool is pinned as it is")
                    self.check(pinner(x) is x, "pin_memory leaves it as it is (no copy)")
                g = x.to(self.device, non_blocking=True)
                checks.append(g.eq(batch.meta["i"] % 251).all())      # queued after the copy
                del x
                pinner.release(batch.release)
                got += 1
            pinner.drain()
            self.sync()
            seconds = time.perf_counter() - t0
            wrong = sum(not bool(ok) for ok in checks)
            producer.join()
        label = "with the fence" if fenced else "without the fence (the race it prevents)"
        print(f"  {label}: {got} batches of {self.args.size} MiB, {wrong} wrong on the device, "
              f"{got * self.size / seconds / 1e9:.2f} GB/s end to end")
        return wrong

    # -- 3 -------------------------------------------------------------------------------
    def h2d(self) -> None:
        import shmbroker
        torch = self.torch
        print("3. host-to-device copies of one batch")
        with shmbroker.connect("consumer", self.sock) as c, shmbroker.connect("producer", self.sock) as p:
            name = f"gpu-pin-h2d-{os.getpid()}"
            pool = c.create(name, slot_size=self.size, slots=1)
            r = self.registrar()
            self.pinner(r).segment(pool._memory())
            p.open(name).put(np.full(self.size, 7, np.uint8))
            batch = pool.get()
            slot = self.tensor(np.frombuffer(batch.data, np.uint8))
            pageable = slot.clone()
            dst = torch.empty(slot.shape, dtype=slot.dtype, device=self.device)
            reps = self.args.reps

            def rate(fn) -> float:
                fn()
                self.sync()
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                self.sync()
                return reps * self.size / (time.perf_counter() - t0) / 1e9

            rows = [("from the registered slot, non_blocking", lambda: dst.copy_(slot, non_blocking=True))]
            if not self.dry:
                rows.append(("torch's way: pin_memory() copy, then non_blocking",
                             lambda: dst.copy_(slot.pin_memory(), non_blocking=True)))
            rows.append(("from pageable memory", lambda: dst.copy_(pageable)))
            for what, fn in rows:
                print(f"  {what:52} {rate(fn):8.2f} GB/s", flush=True)
            self.sync()
            self.check(bool(dst.eq(7).all()), "the copies arrived")
            batch.release()

    # -- 4 -------------------------------------------------------------------------------
    def loaders(self) -> None:
        import shmbroker
        torch = self.torch
        print("4. shmbroker.DataLoader(pin_memory=True) against torch's")
        if "pin_memory" not in inspect.signature(shmbroker.DataLoader).parameters:
            print("  skipped: this shmbroker.DataLoader does not take pin_memory yet")
            return
        samples = 16
        data = Samples(samples * max(self.args.batches // 4, 4), self.size // samples)

        def run(make) -> tuple[list, float, bool]:
            sums, pinned = [], True
            loader = make()
            try:
                t0 = time.perf_counter()
                for x, y in loader:
                    pinned = pinned and (self.dry or x.is_pinned())
                    g = x.to(self.device, non_blocking=True)
                    sums.append((g.sum(dtype=torch.int64), y.to(self.device, non_blocking=True)))
                self.sync()
                seconds = time.perf_counter() - t0
            finally:
                getattr(loader, "close", lambda: None)()
            return [(int(s), y.tolist()) for s, y in sums], seconds, pinned

        os.environ["SHMBROKER_SOCKET"] = self.sock
        kw = dict(batch_size=samples, num_workers=2, pin_memory=True)
        theirs, t_torch, p_torch = run(lambda: torch.utils.data.DataLoader(data, **kw))
        ours, t_ours, p_ours = run(lambda: shmbroker.DataLoader(data, **kw))
        self.check(ours == theirs, f"the same {len(ours)} batches on the device")
        self.check(p_ours and p_torch, "every batch pinned")
        nbytes = len(ours) * self.size
        print(f"  torch.utils.data.DataLoader: {nbytes / t_torch / 1e9:.2f} GB/s; "
              f"shmbroker.DataLoader: {nbytes / t_ours / 1e9:.2f} GB/s ({t_torch / t_ours:.1f}x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16, help="batch size in MiB (default 16)")
    ap.add_argument("--batches", type=int, default=200, help="batches per run (default 200)")
    ap.add_argument("--slots", type=int, default=2, help="slots of the pool (few: slots are reused at once)")
    ap.add_argument("--reps", type=int, default=50, help="copies per H2D rate (default 50)")
    ap.add_argument("--socket", help="a running shmbrokerd's socket (default: start build/shmbrokerd)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="the steps on the CPU, CUDA stood in for")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("no CUDA here: torch is not installed (nothing checked)", file=sys.stderr)
        return SKIP
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print(f"no CUDA here: torch {torch.__version__} (built for CUDA {torch.version.cuda}) finds no usable "
              "GPU, torch.cuda.is_available() is False (nothing checked; --cpu-dry-run tries the script itself)",
              file=sys.stderr)
        return SKIP
    if args.cpu_dry_run:
        print("CPU dry run: CUDA stood in for, figures meaningless")
    else:
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"cudaDevAttrHostRegisterReadOnlySupported: {read_only_supported(torch)}")
    tmp = tempfile.mkdtemp(prefix="shmbroker-gpu-pin-")
    daemon, sock = None, args.socket
    if not sock:
        exe = ROOT / "build" / "shmbrokerd"
        if not exe.exists():
            print(f"{exe} is missing: run make first", file=sys.stderr)
            return 1
        sock = os.path.join(tmp, "s.sock")
        daemon = subprocess.Popen([str(exe), "--socket", sock, "--config", "/dev/null"], stderr=subprocess.DEVNULL)
        while not os.path.exists(sock):
            time.sleep(0.01)
    run = Run(args, torch, sock)
    try:
        run.registration()
        print("2. batches from a producer, copied to the device from their slots")
        run.check(run.batches(fenced=True) == 0, "every batch arrived as written")
        run.batches(fenced=False)
        run.h2d()
        run.loaders()
    finally:
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
    if run.failed:
        print(f"FAILED: {'; '.join(run.failed)}")
        return 1
    print("every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Train a small CNN on synthetic images with torch's DataLoader or shmbroker's.

    /usr/bin/python3 examples/train_torch.py --loader torch --steps 20
    SHMBROKER_SOCKET=build/shmbroker.sock /usr/bin/python3 examples/train_torch.py --loader shmbroker --steps 20

The two runs differ in one line, the import of ``DataLoader``: shmbroker.DataLoader takes
torch's constructor and yields the same batches. Each sample costs what a real image
pipeline costs: the dataset stores its images compressed the way PNG stores them (each
pixel as its difference from its left neighbour, deflated with zlib) and ``__getitem__``
decodes one, takes a random crop, flips it half of the time and normalises it to float32
CHW. With ``--write-sample`` the dataset also offers ``write_sample(i, out)``, which
shmbroker's loader calls to have the sample written straight into the batch in shared
memory (torch's loader ignores it). ``--data-only`` leaves the model out: the loop just
reads every batch, which is how fast the data pipeline alone can go.

It prints samples/s and the CPU time per 1,000 samples of every process of the pipeline
(this one, its loader workers, and the shmbroker daemon it uses), both counted after the
warm-up steps, and this process's peak RSS. ``--print-checksum`` prints a sha256 of the
first batch's tensors: for the same ``--seed`` the two loaders must print the same one.

examples/train_ddp.py trains the same model data-parallel under torchrun; bench/training.py
measures this pipeline for docs/performance.md (make bench).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import socket as socketlib
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import shmbroker  # noqa: F401
except ImportError:                       # run from the source tree, not installed
    sys.path.insert(0, str(ROOT / "client" / "python"))

# ImageNet's channel statistics, as torchvision's Normalize is usually given them (on 0..255).
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def _png_encode(image: np.ndarray) -> bytes:
    """An HxWx3 uint8 image as PNG keeps it: the "Sub" filter (each byte minus the same
    channel of the pixel to its left, modulo 256), then deflate."""
    filtered = np.diff(image, axis=1, prepend=np.zeros((image.shape[0], 1, 3), np.uint8))
    return zlib.compress(filtered.tobytes(), 6)


def _png_decode(blob: bytes, side: int) -> np.ndarray:
    """Inflate, then undo the Sub filter: a running sum along each row, modulo 256."""
    raw = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(side, side, 3)
    return np.cumsum(raw, axis=1, dtype=np.uint8)


class SyntheticImages:
    """``n`` labelled images of ``classes`` kinds (sine gratings whose orientation is the
    class, with random frequency, phase, colour and noise), made once and kept compressed;
    ``distinct`` of them are made and sample i shows image i % distinct.

    dataset[i] is ``(image, label)``: a float32 array of 3 x image_size x image_size, cropped
    at random from a larger image, flipped at random, normalised; and an int. With
    ``with_index`` it is ``(image, label, i)``, for checks of who saw which sample.
    The random crop and flip draw from numpy's global generator, which torch's loader (and
    shmbroker's) seeds in each worker."""

    def __init__(self, n: int, image_size: int = 64, classes: int = 10, distinct: int = 256, seed: int = 0,
                 with_index: bool = False):
        self.n, self.size, self.classes, self.with_index = n, image_size, classes, with_index
        self.pad = max(image_size // 8, 1)
        self.side = image_size + self.pad
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:self.side, 0:self.side].astype(np.float32) / self.side
        self.blobs, self.labels = [], []
        for k in range(min(n, distinct)):
            label = k % classes
            theta = math.pi * label / classes
            wave = np.sin(2 * math.pi * rng.uniform(2, 6) * (xx * math.cos(theta) + yy * math.sin(theta))
                          + rng.uniform(0, 2 * math.pi))
            colour = rng.uniform(0.3, 1.0, 3).astype(np.float32)
            image = 127.5 + 100 * wave[..., None] * colour + rng.normal(0, 3, (self.side, self.side, 3))
            self.blobs.append(_png_encode(np.clip(image, 0, 255).astype(np.uint8)))
            self.labels.append(label)
        self.scale = (1 / STD)[:, None, None]
        self.shift = (MEAN / STD)[:, None, None]

    def __len__(self) -> int:
        return self.n

    def _image_into(self, i: int, out: np.ndarray) -> int:
        """Decode, crop, flip and normalise image i into ``out`` (3 x size x size float32);
        its label."""
        k = i % len(self.blobs)
        image = _png_decode(self.blobs[k], self.side)
        top, left = np.random.randint(0, self.pad + 1, size=2)
        crop = image[top:top + self.size, left:left + self.size]
        if np.random.rand() < 0.5:
            crop = crop[:, ::-1]
        np.multiply(crop.transpose(2, 0, 1), self.scale, out=out)
        out -= self.shift
        return self.labels[k]

    def __getitem__(self, i: int):
        i = int(i)
        image = np.empty((3, self.size, self.size), np.float32)
        label = self._image_into(i, image)
        return (image, label, i) if self.with_index else (image, label)


class SyntheticImagesInPlace(SyntheticImages):
    """The same samples, which a loader can also have written in place: ``out`` is shaped
    like dataset[0], numpy arrays that are the sample's rows of the batch."""

    def write_sample(self, i: int, out) -> None:
        i = int(i)
        out[1][...] = self._image_into(i, out[0])
        if self.with_index:
            out[2][...] = i


def make_model(classes: int = 10):
    """Three conv blocks and a linear head: small enough to train on two CPU cores."""
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


# --- what the pipeline costs -------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict:
    """pid -> (ppid, utime + stime in ticks) of every process (all its threads)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:                      # gone meanwhile
            continue
        out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def daemon_pid(path: str | None) -> int | None:
    """The pid of the shmbrokerd listening at @path (the socket a shmbroker client uses, by
    default $SHMBROKER_SOCKET), from the kernel's credentials of a connection to it."""
    path = path or os.environ.get("SHMBROKER_SOCKET")
    if not path:
        try:
            from shmbroker._lib import DEFAULT_SOCKET
            path = DEFAULT_SOCKET
        except Exception:
            return None
    s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    try:
        s.connect(path)
        pid, _, _ = struct.unpack("3i", s.getsockopt(socketlib.SOL_SOCKET, socketlib.SO_PEERCRED, 12))
        return pid
    except OSError:
        return None
    finally:
        s.close()


def cpu_seconds(extra_pids=()) -> float:
    """CPU time (user + system) used so far by this process, every descendant of it (loader
    workers, a daemon it started), and @extra_pids (a daemon it uses) with theirs."""
    stats = _proc_stats()
    children: dict = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [os.getpid(), *[p for p in extra_pids if p]]
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
    return sum(stats[p][1] for p in seen) / _TICK


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec (ru_maxrss does not: it
    keeps the peak of the process that forked this one, before its exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def batch_sha256(batch) -> str:
    """sha256 over a batch's tensors (or arrays), in order, with their dtypes and shapes."""
    h = hashlib.sha256()
    for t in batch if isinstance(batch, (list, tuple)) else [batch]:
        a = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def make_loader(kind: str, dataset, batch_size: int, workers: int, **kw):
    """The one line that differs between torch and shmbroker is the import."""
    if kind == "torch":
        from torch.utils.data import DataLoader
    else:
        from shmbroker import DataLoader
        if callable(getattr(dataset, "write_sample", None)):
            kw["write_sample"] = True        # shmbroker's own keyword: samples written in place
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True, **kw)


def train(loader, steps: int, warmup: int, model=None, optimizer=None, extra_pids=(), checksum: bool = False) -> dict:
    """Iterate ``loader`` for ``warmup`` + ``steps`` batches, training ``model`` on each (or,
    without a model, reading every byte of it). Rates and CPU time count the ``steps``
    batches after the warm-up alone: loader start-up is not the steady state."""
    import torch
    loss_fn = torch.nn.CrossEntropyLoss()
    first, losses, samples = None, [], 0
    seconds = cpu = None
    # The clock runs from the end of the last warm-up step: it counts the fetching and the
    # work of every measured step (with no warm-up, the loader's start too).
    t0, c0 = time.perf_counter(), cpu_seconds(extra_pids)
    for step, batch in enumerate(loader):
        images, labels = batch[:2]
        if checksum and step == 0:
            first = batch_sha256(batch)
        if model is None:
            float(images.sum())             # the trainer reads every byte, as a first layer would
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        if step >= warmup:
            samples += len(labels)
        if step == warmup - 1:
            t0, c0 = time.perf_counter(), cpu_seconds(extra_pids)
        if step == warmup + steps - 1:      # before the loader's workers stop
            seconds, cpu = time.perf_counter() - t0, cpu_seconds(extra_pids) - c0
    if seconds is None:
        raise RuntimeError(f"the loader gave fewer than {warmup + steps} batches")
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
            "cpu_seconds": cpu, "cpu_per_1000": cpu / samples * 1000, "peak_rss_mib": peak_rss_mib(),
            "first_batch_sha256": first, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loader", choices=("torch", "shmbroker"), default="torch")
    ap.add_argument("--steps", type=int, default=20, help="steps counted after the warm-up (default 20)")
    ap.add_argument("--warmup", type=int, default=None, help="steps before the clock starts (default: 2 per worker)")
    ap.add_argument("--workers", type=int, default=2, help="loader worker processes (default 2)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--data-only", action="store_true", help="no model: just iterate, reading every batch")
    ap.add_argument("--write-sample", action="store_true",
                    help="the dataset also offers write_sample(i, out) (used by shmbroker's loader)")
    ap.add_argument("--sharing-strategy", choices=("file_descriptor", "file_system"),
                    help="torch.multiprocessing's sharing strategy for torch's loader")
    ap.add_argument("--socket", help="shmbroker's socket (default: $SHMBROKER_SOCKET, else the default socket)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--print-checksum", action="store_true", help="print a sha256 of the first batch's tensors")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = ap.parse_args(argv)

    import torch
    if args.sharing_strategy:
        torch.multiprocessing.set_sharing_strategy(args.sharing_strategy)
    if args.socket:
        os.environ["SHMBROKER_SOCKET"] = args.socket
    warmup = args.warmup if args.warmup is not None else 2 * max(args.workers, 1)
    torch.manual_seed(args.seed)            # the model's initial weights
    np.random.seed(args.seed)               # for num_workers=0, where the trainer makes samples
    kind = SyntheticImagesInPlace if args.write_sample else SyntheticImages
    dataset = kind((warmup + args.steps) * args.batch_size, args.image_size, seed=args.seed)
    model = optimizer = None
    if not args.data_only:
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    extra = [daemon_pid(args.socket)] if args.loader == "shmbroker" else []
    # The loader draws the order and the workers' seeds from a generator of its own: the
    # same batches whatever else drew from torch's global one (the model, or no model).
    loader = make_loader(args.loader, dataset, args.batch_size, args.workers,
                         generator=torch.Generator().manual_seed(args.seed))
    try:
        r = train(loader, args.steps, warmup, model, optimizer, extra_pids=extra, checksum=args.print_checksum)
    finally:
        if hasattr(loader, "close"):        # shmbroker's stops its workers now, not at exit
            loader.close()
    what = "data only" if args.data_only else "with the model"
    print(f"{args.loader} loader{' (write_sample)' if args.write_sample else ''}, {args.workers} workers, "
          f"batches of {args.batch_size}, {what}: {r['samples_per_s']:.1f} samples/s, "
          f"{r['cpu_per_1000']:.2f} CPU s per 1,000 samples (all processes), peak RSS {r['peak_rss_mib']:.0f} MiB"
          + (f", loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}" if r["loss_first"] is not None else ""))
    if args.print_checksum:
        print(f"first batch sha256: {r['first_batch_sha256']}")
    if args.json:
        print(json.dumps({"loader": args.loader, "write_sample": args.write_sample, "data_only": args.data_only,
                          "workers": args.workers, "batch_size": args.batch_size, **r}))
    if r["loss_last"] is not None and not math.isfinite(r["loss_last"]):
        print("the loss is not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

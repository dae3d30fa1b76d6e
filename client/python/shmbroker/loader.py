"""DataLoader: worker processes build batches from a dataset straight into shared memory;
the trainer iterates them in order, zero-copy, epoch after epoch."""
from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import random
import signal
import sys
import traceback
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import errors, layout
from ._lib import libc
from .client import Batch, Client, Closing, Pool, connect

ERROR_KEY = "__worker_error__"
ERROR_TYPE_KEY = "__worker_error_type__"    # "module:qualname" of the worker's exception
STRUCT_KEY = "__structure__"


def _flatten(obj: Any) -> tuple[str, list, list]:
    """A batch's structure: ("array"|"tuple"|"dict", keys, leaves)."""
    if isinstance(obj, dict):
        return "dict", list(obj.keys()), [obj[k] for k in obj]
    if isinstance(obj, (tuple, list)):
        return "tuple", [str(i) for i in range(len(obj))], list(obj)
    return "array", ["0"], [obj]


def _unflatten(kind: str, keys: list, leaves: list) -> Any:
    if kind == "dict":
        return dict(zip(keys, leaves))
    if kind == "tuple":
        return tuple(leaves)
    return leaves[0]


def default_collate(samples: Sequence[Any]) -> Any:
    """Stack samples (arrays, numbers, or tuples/dicts of them) into arrays along a new axis 0."""
    kind, keys, leaves0 = _flatten(samples[0])
    columns = [[_flatten(s)[2][i] for s in samples] for i in range(len(keys))]
    return _unflatten(kind, keys, [np.stack([np.asarray(x) for x in col]) for col in columns])


def _batch_into_slot(pool: Pool, template: tuple, n: int, fill: Callable, seq: int, meta: dict) -> None:
    """A batch of @n samples shaped by @template, built straight in a slot: fill(j, rows)
    writes sample j into ``rows``, its row of each array (views of shared memory)."""
    kind, keys, shapes = template
    with pool.acquire(seq=seq) as slot:
        views = {k: slot.ndarray((n,) + shape, dtype) for k, (shape, dtype) in zip(keys, shapes)}
        for j in range(n):
            # [j, ...] keeps even a 0-d sample a writable view
            fill(j, [views[k][j, ...] for k in keys])
        slot.publish(views, meta=dict(meta, **{STRUCT_KEY: [kind, keys]}), seq=seq)


def _write_into_slot(pool: Pool, dataset: Any, indices, template: tuple, seq: int, meta: dict) -> None:
    """The dataset writes each sample straight into the slot (its write_sample()): no
    sample exists anywhere else, so every byte is written exactly once."""
    kind, keys, _ = template
    _batch_into_slot(pool, template, len(indices),
                     lambda j, rows: dataset.write_sample(int(indices[j]), _unflatten(kind, keys, rows)), seq, meta)


def _template(sample: Any) -> tuple:
    """What write_sample() is handed: the sample's structure, shapes and dtypes."""
    kind, keys, leaves = _flatten(sample)
    return kind, keys, [(np.asarray(x).shape, np.asarray(x).dtype) for x in leaves]


def _collate_into_slot(pool: Pool, samples: list, seq: int, meta: dict) -> None:
    """default_collate, writing each sample straight into the slot: one copy per byte."""
    def fill(j: int, rows: list) -> None:
        for row, leaf in zip(rows, _flatten(samples[j])[2]):
            row[...] = leaf
    _batch_into_slot(pool, _template(samples[0]), len(samples), fill, seq, meta)


def _epoch_batches(n: int, batch_size: int, shuffle: bool, seed: int, epoch: int, drop_last: bool) -> list:
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: the kernel kills this worker when the trainer dies, even by SIGKILL."""
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class _KeyErrorMessage(str):
    """A KeyError shows repr() of its argument; this message shows itself (as torch's)."""

    def __repr__(self):
        return str(self)


def _worker_exception(meta: dict) -> BaseException:
    """The exception a worker raised, as torch's DataLoader re-raises it: of the worker's
    exception type, with the worker's traceback in its message. A type this process does
    not know (its module not imported here) or cannot make from one message is raised as
    WorkerError. Types are only looked up among the modules already imported: the meta
    names them, and nothing is imported on its say."""
    msg, kind = meta[ERROR_KEY], meta.get(ERROR_TYPE_KEY, "")
    module, _, qualname = kind.partition(":")
    exc_type: Any = sys.modules.get(module)
    for part in qualname.split(".") if qualname else ():
        exc_type = getattr(exc_type, part, None)
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        return errors.WorkerError(msg)
    text = f"Caught {exc_type.__name__} in {msg}"
    try:
        return exc_type(_KeyErrorMessage(text) if exc_type is KeyError else text)
    except Exception:
        return errors.WorkerError(text)


class WorkerInfo:
    """What get_worker_info() tells a worker: ``id``, ``num_workers``, ``seed`` (this
    epoch's) and ``dataset`` (the worker's copy), as torch's WorkerInfo."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker, what it is (WorkerInfo); in the trainer, None. Inside workers
    torch.utils.data.get_worker_info() answers the same, so sharding code written for torch
    works unchanged."""
    return _worker_info


def _set_worker_info(w: int, num_workers: int, seed: int, dataset: Any) -> None:
    global _worker_info
    torch = sys.modules.get("torch")
    if torch is not None:
        from torch.utils.data._utils import worker as torch_worker
        _worker_info = torch_worker.WorkerInfo(id=w, num_workers=num_workers, seed=seed, dataset=dataset)
        torch_worker._worker_info = _worker_info
    else:
        _worker_info = WorkerInfo(id=w, num_workers=num_workers, seed=seed, dataset=dataset)


def _seed_worker(base_seed: int, w: int) -> None:
    """Seed worker @w's random generators for an epoch as torch's DataLoader seeds its workers
    (torch/utils/data/_utils/worker.py): python's and torch's with base_seed + w, numpy's
    with a state derived from both; so that the workers draw different numbers, and the
    same ones torch's workers would."""
    seed = base_seed + w
    random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        from torch.utils.data._utils.worker import _generate_state
        np.random.seed(_generate_state(base_seed, w))
    else:
        np.random.seed(np.random.SeedSequence([w, base_seed]).generate_state(4))


def _draw_base_seed() -> int:
    """The epoch's base seed, drawn as torch's loader draws it (from torch's generator, so
    that the draw advances it the same way) when torch is in use, else from python's."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.empty((), dtype=torch.int64).random_().item())
    return random.getrandbits(63)


def _worker(w: int, cfg: dict, dataset: Any, collate: Callable | None, ready: Any, start: Any,
            credits: Any, base_seed: Any) -> None:
    _die_with_parent(cfg["parent"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the trainer's to handle
    status = 0
    try:
        client = connect("producer", cfg["socket"], name=f"loader-worker-{w}")
        pool = client.open(cfg["pool"])
        # Write the next batch while the daemon answers the last publish; a refusal
        # surfaces at the next acquire, as this worker's error.
        pool.pipelined = True
        ready.release()
        for epoch in itertools.count():
            start.acquire()                     # the trainer began this epoch
            _seed_worker(base_seed.value, w)
            _set_worker_info(w, cfg["num_workers"], base_seed.value + w, dataset)
            batches = _epoch_batches(len(dataset), cfg["batch_size"], cfg["shuffle"], cfg["seed"], epoch,
                                     cfg["drop_last"])
            for b in range(w, len(batches), cfg["num_workers"]):
                # At most `prefetch` of this worker's batches wait for the trainer at once: so
                # the pool always has a slot for whichever batch the trainer needs next.
                credits.acquire()
                try:
                    if cfg["template"] is not None:
                        _write_into_slot(pool, dataset, batches[b], cfg["template"], b, {"epoch": epoch})
                        continue
                    samples = [dataset[int(i)] for i in batches[b]]
                    if collate is None:
                        _collate_into_slot(pool, samples, b, {"epoch": epoch})
                    else:
                        out = collate(samples)
                        kind, keys, leaves = _flatten(out)
                        pool.put({k: np.asarray(v) for k, v in zip(keys, leaves)},
                                 meta={"epoch": epoch, STRUCT_KEY: [kind, keys]}, seq=b)
                except errors.BrokerError:
                    raise
                except BaseException as exc:
                    # In order, in place of the batch: the trainer raises it when it gets there.
                    tb = f"worker {w}, batch {b} of epoch {epoch}:\n{traceback.format_exc()}"
                    kind = f"{type(exc).__module__}:{type(exc).__qualname__}"
                    with pool.acquire(seq=b) as slot:
                        slot.publish(nbytes=0, meta={ERROR_KEY: tb, ERROR_TYPE_KEY: kind}, seq=b)
                    status = 1
                    return
            pool.end()
    except errors.ConnectionLost:
        status = 0                              # the trainer closed the loader
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        os._exit(status)


class DataLoader(Closing):
    """Batches of ``dataset[i]`` built by ``num_workers`` processes into an ordered pool.

    Iterating the loader gives one epoch of batches, in order (``shuffle`` draws a new
    order every epoch from ``seed``): each is what ``collate`` returns (by default the
    samples stacked: an array, or a tuple or dict of arrays), as writable arrays that are
    views of shared memory (the pool is the trainer's own). A batch stays valid until the
    next one is asked for (copy what you keep longer), and is the trainer's alone until
    then: it may be modified in place, as torch's batches may. A worker's exception is
    raised in the trainer with its own type and the worker's traceback in its message, as
    torch's loader does (WorkerError when its type cannot be made again here). close() (or
    leaving a ``with`` block) stops the workers; if the trainer dies, they die with it and
    the pool's segment goes with them.

    A dataset that also has ``write_sample(i, out)`` (and no custom ``collate``) has each
    sample written in place: ``out`` is shaped like ``dataset[0]`` (an array, or a tuple or
    dict of arrays) and is the sample's row of the batch in shared memory, so no copy of
    the sample is ever made. ``prefetch`` batches per worker may wait for the trainer
    (default: 2 for big batches, up to 8 for small ones, where round trips dominate).
    """

    _serial = itertools.count()

    def __init__(self, dataset: Any, batch_size: int = 1, num_workers: int = 2, shuffle: bool = False,
                 collate: Callable | None = None, drop_last: bool = False, seed: int = 0,
                 socket: str | None = None, slot_size: int | None = None, prefetch: int | None = None):
        if batch_size < 1 or num_workers < 1:
            raise ValueError("batch_size and num_workers must be at least 1")
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.shuffle, self.collate, self.drop_last, self.seed = shuffle, collate, drop_last, seed
        self.socket, self.slot_size, self.prefetch = socket, slot_size, prefetch
        self.epoch = 0
        self._client: Client | None = None
        self._pool: Pool | None = None
        self._workers: list = []
        self._starts: list = []
        self._credits: list = []
        self._unfinished = False

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _start(self) -> None:
        ctx = mp.get_context("fork")
        slot_size = self.slot_size
        if slot_size is None:
            first = _epoch_batches(len(self.dataset), self.batch_size, False, 0, 0, False)[0]
            sample = (self.collate or default_collate)([self.dataset[int(i)] for i in first])
            leaves = _flatten(sample)[2]
            slot_size = layout.packed_size(leaves) + layout.ALIGN * len(leaves)
        if self.prefetch is None:
            # Small batches are bound by round trips, and more of them in flight hide those;
            # big ones by memory, where two per worker keep the trainer fed.
            self.prefetch = max(2, min(8, (64 << 20) // (slot_size * self.num_workers)))
        name = f"loader-{os.getpid()}-{next(self._serial)}"
        self._client = connect("consumer", self.socket, name="loader-trainer")
        # Every worker's batches in flight, plus the one the trainer reads.
        self._pool = self._client.create(name, slot_size, self.num_workers * self.prefetch + 1, ordered=True)
        # A dataset that can write a sample in place (and the default collation, which
        # stacks) skips the copy from sample to batch: samples all shaped like the first.
        in_place = self.collate is None and callable(getattr(self.dataset, "write_sample", None))
        template = _template(self.dataset[0]) if in_place else None
        cfg = dict(parent=os.getpid(), socket=self.socket, pool=name, batch_size=self.batch_size, template=template,
                   shuffle=self.shuffle, seed=self.seed, drop_last=self.drop_last, num_workers=self.num_workers)
        ready = ctx.Semaphore(0)
        self._base_seed = ctx.RawValue("q", 0)     # written before each epoch's start
        for w in range(self.num_workers):
            start, credits = ctx.Semaphore(0), ctx.Semaphore(self.prefetch)
            p = ctx.Process(target=_worker, args=(w, cfg, self.dataset, self.collate, ready, start, credits,
                                                  self._base_seed),
                            daemon=True, name=f"shmbroker-loader-{w}")
            p.start()
            self._workers.append(p)
            self._starts.append(start)
            self._credits.append(credits)
        # A stream ends when every producer that has the pool open has ended it: so every
        # worker must have the pool open before any of them can end the first epoch.
        for _ in range(self.num_workers):
            while not ready.acquire(timeout=0.5):
                self._check_workers()

    def _check_workers(self) -> None:
        for w, p in enumerate(self._workers):
            if p.exitcode not in (None, 0):
                raise errors.WorkerError(f"worker {w} died (exit status {p.exitcode}) before finishing its batches")

    def _next_batch(self, prev: Batch | None) -> Batch | None:
        pool = self._pool
        while True:
            try:
                # The previous batch goes back in the same round trip.
                batch = pool.release_get(prev, timeout=0.5)
            except errors.Timeout:
                self._check_workers()
                continue
            except errors.EndOfStream:
                return None
            self._credits[batch.seq % self.num_workers].release()
            return batch

    def __iter__(self) -> Iterator[Any]:
        # Drawn first, as torch's loader draws it when an iterator is made.
        base_seed = _draw_base_seed()
        if self._pool is None:
            self._start()
        elif self._unfinished:
            self._drain()
        self._base_seed.value = base_seed
        for s in self._starts:
            s.release()
        self._unfinished = True
        count, batch = 0, None
        try:
            while True:
                batch = self._next_batch(batch)
                if batch is None:
                    break
                if ERROR_KEY in batch.meta:
                    raise _worker_exception(batch.meta)
                kind, keys = batch.meta.get(STRUCT_KEY, ["array", ["0"]])
                arrays = batch.arrays
                count += 1
                yield _unflatten(kind, keys, [arrays[k] for k in keys])
            if count < len(self):
                self._check_workers()
                raise errors.WorkerError(f"epoch {self.epoch} ended after {count} of {len(self)} batches: "
                                         "a worker died")
            self._unfinished = False
            self.epoch += 1
        finally:
            if batch is not None and not batch.released and self._pool is not None and not self._pool.closed:
                batch.release()

    def _drain(self) -> None:
        """Finish an epoch the trainer left early, so the next starts at its first batch."""
        batch = self._next_batch(None)
        while batch is not None:
            batch = self._next_batch(batch)     # releases the one before
        self._unfinished = False
        self.epoch += 1

    def close(self) -> None:
        """Stop the workers and close the pool; its segment goes once nothing uses it."""
        for p in self._workers:
            if p.is_alive():
                p.kill()
        for p in self._workers:
            p.join()
        self._workers.clear()
        if self._client is not None:
            self._client.close()
        self._client = self._pool = None

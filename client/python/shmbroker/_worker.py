"""A DataLoader worker: takes tasks (a batch's indices) from its queue, builds each batch
straight into a slot of the loader's pool and publishes it, as torch's worker loop does
(torch/utils/data/_utils/worker.py): seeded the same way, get_worker_info() answering, the
same fetchers and collation, exceptions sent in place of the batch.

What a worker publishes, each in one slot, its meta saying which ("k"); the slot starts
with the number of the task it answers (HEADER: -1 for none), so that the meta of one
loader's batches is the same text batch after batch (the trainer decodes it once):
  "d"  the batch of its task, packed (_slotpack: "b" says how)
  "e"  the exception its task raised, packed (an ExceptionWrapper)
  "s"  its task found the worker's iterable dataset exhausted
  "r"  the worker is ready for a new epoch (persistent workers)
  "g"  its task needs slots of "need" bytes: the trainer makes a pool with slots that big
       (the loader's next generation) and names it in ``answers[worker "w"]``
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import random
import select
import signal
import struct
import sys
import time
from typing import Any

import numpy as np

from . import _notorch, _slotpack, errors
from ._lib import libc
from .client import connect

HEADER = struct.Struct("<q")     # at the start of each slot: the task it answers, -1 for none
POLL = 0.05     # how often a worker waiting for a slot looks whether the loader is done
PIPELINED_MAX = 4 << 20     # slots smaller than this are published pipelined


class ResumeIteration:
    """Sent to persistent workers at a new epoch: acknowledge in pool generation ``gen``."""

    def __init__(self, gen: int):
        self.gen = gen


class WorkerInfo:
    """What get_worker_info() tells a worker: ``id``, ``num_workers``, ``seed`` and
    ``dataset`` (the worker's copy), as torch's WorkerInfo."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info: Any = None


def get_worker_info() -> Any:
    """In a DataLoader worker, what it is (WorkerInfo); in the trainer, None. Inside workers
    torch.utils.data.get_worker_info() answers the same, so sharding code written for torch
    works unchanged."""
    return _worker_info


class _Done(Exception):
    """The loader shut down while this worker waited."""


_itemsize: dict = {}        # torch dtype -> bytes
# The numpy dtypes torch.from_numpy() takes (torch 1.13 and later).
_TORCH_DTYPES = frozenset(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64,
                                                np.float16, np.float32, np.float64, np.complex64, np.complex128))


class _Out:
    """The worker's side of the loader's pools: the slot the current task is built in."""

    def __init__(self, cfg: dict, worker_id: int, answers: Any, done: Any):
        self.cfg, self.worker_id, self.answers, self.done = cfg, worker_id, answers, done
        self.pools: dict = {}           # generation -> (client, pool)
        self.slot = self.arena = None
        self.in_slot = False
        self.metas: dict = {}           # (kind, how it is packed) -> the meta's text

    def _pool(self, gen: int):
        if gen not in self.pools:
            client = connect("producer", self.cfg["socket"], name=f"loader-worker-{self.worker_id}")
            pool = client.open(f"{self.cfg['pool']}-g{gen}")
            # Build the next batch while the daemon answers this publish: for small batches,
            # whose round trips count; a big one would keep a big slot idle for it. On the
            # fast path there is no round trip to hide.
            pool.pipelined = pool.slot_size < PIPELINED_MAX and not pool.fast
            self.pools[gen] = (client, pool)
        return self.pools[gen][1]

    def begin(self, gen: int) -> None:
        """Take a slot of generation ``gen`` for the next message; older generations are
        done with (tasks come in the order they were sent, their generations never fall)."""
        for old in [g for g in self.pools if g < gen]:
            client, pool = self.pools.pop(old)
            pool.settle()
            client.close()
        pool = self._pool(gen)
        while True:
            try:
                self.slot = pool.acquire(timeout=POLL)
                break
            except errors.Timeout:
                if self.done.is_set():
                    raise _Done from None
        self.gen = gen
        memory = pool._memory()
        start = self.slot.offset
        self.arena = _slotpack.SlotArena(memory.view[start:start + pool.slot_size], memory.addr + start)
        self.arena.alloc(HEADER.size)           # offset 0

    def collating(self, collate: Any) -> Any:
        """``collate`` (torch's default_collate, as the loader's collate_fn) stacking its
        batch into the task's slot. Only there: default_collate called anywhere else (in a
        dataset, or in a collate_fn of the user's, which may keep what it made) makes its
        storage in the worker's own memory.

        Numpy arrays, at any depth of the samples, are stacked by stack_arrays() rather than
        by torch's collate_numpy_array_fn, as long as default_collate_fn_map still names
        torch's own: the same tensor, made without a tensor per sample."""
        from torch.utils.data._utils import collate as torch_collate

        def in_slot(batch):
            self.in_slot = True
            try:
                fns = torch_collate.default_collate_fn_map
                if fns.get(np.ndarray) is torch_collate.collate_numpy_array_fn:
                    return torch_collate.collate(batch, collate_fn_map={**fns, np.ndarray: self.stack_arrays})
                return collate(batch)
            finally:
                self.in_slot = False
        return in_slot

    def stack_arrays(self, batch: list, *, collate_fn_map: Any = None) -> Any:
        """What torch's collate_numpy_array_fn makes of a batch of numpy arrays (a tensor
        per sample, stacked into a new one), stacked straight from the arrays into the slot
        and seen as a tensor there: when every sample is a plain array of one shape and
        one dtype that torch.from_numpy() takes. Anything else (several shapes or dtypes,
        strings, byte order or dtypes torch refuses, no room left) goes to torch's, which
        collates it or raises as it would."""
        from torch.utils.data._utils import collate as torch_collate
        torch = sys.modules["torch"]
        elem = batch[0]
        dt, shape = elem.dtype, elem.shape
        if (self.arena is not None and dt in _TORCH_DTYPES and dt.isnative
                and all(type(a) is np.ndarray and a.shape == shape and a.dtype == dt for a in batch)):
            n = len(batch)
            off = self.arena.alloc(n * elem.nbytes)
            if off is not None:
                out = np.frombuffer(self.arena.view, dt, n * elem.size, off)
                if shape:       # one after the other: the stack, laid out (and cheaper than np.stack)
                    np.concatenate(batch, out=out.reshape((n * shape[0],) + shape[1:]))
                else:
                    np.stack(batch, out=out)
                t = torch.from_numpy(out.reshape((n,) + shape))
                self.arena.remember(t, off, (n,) + shape)
                return t
        return torch_collate.collate_numpy_array_fn(batch, collate_fn_map=collate_fn_map)

    def new_shared(self, size: int, dtype) -> Any:
        """A storage of ``size`` elements in the current slot (where default_collate stacks
        a batch inside a worker), or None when it does not fit or this is not the loader's
        own collation."""
        if not self.in_slot:
            return None
        torch = sys.modules["torch"]
        itemsize = _itemsize.get(dtype)
        if itemsize is None:
            itemsize = _itemsize[dtype] = torch.empty((), dtype=dtype).element_size()
        if self.arena is None or size == 0:
            return None
        off = self.arena.alloc(size * itemsize)
        if off is None:
            return None
        return torch.frombuffer(self.arena.view, dtype=dtype, count=size, offset=off).storage()

    def put(self, kind: str, idx: int | None, obj: Any = None) -> None:
        """Publish message ``kind`` of task ``idx`` (``obj`` packed in the slot)."""
        meta: dict = {"k": kind}
        task = -1 if idx is None else idx
        while obj is not None:
            try:
                meta["b"] = _slotpack.pack(obj, self.arena)
                break
            except _slotpack.Overflow as o:
                # Out of the slot before it goes; the trainer answers with a bigger pool.
                obj = copy.deepcopy(obj)
                HEADER.pack_into(self.arena.view, 0, task)
                self.slot.publish(nbytes=HEADER.size, meta={"k": "g", "w": self.worker_id, "need": o.needed})
                self.slot = self.arena = None
                self.begin(self._answer())
            except Exception as exc:
                if kind != "e":
                    raise
                # The worker's exception type cannot be pickled (a class local to a
                # function, say): the trainer gets its text as a RuntimeError.
                text = f"{getattr(obj, 'exc_msg', obj)}\n(its type cannot be sent to the trainer: {exc})"
                obj = _notorch.ExceptionWrapper((RuntimeError, RuntimeError(text), None),
                                                where=getattr(obj, "where", "in a DataLoader worker"))
        HEADER.pack_into(self.arena.view, 0, task)
        key = (kind, meta.get("b"))
        text = self.metas.get(key)
        if text is None:
            if len(self.metas) >= 64:
                self.metas.clear()
            text = self.metas[key] = json.dumps(meta, separators=(",", ":")).encode()
        self.slot._publish_text(self.arena.used, text)
        self.slot = self.arena = None

    def _answer(self) -> int:
        while True:
            gen = self.answers[self.worker_id]
            if gen >= 0:
                self.answers[self.worker_id] = -1
                return gen
            if self.done.is_set():
                raise _Done
            time.sleep(0.001)

    def close(self) -> None:
        for client, _ in self.pools.values():
            client.close()
        self.pools.clear()


class _Tasks:
    """The worker's end of its task pipe. Before it blocks on the pipe, it gives its CPU away
    a while (os.sched_yield) as long as a task may come soon: a worker asleep in read() costs
    the trainer a wake-up in each task's write, and where processes outnumber cores the
    woken worker often takes the trainer's CPU there and then. The yields follow how the
    waits end, as libshmbroker's waits for a slot do (client/fast.c): room for 2n + 8 after
    a task that came in n yields, half as many after one that had to be slept for, so a
    worker whose tasks come seldom (a slow trainer) soon blocks at once."""

    MAX, MIN = 256, 4

    def __init__(self, conn: Any):
        self.conn = conn
        self.poller = select.poll()
        self.poller.register(conn.fileno(), select.POLLIN)
        self.budget = 64

    def get(self) -> Any:
        """The next task (EOFError when the trainer is gone)."""
        poll = self.poller.poll
        if not poll(0):
            n, budget = 0, self.budget
            while n < budget and not poll(0):
                os.sched_yield()
                n += 1
            if n < budget:
                self.budget = min(max(budget, 2 * n + 8), self.MAX)
            else:
                self.budget = max(budget // 2, self.MIN)
        return pickle.loads(self.conn.recv_bytes())


class _WriteFetcher:
    """The batches of a map-style dataset with write_sample(i, out), written in place: each
    sample's arrays straight into its rows of the batch in the slot, so no sample is ever
    made anywhere else. ``out`` is shaped like dataset[i] (a number, an array, or a tuple,
    list or dict of them); the batch is what default_collate would make of the samples."""

    def __init__(self, dataset: Any, out: _Out):
        self.dataset, self.out, self.template = dataset, out, None

    def fetch(self, index) -> Any:
        first = None
        if self.template is None:
            # The shapes come from one sample, made by __getitem__: that sample is the batch's
            # first, so each sample is still made once (and random draws stay in step).
            first = self.dataset[index[0]]
            self.template = _template(first)
        kind, keys, shapes = self.template
        n = len(index)
        arrays = []
        for shape, dtype in shapes:
            shape = (n,) + shape
            count = int(np.prod(shape, dtype=np.int64))
            off = self.out.arena.alloc(count * dtype.itemsize)
            # A batch too big for the slot is written aside, and put() finds it a bigger one.
            arrays.append(np.empty(shape, dtype) if off is None else
                          np.frombuffer(self.out.arena.view, dtype, count, off).reshape(shape))
        for j, i in enumerate(index):
            rows = [a[j, ...] for a in arrays]      # [j, ...]: even a 0-d row is a writable view
            if j == 0 and first is not None:
                for row, leaf in zip(rows, _leaves(first)):
                    row[...] = leaf
                continue
            self.dataset.write_sample(int(i), rows[0] if kind == "array" else
                                      dict(zip(keys, rows)) if kind == "dict" else
                                      tuple(rows) if kind == "tuple" else rows)
        torch = sys.modules.get("torch")
        leaves = [torch.from_numpy(a) for a in arrays] if torch is not None else arrays
        if kind == "array":
            return leaves[0]
        if kind == "dict":
            return dict(zip(keys, leaves))
        return leaves       # default_collate makes a list of a tuple or a list


def _leaves(sample: Any) -> list:
    if isinstance(sample, dict):
        return list(sample.values())
    if isinstance(sample, (tuple, list)):
        return list(sample)
    return [sample]


def _template(sample: Any) -> tuple:
    """The structure of a sample for write_sample: ("array"|"tuple"|"list"|"dict", keys,
    [(shape, dtype)]) of numbers and numpy arrays, one level deep."""
    leaves = _leaves(sample)
    kind = "dict" if isinstance(sample, dict) else "tuple" if isinstance(sample, tuple) else \
        "list" if isinstance(sample, list) else "array"
    keys = list(sample.keys()) if kind == "dict" else None
    shapes = []
    for leaf in leaves:
        if not isinstance(leaf, (np.ndarray, np.generic, bool, int, float)):
            raise TypeError("write_sample: a sample must be a number or numpy array, or a tuple, list or dict "
                            f"of them; found {type(leaf).__name__}")
        a = np.asarray(leaf)
        if a.dtype.hasobject or a.dtype.kind in "SUV":
            raise TypeError(f"write_sample: arrays of {a.dtype} cannot be written in place")
        shapes.append((a.shape, a.dtype))
    return kind, keys, shapes


def _die_with_parent(trainer: int) -> None:
    """PR_SET_PDEATHSIG: the kernel kills this worker when its parent dies, even by SIGKILL.
    The parent is the trainer, but for the forkserver context (whose server goes when the
    trainer does); a trainer already gone by then ends the worker here, and one that goes
    later closes the task pipe, which ends it too."""
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    try:
        os.kill(trainer, 0)
    except ProcessLookupError:
        os._exit(1)


def _seed(base_seed: int, worker_id: int) -> int:
    """Seed python's, torch's and numpy's generators as torch's worker loop does: python and
    torch with base_seed + id, numpy with a state derived from both."""
    seed = base_seed + worker_id
    random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        from torch.utils.data._utils.worker import _generate_state
        np.random.seed(_generate_state(base_seed, worker_id))
    else:
        np.random.seed(np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    return seed


def _set_worker_info(info: dict) -> None:
    global _worker_info
    torch = sys.modules.get("torch")
    if torch is not None:
        from torch.utils.data._utils import worker as torch_worker
        _worker_info = torch_worker.WorkerInfo(**info)
        torch_worker._worker_info = _worker_info
    else:
        _worker_info = WorkerInfo(**info)


def _collate_in_slot(out: _Out) -> None:
    """Inside a worker torch's default_collate stacks a batch into a new shared storage
    (TypedStorage._new_shared): here that storage is made in the task's slot when the
    loader's own collation runs (_Out.collating), so the batch is built where the trainer
    will read it, and in the worker's own memory otherwise (the batch is copied into the
    slot anyway: torch's shared memory would only cost a file and a mapping)."""
    import torch
    plain = torch.storage.TypedStorage._new_shared

    def new_shared(self, size, *, device=None):
        if device is not None and torch.device(device).type != "cpu":
            return plain(self, size, device=device)
        storage = out.new_shared(size, self.dtype)
        return storage if storage is not None else torch.empty(size, dtype=self.dtype).storage()
    torch.storage.TypedStorage._new_shared = new_shared


def main(cfg: dict, dataset: Any, tasks: Any, done: Any, answers: Any, collate_fn: Any,
         base_seed: int, init_fn: Any, worker_id: int) -> None:
    _die_with_parent(cfg["parent"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the trainer's to handle
    if cfg["torch"]:
        import torch
        torch.set_num_threads(1)
    torch = sys.modules.get("torch")
    status = 0
    out = _Out(cfg, worker_id, answers, done)
    try:
        seed = _seed(base_seed, worker_id)
        _set_worker_info(dict(id=worker_id, num_workers=cfg["num_workers"], seed=seed, dataset=dataset))
        if torch is not None:
            _collate_in_slot(out)
            from torch.utils.data._utils.collate import default_collate
            if collate_fn is default_collate:
                collate_fn = out.collating(default_collate)
        wrapper = (sys.modules["torch.utils.data._utils.worker"].ExceptionWrapper if torch is not None
                   else _notorch.ExceptionWrapper)
        where = f"in DataLoader worker process {worker_id}"
        init_exception = None

        def fetcher_now():
            if cfg["write_sample"]:
                return _WriteFetcher(dataset, out)
            if torch is not None:
                from torch.utils.data.dataloader import _DatasetKind
                kind = _DatasetKind.Iterable if cfg["iterable"] else _DatasetKind.Map
                return _DatasetKind.create_fetcher(kind, dataset, cfg["auto_collation"], collate_fn,
                                                   cfg["drop_last"])
            return _notorch.create_fetcher(cfg["iterable"], dataset, cfg["auto_collation"], collate_fn,
                                           cfg["drop_last"])
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = fetcher_now()
        except Exception:
            init_exception = wrapper(where=where)
        iteration_end = False
        inbox = _Tasks(tasks)
        while True:
            try:
                r = inbox.get()
            except EOFError:
                break                       # the trainer is gone
            if isinstance(r, ResumeIteration):
                out.begin(r.gen)
                out.put("r", None)
                iteration_end = False
                fetcher = fetcher_now()
                continue
            if r is None or done.is_set():
                break
            if iteration_end:
                continue
            idx, index, gen = r
            out.begin(gen)
            if init_exception is not None:
                out.put("e", idx, init_exception)
                init_exception = None
                continue
            try:
                data = fetcher.fetch(index)
            except StopIteration:
                if not cfg["iterable"]:
                    out.put("e", idx, wrapper(where=where))
                    continue
                iteration_end = True
                out.put("s", idx)
                continue
            except Exception:
                out.put("e", idx, wrapper(where=where))
                continue
            try:
                out.put("d", idx, data)
            except (_Done, errors.BrokerError):
                raise
            except Exception:               # a batch that cannot be pickled
                out.put("e", idx, wrapper(where=where))
            del data
    except (_Done, errors.ConnectionLost):
        pass                                # the loader shut down
    except BaseException:
        import traceback
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

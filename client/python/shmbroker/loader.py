"""DataLoader: torch's DataLoader, with batches built by the workers straight into shared
memory and handed to the trainer without a copy.

The constructor is torch 1.13's (every argument with torch's meaning and defaults) plus
shmbroker's keywords. With torch importable the class is a torch.utils.data.DataLoader: its
samplers, collation, seeds and checks are torch's own, and its batches are what torch's
loader gives for the same arguments (tensors, lists of str, nested dicts and lists), the
tensors being views of the slot their batch was built in. Without torch it does the same with
numpy arrays (shmbroker._notorch).

How the trainer side works (the worker side: shmbroker._worker): as torch's multi-process
iterator, the trainer sends each task (a batch's indices) to a worker's queue, keeping
``prefetch_factor`` tasks per worker in flight, and hands the batches out in task order. The
batches come back through one pool of the daemon, made for this iterator alone (mode 0600),
with a slot for every task in flight, every batch the trainer may hold and each worker's one
slot taken ahead. A batch handed out holds its slot as long as anything made from it lives;
when the trainer holds ``batches_held`` batches already, the next one is copied out of its slot
instead, so memory stays bounded and no slot is ever reused under a live view. A batch bigger
than the slots makes the trainer create a pool of bigger slots (the next generation), which
takes every task from then on; the old one goes when nothing in it is in use.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import random
import signal
import time
import warnings
import weakref
from typing import Any

from . import _notorch, _pin, _private, _size, _slotpack, _worker, errors
from ._worker import WorkerInfo, get_worker_info
from .client import connect

try:
    import torch
    import torch.utils.data as _tud
    from torch.utils.data import dataloader as _tdl
except ImportError:         # numpy alone
    torch = _tud = _tdl = None

__all__ = ["DataLoader", "WorkerInfo", "default_collate", "get_worker_info"]

#: What the loader collates with by default: torch's default_collate, or its numpy twin.
default_collate = _tud.default_collate if torch is not None else _notorch.default_collate

SLOT_SIZE = 1 << 20         # the first slots' size when none is given; they grow as needed
STATUS_INTERVAL = 0.5       # how often a waiting trainer looks whether its workers live
MAP, ITERABLE = 0, 1        # torch's _DatasetKind


class _Generation:
    """One pool of the iterator: its own connection, so that closing it gives the pool up."""

    def __init__(self, client, pool):
        self.client, self.pool = client, pool
        self.tasks = 0          # tasks sent to it and not received
        self.kept = 0           # its batches received and not given back

    def close(self) -> None:
        self.client.close()


class _Raise:
    """A worker's exception, to raise when its batch's turn comes."""

    def __init__(self, wrapper):
        self.wrapper = wrapper


class _TaskPipe:
    """The trainer's end of a worker's task pipe, with the put() of torch's index queues."""

    def __init__(self, conn):
        self.conn = conn

    def put(self, task: Any) -> None:
        try:
            self.conn.send_bytes(pickle.dumps(task, pickle.HIGHEST_PROTOCOL))
        except BrokenPipeError:
            pass        # the worker is dead: the wait for its batch reports it, with its signal

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class _Lease:
    """Lives as long as anything made from one batch: its slot goes back when it goes."""

    __slots__ = ("__weakref__",)


class _PlainBaseIter:
    """torch's _BaseDataLoaderIter, for a process without torch."""

    def __init__(self, loader):
        self._dataset = loader.dataset
        self._dataset_kind = loader._dataset_kind
        self._IterableDataset_len_called = loader._IterableDataset_len_called
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._num_workers = loader.num_workers
        self._prefetch_factor = loader.prefetch_factor
        self._pin_memory = False            # no CUDA without torch
        self._timeout = loader.timeout
        self._collate_fn = loader.collate_fn
        self._sampler_iter = iter(self._index_sampler)
        gen = loader.generator
        self._base_seed = int(gen.integers(0, 2**63)) if gen is not None else random.getrandbits(63)
        self._persistent_workers = loader.persistent_workers
        self._num_yielded = 0

    def __iter__(self):
        return self

    def _reset(self, loader, first_iter=False):
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._IterableDataset_len_called = loader._IterableDataset_len_called

    def _next_index(self):
        return next(self._sampler_iter)

    def __next__(self):
        data = self._next_data()
        self._num_yielded += 1
        return data

    def __len__(self):
        return len(self._index_sampler)


class _PlainSingleIter(_PlainBaseIter):
    """num_workers=0 without torch: the batches made in the trainer, as torch's loader does."""

    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = _notorch.create_fetcher(self._dataset_kind == ITERABLE, self._dataset,
                                                self._auto_collation, self._collate_fn, self._drop_last)

    def _next_data(self):
        return self._fetcher.fetch(self._next_index())


_BaseIter = _tdl._BaseDataLoaderIter if torch is not None else _PlainBaseIter
_serial = itertools.count()


class _ShmIter(_BaseIter):
    """The multi-process iterator (torch's _MultiProcessingDataLoaderIter, whose task
    bookkeeping this follows step by step), its batches coming through shared memory."""

    _shutdown = True                        # until there is something to shut down

    def __init__(self, loader):
        super().__init__(loader)
        self._loader = weakref.ref(loader)
        self._workers: list = []
        self._index_queues: list = []
        self._gens: dict = {}
        ctx = loader.multiprocessing_context or multiprocessing
        # The daemon named, else the system's, else one started for this process tree.
        self._socket = _private.loader_socket(loader.socket)
        self._pinner = _pin.Pinner.for_loader(loader.pin_memory, loader.pin_memory_device) if torch else None
        self._name = f"loader-{os.getpid()}-{next(_serial)}"
        self._held_max = loader.batches_held
        # Every task in flight, every batch the trainer may hold and one being handed out,
        # the one returned batch that may wait for the next consume (_give_back), and the
        # slot each worker may take ahead (a pipelined publish's).
        self._ahead = self._prefetch_factor
        self._slots_for = lambda size: self._num_workers * (self._ahead + (size < _worker.PIPELINED_MAX)) \
            + self._held_max + 2
        self._newest = -1
        self._task_gen: dict = {}
        self._returns: list = []            # (generation, batch) whose last view went
        self._handed = self._returned = 0
        self._grow(loader._slot_size)
        self._done = ctx.Event()
        self._answers = ctx.RawArray("q", [-1] * self._num_workers)
        cfg = dict(parent=os.getpid(), socket=self._socket, pool=self._name, num_workers=self._num_workers,
                   torch=torch is not None, iterable=self._dataset_kind == ITERABLE,
                   auto_collation=self._auto_collation, drop_last=self._drop_last,
                   write_sample=loader._write_sample)
        self._shutdown = False
        for w in range(self._num_workers):
            # A task is a few numbers: a pipe of pickles, written whole (no feeder thread).
            theirs, ours = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker.main, name=f"shmbroker-loader-{w}", daemon=True,
                            args=(cfg, self._dataset, theirs, self._done, self._answers, self._collate_fn,
                                  self._base_seed, loader.worker_init_fn, w))
            p.start()
            theirs.close()
            self._index_queues.append(_TaskPipe(ours))
            self._workers.append(p)
        self._reset(loader, first_iter=True)

    # -- pools ------------------------------------------------------------------------------
    def _grow(self, slot_size: int) -> None:
        """Make the next generation's pool, of ``slot_size``-byte slots: tasks go there now."""
        gen = self._newest + 1
        client = connect("consumer", self._socket, name="loader-trainer")
        try:
            pool = client.create(f"{self._name}-g{gen}", slot_size, self._slots_for(slot_size))
        except BaseException:
            client.close()
            raise
        self._gens[gen] = _Generation(client, pool)
        if self._pinner is not None:
            self._pinner.segment(pool._memory())
        self._newest = gen
        loader = self._loader()
        if loader is not None:
            loader._slot_size = max(loader._slot_size, slot_size)    # where the next epoch starts

    def _retire(self) -> None:
        """Close the generations older than the newest that nothing uses any more."""
        for gen in [g for g, x in self._gens.items() if g < self._newest and not x.tasks and not x.kept]:
            self._gens.pop(gen).close()

    def _give_back(self, gen: int) -> Any:
        """Give back the batches whose last view went: one of ``gen`` is returned, for the
        next consume of ``gen`` to release in the same round trip; one more of ``gen`` may
        wait for the consume after (a batch dropped while the next is asked for arrives just
        after it); the others go now."""
        pending = []
        while self._returns:            # finalizers append, in any thread: only pop here
            pending.append(self._returns.pop(0))
        # With its slots registered with CUDA, a batch goes back only once the copies
        # queued from it are done (_pin.ReleaseFence).
        fenced = self._pinner is not None and self._pinner.plan.register
        if fenced:
            self._pinner.poll()
        keep = later = None
        for g, batch in pending:
            x = self._gens.get(g)
            if x is not None and not fenced and g == gen and later is None and keep is not None:
                later = (g, batch)
                continue
            self._returned += 1
            if x is None:
                continue
            x.kept -= 1
            if fenced:
                self._pinner.release(batch.release)
            elif g == gen and keep is None:
                keep = batch
            elif not x.pool.closed:
                batch.release()
        if later is not None:
            self._returns.insert(0, later)
        self._retire()
        return keep

    def _receive(self, gen: int, timeout: float) -> tuple:
        """The next message of generation ``gen``: (kind, task, data); Timeout after ``timeout``."""
        x = self._gens[gen]
        prev = self._give_back(gen)
        batch = x.pool.release_get(prev, timeout=timeout)
        meta = batch.meta
        kind, idx = meta["k"], _worker.HEADER.unpack_from(batch.data)[0]
        if idx < 0:
            idx = None
        if kind == "g":
            batch.release()
            return kind, idx, (meta["w"], meta["need"])
        if kind == "d":
            x.kept += 1
            return kind, idx, (gen, batch)
        try:
            if kind == "e":
                return kind, idx, _Raise(_slotpack.unpack(batch.keep(None), meta["b"], copy=True))
            return kind, idx, None
        finally:
            batch.release()

    def _answer_growth(self, idx: int, worker: int, need: int) -> None:
        """Task ``idx`` needs slots of ``need`` bytes: name its worker a pool that has them."""
        if self._gens[self._newest].pool.slot_size < need:
            self._grow(max(need + need // 4, 2 * self._gens[self._newest].pool.slot_size))
        old = self._task_gen.get(idx)
        if old is not None:
            self._gens[old].tasks -= 1
            self._gens[self._newest].tasks += 1
            self._task_gen[idx] = self._newest
        self._answers[worker] = self._newest

    def _get_message(self, gen: int) -> tuple:
        """The next message of ``gen``, waiting as torch's loader waits: no longer than
        ``timeout``, and raising when a worker died. A growth request is answered here (and
        returned: the task it names has moved to another generation)."""
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = STATUS_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")
            try:
                kind, idx, data = self._receive(gen, wait)
            except errors.Timeout:
                self._check_workers()
                continue
            if kind == "g":
                self._answer_growth(idx, *data)
            return kind, idx, data

    def _check_workers(self) -> None:
        failed = [(w, p) for w, p in enumerate(self._workers)
                  if self._workers_status[w] and not p.is_alive()]
        if failed:
            how = ", ".join(f"pid {p.pid} " + (f"killed by signal {signal.Signals(-p.exitcode).name}"
                                               if p.exitcode < 0 else f"exit status {p.exitcode}")
                            for _, p in failed)
            pids = ", ".join(str(p.pid) for _, p in failed)
            raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly ({how})")

    # -- torch's task bookkeeping -------------------------------------------------------------
    def _reset(self, loader, first_iter=False):
        super()._reset(loader, first_iter)
        self._stashed = [info[1] for info in getattr(self, "_task_info", {}).values() if len(info) == 2]
        self._send_idx = 0
        self._rcvd_idx = 0
        self._task_info: dict = {}
        self._tasks_outstanding = 0
        self._workers_status = [True] * self._num_workers
        self._worker_queue_idx_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:
            try:
                self._resume()
            except BaseException:
                self._broken()
                raise
        for _ in range(self._ahead * self._num_workers):
            self._try_put_index()

    def _resume(self) -> None:
        """A new epoch of persistent workers: whatever the last epoch left in flight is thrown
        away; each worker answers its resume after its last task of the epoch, in the newest
        generation."""
        for info in self._stashed:
            self._discard(info)
        for gen in self._gens.values():
            gen.tasks = 0
        self._task_gen.clear()
        for w, q in enumerate(self._index_queues):
            # A worker may wait for the answer to a growth of the last epoch, asked in a
            # pool no longer read: it is this.
            self._answers[w] = self._newest
            q.put(_worker.ResumeIteration(self._newest))
        acks = self._num_workers
        while acks > 0:
            kind, _, data = self._get_message(self._newest)
            acks -= kind == "r"
            self._discard(data)
        for w in range(self._num_workers):
            self._answers[w] = -1
        self._retire()

    def _try_put_index(self):
        assert self._tasks_outstanding < self._ahead * self._num_workers
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):
            worker = next(self._worker_queue_idx_cycle)
            if self._workers_status[worker]:
                break
        else:
            return
        self._index_queues[worker].put((self._send_idx, index, self._newest))
        self._task_info[self._send_idx] = (worker,)
        self._task_gen[self._send_idx] = self._newest
        self._gens[self._newest].tasks += 1
        self._tasks_outstanding += 1
        self._send_idx += 1

    def _next_data(self):
        while True:
            while self._rcvd_idx < self._send_idx:
                info = self._task_info[self._rcvd_idx]
                if len(info) == 2 or self._workers_status[info[0]]:
                    break
                del self._task_info[self._rcvd_idx]
                self._drop_task(self._rcvd_idx)
                self._rcvd_idx += 1
            else:
                if not self._persistent_workers:
                    self._shutdown_workers()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:
                return self._process_data(self._task_info.pop(self._rcvd_idx)[1])
            assert not self._shutdown and self._tasks_outstanding > 0
            kind, idx, data = self._get_message(self._task_gen[self._rcvd_idx])
            if kind == "g":
                continue
            self._tasks_outstanding -= 1
            self._drop_task(idx)
            if kind == "s":
                worker = self._task_info[idx][0]
                if self._persistent_workers:
                    self._workers_status[worker] = False
                else:
                    self._mark_worker_as_unavailable(worker)
                self._try_put_index()
                continue
            if idx != self._rcvd_idx:
                self._task_info[idx] += (data,)
            else:
                del self._task_info[idx]
                return self._process_data(data)

    def _discard(self, data: Any) -> None:
        """A message never handed out: its slot goes back."""
        if isinstance(data, tuple):
            self._returns.append(data)
            self._handed += 1

    def _drop_task(self, idx: int) -> None:
        gen = self._task_gen.pop(idx, None)
        if gen is not None:
            self._gens[gen].tasks -= 1

    def _process_data(self, data):
        self._rcvd_idx += 1
        self._try_put_index()
        if isinstance(data, _Raise):
            return data
        return self._hand_out(*data)

    def _mark_worker_as_unavailable(self, worker: int, shutdown: bool = False) -> None:
        self._index_queues[worker].put(None)
        self._workers_status[worker] = False

    # -- handing batches out --------------------------------------------------------------------
    def _hand_out(self, gen: int, batch) -> Any:
        """The batch as the trainer gets it: views of its slot, which goes back when the last
        of them goes; or, when the trainer holds ``batches_held`` batches already, a copy,
        its slot given back at once."""
        meta = batch.meta
        held = self._handed - self._returned - len(self._returns)
        self._handed += 1
        if held >= self._held_max:
            data = _slotpack.unpack(batch.keep(None), meta["b"], copy=True)
            self._returns.append((gen, batch))
        else:
            lease = _Lease()
            data = _slotpack.unpack(batch.keep(lease), meta["b"])
            # Only appends: it may run in any thread, inside any call.
            weakref.finalize(lease, self._returns.append, (gen, batch))
        return self._pinner(data) if self._pinner is not None else data

    def __next__(self):
        try:
            # torch's __next__ marks each batch for its profiler, at a cost: only when it runs.
            if torch is not None and not torch.autograd._profiler_enabled() and self._dataset_kind == MAP:
                data = self._next_data()
                self._num_yielded += 1
            else:
                data = super().__next__()
        except StopIteration:
            raise
        except BaseException:
            self._broken()
            raise
        if isinstance(data, _Raise):
            data.wrapper.reraise()
        return data

    def _broken(self) -> None:
        """A dead or hung worker, an interrupted wait: this iterator is done for, and the
        next epoch starts with fresh workers (a persistent iterator is forgotten)."""
        self._shutdown_workers(grace=0.0)
        loader = self._loader()
        if loader is not None and getattr(loader, "_iterator", None) is self:
            loader._iterator = None

    def _shutdown_workers(self, grace: float = 1.0) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._done.set()
        for q in self._index_queues:
            try:
                q.put(None)
            except OSError:
                pass
        # A worker exits at once (waiting for a slot, it looks at the done event every
        # POLL seconds); one busy in the dataset gets ``grace`` seconds before it is killed.
        deadline = time.monotonic() + grace
        for p in self._workers:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self._workers:
            if p.is_alive():
                p.kill()
                p.join()
        for q in self._index_queues:
            q.close()
        # No producer is left: the pools go with these connections (batches still held
        # stay readable, their memory mapped until their last view goes).
        if self._pinner is not None:
            self._pinner.drain()
        for gen in self._gens.values():
            gen.close()
        self._gens.clear()

    def __del__(self):
        self._shutdown_workers()


def _init_args(loader, socket, slot_size, batches_held, write_sample, collate_fn, dataset):
    if batches_held < 1:
        raise ValueError("batches_held must be at least 1")
    loader.socket = socket
    loader.batches_held = batches_held
    loader._slot_size = _size.size(slot_size, "slot_size") if slot_size else SLOT_SIZE
    # A map-style dataset that can write its samples in place, with the default collation:
    # each sample is written straight into its rows of the batch.
    if write_sample:
        if not callable(getattr(dataset, "write_sample", None)):
            raise ValueError("write_sample=True needs a dataset with a write_sample(i, out) method")
        if collate_fn is not None or not loader._auto_collation or loader._dataset_kind != MAP:
            raise ValueError("write_sample=True needs a map-style dataset, a batch size and no collate_fn")
    loader._write_sample = bool(write_sample)


_SHMBROKER_DOC = """
    shmbroker's own keywords:
      socket        the daemon's socket (default: $SHMBROKER_SOCKET, else the system's).
      slot_size     the first slots' size, in bytes or with a unit ("4MiB"; default 1 MiB);
                    slots grow to fit a bigger batch.
      batches_held  how many batches the trainer may hold at once in shared memory
                    (default 4); a batch handed out while it holds that many is a copy.
      write_sample  True: the dataset's write_sample(i, out) writes each sample in place
                    (a map-style dataset, no collate_fn): ``out`` is shaped like dataset[i]
                    (a number or numpy array, or a tuple, list or dict of them), made of
                    numpy views of the sample's rows of the batch.
"""

class _Closing:
    """close() and ``with`` for both classes of DataLoader."""

    def close(self) -> None:
        """Stop persistent workers now (they stop with the loader anyway)."""
        it, self._iterator = self._iterator, None
        if it is not None:
            it._shutdown_workers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if torch is not None:
    class DataLoader(_Closing, _tud.DataLoader):
        __doc__ = (_tud.DataLoader.__doc__ or "") + _SHMBROKER_DOC

        def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                     num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                     worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                     prefetch_factor=2, persistent_workers=False, pin_memory_device="",
                     socket=None, slot_size=None, batches_held=4, write_sample=False):
            super().__init__(dataset, batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn,
                             pin_memory, drop_last, timeout, worker_init_fn, multiprocessing_context, generator,
                             prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
                             pin_memory_device=pin_memory_device)
            _init_args(self, socket, slot_size, batches_held, write_sample, collate_fn, dataset)

        def _get_iterator(self):
            if self.num_workers == 0:
                return super()._get_iterator()
            self.check_worker_number_rationality()
            return _ShmIter(self)

else:
    class DataLoader(_Closing):       # type: ignore[no-redef]
        """torch.utils.data.DataLoader's constructor and behaviour, giving numpy arrays."""

        __doc__ = (__doc__ or "") + _SHMBROKER_DOC

        def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                     num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                     worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                     prefetch_factor=2, persistent_workers=False, pin_memory_device="",
                     socket=None, slot_size=None, batches_held=4, write_sample=False):
            if num_workers < 0:
                raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                                 "multiprocessing.")
            if timeout < 0:
                raise ValueError("timeout option should be non-negative")
            if num_workers == 0 and prefetch_factor != 2:
                raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                                 "let num_workers > 0 to enable multiprocessing.")
            if prefetch_factor <= 0:
                raise ValueError("prefetch_factor option should be positive")
            if persistent_workers and num_workers == 0:
                raise ValueError("persistent_workers option needs num_workers > 0")
            self.dataset, self.num_workers, self.prefetch_factor = dataset, num_workers, prefetch_factor
            self.pin_memory, self.pin_memory_device, self.timeout = pin_memory, pin_memory_device, timeout
            self.worker_init_fn, self.persistent_workers, self.generator = worker_init_fn, persistent_workers, generator
            if multiprocessing_context is not None:
                if num_workers == 0:
                    raise ValueError("multiprocessing_context can only be used with multi-process loading "
                                     f"(num_workers > 0), but got num_workers={num_workers}")
                if isinstance(multiprocessing_context, str):
                    multiprocessing_context = multiprocessing.get_context(multiprocessing_context)
            self.multiprocessing_context = multiprocessing_context
            if _notorch.is_iterable_dataset(dataset):
                self._dataset_kind = ITERABLE
                if shuffle not in (False, None):
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                                     f"but got shuffle={shuffle}")
                if sampler is not None:
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, "
                                     f"but got sampler={sampler}")
                if batch_sampler is not None:
                    raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler "
                                     f"option, but got batch_sampler={batch_sampler}")
            else:
                self._dataset_kind = MAP
            if sampler is not None and shuffle:
                raise ValueError("sampler option is mutually exclusive with shuffle")
            if batch_sampler is not None:
                if batch_size != 1 or shuffle or sampler is not None or drop_last:
                    raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                     "sampler, and drop_last")
                batch_size, drop_last = None, False
            elif batch_size is None and drop_last:
                raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive "
                                 "with drop_last")
            if sampler is None:
                if self._dataset_kind == ITERABLE:
                    sampler = _notorch.InfiniteConstantSampler()
                elif shuffle:
                    sampler = _notorch.RandomSampler(dataset, generator=generator)
                else:
                    sampler = _notorch.SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = _notorch.BatchSampler(sampler, batch_size, drop_last)
            self.batch_size, self.drop_last = batch_size, drop_last
            self.sampler, self.batch_sampler = sampler, batch_sampler
            if collate_fn is None:
                collate_fn = _notorch.default_collate if self._auto_collation else _notorch.default_convert
            self.collate_fn = collate_fn
            self._IterableDataset_len_called = None
            self._iterator = None
            _init_args(self, socket, slot_size, batches_held, write_sample, None if collate_fn in (
                _notorch.default_collate, _notorch.default_convert) else collate_fn, dataset)

        @property
        def _auto_collation(self):
            return self.batch_sampler is not None

        @property
        def _index_sampler(self):
            return self.batch_sampler if self._auto_collation else self.sampler

        def _get_iterator(self):
            return _PlainSingleIter(self) if self.num_workers == 0 else _ShmIter(self)

        def __iter__(self):
            if self.persistent_workers and self.num_workers > 0:
                if self._iterator is None:
                    self._iterator = self._get_iterator()
                else:
                    self._iterator._reset(self)
                return self._iterator
            return self._get_iterator()

        def __len__(self):
            if self._dataset_kind == ITERABLE:
                length = self._IterableDataset_len_called = len(self.dataset)
                if self.batch_size is not None:
                    from math import ceil
                    length = length // self.batch_size if self.drop_last else ceil(length / self.batch_size)
                return length
            return len(self._index_sampler)



# torch warns of every tensor made over a read-only mapping; once is enough.
warnings.filterwarnings("once", message="The given buffer is not writable")

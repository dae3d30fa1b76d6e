"""What torch.utils.data provides, for a process without torch: the DataLoader's samplers,
fetchers, collation (numpy arrays), exception wrapper and base iterator, each doing what
torch's does (torch 1.13: torch/utils/data/), so that the DataLoader behaves the same with or
without torch, but for giving numpy arrays where torch gives tensors. With torch importable
the DataLoader uses torch's own classes instead of these."""
from __future__ import annotations

import collections.abc
import random
import sys
import traceback
from typing import Any, Iterator, Sequence

import numpy as np


class Dataset:
    """Map-style: ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError


class IterableDataset:
    """Iterable-style: ``__iter__``; in workers, each worker iterates its own copy."""

    def __iter__(self):
        raise NotImplementedError


def is_iterable_dataset(dataset: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dataset, torch.utils.data.IterableDataset):
        return True
    return isinstance(dataset, IterableDataset)


# -- samplers ------------------------------------------------------------------------------

class SequentialSampler:
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler:
    """A new permutation each epoch, drawn from ``generator`` (a numpy Generator; by
    default one seeded from python's random module, as torch seeds its own from torch's)."""

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None, generator=None):
        self.data_source, self.replacement, self._num_samples = data_source, replacement, num_samples
        self.generator = generator
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        rng = self.generator if self.generator is not None else np.random.default_rng(random.getrandbits(63))
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist())
        out: list = []
        while len(out) < self.num_samples:
            out.extend(rng.permutation(n).tolist())
        return iter(out[:self.num_samples])

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler:
    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self) -> Iterator[list]:
        batch: list = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size


class InfiniteConstantSampler:
    """What an iterable dataset's tasks carry: nothing (the worker iterates on its own)."""

    def __iter__(self):
        while True:
            yield None


# -- collation -------------------------------------------------------------------------------

def default_convert(data: Any) -> Any:
    """A sample left as it is (batch_size=None), as torch's default_convert leaves non-numpy
    values: numpy arrays stay numpy arrays here (torch makes them tensors)."""
    return data


def default_collate(batch: Sequence[Any]) -> Any:
    """Samples stacked along a new first axis, as torch's default_collate does but into numpy
    arrays: arrays and numbers become arrays, str stay a list, mappings and sequences are
    collated member by member (a tuple gives a list, as torch's does)."""
    elem = batch[0]
    if isinstance(elem, np.ndarray):
        if elem.dtype.hasobject or elem.dtype.kind in "SUO":
            raise TypeError(f"default_collate: batch must contain numbers or arrays of numbers; found {elem.dtype}")
        return np.stack(batch)
    if isinstance(elem, (np.generic, bool, int, float)):
        return np.asarray(batch)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        try:
            return type(elem)({k: default_collate([d[k] for d in batch]) for k in elem})
        except TypeError:
            return {k: default_collate([d[k] for d in batch]) for k in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(e) != len(elem) for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))
        if isinstance(elem, tuple):
            return [default_collate(s) for s in transposed]
        try:
            return type(elem)([default_collate(s) for s in transposed])
        except TypeError:
            return [default_collate(s) for s in transposed]
    raise TypeError(f"default_collate: batch must contain arrays, numbers, dicts or lists; found {type(elem)}")


# -- fetching --------------------------------------------------------------------------------

class MapFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool):
        self.dataset, self.auto_collation, self.collate_fn, self.drop_last = dataset, auto_collation, collate_fn, drop_last

    def fetch(self, index):
        if self.auto_collation:
            return self.collate_fn([self.dataset[i] for i in index])
        return self.collate_fn(self.dataset[index])


class IterableFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool):
        self.dataset_iter = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if self.auto_collation:
            data = []
            for _ in index:
                try:
                    data.append(next(self.dataset_iter))
                except StopIteration:
                    self.ended = True
                    break
            if not data or (self.drop_last and len(data) < len(index)):
                raise StopIteration
            return self.collate_fn(data)
        return self.collate_fn(next(self.dataset_iter))


def create_fetcher(iterable: bool, dataset, auto_collation: bool, collate_fn, drop_last: bool):
    return (IterableFetcher if iterable else MapFetcher)(dataset, auto_collation, collate_fn, drop_last)


# -- errors ------------------------------------------------------------------------------------

class KeyErrorMessage(str):
    """A KeyError shows repr() of its argument; this message shows itself (as torch's)."""

    def __repr__(self):
        return str(self)


class ExceptionWrapper:
    """An exception of a worker, carried to the trainer and raised there with its type and
    the worker's traceback in its message, as torch's ExceptionWrapper does."""

    def __init__(self, exc_info=None, where: str = "in background"):
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type == KeyError:
            msg = KeyErrorMessage(msg)
        elif getattr(self.exc_type, "message", None):
            raise self.exc_type(message=msg)
        try:
            exception = self.exc_type(msg)
        except TypeError:
            raise RuntimeError(msg) from None
        raise exception

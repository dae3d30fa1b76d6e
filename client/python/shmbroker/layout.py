"""The array layout format: how a batch's arrays are placed in a slot and described in its meta.

Every array starts at an offset of the slot that is a multiple of ALIGN. The producer records
them in the batch's meta under LAYOUT_KEY as ``{"arrays": [{"name", "dtype", "shape",
"offset"}, ...]}``, with the dtype as numpy's descr (``np.lib.format``, the .npy header's form,
so structured dtypes round-trip through JSON); the consumer rebuilds the arrays from that
record alone. Both ends of the format live here, and nothing else in the package spells it.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Iterable, Mapping

import numpy as np

ALIGN = 64                 # every array in a slot starts on a 64-byte boundary
LAYOUT_KEY = "__shmbroker__"


def align(n: int) -> int:
    """The first offset at or after ``n`` where an array may start."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


def descr(dtype: np.dtype) -> Any:
    """The JSON form of ``dtype``; TypeError for a dtype that cannot live in shared memory."""
    if dtype.hasobject:
        raise TypeError(f"dtype {dtype} holds Python objects, which cannot live in shared memory")
    return np.lib.format.dtype_to_descr(dtype)


def dtype(d: Any) -> np.dtype:
    """The dtype of a descr read back from JSON."""
    return _dtype_cached(json.dumps(d))


@functools.lru_cache(maxsize=256)
def _dtype_cached(descr_json: str) -> np.dtype:
    d = json.loads(descr_json)

    # JSON has no tuples: a structured descr comes back as lists, which numpy reads otherwise.
    def fix(d):
        if isinstance(d, str):
            return d
        return [tuple([f[0], fix(f[1])] + ([tuple(f[2])] if len(f) > 2 else [])) for f in d]
    return np.lib.format.descr_to_dtype(fix(d))


def packed_size(arrays: Iterable[Any]) -> int:
    """The bytes a slot needs for ``arrays`` placed one after the other (at least 1)."""
    end = 0
    for a in arrays:
        end = align(end) + np.asarray(a).nbytes
    return max(end, 1)


def place(arrays: Mapping[Any, np.ndarray], capacity: int, offset_in_slot: Callable[[np.ndarray], "int | None"],
          write: Callable[[int, np.ndarray], None]) -> tuple[dict, int]:
    """Place a batch's arrays in a slot of ``capacity`` bytes: an array that already lies in the
    slot (``offset_in_slot`` gives its offset, else None) stays where it is, the others are
    written (``write(offset, array)``) one after the other behind them. Returns the record for
    the meta and the bytes used. Refuses object dtypes (TypeError) before anything is written,
    and a batch that does not fit (ValueError)."""
    for a in arrays.values():
        descr(a.dtype)
    placed, end, used, record = {}, 0, 0, []
    for name, a in arrays.items():
        off = offset_in_slot(a)
        if off is not None:
            placed[name] = off
            end = max(end, off + a.nbytes)
    for name, a in arrays.items():
        off = placed.get(name)
        if off is None:
            off = align(end)
            if off + a.nbytes > capacity:
                raise ValueError(f"the batch needs {off + a.nbytes} bytes; the slot has {capacity}")
            write(off, a)
            end = off + a.nbytes
        used = max(used, off + a.nbytes)
        record.append({"name": name, "dtype": descr(a.dtype), "shape": list(a.shape), "offset": off})
    return {"arrays": record}, used


def arrays(record: dict, array_at: Callable[[int, list, np.dtype], np.ndarray]) -> dict:
    """The arrays a record describes, by name: ``array_at(offset, shape, dtype)`` makes each."""
    return {a["name"]: array_at(a["offset"], a["shape"], dtype(a["dtype"])) for a in record["arrays"]}

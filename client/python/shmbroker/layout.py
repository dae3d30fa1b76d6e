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


@functools.lru_cache(maxsize=256)
def check(dtype: np.dtype) -> None:
    """descr()'s refusal alone, once per dtype: a slot's views are made batch after batch."""
    descr(dtype)


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


# --- per-batch costs of the steady state ------------------------------------------------------
# A loader publishes batch after batch of the same shapes: the same meta text, over and over.
# Both ends keep what they made of the last texts they saw, so that a batch costs a dict
# lookup instead of a JSON encoding or parse; each cache is bounded, and cleared when full.
CACHE_MAX = 256
_encoded: dict = {}
_decoded: dict = {}


def single_meta(dt: np.dtype, shape: tuple, offset: int) -> bytes:
    """The meta text of a batch that is one unnamed array, already in its slot at ``offset``,
    with no meta of the producer's own (what a loader publishes batch after batch)."""
    key = (dt, shape, offset)
    text = _encoded.get(key)
    if text is None:
        record = {"arrays": [{"name": None, "dtype": descr(dt), "shape": list(shape), "offset": offset}]}
        if len(_encoded) >= CACHE_MAX:
            _encoded.clear()
        text = _encoded[key] = json.dumps({LAYOUT_KEY: record}, separators=(",", ":")).encode()
    return text


def decode_meta(text: bytes) -> tuple:
    """A batch's meta text as (its layout record's arrays as (name, offset, shape, dtype), or
    None; a new dict of the producer's own meta)."""
    hit = _decoded.get(text)
    if hit is None:
        meta = json.loads(text)
        record = meta.pop(LAYOUT_KEY, None)
        parsed = None
        if record:
            parsed = tuple((a["name"], a["offset"], tuple(a["shape"]), dtype(a["dtype"])) for a in record["arrays"])
        if len(_decoded) >= CACHE_MAX:
            _decoded.clear()
        hit = _decoded[text] = (parsed, meta)
    parsed, meta = hit
    return parsed, (dict(meta) if meta else {})


def arrays_of(parsed: tuple, array_at: Callable[[int, tuple, np.dtype], np.ndarray]) -> dict:
    """The arrays of a decoded record (decode_meta()), by name: ``array_at(offset, shape, dtype)``."""
    return {name: array_at(offset, shape, dt) for name, offset, shape, dt in parsed}


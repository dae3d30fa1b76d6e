"""A DataLoader batch in a slot: any Python structure, its arrays and tensors in place.

A worker packs what its collate function returned (tensors, numpy arrays, lists of str,
nested dicts and tuples, custom classes) into the slot it acquired: every CPU tensor and
numeric numpy array is laid out in the slot (where it already lies, as default_collate's
output does in a worker, it is not copied at all), and the rest is pickled, with each array
replaced by a reference to its place, after them. The trainer unpickles that structure with
each reference made a view of the slot again: the same types, dtypes, shapes and values,
with no copy. Only the worker's own trainer reads the pickle (the pool is its alone, 0600).
"""
from __future__ import annotations

import ctypes
import io
import pickle
import sys
from typing import Any

import numpy as np

ALIGN = 64          # every array starts on a cache line


def _torch():
    return sys.modules.get("torch")


class Overflow(Exception):
    """The batch does not fit in the slot: ``needed`` bytes would."""

    def __init__(self, needed: int):
        super().__init__(f"{needed} bytes needed")
        self.needed = needed


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def address_of(view: memoryview) -> int:
    """Where a writable memoryview's memory starts."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


class SlotArena:
    """A slot's bytes as a bump allocator: what a worker lays out in it, in order. ``known``
    holds the references of tensors made over it by their maker, which knew them (see
    remember()): pack() then need not ask torch where they lie."""

    def __init__(self, view: memoryview, addr: int | None = None):
        self.view = view
        self.addr = address_of(view) if addr is None else addr
        self.size = len(view)
        self.used = 0
        self.known: dict = {}

    def remember(self, t: Any, off: int, shape: tuple) -> None:
        """``t`` is a C-contiguous tensor of ``shape`` made over this arena at ``off``
        (torch.from_numpy() of an array made there): its reference, as persistent_id()
        would find it. The same few, batch after batch: made once each."""
        key = (t.dtype, shape, off)
        pid = _contiguous.get(key)
        if pid is None:
            stride, step, count = [], 1, 1
            for n in reversed(shape):
                stride.append(step)
                step *= max(n, 1)
                count *= n
            if len(_contiguous) >= 256:
                _contiguous.clear()
            pid = _contiguous[key] = (f"t {_torch_dtype_name(t.dtype)} {off} {count} 0 {_ints(shape)} "
                                      f"{_ints(reversed(stride))}" if count else "")
        self.known[id(t)] = (t, pid)

    def alloc(self, nbytes: int) -> int | None:
        """The offset of ``nbytes`` new bytes, or None when they do not fit."""
        start = _align(self.used)
        if start + nbytes > self.size:
            return None
        self.used = start + nbytes
        return start

    def offset_of(self, addr: int, nbytes: int) -> int | None:
        """The offset of [addr, addr + nbytes) when it lies in the slot."""
        if self.addr <= addr and addr + nbytes <= self.addr + self.size:
            return addr - self.addr
        return None


def _numpy_ok(a: Any) -> bool:
    return type(a) is np.ndarray and not a.dtype.hasobject and a.dtype.fields is None


def _tensor_ok(t: Any) -> bool:
    torch = _torch()
    return (torch is not None and type(t) is torch.Tensor and t.layout == torch.strided
            and t.device.type == "cpu" and not t.requires_grad and not t.is_quantized)


def _torch_dtype_name(dtype) -> str:
    return str(dtype).rpartition(".")[2]


_contiguous: dict = {}      # (torch dtype, shape, offset) -> SlotArena.remember()'s reference

# Objects that are never arrays: the pickler's own business, with no look at them here.
_PLAIN = frozenset({str, int, float, bool, type(None), tuple, list, dict, bytes})


def _ints(xs) -> str:
    return ",".join(map(str, xs))


def _shape(text: str) -> tuple:
    return tuple(map(int, text.split(","))) if text else ()


class _Packer(pickle.Pickler):
    def __init__(self, file, arena: SlotArena | None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arena = arena
        self.needed = 0         # bytes of every array, when measuring (no arena)

    def _place(self, nbytes: int) -> int:
        if self.arena is None:
            self.needed = _align(self.needed) + nbytes
            return 0
        off = self.arena.alloc(nbytes)
        if off is None:
            raise Overflow(0)
        return off

    # A reference is one string of words ("n <dtype> <offset> <shape>", ...): pickle asks
    # persistent_id() about every object it writes, and the parts of a tuple would be asked
    # about one by one, a string only as a whole.
    def persistent_id(self, obj: Any):
        if type(obj) in _PLAIN:
            return None
        if self.arena is not None:
            known = self.arena.known.get(id(obj))
            if known is not None and known[0] is obj and known[1]:
                return known[1]
        if _numpy_ok(obj):
            a = obj
            if a.size == 0:
                return f"n0 {a.dtype.str} {_ints(a.shape)}"
            if self.arena is not None and a.flags.c_contiguous:
                off = self.arena.offset_of(a.__array_interface__["data"][0], a.nbytes)
                if off is not None:
                    return f"n {a.dtype.str} {off} {_ints(a.shape)}"
            off = self._place(a.nbytes)
            if self.arena is not None:
                dst = np.frombuffer(self.arena.view, a.dtype, a.size, off).reshape(a.shape)
                np.copyto(dst, a, casting="no")
            return f"n {a.dtype.str} {off} {_ints(a.shape)}"
        if _tensor_ok(obj):
            t = obj
            dtype = _torch_dtype_name(t.dtype)
            if t.numel() == 0:
                return f"t0 {dtype} {_ints(t.shape)}"
            storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
            if self.arena is not None:
                size = storage.nbytes()
                off = self.arena.offset_of(storage.data_ptr(), size)
                if off is not None:
                    return f"t {dtype} {off} {size // t.element_size()} {t.storage_offset()} " \
                           f"{_ints(t.shape)} {_ints(t.stride())}"
            c = t.contiguous()
            off = self._place(c.numel() * c.element_size())
            if self.arena is not None:
                torch = _torch()
                dst = torch.frombuffer(self.arena.view, dtype=c.dtype, count=c.numel(), offset=off)
                dst.copy_(c.reshape(-1))
            return f"t {dtype} {off} {c.numel()} 0 {_ints(c.shape)} {_ints(c.stride())}"
        return None


def pack(obj: Any, arena: SlotArena) -> str:
    """Lay ``obj`` out in the slot: what unpack() needs to make it again, a short text.
    A lone array or tensor (what default_collate makes of a batch of arrays) is its
    reference alone ("=" and the reference), with no pickle; anything else is pickled after
    its arrays ("<offset>:<length>" of the pickle). Batch after batch of one loader the text
    is the same, so the trainer's decode of the meta that carries it is a cache hit. Raises
    Overflow with the bytes it needs when it does not fit."""
    used = arena.used
    known = arena.known.get(id(obj))
    if known is not None and known[0] is obj and known[1]:
        return "=" + known[1]
    if _numpy_ok(obj) or _tensor_ok(obj):
        try:
            return "=" + _Packer(io.BytesIO(), arena).persistent_id(obj)
        except Overflow:
            arena.used = used
            raise Overflow(measure(obj)) from None
    buf = io.BytesIO()
    try:
        _Packer(buf, arena).dump(obj)
        blob = buf.getbuffer()
        off = arena.alloc(len(blob))
        if off is None:
            raise Overflow(0)
    except Overflow:
        arena.used = used
        raise Overflow(measure(obj)) from None
    arena.view[off:off + len(blob)] = blob
    return f"{off}:{len(blob)}"


def measure(obj: Any) -> int:
    """The bytes a slot needs for ``obj``: every array laid out anew, and the pickle."""
    buf = io.BytesIO()
    p = _Packer(buf, None)
    p.dump(obj)
    return _align(p.needed) + ALIGN + len(buf.getbuffer())


class _Unpacker(pickle.Unpickler):
    def __init__(self, file, buf: Any, copy: bool):
        super().__init__(file)
        self.buf, self.copy = buf, copy

    def persistent_load(self, pid):
        return _referenced(pid, self.buf, self.copy)


_parsed: dict = {}          # reference -> its fields, parsed (a loader sends the same ones over and over)


def _parse(pid: str) -> tuple:
    """A reference's fields: (kind, dtype, offset, count, storage offset, shape, stride)."""
    hit = _parsed.get(pid)
    if hit is None:
        words = pid.split(" ")
        kind = words[0]
        if kind in ("n0", "t0"):
            hit = (kind, words[1], 0, 0, 0, _shape(words[2]), ())
        elif kind == "n":
            hit = (kind, np.dtype(words[1]), int(words[2]), 0, 0, _shape(words[3]), ())
        else:
            hit = (kind, words[1], int(words[2]), int(words[3]), int(words[4]), _shape(words[5]), _shape(words[6]))
        if len(_parsed) >= 256:
            _parsed.clear()
        _parsed[pid] = hit
    return hit


def _referenced(pid: str, buf: Any, copy: bool) -> Any:
    """The array or tensor of reference ``pid`` (_Packer.persistent_id()): a view of ``buf``,
    or a copy."""
    kind, dtype, off, count, storage_offset, shape, stride = _parse(pid)
    if kind == "n0":
        return np.empty(shape, np.dtype(dtype))
    if kind == "n":
        count = 1
        for s in shape:
            count *= s
        a = np.frombuffer(buf, dtype, count, off).reshape(shape)
        return a.copy() if copy else a
    torch = _torch()
    if torch is None:
        import torch        # a tensor was sent: the worker had torch, so this process does too
    dtype = getattr(torch, dtype)
    if kind == "t0":
        return torch.empty(shape, dtype=dtype)
    t = torch.frombuffer(buf, dtype=dtype, count=count, offset=off).as_strided(shape, stride, storage_offset)
    return t.clone() if copy else t


def unpack(buf: Any, packed: str, copy: bool = False) -> Any:
    """The structure pack() laid out in ``buf`` (a buffer over the slot) and described by
    ``packed``: its arrays and tensors views of ``buf`` (each keeps it alive), or with
    ``copy`` copies of them."""
    if packed[0] == "=":
        return _referenced(packed[1:], buf, copy)
    off, length = map(int, packed.split(":"))
    view = memoryview(buf).cast("B")
    return _Unpacker(io.BytesIO(view[off:off + length]), buf, copy).load()


_slot_types: dict = {}


def lease_buffer(addr: int, size: int, owner: Any, writable: bool) -> Any:
    """A buffer over [addr, addr + size) that holds ``owner`` (what keeps the memory mapped
    and, when it goes, gives the slot back) as long as any view made from it lives."""
    cls = _slot_types.get(size)
    if cls is None:         # a class per size (a pool's slot size): made once, not per batch
        cls = _slot_types[size] = type("_Slot", (ctypes.c_ubyte * size,), {})
    buf = cls.from_address(addr)
    buf.owner = owner
    # A read-only mapping (the kernel's choice) gives read-only numpy views; torch has no
    # read-only tensors and warns when it is handed one.
    return buf if writable else memoryview(buf).cast("B").toreadonly()

"""Clients, pools, slots and batches: the zero-copy Python face of libshmbroker.

Arrays handed out here are numpy views straight into the pool's shared memory. The
package attaches each segment once per process, itself, and keeps it attached for as
long as any view of it is alive: a view kept after its batch was released, or after its
client was closed, still points at mapped memory (whose contents the next user of the
slot may change: copy what you keep).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import json
import math
import os
import select
import threading
from typing import Any, Iterator, Mapping, Union

import numpy as np

from . import errors
from ._lib import CODE_TIMEOUT, REPLY_FN, lib, libc, sb_batch, sb_pool_options

ALIGN = 64                 # every array in a slot starts on a 64-byte boundary
LAYOUT_KEY = "__shmbroker__"
SHM_RDONLY = 0o10000
ROLES = {"producer": 0, "consumer": 1, "admin": 2}

Arrays = Union[np.ndarray, Mapping[str, np.ndarray]]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _timeout_ms(timeout: float | None) -> int:
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be None (wait as long as it takes) or >= 0 seconds")
    return min(int(math.ceil(timeout * 1000)), 2**31 - 1)


def _descr(dtype: np.dtype) -> Any:
    if dtype.hasobject:
        raise TypeError(f"dtype {dtype} holds Python objects, which cannot live in shared memory")
    return np.lib.format.dtype_to_descr(dtype)


def _dtype(descr: Any) -> np.dtype:
    return _dtype_cached(json.dumps(descr))


@functools.lru_cache(maxsize=256)
def _dtype_cached(descr_json: str) -> np.dtype:
    descr = json.loads(descr_json)

    def fix(d):
        if isinstance(d, str):
            return d
        return [tuple([f[0], fix(f[1])] + ([tuple(f[2])] if len(f) > 2 else [])) for f in d]
    return np.lib.format.descr_to_dtype(fix(descr))


class _Attachment:
    """One shmat() of a segment in this process, undone when the object goes."""

    def __init__(self, shmid: int, readonly: bool):
        addr = libc.shmat(shmid, None, SHM_RDONLY if readonly else 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise errors.BrokerError(f"cannot attach segment {shmid}: {os.strerror(err)}", errno=err)
        self.addr = addr

    def __del__(self):
        if getattr(self, "addr", None):
            libc.shmdt(ctypes.c_void_p(self.addr))
            self.addr = None


class _Mapping:
    """A segment as a memoryview. Every numpy view made from it holds the memoryview, the
    memoryview holds a ctypes buffer, the buffer holds the attachment: the segment stays
    attached exactly as long as something can still read it, and no reference cycle
    delays the detach until a garbage collection."""

    def __init__(self, shmid: int, size: int, readonly: bool):
        att = _Attachment(shmid, readonly)

        class _Buffer(ctypes.c_ubyte * size):
            pass
        buf = _Buffer.from_address(att.addr)
        buf.attachment = att
        mv = memoryview(buf).cast("B")
        self.view = mv.toreadonly() if readonly else mv
        self.addr, self.size = att.addr, size

    def array(self, offset: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        count = math.prod(shape)
        if offset < 0 or offset + count * dtype.itemsize > self.size:
            raise ValueError("the array does not fit in the segment")
        return np.frombuffer(self.view, dtype=dtype, count=count, offset=offset).reshape(shape)


class Closing:
    """``with`` support for objects that own a resource and have close()."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Client(Closing):
    """A connection to shmbrokerd. Use as a context manager, or call close()."""

    def __init__(self, role: str = "consumer", socket: str | None = None, name: str | None = None):
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        handle = ctypes.c_void_p()
        rc = lib.sb_connect(ctypes.byref(handle), socket.encode() if socket else None, ROLES[role],
                            name.encode() if name else None)
        if rc < 0:
            raise errors.from_call(lib, None, rc, f"connect to {socket or os.environ.get('SHMBROKER_SOCKET') or 'the default socket'}")
        self._h = handle.value
        self.role = role
        self._lock = threading.Lock()
        self._pools: list[Pool] = []
        pid, uid = ctypes.c_int64(), ctypes.c_int64()
        lib.sb_client_peer(self._h, ctypes.byref(pid), ctypes.byref(uid))
        self.pid, self.uid = pid.value, uid.value

    # -- plumbing ------------------------------------------------------------------------
    def _handle(self) -> int:
        if self._h is None:
            raise errors.ConnectionLost("the client is closed")
        return self._h

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise errors.from_call(lib, self._h, rc, what)
        return rc

    # -- pools ----------------------------------------------------------------------------
    def create(self, name: str, slot_size: int, slots: int, *, ordered: bool = False, persistent: bool = False,
               mode: int | None = None, group: str | None = None, huge_pages: bool = False,
               on_consumer_death: str = "requeue") -> "Pool":
        """Create pool ``name`` of ``slots`` slots of ``slot_size`` bytes and open it."""
        if on_consumer_death not in ("requeue", "free"):
            raise ValueError('on_consumer_death must be "requeue" or "free"')
        opts = sb_pool_options(ordered, persistent, huge_pages, on_consumer_death == "free", mode or 0,
                               group.encode() if group else None)
        handle = ctypes.c_void_p()
        with self._lock:
            self._check(lib.sb_pool_create(self._handle(), ctypes.byref(handle), name.encode(), int(slot_size),
                                           int(slots), ctypes.byref(opts)), f"create {name}")
        return self._adopt(handle.value)

    def open(self, name: str) -> "Pool":
        """Open the existing pool ``name``."""
        handle = ctypes.c_void_p()
        with self._lock:
            self._check(lib.sb_pool_open(self._handle(), ctypes.byref(handle), name.encode()), f"open {name}")
        return self._adopt(handle.value)

    def _adopt(self, handle: int) -> "Pool":
        pool = Pool(self, handle)
        self._pools.append(pool)
        return pool

    def status(self, pool: str | None = None) -> dict:
        """The daemon's status: {"pools": [...], "clients": [...]}."""
        out = ctypes.c_void_p()
        with self._lock:
            self._check(lib.sb_status(self._handle(), pool.encode() if pool else None, ctypes.byref(out)), "status")
        try:
            return json.loads(ctypes.string_at(out.value).decode())
        finally:
            libc.free(out)

    def close(self) -> None:
        """Close the connection: the daemon reclaims every slot still held. Views stay valid."""
        with self._lock:
            if self._h is not None:
                for p in self._pools:
                    p.close()
                lib.sb_client_free(self._h)
                self._h = None

    @property
    def closed(self) -> bool:
        return self._h is None


def connect(role: str = "consumer", socket: str | None = None, name: str | None = None) -> Client:
    """Connect to shmbrokerd (``socket``, else $SHMBROKER_SOCKET, else the default) as ``role``:
    "producer", "consumer" or "admin"."""
    return Client(role, socket, name)


class Pool:
    """An open pool: acquire/put to produce, get/iterate to consume."""

    def __init__(self, client: Client, handle: int):
        self.client = client
        self._h = handle
        self.name = lib.sb_pool_name(handle).decode()
        self.slot_size = lib.sb_pool_slot_size(handle)
        self.stride = lib.sb_pool_stride(handle)
        self.slots = lib.sb_pool_slots(handle)
        self.shmid = lib.sb_pool_shmid(handle)
        self._mapping = _Mapping(self.shmid, self.stride * self.slots, readonly=client.role != "producer")
        self._batch = sb_batch()
        # A slot taken in the same round trip as the previous publish (see Slot.publish):
        # the next acquire() costs no round trip at all.
        self._reserve: int | None = None
        #: When True, publish() returns without waiting for the daemon's answer (which the
        #: next acquire(), put() or end() collects, raising a refusal there): the producer
        #: writes its next batch while the daemon works. For loops of small batches.
        self.pipelined = False
        self._inflight: dict = {}
        self._on_reply = REPLY_FN(self._reply)     # kept alive as long as the pool

    def _handle(self) -> int:
        if self._h is None:
            raise errors.ConnectionLost("the client is closed")
        return self._h

    @property
    def _map(self) -> _Mapping:
        if self._mapping is None:
            raise errors.ConnectionLost("the client is closed")
        return self._mapping

    def _call(self, fn, *args, what: str) -> int:
        with self.client._lock:
            rc = fn(self._handle(), *args)
            if rc < 0:
                raise errors.from_call(lib, self.client._h, rc, what)
        return rc

    # -- producing ------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> "Slot":
        """Take a free slot to write into (waits up to ``timeout`` seconds; None: no limit)."""
        self._settle()
        if self._reserve is not None:
            index, self._reserve = self._reserve, None
            return Slot(self, index)
        ptr, slot, cap = ctypes.c_void_p(), ctypes.c_uint32(), ctypes.c_size_t()
        self._call(lib.sb_acquire, _timeout_ms(timeout), ctypes.byref(ptr), ctypes.byref(slot), ctypes.byref(cap),
                   what="acquire")
        return Slot(self, slot.value)

    def put(self, data: Arrays, meta: dict | None = None, seq: int | None = None,
            timeout: float | None = None) -> None:
        """Copy an array (or a dict of arrays) into a free slot and publish it."""
        slot = self.acquire(timeout)
        try:
            slot.publish(data, meta=meta, seq=seq)
        except BaseException:
            if not slot.published:
                slot.release()
            raise

    # -- pipelined publishing -------------------------------------------------------------
    def _reply(self, pool, error, batch, slot, ptr, userdata) -> None:
        kind = "acquire" if userdata else "publish"
        self._inflight[kind] = (error, slot, lib.sb_client_code(self.client._h), lib.sb_client_message(self.client._h))

    def _publish_pipelined(self, index: int, nbytes: int, seq: int, meta: bytes) -> None:
        """Queue the publish and an acquire that takes a slot only if one is free then; wait
        for neither."""
        h = self._handle()
        self._inflight = {}
        with self.client._lock:
            rc = lib.sb_publish_async(h, index, nbytes, seq, meta, self._on_reply, None)
            if rc == 0:
                rc = lib.sb_acquire_async(h, 0, self._on_reply, 1)
            if rc < 0:
                raise errors.from_call(lib, self.client._h, rc, "publish")
        self._inflight["slot"] = index

    def _settle(self) -> None:
        """Collect the answers of a pipelined publish: keep its next slot, raise its refusal."""
        if not self._inflight:
            return
        self._handle()
        h = self.client._handle()
        with self.client._lock:
            while "publish" not in self._inflight or "acquire" not in self._inflight:
                rc = lib.sb_client_process(h)
                if rc < 0:
                    self._inflight = {}
                    raise errors.from_call(lib, h, rc, "publish")
                if "publish" in self._inflight and "acquire" in self._inflight:
                    break
                poller = select.poll()
                poller.register(lib.sb_client_fd(h), lib.sb_client_events(h))
                poller.poll()
        done, self._inflight = self._inflight, {}
        err, slot, _, _ = done["acquire"]
        if err == 0:
            self._reserve = slot
        err, _, code, message = done["publish"]
        if err < 0:
            # Refused: the slot is still ours, unpublished; give it back as a synchronous
            # publish that raised would have (with its with-block).
            with self.client._lock:
                lib.sb_release(self._handle(), done["slot"], False)
            raise errors.from_refusal(lib, code, message, err, "publish")

    def _publish(self, index: int, nbytes: int, seq: int, meta: bytes) -> None:
        """Publish, and in the same round trip take the next free slot if one is free now."""
        if self.pipelined:
            return self._publish_pipelined(index, nbytes, seq, meta)
        ptr, nxt, cap = ctypes.c_void_p(), ctypes.c_uint32(0xFFFFFFFF), ctypes.c_size_t()
        with self.client._lock:
            rc = lib.sb_publish_acquire(self._handle(), index, nbytes, seq, meta, 0, ctypes.byref(ptr),
                                        ctypes.byref(nxt), ctypes.byref(cap))
            if nxt.value != 0xFFFFFFFF:
                self._reserve = nxt.value
            if rc < 0 and not (rc == -errno.ETIMEDOUT and nxt.value == 0xFFFFFFFF
                               and lib.sb_client_code(self.client._h) == CODE_TIMEOUT):
                raise errors.from_call(lib, self.client._h, rc, "publish")

    def _drop_reserve(self) -> None:
        self._settle()
        if self._reserve is not None:
            index, self._reserve = self._reserve, None
            self._call(lib.sb_release, index, False, what="release")

    def end(self) -> None:
        """End the current stream (epoch) for this producer."""
        self._drop_reserve()
        self._call(lib.sb_end, what="end")

    def drop(self) -> None:
        """Remove the pool (owner or root only)."""
        self._call(lib.sb_drop, what="drop")

    # -- consuming ------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> "Batch":
        """The next batch; raises EndOfStream at the end of a stream, Timeout after ``timeout`` s."""
        return self.release_get(None, timeout)

    def release_get(self, prev: "Batch | None", timeout: float | None = None) -> "Batch":
        """Release ``prev`` (if given and still held) and get the next batch, in one round
        trip to the daemon: the steady state of a consumer. Raises as get() does."""
        if prev is not None and not prev.released:
            prev.released = True
            self._batch.slot, self._batch.eof = prev.slot, False
            self._call(lib.sb_release_consume, ctypes.byref(self._batch), _timeout_ms(timeout),
                       what="release and consume")
        else:
            self._call(lib.sb_consume, _timeout_ms(timeout), ctypes.byref(self._batch), what="consume")
        return self._take_batch()

    def _take_batch(self) -> "Batch":
        b = self._batch
        if b.eof:
            raise errors.EndOfStream(f"end of stream in pool {self.name}")
        return Batch(self, b.slot, b.nbytes, b.seq, b.stream, json.loads(b.meta))

    def __iter__(self) -> Iterator["Batch"]:
        """Batches until the end of the stream. Asking for the next releases the previous
        one, in the same round trip to the daemon."""
        prev: Batch | None = None
        try:
            while True:
                try:
                    prev = self.release_get(prev)
                except errors.EndOfStream:
                    prev = None
                    return
                yield prev
        finally:
            if prev is not None and not prev.released and self._h is not None:
                prev.release()

    def close(self) -> None:
        """Forget the pool on this side (its client keeps it open on the daemon). The
        segment stays attached only as long as views of it are alive."""
        self._h = None
        self._mapping = None


class Slot:
    """A slot being written by this producer. ``with pool.acquire() as slot:`` gives it
    back unpublished if the block ends without publish()."""

    def __init__(self, pool: Pool, index: int):
        self.pool, self.index = pool, index
        self.offset = index * pool.stride
        self.capacity = pool.slot_size
        self.published = self.released = False
        self._next = 0          # bump allocator for ndarray()

    def ndarray(self, shape, dtype=np.uint8, offset: int | None = None) -> np.ndarray:
        """A writable view of the slot: at ``offset``, or after the views made before."""
        dtype = np.dtype(dtype)
        _descr(dtype)
        if offset is None:
            offset = _align(self._next)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        end = offset + math.prod(shape) * dtype.itemsize
        if end > self.capacity:
            raise ValueError(f"{shape} {dtype} at offset {offset} does not fit in a slot of {self.capacity} bytes")
        self._next = max(self._next, end)
        return self.pool._map.array(self.offset + offset, shape, dtype)

    @property
    def buffer(self) -> memoryview:
        """The whole slot as writable bytes."""
        return self.pool._map.view[self.offset:self.offset + self.capacity]

    def _in_slot(self, a: np.ndarray) -> int | None:
        ptr = a.__array_interface__["data"][0]
        base = self.pool._map.addr + self.offset
        if a.flags.c_contiguous and base <= ptr and ptr + a.nbytes <= base + self.capacity:
            return ptr - base
        return None

    def publish(self, data: Arrays | None = None, meta: dict | None = None, seq: int | None = None,
                nbytes: int | None = None) -> None:
        """Publish the slot. ``data`` (an array or a dict of arrays) is recorded in the meta with
        its shape and dtype; views made with ndarray() are not copied, other arrays are."""
        meta = dict(meta or {})
        if data is not None:
            arrays = {None: data} if isinstance(data, np.ndarray) else dict(data)
            arrays = {k: np.asarray(a) for k, a in arrays.items()}
            for a in arrays.values():
                _descr(a.dtype)          # refuse object dtypes before touching the slot
            layout, end, used = [], 0, 0
            placed = {}
            for name, a in arrays.items():
                off = self._in_slot(a)
                if off is not None:
                    placed[name] = off
                    end = max(end, off + a.nbytes)
            for name, a in arrays.items():
                off = placed.get(name)
                if off is None:
                    off = _align(end)
                    if off + a.nbytes > self.capacity:
                        raise ValueError(f"the batch needs {off + a.nbytes} bytes; the slot has {self.capacity}")
                    np.copyto(self.pool._map.array(self.offset + off, a.shape, a.dtype), a, casting="no")
                    end = off + a.nbytes
                used = max(used, off + a.nbytes)
                layout.append({"name": name, "dtype": _descr(a.dtype), "shape": list(a.shape), "offset": off})
            meta[LAYOUT_KEY] = {"arrays": layout}
            nbytes = max(nbytes or 0, used)
        elif nbytes is None:
            nbytes = self._next
        self.pool._publish(self.index, int(nbytes), -1 if seq is None else int(seq),
                           json.dumps(meta, separators=(",", ":")).encode())
        self.published = True

    def release(self) -> None:
        """Give the slot back unpublished."""
        if not self.published and not self.released:
            self.released = True
            self.pool._call(lib.sb_release, self.index, False, what="release")

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool._h is not None:
            self.release()


class Batch:
    """A consumed batch: read-only zero-copy arrays, the producer's meta, and release()."""

    def __init__(self, pool: Pool, slot: int, nbytes: int, seq: int, stream: int, meta: dict):
        self.pool, self.slot, self.nbytes, self.seq, self.stream = pool, slot, nbytes, seq, stream
        self._layout = meta.pop(LAYOUT_KEY, None)
        self.meta = meta
        self.released = False

    @property
    def data(self) -> memoryview:
        """The batch's bytes, read-only."""
        off = self.slot * self.pool.stride
        return self.pool._map.view[off:off + self.nbytes].toreadonly()

    @property
    def arrays(self) -> dict:
        """The arrays the producer published, by name (None for a single unnamed array)."""
        if not self._layout:
            raise ValueError("this batch was published without arrays (use .data)")
        base = self.slot * self.pool.stride
        out = {}
        for l in self._layout["arrays"]:
            a = self.pool._map.array(base + l["offset"], l["shape"], _dtype(l["dtype"]))
            if a.flags.writeable:
                a.flags.writeable = False
            out[l["name"]] = a
        return out

    @property
    def array(self) -> np.ndarray:
        """The one array of the batch."""
        arrays = self.arrays
        if len(arrays) != 1:
            raise ValueError(f"the batch holds {len(arrays)} arrays: use .arrays")
        return next(iter(arrays.values()))

    def release(self, requeue: bool = False) -> None:
        """Give the slot back (``requeue``: to the front of the queue, for another consumer)."""
        if not self.released:
            self.released = True
            self.pool._call(lib.sb_release, self.slot, bool(requeue), what="release")

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool._h is not None:
            self.release()

"""Clients, pools, slots and batches: the zero-copy Python face of libshmbroker.

Arrays handed out here are numpy views straight into the pool's shared memory, where the
library attached it (sb_pool_base()): each pool handle is attached once per process, by
the library, and Python maps that attachment rather than making its own. A view kept after
its batch was released, or after its pool or client was closed, still points at mapped
memory (whose contents the next user of the slot may change: copy what you keep).

That holds because every view keeps the library's pool handle open, and through it the
library's client (whose sb_client_free() detaches every pool): a pool handle is closed only
when no view of its memory is left, and the library's client is freed only when neither its
Client nor any view needs it. Closing a Client still ends its connection at once (the daemon
reclaims its slots): its socket is shut down, and the rest goes with the last view.
"""
from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import select
import threading
from socket import SHUT_RDWR
from typing import Iterator, Mapping, Union

import numpy as np

from . import _lib, _size, _slotpack, errors, layout
from ._lib import DEFAULT_SOCKET, REPLY_FN, ROLES, lib, libc, sb_pool_options

NO_SLOT = 0xFFFFFFFF       # what an out-parameter slot keeps when no slot was taken
VIEW_CACHE_MAX = 1024      # arrays kept per segment by _Segment.view_at()

Arrays = Union[np.ndarray, Mapping[str, np.ndarray]]


def _connect_error(socket: str | None, rc: int) -> errors.BrokerError:
    """The exception of a failed connect: the socket it tried and where that came from, and
    for a socket nobody listens on or this user may not use, what to do about it."""
    env = os.environ.get("SHMBROKER_SOCKET")
    path, where = ((socket, "") if socket else (env, " (from $SHMBROKER_SOCKET)") if env
                   else (DEFAULT_SOCKET, " (the default socket)"))
    exc = errors.from_call(lib, None, rc, f"connect to {path}{where}")
    if -rc in (errno.ENOENT, errno.ECONNREFUSED):
        hint = ("no shmbrokerd listens there: start one (`shmbrokerd --socket PATH`, or `systemctl start "
                "shmbrokerd.socket`), or name its socket (socket=... or $SHMBROKER_SOCKET)")
    elif -rc == errno.EACCES:
        hint = "this user may not use that socket: its group must include you (docs/operations.md, Groups)"
    else:
        return exc
    return type(exc)(f"{exc}; {hint}", exc.code, getattr(exc, "errno", None))


def _timeout_ms(timeout: float | None) -> int:
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be None (wait as long as it takes) or >= 0 seconds")
    return min(int(math.ceil(timeout * 1000)), 2**31 - 1)


def _attached_writable(addr: int) -> bool:
    """Whether this process may write the segment attached at ``addr``. The library decides
    how it attaches (shmbroker.h: read-write when the kernel grants this user write
    permission, else read-only); the kernel's map of this process says what it decided, so
    the rule stays written in the library alone. A view of a read-only attachment must be
    read-only in numpy too: a write would kill the process."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if int(line[:line.index("-")], 16) == addr:
                return "w" in line.split(None, 2)[1]
    return False


class _Connection:
    """The library's client (sb_client), and the lock that serialises its use: the library
    is not thread-safe per client. ``with connection:`` holds it, once it is known to be open.

    It lives as long as its Client or any pool attachment needs it, and only then is it
    freed: sb_client_free() detaches every pool of the client."""

    def __init__(self, ptr: int):
        self.ptr = ptr
        self.lock = threading.Lock()
        self.ended = False
        self._pid = os.getpid()
        # Pool handles that no view needs any more, closed at the next call: they are found
        # in __del__, which may run in any thread, even inside a call, so it only queues.
        self._unused: list = []

    def __enter__(self) -> "_Connection":
        self.lock.acquire()
        if self.ended:
            self.lock.release()
            raise errors.ConnectionLost("the client is closed")
        while self._unused:
            lib.sb_pool_close(self._unused.pop())
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def call(self, what: str, fn, *args) -> int:
        """``fn(*args)``, a library call on this connection: its result, or its failure raised."""
        with self:
            rc = fn(*args)
            if rc < 0:
                raise self.refusal(rc, what)
        return rc

    def refusal(self, rc: int, what: str) -> errors.BrokerError:
        """The exception for ``what``, which failed with ``rc`` (while the connection is held:
        the daemon's message lasts until the next call)."""
        return errors.from_call(lib, self.ptr, rc, what)

    def code(self) -> str:
        """The code of the last refusal ("timeout", ...), while the connection is held."""
        return lib.sb_code_name(lib.sb_client_code(self.ptr)).decode()

    def forget(self, pool: int) -> None:
        """Pool handle ``pool`` is no longer needed: it is closed (and its segment detached)
        at the next call, or with the client."""
        self._unused.append(pool)

    def end(self) -> None:
        """End the connection: the daemon reclaims every slot still held, and every call
        after this raises ConnectionLost. The library's client stays until nothing needs it."""
        with self.lock:
            if self.ended:
                return
            self.ended = True
            # A forked child holds the same socket: ending it there would end the parent's.
            if os.getpid() == self._pid:
                libc.shutdown(lib.sb_client_fd(self.ptr), SHUT_RDWR)

    def __del__(self):
        try:
            lib.sb_client_free(self.ptr)
        except Exception:          # interpreter shutdown: the process exit frees it all
            pass


class _Attachment:
    """The library's handle of one open pool, whose segment the library attached. Every view
    of the segment's memory holds it; when the last goes, the handle is closed."""

    def __init__(self, connection: _Connection, ptr: int):
        self.connection, self.ptr = connection, ptr
        # What the library may call for this pool as long as the handle is open.
        self.callbacks: list = []
        # Called when the last view goes, before the handle is closed (see _Segment.on_detach).
        self.before_detach: list = []

    def __del__(self):
        try:
            for fn in self.before_detach:
                try:
                    fn()
                except Exception:
                    pass
        finally:
            try:
                self.connection.forget(self.ptr)
            except Exception:
                pass


class _Segment:
    """A pool's segment as memory, where the library attached it. Every numpy view made from
    it holds the memoryview, the memoryview holds a ctypes buffer, the buffer holds the
    _Attachment: the pool handle stays open (and the segment attached) exactly as long as
    something can still read it, and no reference cycle delays the detach until a garbage
    collection."""

    def __init__(self, attachment: _Attachment, size: int):
        addr = lib.sb_pool_base(attachment.ptr)

        class _Buffer(ctypes.c_ubyte * size):
            pass
        buf = _Buffer.from_address(addr)
        buf.attachment = attachment
        mv = memoryview(buf).cast("B")
        self.view = mv if _attached_writable(addr) else mv.toreadonly()
        self.addr, self.size = addr, size
        self._views: dict = {}
        #: The library's pool handle, and its client: open as long as this object lives (it
        #: holds the view, which holds the attachment).
        self.pool, self.connection = attachment.ptr, attachment.connection
        self._attachment = attachment

    def on_detach(self, fn) -> None:
        """Call ``fn()`` when the last view of the segment goes, before the segment is
        detached (for memory registered elsewhere, such as with CUDA by shmbroker._pin,
        which must be unregistered first). It may run in any thread, and must not raise."""
        self._attachment.before_detach.append(fn)

    def array(self, offset: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        count = math.prod(shape)
        if offset < 0 or offset + count * dtype.itemsize > self.size:
            raise ValueError("the array does not fit in the segment")
        return np.frombuffer(self.view, dtype=dtype, count=count, offset=offset).reshape(shape)

    def view_at(self, offset: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """array() for a place, shape and dtype seen before: a new view of a cached one. A
        loop over batches asks for the same few arrays again and again, and ndarray.view()
        costs a tenth of building the array from the buffer. Each caller gets its own array
        object (its own shape and flags to change), over the same memory and keeping the
        segment mapped just the same. Bounded: cleared when full."""
        key = (offset, shape, dtype)
        base = self._views.get(key)
        if base is None:
            base = self.array(offset, shape, dtype)
            if len(self._views) >= VIEW_CACHE_MAX:
                self._views.clear()
            self._views[key] = base
        return base.view()


def _reply_recorder(inflight: dict, client: int):
    """The library's callback for the requests of a pipelined publish: records each outcome in
    ``inflight``, with the daemon's code and message (which the next reply replaces). It holds
    the library's ``client`` by address, not its _Connection: a closed Pool keeps nothing
    alive."""
    def reply(pool, error, batch, slot, ptr, userdata) -> None:
        inflight["acquire" if userdata else "publish"] = (error, slot, lib.sb_client_code(client),
                                                          lib.sb_client_message(client))
    return REPLY_FN(reply)


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
            raise _connect_error(socket, rc)
        self._conn: _Connection | None = _Connection(handle.value)
        self.role = role
        self._pools: list[Pool] = []
        pid, uid = ctypes.c_int64(), ctypes.c_int64()
        lib.sb_client_peer(handle.value, ctypes.byref(pid), ctypes.byref(uid))
        self.pid, self.uid = pid.value, uid.value

    def _connection(self) -> _Connection:
        """The library's client, for this client's pools; ConnectionLost once closed."""
        conn = self._conn
        if conn is None:
            raise errors.ConnectionLost("the client is closed")
        return conn

    # -- pools ----------------------------------------------------------------------------
    def create(self, name: str, slot_size: int | str, slots: int, *, ordered: bool = False, persistent: bool = False,
               mode: int | None = None, group: str | None = None, huge_pages: bool = False,
               on_consumer_death: str = "requeue") -> "Pool":
        """Create pool ``name`` of ``slots`` slots of ``slot_size`` bytes and open it.

        ``slot_size`` is a number of bytes or a string with a unit, as the daemon and
        shmbrokerctl take it: ``"16MiB"``, ``"512 KiB"``, ``"1GiB"``. The pool is ephemeral
        (gone when the last client that has it open is) unless ``persistent``."""
        slot_size = _size.size(slot_size, "slot_size")
        if on_consumer_death not in ("requeue", "free"):
            raise ValueError('on_consumer_death must be "requeue" or "free"')
        opts = sb_pool_options(ordered, persistent, huge_pages, on_consumer_death == "free", mode or 0,
                               group.encode() if group else None)
        handle = ctypes.c_void_p()
        conn = self._connection()
        conn.call(f"create {name}", lib.sb_pool_create, conn.ptr, ctypes.byref(handle), name.encode(), slot_size,
                  int(slots), ctypes.byref(opts))
        return self._adopt(handle.value)

    def open(self, name: str) -> "Pool":
        """Open the existing pool ``name``."""
        handle = ctypes.c_void_p()
        conn = self._connection()
        conn.call(f"open {name}", lib.sb_pool_open, conn.ptr, ctypes.byref(handle), name.encode())
        return self._adopt(handle.value)

    def _adopt(self, handle: int) -> "Pool":
        pool = Pool(self, handle)
        self._pools.append(pool)
        return pool

    def status(self, pool: str | None = None) -> dict:
        """The daemon's status: {"pools": [...], "clients": [...]}."""
        out = ctypes.c_void_p()
        conn = self._connection()
        conn.call("status", lib.sb_status, conn.ptr, pool.encode() if pool else None, ctypes.byref(out))
        try:
            return json.loads(ctypes.string_at(out.value).decode())
        finally:
            libc.free(out)

    def close(self) -> None:
        """Close the connection: the daemon reclaims every slot still held. Views stay valid."""
        conn, self._conn = self._conn, None
        if conn is not None:
            for p in self._pools:
                p.close()
            conn.end()

    @property
    def closed(self) -> bool:
        return self._conn is None


def connect(role: str = "consumer", socket: str | None = None, name: str | None = None) -> Client:
    """Connect to shmbrokerd (``socket``, else $SHMBROKER_SOCKET, else the default) as ``role``:
    "producer", "consumer" or "admin"."""
    return Client(role, socket, name)


class Pool:
    """An open pool: acquire/put to produce, get/iterate to consume."""

    def __init__(self, client: Client, handle: int):
        self.client = client
        self.name = lib.sb_pool_name(handle).decode()
        self.slot_size = lib.sb_pool_slot_size(handle)
        self.stride = lib.sb_pool_stride(handle)
        self.slots = lib.sb_pool_slots(handle)
        self.shmid = lib.sb_pool_shmid(handle)
        connection = client._connection()
        attachment = _Attachment(connection, handle)
        # Everything a call needs is reached through the segment, so that a closed pool
        # holds nothing that keeps the segment attached or the library's client alive.
        self._segment: _Segment | None = _Segment(attachment, self.stride * self.slots)
        # Slot.ndarray()'s arguments as seen before -> (shape, dtype, end in the slot).
        self._shapes: dict = {}
        # A slot taken in the same round trip as the previous publish (see Slot.publish):
        # the next acquire() costs no round trip at all.
        self._reserve: int | None = None
        #: When True, publish() returns without waiting for the daemon's answer (which the
        #: next acquire(), put() or end() collects, raising a refusal there): the producer
        #: writes its next batch while the daemon works. For loops of small batches.
        self.pipelined = False
        self._inflight: dict = {}
        self._on_reply = _reply_recorder(self._inflight, connection.ptr)
        attachment.callbacks.append(self._on_reply)

    def _memory(self) -> _Segment:
        """The pool's segment; ConnectionLost once the pool is closed. Whoever holds it holds
        the library's pool handle (``.pool``) open, and its client (``.connection``)."""
        segment = self._segment
        if segment is None:
            raise errors.ConnectionLost("the client is closed")
        return segment

    def _call(self, fn, *args, what: str) -> int:
        """``fn(pool handle, *args)``: its result, or its failure raised."""
        segment = self._memory()
        return segment.connection.call(what, fn, segment.pool, *args)

    @property
    def closed(self) -> bool:
        return self._segment is None

    @property
    def fast(self) -> bool:
        """Whether this pool's calls run now on its control block, with no round trip to the
        daemon (libshmbroker's fast path: sb_pool_fast())."""
        return bool(lib.sb_pool_fast(self._memory().pool))

    # -- producing ------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None, seq: int | None = None) -> "Slot":
        """Take a free slot to write into (waits up to ``timeout`` seconds; None: no limit).

        ``seq``: the seq its batch will be published with. An ordered pool keeps its last
        free slot for the lowest seq not yet published, so a producer that says its seq
        cannot take that slot for a later one, and one that takes over a dead producer's
        seqs always gets a slot for the gap."""
        self._settle()
        if self._reserve is not None:
            index, self._reserve = self._reserve, None
            return Slot(self, index)
        segment = self._memory()
        ms = -1 if timeout is None else _timeout_ms(timeout)
        with segment.connection as conn:
            if seq is None:
                rc = index = _lib.calls.acquire(segment.pool, ms)
            else:
                ptr, slot, cap = ctypes.c_void_p(), ctypes.c_uint32(), ctypes.c_size_t()
                rc = lib.sb_acquire_seq(segment.pool, int(seq), ms, ctypes.byref(ptr), ctypes.byref(slot),
                                        ctypes.byref(cap))
                index = slot.value
            if rc < 0:
                raise conn.refusal(rc, "acquire")
        return Slot(self, index)

    def put(self, data: Arrays, meta: dict | None = None, seq: int | None = None,
            timeout: float | None = None) -> None:
        """Copy an array (or a dict of arrays) into a free slot and publish it (its slot
        acquired for ``seq``, see acquire())."""
        slot = self.acquire(timeout, seq=seq)
        try:
            slot.publish(data, meta=meta, seq=seq)
        except BaseException:
            if not slot.published:
                slot.release()
            raise

    # -- pipelined publishing -------------------------------------------------------------
    def _publish_pipelined(self, index: int, nbytes: int, seq: int, meta: bytes) -> None:
        """Queue the publish and an acquire that takes a slot only if one is free then; wait
        for neither."""
        segment = self._memory()
        self._inflight.clear()
        with segment.connection as conn:
            rc = lib.sb_publish_async(segment.pool, index, nbytes, seq, meta, self._on_reply, None)
            if rc == 0:
                rc = lib.sb_acquire_async(segment.pool, 0, self._on_reply, 1)
            if rc < 0:
                raise conn.refusal(rc, "publish")
        self._inflight["slot"] = index

    def _settle(self) -> None:
        """Collect the answers of a pipelined publish: keep its next slot, raise its refusal."""
        if not self._inflight:
            return
        segment = self._memory()
        with segment.connection as conn:
            while "publish" not in self._inflight or "acquire" not in self._inflight:
                rc = lib.sb_client_process(conn.ptr)
                if rc < 0:
                    self._inflight.clear()
                    raise conn.refusal(rc, "publish")
                if "publish" in self._inflight and "acquire" in self._inflight:
                    break
                poller = select.poll()
                poller.register(lib.sb_client_fd(conn.ptr), lib.sb_client_events(conn.ptr))
                poller.poll()
        done = dict(self._inflight)
        self._inflight.clear()
        err, slot, _, _ = done["acquire"]
        if err == 0:
            self._reserve = slot
        err, _, code, message = done["publish"]
        if err < 0:
            # Refused: the slot is still ours, unpublished; give it back as a synchronous
            # publish that raised would have (with its with-block).
            with segment.connection:
                lib.sb_release(segment.pool, done["slot"], False)
            raise errors.from_refusal(lib, code, message, err, "publish")

    def _publish(self, index: int, nbytes: int, seq: int, meta: bytes) -> None:
        """Publish, and in the same round trip take the next free slot if one is free now."""
        if self.pipelined:
            return self._publish_pipelined(index, nbytes, seq, meta)
        segment = self._memory()
        with segment.connection as conn:
            rc, nxt = _lib.calls.publish_acquire(segment.pool, conn.ptr, index, nbytes, seq, meta)
            if nxt != NO_SLOT:
                self._reserve = nxt
            if rc < 0:
                raise conn.refusal(rc, "publish")

    def _drop_reserve(self) -> None:
        self._settle()
        if self._reserve is not None:
            index, self._reserve = self._reserve, None
            self._call(lib.sb_release, index, False, what="release")

    def settle(self) -> None:
        """Collect the answers of a pipelined publish (raising its refusal) and give back the
        slot taken ahead: what a producer does before it closes its client."""
        self._drop_reserve()

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
        segment = self._memory()
        ms = -1 if timeout is None else _timeout_ms(timeout)
        with segment.connection as conn:
            if prev is not None and not prev.released:
                prev.released = True
                r, what = _lib.calls.next_batch(segment.pool, prev.slot, ms), "release and consume"
            else:
                r, what = _lib.calls.next_batch(segment.pool, -1, ms), "consume"
            if type(r) is int:
                raise conn.refusal(r, what)
        if r is None:
            raise errors.EndOfStream(f"end of stream in pool {self.name}")
        slot, nbytes, seq, stream, text = r
        parsed, meta = layout.decode_meta(text)
        return Batch(self, slot, nbytes, seq, stream, meta, parsed)

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
            if prev is not None and not prev.released and not self.closed:
                prev.release()

    def close(self) -> None:
        """Forget the pool on this side (its client keeps it open on the daemon). The
        segment stays attached only as long as views of it are alive."""
        self._segment = None


class Slot:
    """A slot being written by this producer. ``with pool.acquire() as slot:`` gives it
    back unpublished if the block ends without publish()."""

    def __init__(self, pool: Pool, index: int):
        self.pool, self.index = pool, index
        self.offset = index * pool.stride
        self.capacity = pool.slot_size
        self.published = self.released = False
        self._next = 0          # bump allocator for ndarray()
        self._made = None       # the last array ndarray() made, and its offset in the slot

    def ndarray(self, shape, dtype=np.uint8, offset: int | None = None) -> np.ndarray:
        """A writable view of the slot: at ``offset``, or after the views made before."""
        if offset is None:
            offset = layout.align(self._next)
        shapes = self.pool._shapes
        try:
            key = (shape, dtype, offset)
            shp, dt, end = shapes[key]
        except (KeyError, TypeError):       # new, or unhashable (a list for a shape)
            dt = np.dtype(dtype)
            layout.check(dt)
            shp = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
            end = offset + math.prod(shp) * dt.itemsize
            if offset < 0 or end > self.capacity:
                raise ValueError(f"{shp} {dt} at offset {offset} does not fit in a slot of {self.capacity} bytes")
            if isinstance(shape, (tuple, int, np.integer)):
                if len(shapes) >= VIEW_CACHE_MAX:
                    shapes.clear()
                shapes[key] = shp, dt, end
        if end > self._next:
            self._next = end
        a = self.pool._memory().view_at(self.offset + offset, shp, dt)
        self._made = a, offset
        return a

    @property
    def buffer(self) -> memoryview:
        """The whole slot as writable bytes."""
        return self.pool._memory().view[self.offset:self.offset + self.capacity]

    def _in_slot(self, a: np.ndarray) -> int | None:
        ptr = a.__array_interface__["data"][0]
        base = self.pool._memory().addr + self.offset
        if a.flags.c_contiguous and base <= ptr and ptr + a.nbytes <= base + self.capacity:
            return ptr - base
        return None

    def _write(self, offset: int, a: np.ndarray) -> None:
        np.copyto(self.pool._memory().array(self.offset + offset, a.shape, a.dtype), a, casting="no")

    def publish(self, data: Arrays | None = None, meta: dict | None = None, seq: int | None = None,
                nbytes: int | None = None) -> None:
        """Publish the slot. ``data`` (an array or a dict of arrays) is recorded in the meta with
        its shape and dtype; views made with ndarray() are not copied, other arrays are."""
        if not meta and seq is None and nbytes is None and type(data) is np.ndarray:
            # The steady state of a loader: one array made in the slot, nothing else said.
            made = self._made
            off = (made[1] if made is not None and made[0] is data and data.flags.c_contiguous
                   else self._in_slot(data))
            if off is not None:
                self.pool._publish(self.index, off + data.nbytes, -1, layout.single_meta(data.dtype, data.shape, off))
                self.published = True
                return
        meta = dict(meta or {})
        if data is not None:
            arrays = {None: data} if isinstance(data, np.ndarray) else dict(data)
            arrays = {k: np.asarray(a) for k, a in arrays.items()}
            meta[layout.LAYOUT_KEY], used = layout.place(arrays, self.capacity, self._in_slot, self._write)
            nbytes = max(nbytes or 0, used)
        elif nbytes is None:
            nbytes = self._next
        self.pool._publish(self.index, int(nbytes), -1 if seq is None else int(seq),
                           json.dumps(meta, separators=(",", ":")).encode())
        self.published = True

    def _publish_text(self, nbytes: int, meta: bytes) -> None:
        """publish() of ``nbytes`` with a meta already encoded (JSON text): for the package's
        own loops, which send the same few metas over and over."""
        self.pool._publish(self.index, nbytes, -1, meta)
        self.published = True

    def release(self) -> None:
        """Give the slot back unpublished."""
        if not self.published and not self.released:
            self.released = True
            self.pool._call(lib.sb_release, self.index, False, what="release")

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        if not self.pool.closed:
            self.release()


class Batch:
    """A consumed batch: zero-copy arrays, the producer's meta, and release().

    The arrays and ``data`` are writable when the pool's segment is attached read-write,
    that is when the pool's mode gives this user write permission (read-only otherwise, and
    a write raises ValueError). The batch is this consumer's alone until it is released:
    nobody else is given its slot, so it may be modified in place (a trainer normalising
    it); released with ``requeue``, it goes to the next consumer as modified. Write nothing
    after the release: the slot is then someone else's."""

    def __init__(self, pool: Pool, slot: int, nbytes: int, seq: int, stream: int, meta: dict, arrays: tuple | None):
        self.pool, self.slot, self.nbytes, self.seq, self.stream = pool, slot, nbytes, seq, stream
        self._arrays = arrays   # layout.decode_meta()'s: (name, offset, shape, dtype) each
        self.meta = meta
        self.released = False

    @property
    def data(self) -> memoryview:
        """The batch's bytes: writable if the segment is attached read-write."""
        off = self.slot * self.pool.stride
        return self.pool._memory().view[off:off + self.nbytes]

    def _array_at(self, offset: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
        # Writable exactly when the attachment is: the segment's view says which.
        return self.pool._memory().view_at(self.slot * self.pool.stride + offset, shape, dtype)

    @property
    def arrays(self) -> dict:
        """The arrays the producer published, by name (None for a single unnamed array)."""
        if not self._arrays:
            raise ValueError("this batch was published without arrays (use .data)")
        return layout.arrays_of(self._arrays, self._array_at)

    @property
    def array(self) -> np.ndarray:
        """The one array of the batch."""
        parsed = self._arrays
        if parsed and len(parsed) == 1:
            return self._array_at(*parsed[0][1:])
        arrays = self.arrays
        if len(arrays) != 1:
            raise ValueError(f"the batch holds {len(arrays)} arrays: use .arrays")
        return next(iter(arrays.values()))

    def keep(self, owner: object) -> object:
        """A buffer over this batch's slot that keeps the segment mapped, and ``owner``
        alive, as long as anything made from it (a numpy array, a tensor, a view of either)
        lives: a DataLoader gives the slot back when ``owner`` goes. Writable when the
        mapping is."""
        segment = self.pool._memory()
        return _slotpack.lease_buffer(segment.addr + self.slot * self.pool.stride, self.pool.slot_size,
                                      (owner, segment), not segment.view.readonly)

    def release(self, requeue: bool = False) -> None:
        """Give the slot back (``requeue``: to the front of the queue, for another consumer)."""
        if not self.released:
            self.released = True
            self.pool._call(lib.sb_release, self.slot, bool(requeue), what="release")

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc) -> None:
        if not self.pool.closed:
            self.release()

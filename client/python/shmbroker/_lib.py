"""ctypes declarations of libshmbroker (include/shmbroker.h), and where to find it: the one
place in the package that mirrors the C header."""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import importlib.util
import os
import sysconfig
from pathlib import Path
from typing import Any


# enum sb_role, by the names the protocol gives the roles.
ROLES = {"producer": 0, "consumer": 1, "admin": 2}
DEFAULT_SOCKET = "/run/shmbroker/shmbroker.sock"     # SHMBROKER_DEFAULT_SOCKET


class sb_pool_options(ctypes.Structure):
    _fields_ = [
        ("ordered", ctypes.c_bool),
        ("persistent", ctypes.c_bool),
        ("huge_pages", ctypes.c_bool),
        ("free_on_consumer_death", ctypes.c_bool),
        ("mode", ctypes.c_uint),
        ("group", ctypes.c_char_p),
    ]


class sb_batch(ctypes.Structure):
    _fields_ = [
        ("eof", ctypes.c_bool),
        ("slot", ctypes.c_uint32),
        ("data", ctypes.c_void_p),
        ("nbytes", ctypes.c_size_t),
        ("seq", ctypes.c_uint64),
        ("stream", ctypes.c_uint64),
        ("meta", ctypes.c_char_p),
    ]


# void (*sb_reply_fn)(sb_pool *p, int error, const sb_batch *batch, uint32_t slot, void *ptr, void *userdata)
REPLY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(sb_batch), ctypes.c_uint32,
                            ctypes.c_void_p, ctypes.c_void_p)


def _tree() -> Path | None:
    """The source tree this package runs from, if it does (client/python/shmbroker -> the
    tree whose build/ holds what `make` built); None for an installed package."""
    here = Path(__file__).resolve().parent
    tree = here.parents[2]
    if (tree / "Makefile").is_file() and (tree / "client" / "python" / "shmbroker") == here:
        return tree
    return None


def _candidates() -> list[str]:
    here = Path(__file__).resolve().parent
    found = []
    if os.environ.get("SHMBROKER_LIBRARY"):
        found.append(os.environ["SHMBROKER_LIBRARY"])
    found.append(str(here / "_lib" / "libshmbroker.so"))
    # Running from the source tree: client/python/shmbroker -> build/. Only there: an installed
    # package (python3-shmbroker's /usr/lib/python3/dist-packages/shmbroker) loads the
    # system's libshmbroker.so.1, never a /usr/lib/build/ it happens to find.
    tree = _tree()
    if tree is not None:
        found.append(str(tree / "build" / "libshmbroker.so"))
    found.append("libshmbroker.so.1")
    system = ctypes.util.find_library("shmbroker")
    if system:
        found.append(system)
    return found


def load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        if "/" in path and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path, use_errno=True)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        raise ImportError("cannot find libshmbroker.so (build it with `make`, install it with `make install`, "
                          "or point SHMBROKER_LIBRARY at it): " + "; ".join(errors))
    P, C = ctypes.c_void_p, ctypes.c_char_p
    i, u32, u64, sz, i64 = ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int64
    sigs = {
        "sb_connect": (i, [ctypes.POINTER(P), C, i, C]),
        "sb_client_free": (P, [P]),
        "sb_client_code": (i, [P]),
        "sb_client_message": (C, [P]),
        "sb_client_peer": (i, [P, ctypes.POINTER(i64), ctypes.POINTER(i64)]),
        "sb_code_name": (C, [i]),
        "sb_pool_create": (i, [P, ctypes.POINTER(P), C, u64, u32, ctypes.POINTER(sb_pool_options)]),
        "sb_pool_open": (i, [P, ctypes.POINTER(P), C]),
        "sb_pool_close": (P, [P]),
        "sb_pool_name": (C, [P]),
        "sb_pool_slot_size": (u64, [P]),
        "sb_pool_stride": (u64, [P]),
        "sb_pool_slots": (u32, [P]),
        "sb_pool_shmid": (i, [P]),
        "sb_pool_base": (P, [P]),
        "sb_pool_fast": (ctypes.c_bool, [P]),
        "sb_acquire": (i, [P, i, ctypes.POINTER(P), ctypes.POINTER(u32), ctypes.POINTER(sz)]),
        "sb_acquire_seq": (i, [P, u64, i, ctypes.POINTER(P), ctypes.POINTER(u32), ctypes.POINTER(sz)]),
        "sb_publish_acquire": (i, [P, u32, sz, i64, C, i, ctypes.POINTER(P), ctypes.POINTER(u32),
                                   ctypes.POINTER(sz)]),
        "sb_end": (i, [P]),
        "sb_consume": (i, [P, i, ctypes.POINTER(sb_batch)]),
        "sb_release": (i, [P, u32, ctypes.c_bool]),
        "sb_release_consume": (i, [P, ctypes.POINTER(sb_batch), i]),
        "sb_drop": (i, [P]),
        "sb_publish_async": (i, [P, u32, sz, i64, C, REPLY_FN, P]),
        "sb_acquire_async": (i, [P, i, REPLY_FN, P]),
        "sb_client_process": (i, [P]),
        "sb_client_fd": (i, [P]),
        "sb_client_events": (ctypes.c_short, [P]),
        "sb_status": (i, [P, C, ctypes.POINTER(ctypes.c_void_p)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


# What shmbroker._hot calls, in the order its bind() takes them.
HOT_FUNCTIONS = ("sb_acquire", "sb_publish_acquire", "sb_release_consume", "sb_consume", "sb_client_code")


def load_hot(lib: ctypes.CDLL):
    """shmbroker._hot (the per-batch calls without ctypes: _hot.c) bound to ``lib``'s
    functions, or None where it was not built; client.py then makes every call through
    ctypes. An installed package carries it beside this file; in the source tree `make`
    builds it into build/pyext/."""
    try:
        from . import _hot as hot          # type: ignore[attr-defined]
    except ImportError:
        tree = _tree()
        path = tree / "build" / "pyext" / ("_hot" + sysconfig.get_config_var("EXT_SUFFIX")) if tree else None
        if path is None or not path.exists():
            return None
        spec = importlib.util.spec_from_file_location(__package__ + "._hot", path)
        hot = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hot)
    hot.bind(*(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in HOT_FUNCTIONS))
    return hot


class CtypesCalls:
    """shmbroker._hot's calls made through ctypes, for where the extension is not built:
    the same arguments and the same results (_hot.c says what they are). Out-parameters
    are made per call, so that the calls of several clients may run in several threads."""

    NO_SLOT = 0xFFFFFFFF

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def acquire(self, pool: int, timeout_ms: int) -> int:
        ptr, slot, cap = ctypes.c_void_p(), ctypes.c_uint32(), ctypes.c_size_t()
        rc = self.lib.sb_acquire(pool, timeout_ms, ctypes.byref(ptr), ctypes.byref(slot), ctypes.byref(cap))
        return rc if rc < 0 else slot.value

    def publish_acquire(self, pool: int, client: int, slot: int, nbytes: int, seq: int, meta: bytes) -> tuple:
        ptr, nxt, cap = ctypes.c_void_p(), ctypes.c_uint32(self.NO_SLOT), ctypes.c_size_t()
        rc = self.lib.sb_publish_acquire(pool, slot, nbytes, seq, meta, 0, ctypes.byref(ptr), ctypes.byref(nxt),
                                         ctypes.byref(cap))
        if (rc == -errno.ETIMEDOUT and nxt.value == self.NO_SLOT
                and self.lib.sb_code_name(self.lib.sb_client_code(client)) == b"timeout"):
            rc = 0
        return rc, nxt.value

    def next_batch(self, pool: int, prev: int, timeout_ms: int) -> Any:
        b = sb_batch()
        if prev >= 0:
            b.slot = prev
            rc = self.lib.sb_release_consume(pool, ctypes.byref(b), timeout_ms)
        else:
            rc = self.lib.sb_consume(pool, timeout_ms, ctypes.byref(b))
        if rc < 0:
            return rc
        if b.eof:
            return None
        return b.slot, b.nbytes, b.seq, b.stream, b.meta if b.meta is not None else b"{}"


lib = load()
hot = load_hot(lib)
#: The per-batch calls client.py makes: the extension's, or ctypes' where it is not built.
calls = hot if hot is not None else CtypesCalls(lib)
libc = ctypes.CDLL(None, use_errno=True)
libc.free.argtypes = [ctypes.c_void_p]
libc.shutdown.argtypes = [ctypes.c_int, ctypes.c_int]

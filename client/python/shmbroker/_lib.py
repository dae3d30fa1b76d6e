"""ctypes declarations of libshmbroker (include/shmbroker.h), and where to find it: the one
place in the package that mirrors the C header."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path


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


def _candidates() -> list[str]:
    here = Path(__file__).resolve().parent
    found = []
    if os.environ.get("SHMBROKER_LIBRARY"):
        found.append(os.environ["SHMBROKER_LIBRARY"])
    found.append(str(here / "_lib" / "libshmbroker.so"))
    # Running from the source tree: client/python/shmbroker -> build/. Only there: an installed
    # package (python3-shmbroker's /usr/lib/python3/dist-packages/shmbroker) loads the
    # system's libshmbroker.so.1, never a /usr/lib/build/ it happens to find.
    tree = here.parents[2]
    if (tree / "Makefile").is_file() and (tree / "client" / "python" / "shmbroker") == here:
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


lib = load()
libc = ctypes.CDLL(None, use_errno=True)
libc.free.argtypes = [ctypes.c_void_p]
libc.shutdown.argtypes = [ctypes.c_int, ctypes.c_int]

"""The fast path: clients that run their own operations on a pool's control block.

Who gets the block (writers only, as the kernel enforces), the daemon repairing a block
whose lock a dead client held, a live holder that delays the daemon without losing
anything, and clients of both paths sharing one pool.
"""
from __future__ import annotations

import ctypes
import json
import struct
import threading
import time

import numpy as np
import pytest

import shmbroker
from sbtest import (Attachment, Client, needs_root, pool_status, requests_as_user, status_of, wait_for,
                    wait_waiting)

# Offsets in the block (include/sb-fastpool.h): the lock word, the undo log, the pool state.
LOCK = 128
UNDO_N = 192
UNDO_E = 256
POOL = 2304
COUNT_FREE = POOL + 20


def fast_client(daemon, role: str, name: str | None = None) -> Client:
    c = Client(daemon.path)
    c.ok("hello", role=role, fast=True, **({"name": name} if name else {}))
    return c


def attach_block(reply: dict) -> Attachment:
    return Attachment(reply["fast"]["shmid"], reply["fast"]["size"])


def u32(a: Attachment, off: int) -> int:
    return struct.unpack("<I", a.read(off, 4))[0]


@needs_root
def test_the_block_goes_to_writers_and_the_kernel_keeps_it_from_others(open_daemon):
    owner = fast_client(open_daemon, "producer")
    r = owner.ok("create", pool="g", slot_size=4096, slots=2, mode="0640", group="4242")
    assert r["fast"]["member"] >= 1 and r["fast"]["size"] > 0
    block = r["fast"]["shmid"]
    # a reader of the pool (its group: r--) gets no block, and the kernel refuses it too
    out = requests_as_user(open_daemon.path, [{"op": "hello", "role": "consumer", "fast": True},
                                              {"op": "open", "pool": "g"}, {"attach": block}], groups="4242")
    assert out[1]["ok"] and "fast" not in out[1], out[1]
    assert out[2] == {"attached": False, "errno": 13}            # EACCES
    # a writer of a group pool (rw-) gets it, and the kernel lets it attach it
    w = owner.ok("create", pool="w", slot_size=4096, slots=2, mode="0660", group="4242")
    out = requests_as_user(open_daemon.path, [{"op": "hello", "role": "producer", "fast": True},
                                              {"op": "open", "pool": "w"}], groups="4242")
    assert out[1]["fast"]["shmid"] == w["fast"]["shmid"]
    out = requests_as_user(open_daemon.path, [{"attach": w["fast"]["shmid"]}], groups="4242")
    assert out[0]["attached"] is True
    # a stranger cannot attach either block
    out = requests_as_user(open_daemon.path, [{"attach": block}, {"attach": w["fast"]["shmid"]}])
    assert out == [{"attached": False, "errno": 13}] * 2
    # a client that does not ask gets none; status says which path each client takes
    plain = Client(open_daemon.path, role="producer")
    assert "fast" not in plain.ok("open", pool="g")
    assert sorted(c["path"] for c in status_of(plain)["clients"]) == ["fast", "socket"]
    assert pool_status(plain, "g")["fast_members"] == 1


def test_a_lock_held_by_a_dead_client_is_taken_back_and_its_step_undone(daemon):
    c = fast_client(daemon, "producer")
    r = c.ok("create", pool="dead", slot_size=4096, slots=4, persistent=True)
    member = r["fast"]["member"]
    blk = attach_block(r)
    try:
        assert u32(blk, COUNT_FREE) == 4
        # c takes the lock, logs the old count of free slots, writes garbage over it ... and dies
        blk.write(LOCK, struct.pack("<I", member))
        blk.write(UNDO_E, struct.pack("<IIQ", COUNT_FREE, 4, 4))
        blk.write(UNDO_N, struct.pack("<I", 1))
        blk.write(COUNT_FREE, struct.pack("<I", 77))
        c.close()
        wait_for(lambda: u32(blk, LOCK) == 0, what="the daemon to take the lock back")
        assert u32(blk, COUNT_FREE) == 4 and u32(blk, UNDO_N) == 0
        st = pool_status(Client(daemon.path, role="admin"), "dead")
        assert st["free"] == 4 and not st["broken"]
        # the pool works on, for clients of both paths
        with shmbroker.connect("producer", daemon.path) as p, shmbroker.connect("consumer", daemon.path) as q:
            out, inp = p.open("dead"), q.open("dead")
            with out.acquire(timeout=1) as slot:
                slot.publish(np.arange(10, dtype=np.int32))
            with inp.get(timeout=1) as batch:
                assert batch.array.tolist() == list(range(10))
        assert "broken" not in daemon.log_text()
    finally:
        blk.detach()


def test_a_live_lock_holder_delays_the_daemon_and_loses_nothing(daemon):
    holder = fast_client(daemon, "producer")
    r = holder.ok("create", pool="stuck", slot_size=4096, slots=2, persistent=True)
    blk = attach_block(r)
    try:
        plain = Client(daemon.path, role="producer")
        plain.ok("open", pool="stuck")
        gone = Client(daemon.path, role="producer")
        gone.ok("open", pool="stuck")
        # a live member holds the lock (a client stopped inside its critical section)
        blk.write(LOCK, struct.pack("<I", r["fast"]["member"]))
        plain.send("acquire", pool="stuck", timeout_ms=0, id=1)
        with pytest.raises(TimeoutError):
            plain.recv(timeout=0.3)                   # the daemon waits for the lock ...
        gone.close()                                  # ... and so does a leave
        admin = Client(daemon.path, role="admin")
        assert pool_status(admin, "stuck")["users"] == 3
        blk.write(LOCK, struct.pack("<I", 0))         # the holder goes on
        got = plain.recv(timeout=5)
        assert got["ok"] and got["id"] == 1 and got["slot"] in (0, 1)
        wait_for(lambda: pool_status(admin, "stuck")["users"] == 2, what="the leave to be done")
        st = pool_status(admin, "stuck")
        assert st["writing"] == 1 and st["free"] == 1
    finally:
        blk.detach()


@pytest.mark.parametrize("fast_side", ["producer", "consumer"])
def test_clients_of_both_paths_share_a_pool_and_wake_each_other(daemon, fast_side):
    admin = Client(daemon.path, role="admin")
    with shmbroker.connect("admin", daemon.path) as a:
        a.create("mix", slot_size=4096, slots=2, persistent=True)
    raw = Client(daemon.path, role="consumer" if fast_side == "producer" else "producer")
    raw.ok("open", pool="mix")
    with shmbroker.connect(fast_side, daemon.path) as c:
        pool = c.open("mix")
        if fast_side == "producer":
            raw.send("consume", pool="mix", id=7)              # a socket wait, served by a fast publish
            wait_waiting(admin, "mix", "consume")
            with pool.acquire(timeout=1) as slot:
                slot.publish(np.full(3, 9, dtype=np.uint8), meta={"k": "v"})
            got = raw.recv(timeout=5)
            assert got["ok"] and got["id"] == 7 and got["nbytes"] == 3 and got["meta"]["k"] == "v"
            raw.ok("release", pool="mix", slot=got["slot"])
        else:
            result = {}

            def consume():
                with pool.get(timeout=5) as b:                 # a fast wait, served by a socket publish
                    result["data"], result["meta"] = bytes(b.data), b.meta
            t = threading.Thread(target=consume)
            t.start()
            wait_waiting(admin, "mix", "consume")
            s = raw.ok("acquire", pool="mix")
            raw.ok("publish", pool="mix", slot=s["slot"], nbytes=0, meta={"big": "x" * 2000})
            t.join(timeout=10)
            assert result == {"data": b"", "meta": {"big": "x" * 2000}}    # a meta too big for the block
    assert pool_status(admin, "mix")["free"] == 2


def test_a_pool_says_whether_its_calls_run_on_the_block(daemon, monkeypatch):
    with shmbroker.connect("producer", daemon.path) as c:
        assert c.create("on", slot_size=64, slots=2).fast
    monkeypatch.setenv("SHMBROKER_FASTPATH", "0")
    with shmbroker.connect("producer", daemon.path) as c:
        assert not c.create("off", slot_size=64, slots=2).fast

"""The Python binding against a real daemon: dtypes, shapes, zero copy, errors, streams."""
from __future__ import annotations

import ctypes
import errno
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import shmbroker
from sbtest import ROOT, Attachment, needs_root, python_as_user, segment_info, segments, wait_for, wait_waiting

STRUCT = np.dtype([("id", "<i4"), ("pos", "<f8", (3,)), ("tag", "S4"), ("inner", [("a", "u1"), ("b", "<i2")])])


@pytest.fixture(autouse=True, params=["hot", "ctypes"])
def calls(request, monkeypatch):
    """Every test here runs twice: with the per-batch calls in shmbroker._hot (what `make`
    builds and a package ships), and through ctypes alone (a pip install without
    python3-dev). Both must behave the same."""
    if request.param == "ctypes":
        monkeypatch.setattr(shmbroker._lib, "calls", shmbroker._lib.CtypesCalls(shmbroker._lib.lib))
    elif shmbroker._lib.hot is None or shmbroker._lib.calls is not shmbroker._lib.hot:
        pytest.fail("shmbroker._hot is not built: `make` builds it into build/pyext/")
    return request.param


@pytest.fixture
def pair(daemon):
    prod = shmbroker.connect(role="producer", socket=daemon.path, name="py-producer")
    cons = shmbroker.connect(role="consumer", socket=daemon.path, name="py-consumer")
    pool = prod.create("py", slot_size=1 << 20, slots=4)
    yield pool, cons.open("py")
    cons.close()
    prod.close()


@pytest.mark.parametrize("array", [
    np.arange(1000, dtype=np.uint8),
    np.arange(-50, 50, dtype=np.int16).reshape(10, 10),
    np.linspace(0, 1, 4096, dtype=np.float32).reshape(4, 4, 256),
    np.random.default_rng(1).standard_normal((7, 13)),
    (np.arange(6) + 1j * np.arange(6)).astype(np.complex64),
    np.array([True, False, True]),
    np.zeros((0, 5), np.int64),
    np.array(3.25),
    np.array([(1, (0.5, 1.5, 2.5), b"ab", (7, -3)), (2, (3.0, 4.0, 5.0), b"cdef", (8, 9))], dtype=STRUCT),
    np.arange(24, dtype=">u4").reshape(2, 3, 4),
])
def test_round_trip_of_dtypes_and_shapes(pair, array):
    out, inp = pair
    out.put(array, meta={"k": [1, 2]}, seq=5)
    with inp.get(timeout=5) as b:
        got = b.array
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
        assert b.meta == {"k": [1, 2]} and b.seq == 5
        assert got.flags.writeable                # the kernel lets this consumer write (root)


def test_meta_reaches_the_consumer_exactly(pair):
    """Integers past 2^53 (sample ids, hashes) arrive exact through the library on both
    sides: nothing on the way stores them as doubles."""
    out, inp = pair
    meta = {"id": 2**53 + 1, "hash": 2**64 - 1, "nested": {"big": [-(2**63), 12345678901234567890]}}
    out.put(np.zeros(1, np.uint8), meta=meta)
    with inp.get(timeout=5) as b:
        assert b.meta == meta


def test_several_arrays_in_one_slot(pair):
    out, inp = pair
    images = np.random.default_rng(2).integers(0, 255, (8, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(8, dtype=np.int64)
    out.put({"images": images, "labels": labels})
    b = inp.get(timeout=5)
    assert set(b.arrays) == {"images", "labels"}
    np.testing.assert_array_equal(b.arrays["images"], images)
    np.testing.assert_array_equal(b.arrays["labels"], labels)
    offsets = [b.arrays[k].__array_interface__["data"][0] for k in ("images", "labels")]
    assert all(o % 64 == 0 for o in offsets)
    b.release()


def test_zero_copy_a_write_through_one_view_is_seen_by_the_other(pair):
    out, inp = pair
    slot = out.acquire(timeout=5)
    view = slot.ndarray((256, 256), np.float32)
    view[:] = 1.0
    slot.publish(view)            # a view of the slot itself: nothing is copied
    b = inp.get(timeout=5)
    seen = b.array
    assert seen[0, 0] == 1.0
    view[0, 0] = 42.0             # the producer's write shows in the consumer's array
    assert seen[0, 0] == 42.0
    seen[0, 1] = 7.0              # and the consumer's, in the batch it holds, in the producer's
    assert view[0, 1] == 7.0
    b.data[:4] = np.float32(3.0).tobytes()
    assert view[0, 0] == 3.0
    b.release()


def test_arrays_of_the_same_slot_and_shape_are_separate_objects(pair):
    """Batch after batch a loop asks for the same arrays: each call still gets an array of its
    own (its shape and flags the caller's to change), over the slot's memory."""
    out, inp = pair
    seen = []
    for i in range(6):                       # 4 slots: two of them come round again
        with out.acquire(timeout=5) as slot:
            a = slot.ndarray((4, 16), np.int32)
            assert slot.ndarray((4, 16), np.int32, offset=0) is not a
            a[:] = i
            slot.publish(a)
        b = inp.get(timeout=5)
        got = b.array
        assert got.shape == (4, 16) and (got == i).all() and b.nbytes == 256
        got.shape = (64,)                    # the caller's own object: the next batch is unchanged
        seen.append((b.slot, got))
        b.release()
    again = [got for slot, got in seen if slot == seen[0][0]]
    assert len(again) >= 2 and again[0] is not again[1]
    assert again[0].__array_interface__["data"][0] == again[1].__array_interface__["data"][0]


def test_ndarray_refuses_a_place_outside_the_slot(pair):
    """Not even the slot before it (a negative offset from a slot other than the first)."""
    out, _ = pair
    with out.acquire(timeout=5) as first, out.acquire(timeout=5) as second:
        slot = second if second.index > first.index else first
        assert slot.index > 0
        for shape, offset in [((1 << 20) + 1, 0), (16, -64), (16, (1 << 20) - 8)]:
            with pytest.raises(ValueError, match="does not fit"):
                slot.ndarray(shape, np.uint8, offset=offset)
            with pytest.raises(ValueError, match="does not fit"):   # the same again: not remembered as good
                slot.ndarray(shape, np.uint8, offset=offset)
        assert slot.ndarray([2, 8], "u1", offset=64).shape == (2, 8)     # a list for a shape


def test_a_slot_array_with_its_strides_changed_is_copied_as_laid_out(pair):
    """publish() of an array ndarray() made, which the producer then made non-contiguous:
    what arrives is the array as it looked, not the slot's raw bytes."""
    out, inp = pair
    with out.acquire(timeout=5) as slot:
        a = slot.ndarray(8, np.int64)
        a[:] = np.arange(8)
        v = a[::2]
        slot.publish(v)
    with inp.get(timeout=5) as b:
        np.testing.assert_array_equal(b.array, [0, 2, 4, 6])


# A consumer that takes a batch, writes into it (one element, then an in-place numpy
# operation on the whole array) and releases it with requeue; it prints what it saw: the
# permissions of its mapping (the kernel's /proc/self/maps), numpy's flag, and the outcome.
CONSUME_AND_MODIFY = r"""
import json, sys, numpy as np, shmbroker

def mapping_perms(addr):
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(v, 16) for v in span.split("-"))
            if start <= addr < end:
                return perms

with shmbroker.connect("consumer", sys.argv[1]) as c:
    b = c.open(sys.argv[2]).get(timeout=5)
    x = b.array
    try:
        x[0] = -1
        x *= 2
        wrote = "ok"
    except ValueError as e:
        wrote = f"ValueError: {e}"
    print(json.dumps({"slot": b.slot, "perms": mapping_perms(x.__array_interface__["data"][0]),
                      "writeable": bool(x.flags.writeable), "data_readonly": b.data.readonly, "wrote": wrote}))
    b.release(requeue=True)
"""


def test_a_consumer_modifies_its_batch_in_place(daemon):
    """A trainer normalises its batch in place: the consumer's arrays are writable, the write
    lands in the shared memory (read back through an attachment of its own, and by the next
    consumer of the requeued batch), and the process survives it (run apart, so that a
    SIGSEGV fails the test instead of killing pytest)."""
    with shmbroker.connect("producer", daemon.path) as p, shmbroker.connect("consumer", daemon.path) as c:
        pool = p.create("inplace", slot_size=4096, slots=2)
        cpool = c.open("inplace")
        pool.put(np.arange(16, dtype=np.int32))
        env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
        r = subprocess.run([sys.executable, "-c", CONSUME_AND_MODIFY, daemon.path, "inplace"], capture_output=True,
                           text=True, timeout=60, env=env)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)      # -11: SIGSEGV
        seen = json.loads(r.stdout)
        assert seen["wrote"] == "ok" and seen["writeable"] and not seen["data_readonly"], seen
        assert seen["perms"].startswith("rw"), seen
        want = np.arange(16, dtype=np.int32) * 2
        want[0] = -2
        seg = Attachment(pool.shmid, pool.stride * 2, readonly=True)
        try:
            assert seg.read(seen["slot"] * pool.stride, want.nbytes) == want.tobytes()
        finally:
            seg.detach()
        b = cpool.get(timeout=5)                     # requeued: the modified batch is passed on
        assert b.slot == seen["slot"] and b.array.tolist() == want.tolist()
        b.release()


@needs_root
@pytest.mark.parametrize("mode, writable", [(0o640, False), (0o660, True)], ids=["0640", "0660"])
def test_a_consumer_maps_the_pool_read_write_only_with_write_permission(open_daemon, mode, writable):
    """As another uid, in the pool's group: with group read permission alone (0640) the
    kernel refuses a read-write attachment, the library attaches read-only, and numpy says
    so (a write raises ValueError, not SIGSEGV); with read and write (0660) the batch is the
    consumer's to modify, and it goes on modified when requeued."""
    with shmbroker.connect("producer", open_daemon.path) as p, \
            shmbroker.connect("consumer", open_daemon.path) as c:
        pool = p.create("grp", slot_size=4096, slots=1, mode=mode, group="4242")
        assert int(segment_info(pool.shmid)["perms"], 8) & 0o777 == mode
        cpool = c.open("grp")
        pool.put(np.arange(16, dtype=np.int32))
        [seen] = python_as_user(CONSUME_AND_MODIFY, open_daemon.path, "grp", groups="4242")
        assert seen["perms"].startswith("rw" if writable else "r-"), seen
        assert seen["writeable"] is writable and seen["data_readonly"] is not writable, seen
        if writable:
            assert seen["wrote"] == "ok", seen
            want = np.arange(16, dtype=np.int32) * 2
            want[0] = -2
        else:
            assert seen["wrote"].startswith("ValueError: assignment destination is read-only"), seen
            want = np.arange(16, dtype=np.int32)
        b = cpool.get(timeout=5)
        assert b.array.tolist() == want.tolist()
        b.release()


IPC_SET, IPC_STAT = 1, 2


def chmod_segment(shmid: int, mode: int) -> None:
    """Set the permission bits of a segment with shmctl(IPC_SET), as a pool's owner may do
    behind the daemon's back. The struct shmid_ds is read with IPC_STAT and written back
    with only its mode changed: shm_perm.mode is at byte 20 (after key, uid, gid, cuid and
    cgid, 4 bytes each), and its low 16 bits come first on a little-endian machine."""
    assert sys.byteorder == "little"
    libc = ctypes.CDLL(None, use_errno=True)
    ds = ctypes.create_string_buffer(512)
    assert libc.shmctl(shmid, IPC_STAT, ds) == 0, os.strerror(ctypes.get_errno())
    perm_mode = ctypes.c_uint16.from_buffer(ds, 20)
    perm_mode.value = (perm_mode.value & ~0o777) | mode
    assert libc.shmctl(shmid, IPC_SET, ds) == 0, os.strerror(ctypes.get_errno())


OPEN_AS_PRODUCER = r"""
import json, sys, shmbroker
with shmbroker.connect("producer", sys.argv[1]) as c:
    try:
        c.open(sys.argv[2])
        print(json.dumps("ok"))
    except shmbroker.BrokerError as e:
        print(json.dumps([type(e).__name__, e.errno]))
"""


@needs_root
def test_a_producer_the_kernel_refuses_write_access_fails_to_open(open_daemon):
    """Only consumers and admins fall back to a read-only attachment: a producer could only
    crash on its first write. The daemon lets a member of the group open a 0660 pool as a
    producer, but the owner has made the segment 0640 behind its back: the kernel refuses
    the producer a read-write attachment, and the open fails with EACCES."""
    with shmbroker.connect("producer", open_daemon.path) as p:
        pool = p.create("behind", slot_size=4096, slots=1, mode=0o660, group="4242")
        chmod_segment(pool.shmid, 0o640)
        assert int(segment_info(pool.shmid)["perms"], 8) & 0o777 == 0o640
        assert python_as_user(OPEN_AS_PRODUCER, open_daemon.path, "behind", groups="4242") == \
            [["BrokerError", errno.EACCES]]


def test_views_outlive_release_and_close(daemon):
    prod = shmbroker.connect("producer", daemon.path)
    cons = shmbroker.connect("consumer", daemon.path)
    pool = prod.create("v", slot_size=4096, slots=1)
    pool.put(np.full(100, 7, np.int32))
    b = cons.open("v").get(timeout=5)
    kept = b.array
    b.release()
    cons.close()
    prod.close()
    gc.collect()
    assert int(kept.sum()) == 700            # still mapped: no crash, no garbage
    with pytest.raises(shmbroker.ConnectionLost):
        pool.put(np.zeros(1))
    with pytest.raises(shmbroker.ConnectionLost):
        cons.status()
    del kept, b
    gc.collect()


def test_timeouts_and_errors(daemon, pair):
    out, inp = pair
    t0 = time.monotonic()
    with pytest.raises(shmbroker.Timeout) as e:
        inp.get(timeout=0.1)
    assert e.value.code == "timeout" and isinstance(e.value, TimeoutError)
    assert time.monotonic() - t0 >= 0.09
    slots = [out.acquire(timeout=0) for _ in range(4)]
    with pytest.raises(shmbroker.Timeout):
        out.acquire(timeout=0.05)
    for s in slots:
        s.release()
    c = shmbroker.connect("admin", daemon.path)
    with pytest.raises(shmbroker.NoSuchPool) as e:
        c.open("missing")
    assert e.value.code == "no_such_pool" and "missing" in str(e.value)
    with pytest.raises(shmbroker.PoolExists) as e:
        c.create("py", slot_size=64, slots=1)
    assert e.value.message == 'pool "py" exists' and str(e.value) == 'create py: pool "py" exists'
    with pytest.raises(ValueError):
        out.put(np.zeros(2 << 20, np.uint8))           # larger than a slot
    with pytest.raises(TypeError):
        out.put(np.array([object()]))
    with pytest.raises(shmbroker.WrongRole):
        c.open("py").get(timeout=0)
    with pytest.raises(shmbroker.ConnectionLost):
        shmbroker.connect("admin", "/nonexistent/shmbroker.sock")
    c.close()


def test_refusals_carry_the_daemons_explanation(daemon):
    """What the daemon (or the library, refusing a name before sending it as the daemon
    would) says was wrong reaches the exception: the rule, not "invalid argument"."""
    c = shmbroker.connect("admin", daemon.path)
    for call in (lambda: c.create("a/b c", slot_size=64, slots=1), lambda: c.open("a/b c"),
                 lambda: c.status("a/b c")):
        with pytest.raises(shmbroker.BadRequest) as e:
            call()
        assert e.value.code == "bad_request" and e.value.errno == errno.EINVAL
        assert e.value.message.startswith('"a/b c" is not a pool name: a pool name is 1 to 64 letters, digits')
        assert e.value.message in str(e.value) and "invalid argument" not in str(e.value)
    with pytest.raises(shmbroker.BadRequest) as e:
        c.create("fine", slot_size=64, slots=0)
    assert '"slots" must be an integer from 1 to' in e.value.message
    with pytest.raises(shmbroker.LimitExceeded) as e:
        c.create("fine", slot_size=1 << 40, slots=1)
    assert "max_bytes" in e.value.message           # the limit, by name
    c.close()


def test_iteration_ends_with_the_stream_and_releases(pair):
    out, inp = pair
    for epoch in range(2):
        for i in range(4):                       # as many as there are slots
            out.put(np.array([epoch, i]), seq=i, timeout=5)
        out.end()
        got = [tuple(b.array) for b in inp]
        assert got == [(epoch, i) for i in range(4)]
    st = inp.client.status("py")["pools"][0]
    assert st["free"] == 4 and st["consumed"] == 8
    with pytest.raises(shmbroker.EndOfStream):
        out.end()
        inp.get(timeout=5)


def test_slot_context_gives_back_an_unpublished_slot(pair):
    out, inp = pair
    with out.acquire(timeout=1) as slot:
        slot.ndarray(10)[:] = 1
    assert inp.client.status("py")["pools"][0]["free"] == 4


def test_killed_producer_process_loses_nothing(daemon):
    admin = shmbroker.connect("admin", daemon.path)
    admin.create("k", slot_size=4096, slots=2, persistent=True)
    code = ("import numpy as np, shmbroker, sys, time\n"
            "c = shmbroker.connect('producer', sys.argv[1]); p = c.open('k')\n"
            "p.put(np.arange(10)); s = p.acquire(); s.ndarray(10)[:] = 3\n"
            "print('ready', flush=True); time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    proc = subprocess.Popen([sys.executable, "-c", code, daemon.path], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    st = admin.status("k")["pools"][0]
    assert (st["ready"], st["writing"]) == (1, 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: admin.status("k")["pools"][0]["writing"] == 0, what="reclaim")
    assert admin.status("k")["pools"][0]["ready"] == 1     # what was published stays
    admin.close()


def test_pip_install_without_a_package_index(daemon, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-cache-dir",
                        str(ROOT / "client" / "python")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    code = ("import numpy as np, shmbroker, sys\n"
            "assert '/venv/' in shmbroker.__file__, shmbroker.__file__\n"
            "with shmbroker.connect('producer', sys.argv[1]) as c:\n"
            "    p = c.create('pip', slot_size=4096, slots=1); p.put(np.arange(3)); print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHMBROKER_LIBRARY")}
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code, daemon.path], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


def test_pipelined_publish_returns_at_once_and_reports_refusals_later(daemon):
    with shmbroker.connect("producer", daemon.path) as p, shmbroker.connect("consumer", daemon.path) as c:
        pool = p.create("pipe", slot_size=4096, slots=2, ordered=True)
        cpool = c.open("pipe")
        pool.pipelined = True
        for i in range(6):
            with pool.acquire(timeout=2) as slot:
                a = slot.ndarray(8, np.int64)
                a[:] = i
                slot.publish(a, seq=i)
            b = cpool.get(timeout=2)
            assert b.seq == i and (b.array == i).all()
            b.release()
        with pool.acquire(timeout=2) as slot:
            slot.publish(slot.ndarray(1, np.uint8), seq=3)     # already published: refused, later
        with pytest.raises(shmbroker.BadRequest, match="seq 3 was already published"):
            pool.acquire(timeout=2)
        pool.end()
        with pytest.raises(shmbroker.EndOfStream):
            cpool.get(timeout=2)
        st = c.status("pipe")["pools"][0]
        assert st["free"] == 2 and st["writing"] == 0            # nothing held after end()


def test_drop_removes_the_pool_and_ends_waits_on_it(daemon):
    with shmbroker.connect("producer", daemon.path) as p, shmbroker.connect("consumer", daemon.path) as c, \
            shmbroker.connect("admin", daemon.path) as watcher:
        pool = p.create("d", slot_size=4096, slots=2, persistent=True)
        cpool = c.open("d")
        outcome = {}

        def consume():
            try:
                cpool.get(timeout=10)
            except shmbroker.BrokerError as e:
                outcome["error"] = e
        t = threading.Thread(target=consume)
        t.start()
        wait_waiting(watcher, "d", "consume")
        pool.drop()
        t.join(timeout=10)
        assert isinstance(outcome.get("error"), shmbroker.NoSuchPool), outcome   # the wait ends at once
        assert watcher.status()["pools"] == []
        with pytest.raises(shmbroker.NoSuchPool):
            pool.acquire(timeout=0)
        p.create("d", slot_size=64, slots=1)             # the name is free again


def test_a_requeued_batch_comes_back_first_to_any_consumer(pair, daemon):
    out, inp = pair
    other = shmbroker.connect("consumer", daemon.path).open("py")
    for i in range(3):
        out.put(np.array([i]), seq=i)
    b = inp.get(timeout=5)
    assert b.seq == 0
    b.release(requeue=True)
    assert b.released
    again = other.get(timeout=5)                     # ahead of 1 and 2, to another consumer too
    assert again.seq == 0 and again.array.tolist() == [0]
    again.release()                                  # a plain release: gone for good
    assert [inp.get(timeout=5).seq, other.get(timeout=5).seq] == [1, 2]
    st = inp.client.status("py")["pools"][0]
    assert (st["ready"], st["reading"], st["consumed"]) == (0, 2, 4)
    other.client.close()


@needs_root
def test_create_options_reach_the_kernel_and_the_pool(daemon):
    """mode and group end up on the segment itself (root may name any group), and
    on_consumer_death="free" frees what a departed consumer was reading."""
    with shmbroker.connect("producer", daemon.path) as p:
        pool = p.create("opts", slot_size=4096, slots=2, mode=0o640, group="4242", on_consumer_death="free")
        seg = segment_info(pool.shmid)
        assert int(seg["perms"], 8) & 0o777 == 0o640, seg
        assert (int(seg["uid"]), int(seg["gid"])) == (os.getuid(), 4242), seg
        st = p.status("opts")["pools"][0]
        assert (st["mode"], st["gid"], st["on_consumer_death"]) == ("0640", 4242, "free")
        pool.put(np.arange(3))
        c = shmbroker.connect("consumer", daemon.path)
        held = c.open("opts").get(timeout=5)
        assert p.status("opts")["pools"][0]["reading"] == 1
        c.close()                                    # gone without releasing
        wait_for(lambda: p.status("opts")["pools"][0]["reading"] == 0, what="the reclaim")
        st = p.status("opts")["pools"][0]
        assert (st["ready"], st["free"]) == (0, 2 - st["writing"]), st   # freed, not requeued
        del held
        with pytest.raises(ValueError):
            p.create("bad", slot_size=64, slots=1, on_consumer_death="ignore")


def test_limit_exceeded(daemon_factory):
    d = daemon_factory(config=json.dumps({"limits": {"max_pools": 1}}))
    with shmbroker.connect("admin", d.path) as c:
        c.create("one", slot_size=64, slots=1)
        with pytest.raises(shmbroker.LimitExceeded) as e:
            c.create("two", slot_size=64, slots=1)
        assert e.value.code == "limit" and "max_pools" in str(e.value)
        assert [p["pool"] for p in c.status()["pools"]] == ["one"]


def test_publishing_a_slot_twice_raises_not_holder(pair):
    out, inp = pair
    slot = out.acquire(timeout=1)
    slot.publish(slot.ndarray(4, np.uint8))
    with pytest.raises(shmbroker.NotHolder) as e:
        slot.publish(slot.ndarray(4, np.uint8))      # no longer this producer's: it was handed on
    assert e.value.code == "not_holder" and "not being written" in str(e.value)
    assert inp.client.status("py")["pools"][0]["published"] == 1


AS_ANOTHER_USER = r"""
import json, sys, shmbroker
def attempt(fn):
    try:
        fn()
        return "ok"
    except shmbroker.BrokerError as e:
        return [type(e).__name__, e.code, isinstance(e, PermissionError)]
with shmbroker.connect("producer", sys.argv[1]) as c:
    for fn in (lambda: c.open("private"), lambda: c.open("shared").drop(),
               lambda: c.create("theirs", slot_size=64, slots=1, group="4242"),
               lambda: c.create("mine", slot_size=64, slots=1).drop()):
        print(json.dumps(attempt(fn)), flush=True)
"""


@needs_root
def test_permission_denied_to_another_user(open_daemon):
    owner = shmbroker.connect("producer", open_daemon.path)
    owner.create("private", slot_size=4096, slots=1)
    owner.create("shared", slot_size=4096, slots=1, mode=0o666)
    denied = ["PermissionDenied", "permission_denied", True]
    assert python_as_user(AS_ANOTHER_USER, open_daemon.path) == [denied, denied, denied, "ok"]
    assert sorted(p["pool"] for p in owner.status()["pools"]) == ["private", "shared"]
    owner.close()


def test_no_daemon_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    """Without a daemon, connect names the socket it tried, where that came from, and how to
    get one listening: not a bare ENOENT."""
    monkeypatch.delenv("SHMBROKER_SOCKET", raising=False)
    missing = str(tmp_path / "none.sock")
    with pytest.raises(shmbroker.ConnectionLost) as e:
        shmbroker.connect("consumer", missing)
    assert missing in str(e.value) and "no shmbrokerd listens there" in str(e.value)
    monkeypatch.setenv("SHMBROKER_SOCKET", missing)
    with pytest.raises(shmbroker.ConnectionLost) as e:
        shmbroker.connect("consumer")
    assert f"{missing} (from $SHMBROKER_SOCKET)" in str(e.value) and e.value.errno == errno.ENOENT

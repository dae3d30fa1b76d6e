"""Every operation over the socket, replies in order with their ids, and bad input."""
from __future__ import annotations

import json
import os
import resource
import socket

import pytest

import shmbroker
from sbtest import Attachment, needs_root, segment_info, segments, wait_waiting


def test_scripted_session_of_every_operation(daemon):
    prod = daemon.client()
    hello = prod.ok("hello", role="producer", name="worker-0", id=1)
    assert hello["id"] == 1 and hello["version"] >= 1
    assert hello["pid"] == os.getpid() and hello["uid"] == os.getuid()

    created = prod.ok("create", pool="train", slot_size="1MiB", slots=4)
    assert created["pool"] == "train" and created["slots"] == 4
    assert created["slot_size"] == 1 << 20 and created["stride"] % os.sysconf("SC_PAGESIZE") == 0
    info = segment_info(created["shmid"])
    assert info and int(info["size"]) == created["stride"] * 4

    cons = daemon.client(role="consumer", name="trainer")
    opened = cons.ok("open", pool="train")
    assert opened["shmid"] == created["shmid"] and opened["stride"] == created["stride"]

    seg_w = Attachment(created["shmid"], int(info["size"]))
    seg_r = Attachment(created["shmid"], int(info["size"]), readonly=True)
    try:
        a = prod.ok("acquire", pool="train", timeout_ms=1000)
        assert a["offset"] == a["slot"] * created["stride"]
        seg_w.write(a["offset"], b"batch-0")
        prod.ok("publish", pool="train", slot=a["slot"], nbytes=7, seq=0, meta={"shape": [7], "dtype": "u1"})

        c = cons.ok("consume", pool="train", timeout_ms=1000)
        assert (c["slot"], c["offset"], c["nbytes"], c["seq"]) == (a["slot"], a["offset"], 7, 0)
        assert c["meta"] == {"shape": [7], "dtype": "u1"}
        assert seg_r.read(c["offset"], 7) == b"batch-0"   # zero copy: the same memory

        st = prod.ok("status")
        pool = st["pools"][0]
        assert (pool["pool"], pool["slots"], pool["slot_size"]) == ("train", 4, 1 << 20)
        assert (pool["free"], pool["writing"], pool["ready"], pool["reading"]) == (3, 0, 0, 1)
        names = {cl["name"]: cl for cl in st["clients"]}
        assert names["trainer"]["role"] == "consumer" and names["trainer"]["pid"] == os.getpid()
        assert names["trainer"]["held"][0]["slot"] == c["slot"]
        assert names["worker-0"]["uid"] == os.getuid()

        cons.ok("release", pool="train", slot=c["slot"])
        prod.ok("end", pool="train")
        assert cons.ok("consume", pool="train", timeout_ms=1000)["eof"] is True
        prod.ok("drop", pool="train")
        assert prod.ok("status")["pools"] == []
        r = cons.rpc("consume", pool="train", timeout_ms=0)
        assert r["error"] == "no_such_pool"
    finally:
        seg_w.detach()
        seg_r.detach()


def test_pipelined_requests_are_answered_in_order_with_their_ids(daemon):
    c = daemon.client(role="producer")
    c.ok("create", pool="p", slot_size=64, slots=2)
    ids = [7, "seven", None, [1, {"a": 2}], {"nested": {"x": [True, False]}}, 3.5, -1]
    lines = []
    for i, id_ in enumerate(ids * 50):
        lines.append(json.dumps({"op": "status", "id": id_}) if i % 2 else
                     json.dumps({"op": "nope", "id": id_}))
    c.send_raw(("\n".join(lines) + "\n").encode())
    for i, id_ in enumerate(ids * 50):
        r = c.recv()
        assert r["id"] == id_
        assert r["ok"] is bool(i % 2)


def test_a_waiting_request_holds_back_later_replies(daemon):
    p = daemon.client(role="producer")
    p.ok("create", pool="p", slot_size=64, slots=1)
    c = daemon.client(role="consumer")
    c.ok("open", pool="p")
    c.send_raw(b'{"op":"consume","pool":"p","id":"first"}\n{"op":"status","id":"second"}\n')
    wait_waiting(p, "p", "consume")
    with pytest.raises(socket.timeout):
        c.recv(timeout=0.05)                     # the status is answered behind the consume, not before
    s = p.ok("acquire", pool="p")
    p.ok("publish", pool="p", slot=s["slot"], nbytes=1)
    assert c.recv()["id"] == "first"
    assert c.recv()["id"] == "second"


@pytest.mark.parametrize("line,code", [
    (b"not json", "bad_request"),
    (b"[1,2,3]", "bad_request"),
    (b'"just a string"', "bad_request"),
    (b'{"op": 5}', "bad_request"),
    (b'{"id": 1}', "bad_request"),
    (b'{"op":"frobnicate"}', "unknown_op"),
    (b'{"op":"acquire","pool":"p","timeout_ms":-1}', "bad_request"),
    (b'{"op":"acquire","pool":"p","timeout_ms":1e300}', "bad_request"),
    (b'{"op":"acquire","pool":"p","timeout_ms":1.5}', "bad_request"),
    (b'{"op":"acquire","pool":"p","timeout_ms":"10"}', "bad_request"),
    (b'{"op":"publish","pool":"p","slot":0,"nbytes":1e300}', "bad_request"),
    (b'{"op":"publish","pool":"p","slot":-1,"nbytes":1}', "bad_request"),
    (b'{"op":"publish","pool":"p","slot":0,"nbytes":1,"meta":[1]}', "bad_request"),
    (b'{"op":"release","pool":"p","slot":0,"requeue":"yes"}', "bad_request"),
    (b'{"op":"create","pool":"../etc","slot_size":1,"slots":1}', "bad_request"),
    (b'{"op":"create","pool":"q","slot_size":-5,"slots":1}', "bad_request"),
    (b'{"op":"create","pool":"q","slot_size":"lots","slots":1}', "bad_request"),
    (b'{"op":"create","pool":"q","slot_size":1,"slots":1,"ordered":"no"}', "bad_request"),
    (b'{"op":"open","pool":"missing"}', "no_such_pool"),
    (b'{"op":"acquire","pool":"missing"}', "no_such_pool"),
    (b'{"op":"hello","role":"producer"}', "bad_request"),
    (b'{"op":"consume","pool":"p"}', "wrong_role"),
    (b'{"op":"status","pool":"missing"}', "no_such_pool"),
    (b'\xff\xfe{"op":"status"}', "bad_request"),
    (b'{"op":"status","id":"\xc0\xaf"}', "bad_request"),
    (b"[" * 5000 + b"]" * 5000, "bad_request"),
    (b'{"op":"status"} trailing', "bad_request"),
])
def test_bad_input_gets_an_error_and_keeps_the_connection(daemon, line, code):
    c = daemon.client(role="producer")
    c.ok("create", pool="p", slot_size=64, slots=1)
    c.send_raw(line + b"\n")
    r = c.recv()
    assert r["ok"] is False and r["error"] == code, r
    assert isinstance(r["message"], str) and len(r["message"]) > 5
    assert c.ok("status")["pools"][0]["pool"] == "p"   # still connected and served


def test_every_operation_but_hello_needs_hello(daemon):
    c = daemon.client()
    for op in ("create", "open", "acquire", "publish", "consume", "release", "end", "drop", "status"):
        r = c.rpc(op, pool="p")
        assert r["error"] == "need_hello", r


def test_operations_need_the_pool_open_on_the_connection(daemon):
    a = daemon.client(role="producer")
    a.ok("create", pool="p", slot_size=64, slots=1)
    b = daemon.client(role="producer")
    for op, extra in (("acquire", {}), ("publish", {"slot": 0, "nbytes": 1}), ("release", {"slot": 0}),
                      ("end", {}), ("drop", {})):
        assert b.rpc(op, pool="p", **extra)["error"] == "no_such_pool"
    assert a.rpc("create", pool="p", slot_size=64, slots=1)["error"] == "pool_exists"


def test_only_the_holder_publishes_or_releases(daemon):
    a = daemon.client(role="producer")
    a.ok("create", pool="p", slot_size=64, slots=2)
    b = daemon.client(role="producer")
    b.ok("open", pool="p")
    s = a.ok("acquire", pool="p")["slot"]
    assert b.rpc("publish", pool="p", slot=s, nbytes=1)["error"] == "not_holder"
    assert b.rpc("release", pool="p", slot=s)["error"] == "not_holder"
    assert a.rpc("publish", pool="p", slot=s, nbytes=65)["error"] == "bad_request"
    assert a.rpc("publish", pool="p", slot=99, nbytes=1)["error"] == "not_holder"
    a.ok("publish", pool="p", slot=s, nbytes=64)
    assert a.rpc("publish", pool="p", slot=s, nbytes=1)["error"] == "not_holder"


def test_roles_gate_operations(daemon):
    admin = daemon.client(role="admin")
    admin.ok("create", pool="p", slot_size=64, slots=1)
    assert admin.rpc("acquire", pool="p")["error"] == "wrong_role"
    assert admin.rpc("consume", pool="p")["error"] == "wrong_role"
    assert admin.rpc("end", pool="p")["error"] == "wrong_role"
    assert daemon.client().rpc("hello", role="king")["error"] == "bad_request"


def test_acquire_with_timeout_zero_does_not_wait(daemon):
    p = daemon.client(role="producer")
    p.ok("create", pool="p", slot_size=64, slots=1)
    p.ok("acquire", pool="p", timeout_ms=0)
    r = p.rpc("acquire", pool="p", timeout_ms=0)
    assert r["error"] == "timeout"
    c = daemon.client(role="consumer")
    c.ok("open", pool="p")
    assert c.rpc("consume", pool="p", timeout_ms=0)["error"] == "timeout"


def test_release_requeue_and_a_producers_unpublished_release(daemon):
    p = daemon.client(role="producer")
    p.ok("create", pool="p", slot_size=64, slots=2)
    c = daemon.client(role="consumer")
    c.ok("open", pool="p")
    s = p.ok("acquire", pool="p")["slot"]
    p.ok("release", pool="p", slot=s)   # given back unpublished
    assert c.rpc("consume", pool="p", timeout_ms=0)["error"] == "timeout"
    for seq in (1, 2):
        s = p.ok("acquire", pool="p")["slot"]
        p.ok("publish", pool="p", slot=s, nbytes=1, seq=seq)
    got = c.ok("consume", pool="p")
    assert got["seq"] == 1
    c.ok("release", pool="p", slot=got["slot"], requeue=True)
    assert c.ok("consume", pool="p")["seq"] == 1
    assert c.ok("consume", pool="p")["seq"] == 2


def fill_descriptor_table(pid: int) -> tuple[int, int]:
    """Lower process @pid's soft RLIMIT_NOFILE to its lowest free descriptor, so that it can
    open no more; return the old limits, for resource.prlimit() to put back."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(set(range(len(used) + 1)) - used), old[1]))
    return old


def test_a_system_call_that_fails_is_an_internal_error(daemon, monkeypatch):
    """The daemon's own failures reach the client as `internal`. With its descriptor table
    full, the first wait with a timeout needs a timer descriptor the daemon cannot get: the
    client gets the error with a message, the daemon logs it, nothing is left waiting, and
    the connection and the daemon go on once descriptors can be had again. The library's
    waits are the daemon's here (SHMBROKER_FASTPATH=0): on the fast path it waits itself."""
    holder = daemon.pool_client("x", "producer", slot_size=4096, slots=1)
    holder.ok("acquire", pool="x")
    c = daemon.pool_client("x", "producer")
    monkeypatch.setenv("SHMBROKER_FASTPATH", "0")
    with shmbroker.connect("producer", daemon.path) as py:
        pool = py.open("x")
        old = fill_descriptor_table(daemon.proc.pid)
        try:
            r = c.err("acquire", "internal", pool="x", timeout_ms=1000, id=9)
            with pytest.raises(shmbroker.BrokerError) as e:
                pool.acquire(timeout=1)
        finally:
            resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, old)
        assert type(e.value) is shmbroker.BrokerError and e.value.code == "internal"
    assert r["id"] == 9 and "failed" in r["message"]
    assert c.ok("status", pool="x")["pools"][0]["acquire_waiters"] == 0
    assert any(line.startswith("<3>") and '"acquire" failed' in line for line in daemon.log_text().splitlines())
    c.err("acquire", "timeout", pool="x", timeout_ms=10)

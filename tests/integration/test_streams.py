"""Blocking waits, first come first served, timeouts, ordered pools and end of stream."""
from __future__ import annotations

import time

from sbtest import needs_root, requests_as_user, wait_for, wait_waiting


def open_pair(daemon, slots=2, ordered=False):
    p = daemon.pool_client("s", "producer", "p", slot_size=4096, slots=slots, ordered=ordered)
    return p, daemon.pool_client("s", "consumer", "c")


def put(p, seq=None, nbytes=1, meta=None):
    s = p.ok("acquire", pool="s", timeout_ms=2000)["slot"]
    extra = {} if seq is None else {"seq": seq}
    p.ok("publish", pool="s", slot=s, nbytes=nbytes, meta=meta or {}, **extra)
    return s


def test_blocked_consume_is_woken_by_publish(daemon):
    p, c = open_pair(daemon)
    c.send("consume", pool="s", id="w")          # waits forever (no timeout_ms)
    wait_waiting(p, "s", "consume")
    put(p, seq=4, meta={"k": "v"})
    r = c.recv()
    assert r["id"] == "w" and r["seq"] == 4 and r["meta"] == {"k": "v"}


def test_blocked_acquires_are_served_first_come_first_served(daemon):
    p = daemon.client(role="producer")
    p.ok("create", pool="s", slot_size=64, slots=1)
    held = p.ok("acquire", pool="s")["slot"]
    waiters = []
    for i in range(3):
        w = daemon.client(role="producer", name=f"w{i}")
        w.ok("open", pool="s")
        w.send("acquire", pool="s", id=i)
        waiters.append(w)
        wait_waiting(p, "s", "acquire", count=i + 1)     # in line before the next one asks
    p.ok("release", pool="s", slot=held)
    for i, w in enumerate(waiters):
        r = w.recv()
        assert r["id"] == i and r["slot"] == held
        w.ok("release", pool="s", slot=held)   # passes it to the next in line


def test_wait_times_out_and_is_counted(daemon):
    p, c = open_pair(daemon)
    t0 = time.monotonic()
    r = c.rpc("consume", pool="s", timeout_ms=150)
    assert r["error"] == "timeout" and "message" in r
    assert time.monotonic() - t0 >= 0.14
    st = c.ok("status", pool="s")["pools"][0]
    assert st["consumer_wait_ms"] >= 140
    assert st["consume_waiters"] == 0


def test_publish_order_is_delivery_order(daemon):
    p, c = open_pair(daemon, slots=8)
    for seq in (5, 3, 9, 1):
        put(p, seq=seq)
    assert [c.ok("consume", pool="s")["seq"] for _ in range(4)] == [5, 3, 9, 1]


def test_ordered_pool_delivers_by_seq_and_refuses_repeats(daemon):
    p, c = open_pair(daemon, slots=4, ordered=True)
    put(p, seq=2)
    put(p, seq=1)
    s = p.ok("acquire", pool="s")["slot"]
    assert p.rpc("publish", pool="s", slot=s, nbytes=1, seq=2)["error"] == "bad_request"
    assert p.rpc("publish", pool="s", slot=s, nbytes=1)["error"] == "bad_request"   # seq required
    c.send("consume", pool="s", id="x")
    wait_waiting(p, "s", "consume")              # seq 0 missing: the consumer waits though 1 and 2 are ready
    p.ok("publish", pool="s", slot=s, nbytes=1, seq=0)
    assert c.recv()["seq"] == 0
    assert c.ok("consume", pool="s")["seq"] == 1
    assert c.ok("consume", pool="s")["seq"] == 2


def test_end_of_stream_with_two_producers_and_the_next_stream(daemon):
    p1, c = open_pair(daemon, slots=8)
    p2 = daemon.client(role="producer", name="p2")
    p2.ok("open", pool="s")
    c2 = daemon.client(role="consumer", name="c2")
    c2.ok("open", pool="s")
    put(p1, seq=1)
    put(p2, seq=2)
    p1.ok("end", pool="s")
    put(p1, seq=10)                              # p1 is early: it belongs to the next stream
    got = [c.ok("consume", pool="s")["seq"] for _ in range(2)]
    assert sorted(got) == [1, 2]
    assert c.rpc("consume", pool="s", timeout_ms=100)["error"] == "timeout"   # p2 has not ended
    p2.ok("end", pool="s")
    assert c.ok("consume", pool="s")["eof"] is True
    assert c2.ok("consume", pool="s")["eof"] is True      # every consumer gets its eof
    assert c.ok("consume", pool="s")["seq"] == 10         # then the next stream
    p1.ok("end", pool="s")
    p2.ok("end", pool="s")
    assert c.ok("consume", pool="s")["eof"] is True
    assert c2.ok("consume", pool="s")["eof"] is True
    assert c2.ok("status", pool="s")["pools"][0]["streams_ended"] == 2


def test_producer_disconnect_counts_as_end(daemon):
    p1, c = open_pair(daemon)
    p2 = daemon.client(role="producer")
    p2.ok("open", pool="s")
    p1.ok("end", pool="s")
    c.send("consume", pool="s", id="e")
    wait_waiting(p1, "s", "consume")             # p2 has not ended: no eof yet
    p2.close()
    assert c.recv()["eof"] is True


def test_consumer_opening_after_the_end_starts_with_the_next_stream(daemon):
    p, c = open_pair(daemon)
    p.ok("end", pool="s")
    late = daemon.client(role="consumer")
    late.ok("open", pool="s")
    assert late.rpc("consume", pool="s", timeout_ms=50)["error"] == "timeout"
    assert c.ok("consume", pool="s")["eof"] is True


def test_consumer_opening_after_the_end_gets_what_is_left_then_the_end(daemon):
    """`produce`, then `consume`: a consumer that comes after a stream ended, while batches
    of it are still ready, gets them and then that stream's eof, never waiting for an end
    that already happened; then the next stream's batches."""
    for ordered in (False, True):
        p = daemon.pool_client(f"s{ordered:d}", "producer", slot_size=4096, slots=4, ordered=ordered)
        pool = f"s{ordered:d}"
        for seq in range(3):
            s = p.ok("acquire", pool=pool)["slot"]
            p.ok("publish", pool=pool, slot=s, nbytes=1, seq=seq)
        p.ok("end", pool=pool)
        s = p.ok("acquire", pool=pool)["slot"]
        p.ok("publish", pool=pool, slot=s, nbytes=1, seq=0, meta={"next": True})   # the next stream's first
        late = daemon.pool_client(pool, "consumer")
        got = [late.ok("consume", pool=pool, timeout_ms=2000) for _ in range(4)]
        assert [g.get("seq") for g in got[:3]] == [0, 1, 2] and all(g["stream"] == 0 for g in got[:3])
        assert got[3].get("eof") is True
        nxt = late.ok("consume", pool=pool, timeout_ms=2000)
        assert (nxt["stream"], nxt["meta"]) == (1, {"next": True})


def test_ordered_pool_never_wedges_when_a_producer_dies(daemon):
    """A producer dies before publishing seq 0 while another fills the pool with the seqs
    after it. Producers that say their seq on acquire cannot take the last free slot for a
    later seq while nobody may write seq 0: the replacement (here through the Python
    binding) gets it, and the stream goes on in order."""
    import numpy as np
    import shmbroker

    p = daemon.pool_client("o", "producer", slot_size=4096, slots=4, ordered=True)
    dead = daemon.pool_client("o", "producer")
    dead.ok("acquire", pool="o", seq=0)
    dead.close()
    wait_for(lambda: p.ok("status", pool="o")["pools"][0]["writing"] == 0, what="the dead producer's slot back")
    for seq in (1, 2, 3):
        p.ok("publish", pool="o", slot=p.ok("acquire", pool="o", seq=seq)["slot"], nbytes=1, seq=seq)
    r = p.err("acquire", "timeout", pool="o", seq=4, timeout_ms=0)
    assert "kept for seq 0" in r["message"]
    c = daemon.pool_client("o", "consumer")
    p.send("acquire", pool="o", seq=4, id="later")       # waits behind the gap
    wait_waiting(c, "o", "acquire")
    with shmbroker.connect("producer", daemon.path) as py:
        py.open("o").put(np.arange(3, dtype=np.uint8), seq=0, timeout=5)
    for seq in (0, 1, 2, 3):
        b = c.ok("consume", pool="o", timeout_ms=2000)
        assert b["seq"] == seq
        c.ok("release", pool="o", slot=b["slot"])
    assert p.recv()["id"] == "later"                    # seq 4 got its slot once there was room
    p.err("acquire", "bad_request", pool="o", seq=5, max=2)


def test_dropped_pool_fails_waiters(daemon):
    p, c = open_pair(daemon)
    c.send("consume", pool="s", id="w")
    wait_waiting(p, "s", "consume")
    p.ok("drop", pool="s")
    r = c.recv()
    assert r["id"] == "w" and r["error"] == "no_such_pool"
    # the name is free again at once
    p.ok("create", pool="s", slot_size=64, slots=1)


@needs_root
def test_drop_is_for_the_owner_or_root(open_daemon):
    """Another user may use a pool that admits it, but not drop it; the owner and root may."""
    root = open_daemon.client(role="producer", name="root")
    root.ok("create", pool="s", slot_size=4096, slots=1, mode="0666")
    r = requests_as_user(open_daemon.path, [
        {"op": "hello", "role": "producer"},
        {"op": "open", "pool": "s"},
        {"op": "drop", "pool": "s"},
        {"op": "create", "pool": "own", "slot_size": 4096, "slots": 1},
        {"op": "drop", "pool": "own"},
        {"op": "status"},
        {"op": "create", "pool": "theirs", "slot_size": 4096, "slots": 1, "mode": "0666", "persistent": True},
    ])
    assert r[0]["uid"] != 0 and r[1]["ok"], r
    assert r[2]["error"] == "permission_denied" and "owner" in r[2]["message"], r[2]
    s = root.ok("acquire", pool="s", timeout_ms=0)["slot"]   # refused: the pool still serves its users
    root.ok("publish", pool="s", slot=s, nbytes=1)
    assert r[3]["ok"] and r[4]["ok"], r                    # its owner may drop it
    assert "own" not in [p["pool"] for p in r[5]["pools"]]
    assert r[6]["ok"] and r[6]["uid"] == r[0]["uid"]
    root.ok("open", pool="theirs")
    root.ok("drop", pool="theirs")                          # root may drop anyone's
    assert [p["pool"] for p in root.ok("status")["pools"]] == ["s"]

"""The many-slot forms: acquire/consume with "max", publish with "batches", release with
"slots". All or none, in order, and waits that fill up with whatever else is ready."""
from __future__ import annotations

from sbtest import wait_waiting
from test_streams import open_pair


def test_acquire_max_takes_what_is_free_and_publish_batches_in_order(daemon):
    p, c = open_pair(daemon, slots=4)
    r = p.ok("acquire", pool="s", max=8)
    slots = [e["slot"] for e in r["slots"]]
    assert sorted(slots) == [0, 1, 2, 3]                       # 4 free, 8 asked: 4 given
    assert all(e["offset"] == e["slot"] * 4096 for e in r["slots"])
    p.ok("publish", pool="s", batches=[{"slot": s, "nbytes": i + 1, "meta": {"i": i}} for i, s in enumerate(slots)])
    r = c.ok("consume", pool="s", max=3)
    assert [b["meta"]["i"] for b in r["batches"]] == [0, 1, 2]
    assert [b["slot"] for b in r["batches"]] == slots[:3]
    assert [b["nbytes"] for b in r["batches"]] == [1, 2, 3]
    c.ok("release", pool="s", slots=slots[:3])
    assert p.ok("acquire", pool="s", max=2, timeout_ms=0)["slots"]   # freed for producers
    r = c.ok("consume", pool="s", max=10)
    assert [b["meta"]["i"] for b in r["batches"]] == [3]


def test_many_forms_are_all_or_none(daemon):
    p, c = open_pair(daemon, slots=4, ordered=True)
    slots = [e["slot"] for e in p.ok("acquire", pool="s", max=3)["slots"]]
    e = p.err("publish", "bad_request", pool="s",
              batches=[{"slot": slots[0], "nbytes": 1, "seq": 0}, {"slot": slots[1], "nbytes": 1, "seq": 0}])
    assert "seq 0 is listed twice" in e["message"]
    e = p.err("publish", "bad_request", pool="s",
              batches=[{"slot": slots[0], "nbytes": 1, "seq": 0}, {"slot": slots[0], "nbytes": 1, "seq": 1}])
    assert "listed twice" in e["message"]
    e = p.err("publish", "bad_request", pool="s", batches=[{"slot": slots[0], "nbytes": 1, "seq": 0}, {"slot": slots[1]}])
    assert e["message"].startswith('"batches" entry 1: "nbytes"')
    p.err("publish", "not_holder", pool="s", batches=[{"slot": slots[0], "nbytes": 1, "seq": 0}, {"slot": 3, "nbytes": 1, "seq": 1}])
    assert c.err("consume", "timeout", pool="s", timeout_ms=0)           # nothing was published
    p.ok("publish", pool="s", batches=[{"slot": slots[i], "nbytes": 1, "seq": 2 - i} for i in range(3)])
    got = c.ok("consume", pool="s", max=3)["batches"]
    assert [b["seq"] for b in got] == [0, 1, 2]                          # by seq, not listed order
    c.err("release", "not_holder", pool="s", slots=[got[0]["slot"], 99])
    c.err("release", "bad_request", pool="s", slots=[got[0]["slot"], got[0]["slot"]])
    st = c.ok("status", pool="s")["pools"][0]
    assert st["reading"] == 3 and st["free"] == 1
    c.ok("release", pool="s", slots=[b["slot"] for b in got], requeue=True)
    again = c.ok("consume", pool="s", max=3)["batches"]
    assert [b["seq"] for b in again] == [0, 1, 2]                        # requeued in the order listed


def test_many_forms_refuse_bad_shapes(daemon):
    p, c = open_pair(daemon)
    for bad in (0, 1025, -1, "2", 1.5):
        p.err("acquire", "bad_request", pool="s", max=bad)
    p.err("publish", "bad_request", pool="s", batches=[])
    p.err("publish", "bad_request", pool="s", batches=[1])
    p.err("publish", "bad_request", pool="s", batches={"slot": 0})
    c.err("release", "bad_request", pool="s", slots=["x"])
    c.err("release", "bad_request", pool="s", slots=[0] * 1025)


def test_waiting_many_consume_is_filled_with_what_is_ready_and_ends(daemon):
    p, c = open_pair(daemon, slots=4)
    c.send("consume", pool="s", max=4, id="w")
    wait_waiting(p, "s", "consume")                                     # nothing ready: it waits
    slots = [e["slot"] for e in p.ok("acquire", pool="s", max=4)["slots"]]
    p.ok("publish", pool="s", batches=[{"slot": s, "nbytes": 1} for s in slots])
    r = c.recv()
    assert r["id"] == "w" and len(r["batches"]) == 4                     # woken by the first, filled by the rest
    p.ok("end", pool="s")
    c.ok("release", pool="s", slots=slots)
    r = c.ok("consume", pool="s", max=4)
    assert r.get("eof") is True and r["batches"] == []
    c.send("acquire", pool="s", max=2, id="a")                          # a consumer cannot acquire
    assert c.recv()["error"] == "wrong_role"


def test_many_consume_with_big_metas_stays_within_a_reply_budget(daemon):
    """A producer with big metas cannot make a many-slot consume's reply so large that the
    daemon drops the consumer as one that does not read (and requeues its batches for the
    next consumer, which it would drop too): a consume stops adding batches at about 1 MiB
    of meta, the first batch always going, and every batch arrives, in order."""
    p = daemon.pool_client("big", "producer", slot_size=4096, slots=256)
    pad = "x" * (40 << 10)                                    # 256 x 40 KiB: 10 MiB of meta
    for i in range(256):
        p.ok("publish", pool="big", slot=p.ok("acquire", pool="big")["slot"], nbytes=1, meta={"i": i, "pad": pad})
    c = daemon.pool_client("big", "consumer")
    got = []
    while len(got) < 256:
        r = c.ok("consume", pool="big", max=1024, timeout_ms=2000)
        assert 1 <= len(r["batches"]) <= (1 << 20) // (40 << 10)
        got += [b["meta"]["i"] for b in r["batches"]]
        c.ok("release", pool="big", slots=[b["slot"] for b in r["batches"]])
    assert got == list(range(256))
    assert len(c.ok("status", pool="big")["clients"]) == 2      # nobody was dropped

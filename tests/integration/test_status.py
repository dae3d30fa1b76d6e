"""The figures `status` gives a user: how long producers waited for a free slot, the bytes
published, what each client is waiting for, and how long the daemon has been up."""
from __future__ import annotations

import time

from sbtest import pool_status, wait_for, wait_waiting


def test_producer_wait_ms_counts_waits_that_time_out_and_waits_that_are_served(daemon):
    p = daemon.pool_client("w", "producer", "holder", slot_size=64, slots=1)
    s = p.ok("acquire", pool="w")["slot"]
    served = daemon.pool_client("w", "producer", "served")
    late = daemon.pool_client("w", "producer", "late")
    t0 = time.monotonic()
    served.send("acquire", pool="w", id="s")                        # waits for the holder
    wait_waiting(p, "w", "acquire")
    late.err("acquire", "timeout", pool="w", timeout_ms=200)        # 200 ms in the daemon, behind it
    p.ok("release", pool="w", slot=s)
    assert served.recv()["slot"] == s                               # it waited longer than those 200 ms
    elapsed_ms = (time.monotonic() - t0) * 1000
    st = pool_status(p, "w")
    assert 2 * 200 - 5 <= st["producer_wait_ms"] <= 2 * elapsed_ms + 5, (st, elapsed_ms)
    assert st["consumer_wait_ms"] == 0 and st["acquire_waiters"] == 0


def test_bytes_published_counts_the_bytes_of_every_published_batch(daemon):
    p = daemon.pool_client("b", "producer", slot_size=4096, slots=4)
    c = daemon.pool_client("b", "consumer")
    s = p.ok("acquire", pool="b")["slot"]
    p.ok("publish", pool="b", slot=s, nbytes=5)
    slots = [e["slot"] for e in p.ok("acquire", pool="b", max=2)["slots"]]
    p.ok("publish", pool="b", batches=[{"slot": slots[0], "nbytes": 3}, {"slot": slots[1], "nbytes": 4000}])
    s = p.ok("acquire", pool="b")["slot"]
    p.ok("release", pool="b", slot=s)                                # given back unpublished: no bytes
    got = c.ok("consume", pool="b")
    c.ok("release", pool="b", slot=got["slot"])                      # consuming changes nothing
    st = pool_status(p, "b")
    assert (st["bytes_published"], st["published"]) == (5 + 3 + 4000, 3), st


def test_waiting_says_what_each_client_waits_for(daemon):
    watch = daemon.client(role="admin", name="watch")
    holder = daemon.pool_client("q", "producer", "holder", slot_size=64, slots=1)
    s = holder.ok("acquire", pool="q")["slot"]
    loader = daemon.pool_client("q", "producer", "loader")
    trainer = daemon.pool_client("q", "consumer", "trainer")

    def waiting() -> dict:
        return {c["name"]: c["waiting"] for c in watch.ok("status")["clients"]}
    assert set(waiting().values()) == {""}
    loader.send("acquire", pool="q", id="a")
    trainer.send("consume", pool="q", id="c")
    wait_waiting(watch, "q", "acquire")
    wait_waiting(watch, "q", "consume")
    assert waiting() == {"watch": "", "holder": "", "loader": "acquire", "trainer": "consume"}
    holder.ok("publish", pool="q", slot=s, nbytes=1)                # the trainer is served, the loader not yet
    got = trainer.recv()
    assert got["id"] == "c"
    assert waiting() == {"watch": "", "holder": "", "loader": "acquire", "trainer": ""}
    trainer.ok("release", pool="q", slot=got["slot"])
    assert loader.recv()["id"] == "a"
    assert set(waiting().values()) == {""}


def test_uptime_ms_is_the_daemons_age(daemon_factory):
    t0 = time.monotonic()
    d = daemon_factory()
    first = d.client(role="admin")
    wait_for(lambda: first.ok("status")["uptime_ms"] >= 300, what="300 ms of uptime")
    # since the daemon started, not since this connection, and in milliseconds
    late = d.client(role="admin")
    late.ok("create", pool="u", slot_size=64, slots=1)
    st = late.ok("status")
    t1 = time.monotonic()
    assert 300 <= st["uptime_ms"] <= (t1 - t0) * 1000, (st["uptime_ms"], t1 - t0)
    assert st["pools"][0]["age_ms"] < 300 <= st["uptime_ms"]


def test_status_stays_small_whatever_a_client_holds(daemon):
    """One client holding thousands of slots does not blow up every admin's status: each
    client lists at most `held_max` held slots (32 by default, 1024 at most) with
    `held_count` counting them all, and `held_from` pages through the rest."""
    p = daemon.pool_client("many", "producer", slot_size=1, slots=5000)
    held = []
    while len(held) < 5000:
        held += [e["slot"] for e in p.ok("acquire", pool="many", max=1024)["slots"]]
    admin = daemon.client(role="admin")
    me = next(c for c in admin.ok("status")["clients"] if c["role"] == "producer")
    assert (me["held_count"], len(me["held"])) == (5000, 32)
    pages = []
    for start in range(0, 5000, 1024):
        page = next(c for c in admin.ok("status", held_from=start, held_max=1024)["clients"] if c["role"] == "producer")
        assert page["held_count"] == 5000
        pages += [h["slot"] for h in page["held"]]
    assert sorted(pages) == sorted(held)                       # every held slot once, over the pages
    admin.err("status", "bad_request", held_max=1025)

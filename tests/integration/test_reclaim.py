"""Clients killed in every slot state, and the daemon killed: nothing is lost or left."""
from __future__ import annotations

import signal
import time

import pytest

from sbtest import (kill, pool_status, segment_info, segment_marked_for_removal, segments, spawn_client, wait_for,
                    wait_waiting)

HELLO_P = {"op": "hello", "role": "producer"}
HELLO_C = {"op": "hello", "role": "consumer"}
OPEN = {"op": "open", "pool": "k"}


def counts(client):
    st = pool_status(client, "k")
    return st["free"], st["writing"], st["ready"], st["reading"]


@pytest.fixture
def pool(daemon):
    """A persistent pool of 2 slots, watched by an admin connection."""
    admin = daemon.client(role="admin")
    admin.ok("create", pool="k", slot_size=4096, slots=2, persistent=True)
    return admin


def test_killed_producer_waiting_to_acquire(daemon, pool):
    holder = daemon.client(role="producer")
    holder.ok("open", pool="k")
    holder.ok("acquire", pool="k")
    holder.ok("acquire", pool="k")
    victim = spawn_client(daemon.path, [HELLO_P, OPEN, {"op": "acquire", "pool": "k", "_noreply": True}])
    wait_waiting(pool, "k", "acquire")
    kill(victim)
    wait_waiting(pool, "k", "acquire", count=0)          # the waiter is gone
    # the dead waiter must not swallow the slot released next
    other = daemon.client(role="producer")
    other.ok("open", pool="k")
    other.send("acquire", pool="k", timeout_ms=5000, id="x")
    wait_waiting(pool, "k", "acquire")
    holder.ok("release", pool="k", slot=0)
    assert other.recv()["slot"] == 0


def test_killed_producer_writing(daemon, pool):
    victim = spawn_client(daemon.path, [HELLO_P, OPEN, {"op": "acquire", "pool": "k"}], attach=True)
    assert counts(pool) == (1, 1, 0, 0)
    kill(victim)
    wait_for(lambda: counts(pool) == (2, 0, 0, 0), what="the writing slot to be discarded")


def test_killed_producer_after_publishing_keeps_the_batch(daemon, pool):
    """A dead producer's published batch stays ready while the slot it was writing is
    discarded, and the producer is gone from the pool."""
    victim = spawn_client(daemon.path, [HELLO_P, OPEN, {"op": "acquire", "pool": "k"},
                                        {"op": "publish", "pool": "k", "slot": 0, "nbytes": 5, "seq": 3},
                                        {"op": "acquire", "pool": "k"}])
    st = pool_status(pool, "k")
    assert (st["free"], st["writing"], st["ready"], st["reading"], st["producers"]) == (0, 1, 1, 0, 1)
    kill(victim)
    wait_for(lambda: counts(pool) == (1, 0, 1, 0), what="the writing slot to be discarded")
    st = pool_status(pool, "k")
    assert (st["users"], st["producers"]) == (1, 0)
    assert [c["role"] for c in pool.ok("status", pool="k")["clients"]] == ["admin"]
    c = daemon.client(role="consumer")
    c.ok("open", pool="k")
    got = c.ok("consume", pool="k", timeout_ms=1000)
    assert got["seq"] == 3 and got["nbytes"] == 5


@pytest.mark.parametrize("policy,expect", [("requeue", (1, 0, 1, 0)), ("free", (2, 0, 0, 0))])
def test_killed_consumer_reading(daemon, policy, expect):
    admin = daemon.client(role="producer")
    admin.ok("create", pool="k", slot_size=4096, slots=2, on_consumer_death=policy)
    s = admin.ok("acquire", pool="k")["slot"]
    admin.ok("publish", pool="k", slot=s, nbytes=1, seq=9)
    victim = spawn_client(daemon.path, [HELLO_C, OPEN, {"op": "consume", "pool": "k"}], attach=True)
    assert counts(admin) == (1, 0, 0, 1)
    kill(victim)
    wait_for(lambda: counts(admin) == expect, what=f"the reading slot to be {policy}d")
    if policy == "requeue":
        c = daemon.client(role="consumer")
        c.ok("open", pool="k")
        assert c.ok("consume", pool="k", timeout_ms=1000)["seq"] == 9


def test_killed_consumer_waiting_to_consume(daemon, pool):
    victim = spawn_client(daemon.path, [HELLO_C, OPEN, {"op": "consume", "pool": "k", "_noreply": True}])
    wait_waiting(pool, "k", "consume")
    kill(victim)
    wait_waiting(pool, "k", "consume", count=0)          # the waiter is gone
    p = daemon.client(role="producer")
    p.ok("open", pool="k")
    s = p.ok("acquire", pool="k")["slot"]
    p.ok("publish", pool="k", slot=s, nbytes=1)
    assert counts(pool) == (1, 0, 1, 0)   # not handed to the dead consumer


def test_client_closing_mid_request(daemon, pool):
    c = daemon.client(role="producer")
    c.ok("open", pool="k")
    c.ok("acquire", pool="k")
    c.send_raw(b'{"op":"acquire","pool":"k"}\n{"op":"acq')   # half a line, then gone
    c.close()
    wait_for(lambda: counts(pool) == (2, 0, 0, 0), what="reclaim")


def test_end_of_input_answers_what_it_can_then_reclaims(daemon, pool):
    c = daemon.client(role="producer")
    c.ok("open", pool="k")
    c.send_raw(b'{"op":"acquire","pool":"k","id":1}\n{"op":"acquire","pool":"k","id":2}\n'
               b'{"op":"acquire","pool":"k","id":3}\n{"op":"status","id":4}')
    c.sock.shutdown(1)   # SHUT_WR: end of input, still reading
    assert c.recv()["id"] == 1
    assert c.recv()["id"] == 2
    assert c.closed_by_peer()      # the third would wait: cancelled, and the connection closed
    wait_for(lambda: counts(pool) == (2, 0, 0, 0), what="reclaim")


def test_ephemeral_pool_and_its_segment_go_with_the_last_user(daemon):
    before = segments()
    victim = spawn_client(daemon.path, [HELLO_P, {"op": "create", "pool": "eph", "slot_size": 4096, "slots": 2},
                                        {"op": "acquire", "pool": "eph"}], attach=True)
    other = daemon.client(role="consumer")
    shmid = other.ok("open", pool="eph")["shmid"]
    assert shmid in segments()
    kill(victim)
    wait_for(lambda: other.ok("status")["pools"][0]["users"] == 1, what="the victim to be gone")
    assert other.ok("status")["pools"][0]["pool"] == "eph"   # still used by `other`
    other.close()
    wait_for(lambda: not daemon.client(role="admin").ok("status")["pools"], what="the pool to go")
    wait_for(lambda: segments() == before, what="the segment to go")


def test_persistent_pool_stays_until_dropped(daemon):
    a = daemon.client(role="admin")
    a.ok("create", pool="keep", slot_size=64, slots=1, persistent=True)
    a.close()
    b = daemon.client(role="admin")
    assert [p["pool"] for p in b.ok("status")["pools"]] == ["keep"]
    b.ok("open", pool="keep")
    b.ok("drop", pool="keep")
    assert b.ok("status")["pools"] == []


def test_daemon_killed_leaves_no_segment_once_clients_exit(daemon_factory):
    before = segments()
    d = daemon_factory(config='{"pools":[{"name":"cfg","slot_size":"1MiB","slots":2}]}')
    clients = [spawn_client(d.path, [HELLO_P, {"op": "create", "pool": "eph", "slot_size": 4096, "slots": 2},
                                     {"op": "acquire", "pool": "eph"}], attach=True),
               spawn_client(d.path, [HELLO_C, {"op": "open", "pool": "cfg"}], attach=True)]
    created = segments() - before
    assert len(created) == 4                # each pool: its data and its control block
    for shmid in created:
        assert segment_marked_for_removal(shmid), shmid
    # these clients attach the data only (they speak the protocol by hand)
    attached = {s for s in created if int(segment_info(s)["nattch"]) > 1}
    assert len(attached) == 2
    d.stop(signal.SIGKILL)
    # the clients still have their segments: data in use is not pulled away; the blocks,
    # which only the daemon had, went with it
    assert segments() - before == attached
    for c in clients:
        kill(c)
    wait_for(lambda: segments() == before, what="the segments to go with their last user")


def test_daemon_killed_at_random_points_under_load(daemon_factory, tmp_path):
    """Producers and consumers in full flow; SIGKILL of the daemon at a random moment;
    once the clients notice and exit, no segment is left. Three times."""
    import random
    import subprocess

    from sbtest import ROOT
    ctl = str(ROOT / "build" / "shmbrokerctl")
    before = segments()
    rng = random.Random(7)
    for round_ in range(3):
        d = daemon_factory(config='{"pools":[{"name":"cfg","slot_size":"256KiB","slots":4}]}')
        procs = [subprocess.Popen([ctl, "--socket", d.path, "produce", "cfg", "--count", "100000", "--no-end"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        procs += [subprocess.Popen([ctl, "--socket", d.path, "consume", "cfg", "--count", "1000000"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        wait_for(lambda: d.client(role="admin").ok("status", pool="cfg")["pools"][0]["consumed"] > 20,
                 what="the flow to start")
        time.sleep(rng.uniform(0.0, 0.5))
        d.stop(signal.SIGKILL)
        for p in procs:
            assert p.wait(timeout=20) == 1        # each client saw the daemon go, and said so
        wait_for(lambda: segments() == before, what=f"the segments to go (round {round_})")

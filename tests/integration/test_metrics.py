"""`shmbrokerctl status --format=openmetrics|prometheus`, read by Prometheus's own Python
parsers (Debian's python3-prometheus-client): the figures of pools that moved batches and
made clients wait, of uids against their quotas, of the daemon; labels escaped as the
formats say."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from sbtest import CLIENT_SCRIPT, ROOT, OTHER_UID, as_user_argv, kill, needs_root, wait_for, wait_waiting

CTL = os.environ.get("SHMBROKERCTL", str(ROOT / "build" / "shmbrokerctl"))


def scrape(path: str, fmt: str = "openmetrics", *args: str) -> str:
    r = subprocess.run([CTL, "--socket", path, "status", f"--format={fmt}", *args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def families(text: str, fmt: str = "openmetrics") -> dict:
    """{family name: Metric} as the parser of @fmt reads @text; it raises on anything the
    format does not allow."""
    parse = parse_openmetrics if fmt == "openmetrics" else parse_prometheus
    return {m.name: m for m in parse(text)}


def value(fams: dict, name: str, **labels) -> float:
    """The one sample of family @name (its counter sample, _total, for a counter) whose
    labels include @labels."""
    m = fams[name]
    found = [s.value for s in m.samples if s.name in (name, name + "_total") and
             all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, m.samples)
    return found[0]


def test_openmetrics_counts_batches_bytes_waits_slots_and_clients(daemon):
    prod = daemon.pool_client("m", "producer", "loader", slot_size=4096, slots=4)
    cons = daemon.pool_client("m", "consumer", "trainer")
    sizes = [100, 2000, 4096, 1, 3000]
    for n in sizes:
        s = prod.ok("acquire", pool="m")["slot"]
        prod.ok("publish", pool="m", slot=s, nbytes=n)
        got = cons.ok("consume", pool="m")
        cons.ok("release", pool="m", slot=got["slot"])

    # The consumer waits for a batch at least 0.3 s: the publish comes after that long.
    cons.send("consume", pool="m", id="starved")
    wait_waiting(prod, "m", "consume")
    time.sleep(0.3)
    s = prod.ok("acquire", pool="m")["slot"]
    prod.ok("publish", pool="m", slot=s, nbytes=7)
    held = cons.recv()
    assert held["id"] == "starved" and held["ok"], held

    # The producer waits at least 0.2 s for a free slot: three more written, one read.
    taken = [prod.ok("acquire", pool="m")["slot"] for _ in range(3)]
    prod.send("acquire", pool="m", id="ahead")
    wait_waiting(cons, "m", "acquire")
    time.sleep(0.2)
    cons.ok("release", pool="m", slot=held["slot"])
    freed = prod.recv()
    assert freed["id"] == "ahead" and freed["ok"], freed

    text = scrape(daemon.path)
    assert text.endswith("# EOF\n")
    fams = families(text)
    n = len(sizes) + 1
    assert value(fams, "shmbroker_pool_batches_published", pool="m") == n
    assert value(fams, "shmbroker_pool_batches_consumed", pool="m") == n
    assert value(fams, "shmbroker_pool_slots_acquired", pool="m") == n + 4
    assert value(fams, "shmbroker_pool_published_bytes", pool="m") == sum(sizes) + 7
    assert value(fams, "shmbroker_pool_consumed_bytes", pool="m") == sum(sizes) + 7
    assert value(fams, "shmbroker_pool_consumer_wait_seconds", pool="m") >= 0.3
    assert value(fams, "shmbroker_pool_producer_wait_seconds", pool="m") >= 0.2
    for name in ("batches_published", "published_bytes", "consumer_wait_seconds", "producer_wait_seconds"):
        assert fams[f"shmbroker_pool_{name}"].type == "counter"
    units = {name: fams[name].unit for name in ("shmbroker_pool_published_bytes",
                                                 "shmbroker_pool_consumer_wait_seconds", "shmbroker_uptime_seconds",
                                                 "shmbroker_resident_memory_bytes")}
    assert units == {"shmbroker_pool_published_bytes": "bytes", "shmbroker_pool_consumer_wait_seconds": "seconds",
                     "shmbroker_uptime_seconds": "seconds", "shmbroker_resident_memory_bytes": "bytes"}

    # Four slots being written by the producer, none else; they add up to the pool's slots.
    states = {s.labels["state"]: s.value for s in fams["shmbroker_pool_slots"].samples if s.labels["pool"] == "m"}
    assert states == {"free": 0, "writing": 4, "ready": 0, "reading": 0}
    assert sum(states.values()) == 4 and len(taken) == 3
    assert value(fams, "shmbroker_pool_slot_size_bytes", pool="m") == 4096
    roles = {s.labels["role"]: s.value for s in fams["shmbroker_pool_clients"].samples}
    assert roles == {"producer": 1, "consumer": 1, "admin": 0}
    assert value(fams, "shmbroker_pool_waiting_clients", pool="m", request="acquire") == 0

    # The daemon: the producer, the consumer and shmbrokerctl itself; its limits.
    assert value(fams, "shmbroker_connections") == 3
    assert value(fams, "shmbroker_max_connections") == 1024
    assert value(fams, "shmbroker_pools") == 1 and value(fams, "shmbroker_max_pools") == 64
    assert value(fams, "shmbroker_segment_bytes") == 4 * 4096
    assert value(fams, "shmbroker_uptime_seconds") > 0.3
    assert 1 << 20 < value(fams, "shmbroker_resident_memory_bytes") < 1 << 30


def test_a_wait_going_on_counts_while_it_lasts(daemon):
    prod = daemon.pool_client("w", "producer", slot_size=64, slots=1)
    cons = daemon.pool_client("w", "consumer")
    cons.send("consume", pool="w", id="c")
    wait_waiting(prod, "w", "consume")
    first = value(families(scrape(daemon.path)), "shmbroker_pool_consumer_wait_seconds", pool="w")
    time.sleep(0.25)
    second = value(families(scrape(daemon.path)), "shmbroker_pool_consumer_wait_seconds", pool="w")
    assert second - first >= 0.25, (first, second)
    s = prod.ok("acquire", pool="w")["slot"]
    prod.ok("publish", pool="w", slot=s, nbytes=1)
    assert cons.recv()["id"] == "c"
    # once over, the wait keeps what it counted: the counter never goes back
    after = value(families(scrape(daemon.path)), "shmbroker_pool_consumer_wait_seconds", pool="w")
    assert after >= second, (second, after)


def test_prometheus_text_for_node_exporter_has_the_same_figures(daemon):
    prod = daemon.pool_client("p", "producer", slot_size=64, slots=2)
    s = prod.ok("acquire", pool="p")["slot"]
    prod.ok("publish", pool="p", slot=s, nbytes=10)
    text = scrape(daemon.path, "prometheus")
    assert "# EOF" not in text and "# UNIT" not in text
    fams = families(text, "prometheus")
    # In the 0.0.4 format a counter's family is named with _total, and typed counter.
    m = fams["shmbroker_pool_batches_published"]
    assert m.type == "counter"
    assert [(x.name, x.value) for x in m.samples] == [("shmbroker_pool_batches_published_total", 1)]
    assert "# TYPE shmbroker_pool_batches_published_total counter\n" in text
    assert value(fams, "shmbroker_pool_slots", pool="p", state="ready") == 1
    # every family the OpenMetrics output has, with the same samples
    om = families(scrape(daemon.path))
    assert set(om) == set(fams)
    for name in ("shmbroker_pool_slots", "shmbroker_pool_published_bytes", "shmbroker_max_pools"):
        assert [(x.labels, x.value) for x in om[name].samples] == [(x.labels, x.value) for x in fams[name].samples]


def test_status_of_one_pool_has_its_figures_only(daemon):
    users = [daemon.pool_client("a", "producer", slot_size=64, slots=1),
             daemon.pool_client("b", "producer", slot_size=64, slots=2)]
    fams = families(scrape(daemon.path, "openmetrics", "b"))
    assert {s.labels["pool"] for s in fams["shmbroker_pool_slots"].samples} == {"b"}
    assert value(fams, "shmbroker_pools") == 2      # the daemon's figures stay whole
    assert len(users) == 2


def test_bad_format_is_a_usage_error(daemon):
    r = subprocess.run([CTL, "--socket", daemon.path, "status", "--format=xml"], capture_output=True, text=True)
    assert r.returncode == 2 and "openmetrics" in r.stderr


@needs_root
def test_uid_figures_against_their_quotas(open_daemon):
    steps = [{"op": "hello", "role": "producer"},
             {"op": "create", "pool": "mine", "slot_size": 8192, "slots": 2, "persistent": True}]
    p = subprocess.Popen(as_user_argv(OTHER_UID) + [sys.executable, "-c", CLIENT_SCRIPT, open_daemon.path,
                                                    json.dumps(steps), "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "READY"
        fams = families(scrape(open_daemon.path))
        uid = str(OTHER_UID)
        assert value(fams, "shmbroker_uid_connections", uid=uid) == 1
        assert value(fams, "shmbroker_uid_max_connections", uid=uid) == 3     # the open_daemon's quotas
        assert value(fams, "shmbroker_uid_pools", uid=uid) == 1
        assert value(fams, "shmbroker_uid_max_pools", uid=uid) == 2
        assert value(fams, "shmbroker_uid_pool_bytes", uid=uid) == 2 * 8192
        assert value(fams, "shmbroker_uid_max_pool_bytes", uid=uid) == 16 << 30
        assert value(fams, "shmbroker_uid_meta_bytes", uid=uid) == 0
        # root, which runs shmbrokerctl here, is exempt from the quotas: not listed
        assert {s.labels["uid"] for s in fams["shmbroker_uid_connections"].samples} == {uid}
    finally:
        kill(p)
    # its pool stays charged to it, its connection no longer
    wait_for(lambda: value(families(scrape(open_daemon.path)), "shmbroker_uid_connections", uid=str(OTHER_UID)) == 0,
             what="the uid's connection to go")
    admin = open_daemon.client(role="admin")
    admin.ok("open", pool="mine")
    admin.ok("drop", pool="mine")


class FakeDaemon:
    """A socket that answers hello and status as the daemon would, with the status reply
    the test gives: names no real daemon would accept reach shmbrokerctl this way."""

    def __init__(self, path: str, status: dict):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.status = status
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rwb") as f:
            for line in f:
                req = json.loads(line)
                reply = {"ok": True}
                if "id" in req:
                    reply["id"] = req["id"]
                if req["op"] == "hello":
                    reply.update(version=1, server="fake", pid=os.getpid(), uid=os.getuid(), gid=os.getgid())
                else:
                    reply.update(self.status)
                f.write((json.dumps(reply) + "\n").encode())
                f.flush()


def test_label_values_are_escaped(tmp_path):
    weird = 'a"b\\c\nd \u00e9'
    pool = {"pool": weird, "slots": 1, "slot_size": 64, "size": 4096, "free": 1, "writing": 0, "ready": 0,
            "reading": 0, "published": 3}
    path = str(tmp_path / "fake.sock")
    FakeDaemon(path, {"pools": [pool], "clients": [], "uids": [], "uptime_ms": 5})
    text = scrape(path)
    assert 'pool="a\\"b\\\\c\\nd \u00e9"' in text
    fams = families(text)
    assert value(fams, "shmbroker_pool_batches_published", pool=weird) == 3
    assert value(fams, "shmbroker_pool_slots", pool=weird, state="free") == 1
    # fields a daemon does not give are left out, not made up
    assert fams["shmbroker_pool_consumed_bytes"].samples == []
    assert value(fams, "shmbroker_uptime_seconds") == 0.005

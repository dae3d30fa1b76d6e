"""A batch's meta: it reaches the consumer byte for byte as the producer wrote it, its size
has a limit, and the metas of ready batches count against their producer's uid and
against a daemon-wide budget, until their slots are freed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sbtest import OTHER_UID, as_user_argv, needs_root

# Meta texts as a producer writes them, each to come back unchanged: integers past 2^53
# (a double would round them), a number past the double range (null once re-printed),
# unicode escapes (a surrogate pair among them) beside raw UTF-8, escaped quotes and
# slashes, nesting, and blanks inside. Each is a line's fragment: no raw newline.
EXACT_METAS = [
    '{"n":9007199254740993}',
    '{"big":12345678901234567890,"neg":-9223372036854775809,"pi":3.141592653589793238462643383279}',
    '{"inf":1e400,"tiny":1e-400,"e":1E+2,"z":-0.0}',
    r'{"s":"caf\u00e9 \ud83d\ude00 \u2603","raw":"café 😀","q":"\"\\\/\b\f\n\r\t"}',
    '{"a":{"b":{"c":[1,[2,[3,{"d":null}]],true,false]}},"empty":{},"list":[]}',
    '{ "shape" : [ 64 , 3 ,\t224, 224 ] ,\t"dtype":"<f4"   }',
    '{"dup":1,"dup":2}',
]


def publish_line(slot: int, meta: str, pool: str = "m") -> bytes:
    return ('{"op":"publish","pool":"%s","slot":%d,"nbytes":1,"meta":%s}\n' % (pool, slot, meta)).encode()


def ok_raw(c, line: bytes) -> dict:
    c.send_raw(line)
    r = c.recv()
    assert r["ok"], r
    return r


def err_raw(c, line: bytes, code: str) -> dict:
    c.send_raw(line)
    r = c.recv()
    assert not r["ok"] and r["error"] == code, r
    return r


@pytest.fixture
def pair(daemon):
    p = daemon.pool_client("m", "producer", slot_size=64, slots=64)
    c = daemon.pool_client("m", "consumer")
    return p, c


@pytest.mark.parametrize("meta", EXACT_METAS)
def test_meta_arrives_byte_for_byte(pair, meta):
    p, c = pair
    slot = p.ok("acquire", pool="m")["slot"]
    ok_raw(p, publish_line(slot, meta))
    c.send("consume", pool="m")
    line = c.recv_line()
    assert b'"meta":' + meta.encode() + b"}" in line, line


def test_many_slot_form_keeps_each_entrys_meta(pair):
    p, c = pair
    slots = [s["slot"] for s in p.ok("acquire", pool="m", max=len(EXACT_METAS) + 3)["slots"]]
    metas = [None, *EXACT_METAS, "{}", None]
    # Entries written with blanks around them and their members, keys in any order, and
    # entries without a meta in between: the daemon walks the line's text in step.
    entries = []
    for s, m in zip(slots, metas):
        fields = ['"nbytes" : 1', '"slot":%d' % s] + (['\t"meta" :  %s ' % m] if m else [])
        entries.append(" { " + " , ".join(fields[::-1] if s % 2 else fields) + " } ")
    ok_raw(p, ('{"op":"publish","pool":"m", "batches" : [%s] }\n' % ",".join(entries)).encode())
    c.send("consume", pool="m", max=64)
    line = c.recv_line()
    for seq, (s, m) in enumerate(zip(slots, metas)):
        assert (b'{"slot":%d,' % s) + b'"offset":%d,"nbytes":1,"seq":%d,"stream":0,"meta":%s}' % (
            s * 4096, seq, (m or "{}").encode()) in line, (seq, line)


def test_a_meta_key_written_with_escapes_is_found_first_one_wins(pair):
    """The daemon reads the same member as cJSON does: "me\\u0074a" is "meta", and of two
    members "meta" the first."""
    p, c = pair
    a, b = (s["slot"] for s in p.ok("acquire", pool="m", max=2)["slots"])
    ok_raw(p, ('{"op":"publish","pool":"m","slot":%d,"nbytes":1,"me\\u0074a":{"x":9007199254740993},'
               '"meta":{"x":2}}\n' % a).encode())
    ok_raw(p, ('{"op":"publish","pool":"m","slot":%d,"nbytes":1,"meta":{"first":1},"meta":{"second":2}}\n'
               % b).encode())
    c.send("consume", pool="m", max=2)
    line = c.recv_line()
    assert b'"meta":{"x":9007199254740993}}' in line and b'"meta":{"first":1}}' in line, line


def test_an_empty_meta_reads_as_absent(pair):
    p, c = pair
    slots = [s["slot"] for s in p.ok("acquire", pool="m", max=3)["slots"]]
    ok_raw(p, publish_line(slots[0], "{ }"))
    ok_raw(p, publish_line(slots[1], "{}"))
    p.ok("publish", pool="m", slot=slots[2], nbytes=1)
    c.send("consume", pool="m", max=3)
    line = c.recv_line()
    assert line.count(b'"meta":{}') == 3, line


@pytest.mark.parametrize("meta", [
    '{"a":01}', '{"a":1.}', '{"a":-01.5}', '{"a":1.e5}', '{"s":"raw\ttab"}', '{"s":"\x01"}', '{"a":1,\x0b"b":2}',
])
def test_meta_that_only_cjson_accepts_is_refused(pair, meta):
    """cJSON reads these; a stricter consumer (Python's json) would not: passed on as they
    are written, they must be JSON as RFC 8259 has it."""
    p, _ = pair
    slot = p.ok("acquire", pool="m")["slot"]
    r = err_raw(p, publish_line(slot, meta), "bad_request")
    assert "strict JSON" in r["message"], r
    assert p.ok("status", pool="m")["pools"][0]["writing"] == 1


# --- limits -------------------------------------------------------------------------------

def meta_of(n: int) -> str:
    """A meta of exactly @n bytes of text."""
    return '{"p":"%s"}' % ("x" * (n - 8))


def test_max_meta_default(daemon):
    p = daemon.pool_client("m", "producer", slot_size=64, slots=4)
    a = p.ok("acquire", pool="m")["slot"]
    r = err_raw(p, publish_line(a, meta_of(65537)), "limit")
    assert "max_meta (64 KiB)" in r["message"] and "65537" in r["message"], r
    ok_raw(p, publish_line(a, meta_of(65536)))


def test_max_meta_configured(daemon_factory):
    d = daemon_factory(config='{"limits": {"max_meta": "1KiB"}}')
    p = d.pool_client("m", "producer", slot_size=64, slots=4)
    s = [x["slot"] for x in p.ok("acquire", pool="m", max=3)["slots"]]
    ok_raw(p, publish_line(s[0], meta_of(1024)))
    entries = ",".join('{"slot":%d,"nbytes":1,"meta":%s}' % (x, meta_of(n)) for x, n in ((s[1], 10), (s[2], 1025)))
    r = err_raw(p, ('{"op":"publish","pool":"m","batches":[%s]}\n' % entries).encode(), "limit")
    assert "entry 1" in r["message"] and "max_meta (1 KiB)" in r["message"], r
    assert p.ok("status", pool="m")["pools"][0]["ready"] == 1     # all or none


def test_global_meta_budget_counts_ready_batches_until_freed(daemon_factory):
    """max_meta_bytes bounds every uid's ready metas together, root's included."""
    d = daemon_factory(config='{"limits": {"max_meta": "4KiB", "max_meta_bytes": "10KiB"}}')
    p = d.pool_client("m", "producer", slot_size=64, slots=8, on_consumer_death="free")
    c = d.pool_client("m", "consumer")
    s = [x["slot"] for x in p.ok("acquire", pool="m", max=6)["slots"]]
    ok_raw(p, publish_line(s[0], meta_of(4000)))
    ok_raw(p, publish_line(s[1], meta_of(4000)))
    r = err_raw(p, publish_line(s[2], meta_of(4000)), "limit")
    assert "max_meta_bytes (10 KiB)" in r["message"], r
    # Many at once: all or none, and the message names the entry.
    entries = ",".join('{"slot":%d,"nbytes":1,"meta":%s}' % (x, meta_of(1000)) for x in s[2:5])
    r = err_raw(p, ('{"op":"publish","pool":"m","batches":[%s]}\n' % entries).encode(), "limit")
    assert "entry 2" in r["message"] and "max_meta_bytes" in r["message"], r
    assert p.ok("status", pool="m")["pools"][0]["ready"] == 2
    # Being read still counts; released, it is given back.
    got = c.ok("consume", pool="m")
    err_raw(p, publish_line(s[2], meta_of(4000)), "limit")
    c.ok("release", pool="m", slot=got["slot"])
    ok_raw(p, publish_line(s[2], meta_of(4000)))
    # A consumer that dies reading, in a pool that frees such batches: given back.
    c.ok("consume", pool="m")
    c.close()
    ok_raw(p, publish_line(s[3], meta_of(4000)))
    # A dropped pool gives back the metas of its ready batches.
    p.ok("drop", pool="m")
    q = d.pool_client("n", "producer", slot_size=64, slots=4)
    t = [x["slot"] for x in q.ok("acquire", pool="n", max=2)["slots"]]
    ok_raw(q, publish_line(t[0], meta_of(4000), pool="n"))
    ok_raw(q, publish_line(t[1], meta_of(4000), pool="n"))


# A client as another uid, driven line by line: each line on its stdin goes to the
# daemon, each reply comes back on its stdout.
PROXY = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
for line in sys.stdin.buffer:
    f.write(line); f.flush()
    sys.stdout.buffer.write(f.readline()); sys.stdout.buffer.flush()
"""


class UserClient:
    def __init__(self, path: str, uid: int = OTHER_UID):
        self.proc = subprocess.Popen(as_user_argv(uid) + [sys.executable, "-c", PROXY, path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def raw(self, line: bytes) -> dict:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def ok(self, op: str, **fields) -> dict:
        r = self.raw((json.dumps({"op": op, **fields}) + "\n").encode())
        assert r["ok"], r
        return r

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@needs_root
def test_meta_quota_per_uid(open_daemon_factory):
    d = open_daemon_factory({"limits": {"max_meta": "4KiB", "max_meta_bytes_per_uid": "10KiB"}})
    u = UserClient(d.path)
    try:
        u.ok("hello", role="producer")
        u.ok("create", pool="u", slot_size=64, slots=8, mode="0666")
        s = [x["slot"] for x in u.ok("acquire", pool="u", max=5)["slots"]]
        assert u.raw(publish_line(s[0], meta_of(4000), pool="u"))["ok"]
        assert u.raw(publish_line(s[1], meta_of(4000), pool="u"))["ok"]
        r = u.raw(publish_line(s[2], meta_of(4000), pool="u"))
        assert r["error"] == "limit" and "max_meta_bytes_per_uid (10 KiB)" in r["message"], r
        assert f"uid {OTHER_UID}" in r["message"] and "7.8 KiB" in r["message"], r
        # Root is exempt from the per-uid quota (not from the global budget).
        root = d.pool_client("u", "producer")
        t = root.ok("acquire", pool="u")["slot"]
        ok_raw(root, publish_line(t, meta_of(4000), pool="u"))
        # Consumed and released: the uid holds less, and may publish again.
        c = d.pool_client("u", "consumer")
        got = c.ok("consume", pool="u")
        c.ok("release", pool="u", slot=got["slot"])
        assert u.raw(publish_line(s[2], meta_of(4000), pool="u"))["ok"]
        # The producer leaves: its ready batches stay, and still count against its uid.
        u.close()
        u = UserClient(d.path)
        u.ok("hello", role="producer")
        u.ok("open", pool="u")
        v = u.ok("acquire", pool="u")["slot"]
        r = u.raw(publish_line(v, meta_of(4000), pool="u"))
        assert r["error"] == "limit" and "max_meta_bytes_per_uid" in r["message"], r
    finally:
        u.close()

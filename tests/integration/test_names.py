"""Names a person reads: the daemon refuses control characters and NUL in them, and
shmbrokerctl escapes whatever non-printable text it gets from a daemon."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest

from sbtest import ROOT

CTL = os.environ.get("SHMBROKERCTL", str(ROOT / "build" / "shmbrokerctl"))

# Raw JSON text of names that would rewrite a terminal: an OSC title, a newline that fakes
# a row, a bell, DEL, C1 CSI (U+009B) and NEL (U+0085), as escapes and as raw characters.
CONTROL_NAMES = [
    r'"\u001b]0;pwned\u0007"', r'"x\nroot  0  admin"', '"bell\x07"', '"tab\there"', r'"del\u007f"',
    '"del\x7f"', r'"csi\u009b31m"', '"csi\u009b31m"', r'"nel\u0085"', '"nel\u0085"',
]


def hello_line(name_json: str) -> bytes:
    return ('{"op":"hello","role":"consumer","name":%s}\n' % name_json).encode()


def reply_to(c, line: bytes) -> dict:
    c.send_raw(line)
    return c.recv()


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_hello_name_with_a_control_character_is_refused(daemon, name):
    c = daemon.client()
    r = reply_to(c, hello_line(name))
    assert not r["ok"] and r["error"] == "bad_request" and "control" in r["message"], r
    # Nothing was said: the connection still needs its hello, and status lists no such name.
    assert c.rpc("status")["error"] == "need_hello"
    admin = daemon.client(role="admin")
    names = [k["name"] for k in admin.ok("status")["clients"]]
    assert names == [None, None], names


def test_printable_unicode_names_are_kept(daemon):
    a, b = daemon.client(), daemon.client()
    assert reply_to(a, hello_line(r'"caf\u00e9 \u2603 tr\u00e4ger-0 \u00a0"'))["ok"]
    assert reply_to(b, hello_line('"Ω worker #2"'))["ok"]
    names = {k["name"] for k in daemon.client(role="admin").ok("status")["clients"]}
    assert {"café ☃ träger-0 \u00a0", "Ω worker #2"} <= names


@pytest.mark.parametrize("escape", [r"\u0000", r"\u00zz", r"\uzzzz"])
def test_a_nul_in_a_name_is_refused_not_cut_short(daemon, escape):
    """cJSON's strings are C strings: "nul\\u0000../x" would create pool "nul". Every \\u
    escape that cJSON reads as 0 counts (its hex reader gives 0 for a digit that is not hex)."""
    c = daemon.client(role="admin")
    r = reply_to(c, ('{"op":"create","pool":"nul%s../x","slot_size":64,"slots":1}\n' % escape).encode())
    assert not r["ok"] and r["error"] == "bad_request" and "NUL" in r["message"], r
    assert c.ok("status")["pools"] == []
    h = daemon.client()
    r = reply_to(h, hello_line('"me%syou"' % escape))
    assert not r["ok"] and r["error"] == "bad_request", r
    # In a key too: "role\u0000x" would read as "role".
    r = reply_to(h, ('{"op":"hello","role%s":"admin"}\n' % escape).encode())
    assert not r["ok"] and r["error"] == "bad_request" and "NUL" in r["message"], r


def test_escaped_backslashes_are_not_a_nul(daemon):
    c = daemon.client()
    assert reply_to(c, hello_line(r'"back\\u0000slash"'))["ok"]
    names = {k["name"] for k in daemon.client(role="admin").ok("status")["clients"]}
    assert "back\\u0000slash" in names


def test_a_nul_inside_meta_is_passed_on(daemon):
    """Meta is passed on as text, never read as C strings: a NUL in it reaches the consumer."""
    p = daemon.pool_client("m", "producer", slot_size=64, slots=2)
    c = daemon.pool_client("m", "consumer")
    s = p.ok("acquire", pool="m")["slot"]
    meta = r'{"bytes":"a\u0000b","k\u0000":1}'
    p.send_raw(('{"op":"publish","pool":"m","slot":%d,"nbytes":1,"meta":%s}\n' % (s, meta)).encode())
    assert p.recv()["ok"]
    c.send("consume", pool="m")
    line = c.recv_line()
    assert b'"meta":' + meta.encode() in line, line
    assert json.loads(line)["meta"] == {"bytes": "a\0b", "k\0": 1}


# --- shmbrokerctl against a daemon that sends anything -----------------------------------

# What a daemon older than the rule (or a hostile one) could send: names with terminal
# escapes, a newline, DEL, C1 controls; and, apart, bytes that are not UTF-8 at all.
EVIL = "\x1b]0;pwned\x07\x1b[2J\nfake row\r\x7f\u009b31m\u0085end"
EVIL_ESCAPED = b"\\x1b]0;pwned\\x07\\x1b[2J\\x0afake row\\x0d\\x7f\\xc2\\x9b31m\\xc2\\x85end"
NOT_UTF8 = b"bad\xff\xfeutf8"


class FakeDaemon:
    """A socket that answers shmbrokerctl's hello, status and open with crafted replies:
    every name in them, and the message of the refused open, is @name (raw @name_bytes,
    which need not be UTF-8, when given)."""

    def __init__(self, path: str, name: str = EVIL, name_bytes: bytes | None = None):
        self.path, self.name, self.name_bytes = path, name, name_bytes
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self.serve, daemon=True).start()

    def reply(self, req: dict) -> bytes:
        n = "NAME" if self.name_bytes else self.name
        if req["op"] == "hello":
            r = {"ok": True, "version": 1, "pid": 1, "uid": 0, "gid": 0}
        elif req["op"] == "status":
            held = {"pool": n, "slot": 0, "state": n, "age_ms": 5}
            r = {"ok": True, "pools": [{"pool": n, "shmid": 1, "slots": 1, "slot_size": 64, "free": 1, "age_ms": 1}],
                 "clients": [{"pid": 7, "uid": 1000, "gid": 1000, "role": n, "name": n, "waiting": n, "pools": [n],
                              "held": [held]}]}
        else:
            r = {"ok": False, "error": "no_such_pool", "message": n}
        text = json.dumps(r, ensure_ascii=False).encode()
        return text.replace(b"NAME", self.name_bytes) if self.name_bytes else text

    def serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                for line in f:
                    f.write(self.reply(json.loads(line)) + b"\n")
                    f.flush()

    def close(self):
        self.srv.close()


@pytest.fixture
def fake_daemon(tmp_path):
    made = []

    def make(**kw) -> FakeDaemon:
        made.append(FakeDaemon(str(tmp_path / f"fake{len(made)}.sock"), **kw))
        return made[-1]
    yield make
    for d in made:
        d.close()


def ctl_raw(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CTL, "--socket", path, *args], capture_output=True, timeout=30)


def assert_printable(out: bytes) -> None:
    """No control character but the newlines between rows, nothing that is not UTF-8."""
    text = out.decode("utf-8")          # raises on bytes that are not UTF-8
    bad = [ch for ch in text if ch != "\n" and (ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f)]
    assert not bad, (bad, text)


def test_ctl_status_escapes_names_from_the_daemon(fake_daemon):
    r = ctl_raw(fake_daemon().path, "status")
    assert r.returncode == 0, r
    assert_printable(r.stdout)
    # Every name of the pool row and of the client row, escaped.
    assert r.stdout.count(EVIL_ESCAPED) == 7, r.stdout.decode()
    # Two headers, one pool row, one client row: the newline in the names faked none.
    assert len([row for row in r.stdout.decode().split("\n") if row]) == 4, r.stdout.decode()


def test_ctl_status_json_escapes_and_stays_the_same_json(fake_daemon):
    r = ctl_raw(fake_daemon().path, "status", "--json")
    assert r.returncode == 0, r
    assert_printable(r.stdout)
    st = json.loads(r.stdout)
    assert st["clients"][0]["name"] == EVIL and st["pools"][0]["pool"] == EVIL


def test_ctl_escapes_bytes_that_are_not_utf8(fake_daemon):
    d = fake_daemon(name_bytes=NOT_UTF8)
    r = ctl_raw(d.path, "status")
    assert r.returncode == 0, r
    assert_printable(r.stdout)
    assert b"bad\\xff\\xfeutf8" in r.stdout, r.stdout
    j = ctl_raw(d.path, "status", "--json")
    assert j.returncode == 0, j
    assert_printable(j.stdout)
    assert json.loads(j.stdout)["clients"][0]["name"] == "bad\ufffd\ufffdutf8"


def test_ctl_escapes_the_daemons_error_messages(fake_daemon):
    r = ctl_raw(fake_daemon().path, "drop", "p")
    assert r.returncode == 1, r
    assert_printable(r.stderr)
    assert EVIL_ESCAPED + b" (no_such_pool)" in r.stderr, r.stderr

"""The daemon's log: journal entries with their fields (MESSAGE_ID per kind of event, POOL,
CLIENT_PID, CLIENT_UID) when stderr is the journal's stream, plain "<N>" lines otherwise.

The journal side runs without journald: the daemon runs in a mount namespace of its own
(unshare --mount; private, so nothing of it reaches the machine) where a tmpfs covers
/run/systemd and a datagram socket of the test's is bound at
/run/systemd/journal/socket, journald's own path, which libsystemd's sd_journal_sendv()
writes to. The test reads the datagrams in the journal's native protocol."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sbtest import DAEMON, ROOT, Client, listening, wait_for

FAKE_JOURNALD = r"""
import json, os, socket, subprocess, sys

def parse(data):
    # systemd's native protocol: NAME=value lines, or NAME, a 64-bit little-endian size
    # and the value, for values holding a newline.
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        eq = data.find(b"=", i, nl)
        if eq >= 0:
            name, value, i = data[i:eq], data[eq + 1:nl], nl + 1
        else:
            size = int.from_bytes(data[nl + 1:nl + 9], "little")
            name, value = data[i:nl], data[nl + 9:nl + 9 + size]
            assert data[nl + 9 + size:nl + 10 + size] == b"\n"
            i = nl + 10 + size
        fields.setdefault(name.decode(), []).append(value.decode(errors="replace"))
    return fields

out_path, argv = sys.argv[1], sys.argv[2:]
target = "/run/systemd" if os.path.isdir("/run/systemd") else "/run"
subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", target], check=True)
os.makedirs("/run/systemd/journal", exist_ok=True)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
sock.settimeout(0.05)
st = os.fstat(2)     # the daemon's stderr is ours: the stream JOURNAL_STREAM names
proc = subprocess.Popen(argv, env=dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"))
with open(out_path, "a") as out:
    out.write(json.dumps({"daemon_pid": proc.pid}) + "\n")
    out.flush()
    while True:
        try:
            data, anc, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        except socket.timeout:
            if proc.poll() is not None:
                break
            continue
        for level, kind, payload in anc:       # a large entry comes as a memfd
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = int.from_bytes(payload[:4], sys.byteorder)
                data = os.pread(fd, 1 << 24, 0)
                os.close(fd)
        out.write(json.dumps(parse(data)) + "\n")
        out.flush()
sys.exit(proc.returncode)
"""


def event_ids() -> dict[str, str]:
    """{event name: MESSAGE_ID}, read from daemon/log.c's table: the ids have one owner."""
    text = (ROOT / "daemon" / "log.c").read_text()
    ids = dict(re.findall(r'\[LOG_EVENT_\w+\] = \{ "(\w+)", "([0-9a-f]{32})" \}', text))
    assert len(ids) >= 12 and len(set(ids.values())) == len(ids), ids
    return ids


def can_unshare_mount() -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--mount", "--fork", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_unshare_mount(), reason="needs root and mount namespaces (unshare --mount)")
def test_journal_entries_carry_the_fields_of_their_event(tmp_path):
    ids = event_ids()
    conf = tmp_path / "c.conf"
    conf.write_text('{"limits": {"max_pools": 3}, "pools": [{"name": "cfg", "slot_size": 4096, "slots": 1}]}')
    sock, out, log = str(tmp_path / "s.sock"), tmp_path / "journal.jsonl", tmp_path / "stderr.log"
    with open(log, "wb") as err:
        helper = subprocess.Popen(["unshare", "--mount", "--fork", sys.executable, "-c", FAKE_JOURNALD, str(out),
                                   DAEMON, "-v", "--config", str(conf), "--socket", sock], stderr=err)
    try:
        wait_for(lambda: listening(sock) or helper.poll() is not None, what="the daemon to listen")
        assert helper.poll() is None, log.read_text()
        daemon_pid = json.loads(out.read_text().splitlines()[0])["daemon_pid"]
        me = {"CLIENT_PID": [str(os.getpid())], "CLIENT_UID": [str(os.getuid())]}

        c = Client(sock, role="producer", name="loader")
        c.ok("create", pool="e", slot_size=64, slots=2)                 # ephemeral
        admin = Client(sock, role="admin")
        admin.ok("create", pool="d", slot_size=64, slots=1, persistent=True)
        c.err("create", "limit", pool="f", slot_size=64, slots=1)       # cfg, e, d: max_pools
        admin.ok("drop", pool="d")
        c.ok("acquire", pool="e")
        c.close()                          # its slot reclaimed, then the pool removed
        wait_for(lambda: ids["pool_removed"] in out.read_text(), what="the ephemeral pool's removal")
        os.kill(daemon_pid, signal.SIGHUP)
        wait_for(lambda: ids["config_reloaded"] in out.read_text(), what="the reload")
        conf.write_text("{ broken")
        os.kill(daemon_pid, signal.SIGHUP)
        wait_for(lambda: ids["config_refused"] in out.read_text(), what="the refused reload")
        admin.close()
        os.kill(daemon_pid, signal.SIGTERM)
        assert helper.wait(timeout=20) == 0, log.read_text()
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()

    entries = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    by_id: dict[str, list[dict]] = {}
    for e in entries:
        assert e["SYSLOG_IDENTIFIER"] == ["shmbrokerd"] and e["MESSAGE"] and e["PRIORITY"], e
        by_id.setdefault(e.get("MESSAGE_ID", [None])[0], []).append(e)
    name_of = {v: k for k, v in ids.items()}
    events = {name_of[i]: v for i, v in by_id.items() if i}

    def one(name: str, **want) -> dict:
        found = [e for e in events.get(name, []) if all(e.get(k) == v for k, v in want.items())]
        assert len(found) == 1, (name, want, events.get(name))
        return found[0]

    one("started")
    cfg = one("pool_created", POOL=["cfg"])
    assert "CLIENT_PID" not in cfg                      # made by the daemon, for nobody
    created = one("pool_created", POOL=["e"], **me)
    one("pool_created", POOL=["d"], **me)
    assert one("limit", POOL=["f"], **me)["PRIORITY"] == ["4"]
    assert "max_pools" in one("limit", POOL=["f"])["MESSAGE"][0]
    one("pool_dropped", POOL=["d"], **me)
    reclaimed = one("slots_reclaimed", POOL=["e"], **me)
    assert "1 being written" in reclaimed["MESSAGE"][0]
    removed = one("pool_removed", POOL=["e"])
    assert removed["PRIORITY"] == created["PRIORITY"] == ["6"]    # gone at the level it came
    for name in ("client_connected", "client_disconnected"):       # the two clients; debug, shown with -v
        assert [e["PRIORITY"] for e in events[name] if e.get("CLIENT_PID") == me["CLIENT_PID"]] == [["7"]] * 2
    assert "CODE_FILE" not in created                   # always log.c: no use to anybody
    one("config_reloaded")
    assert one("config_refused")["PRIORITY"] == ["3"]
    one("stopping")
    assert set(ids) - set(events) == {"orphan_removed"}          # every other kind was seen
    # Everything went to the journal: nothing of the log fell back to stderr.
    assert not re.search(r"^<\d>", log.read_text(), re.M), log.read_text()


def test_plain_lines_when_stderr_is_not_the_journals_stream(daemon_factory):
    # JOURNAL_STREAM inherited with another stderr (a daemon started from a shell of a
    # service): stderr is what counts, and it is the log file.
    d = daemon_factory(env={"JOURNAL_STREAM": "1:1"})
    c = d.client(role="producer")
    c.ok("create", pool="e", slot_size=64, slots=1)
    c.ok("acquire", pool="e")
    c.close()
    wait_for(lambda: 'pool "e" removed' in d.log_text(), what="the ephemeral pool's removal")
    log = d.log_text()
    assert re.search(r'^<6>pool "e" created by pid \d+ uid \d+: 1 slots of 64 bytes$', log, re.M), log
    assert re.search(r'^<6>client \d+ \(pid \d+ uid \d+\) left pool "e" holding 1 slot: 1 being written '
                     r'\(discarded\), 0 being read \(requeued\)$', log, re.M), log
    # an ephemeral pool's removal at the level of its creation
    assert re.search(r'^<6>pool "e" removed: no users left$', log, re.M), log


def test_operations_guide_lists_every_message_id():
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide[guide.index("## Logs"):guide.index("## Metrics")]
    assert set(re.findall(r"`([0-9a-f]{32})`", section)) == set(event_ids().values())

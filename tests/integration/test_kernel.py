"""What the kernel itself enforces about the daemon's segments, checked with the kernel:
who can shmat() a segment directly (the creator's group), the segments a killed daemon
orphaned between shmget() and IPC_RMID, and the quota of a dropped pool whose segment a
client still has attached.

Run in an IPC namespace of its own (`unshare --ipc --fork`, as `make check` is): these
tests create segments of root's that are not the daemon's, on purpose."""
from __future__ import annotations

import ctypes
import grp
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sbtest import (DAEMON, OTHER_UID, UNDER_VALGRIND, Attachment, Client, listening, needs_root, python_as_user,
                    requests_as_user, segment_info, segments, wait_for)

# The keys of the segments shmbrokerd creates (daemon/segment.h): a fixed prefix in bits
# 22-30, the creating daemon's pid in bits 0-21. The key goes (IPC_PRIVATE) at IPC_RMID.
KEY_PREFIX, KEY_PREFIX_MASK, KEY_PID_MASK = 0x6CC00000, 0x7FC00000, 0x003FFFFF

IPC_RMID = 0
_libc = ctypes.CDLL(None, use_errno=True)

# Uids and gids that no account has: the daemon, and clients, run as these.
DAEMON_UID, DAEMON_GID = 61000, 61000
OWNER_UID, MEMBER_UID = 61001, 61002
POOL_GID = 4242


def remove_segment(shmid: int) -> None:
    _libc.shmctl(shmid, IPC_RMID, None)


def socket_group() -> grp.struct_group:
    """A group that exists (socket_group takes a name), that no test user is in."""
    for name in ("users", "staff", "games", "src"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            pass
    pytest.skip("no spare group on this system to be a socket group")


def start_as(open_dir: Path, name: str, config: dict, uid: int, gid: int, groups: str = "",
             argv_prefix: list[str] | None = None, sock: str | None = None) -> tuple[subprocess.Popen, str, Path]:
    """shmbrokerd as @uid:@gid in the supplementary @groups (or none), on a socket in
    @open_dir; its stderr goes to a log file there."""
    sock = sock or str(open_dir / f"{name}.sock")
    conf = open_dir / f"{name}.conf"
    conf.write_text(json.dumps(config))
    log = open_dir / f"{name}.log"
    setpriv = ["setpriv", "--reuid", str(uid), "--regid", str(gid)] + (
        ["--groups", groups] if groups else ["--clear-groups"])
    with open(log, "wb") as f:
        proc = subprocess.Popen((argv_prefix or []) + setpriv + [DAEMON, "--config", str(conf), "--socket", sock],
                                stdout=f, stderr=f)
    return proc, sock, log


def refused_start(proc: subprocess.Popen, log: Path) -> str:
    """Wait for a daemon that must refuse to start: its log, once it exited with status 1.
    One that keeps running is stopped, and fails the test."""
    try:
        rc = proc.wait(timeout=120 if UNDER_VALGRIND else 20)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(f"the daemon started:\n{log.read_text()}") from None
    assert rc == 1, log.read_text()
    return log.read_text()


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


# --- 1. the creator's group gives nothing away ------------------------------------------------

@needs_root
def test_a_daemon_refuses_a_socket_group_that_is_its_own(open_dir):
    """The shipped units used to run the daemon in the group its clients are in; every
    client could then shmat() every group-mode pool read-write (the kernel grants a
    segment's group bits to its creator's group). Such a daemon does not start."""
    g = socket_group()
    before = segments()
    proc, sock, log = start_as(open_dir, "own", {"socket_mode": "0660", "socket_group": g.gr_name},
                               DAEMON_UID, g.gr_gid)
    text = refused_start(proc, log)
    assert f'"{g.gr_name}"' in text and f"gid {g.gr_gid}" in text and "daemon's own group" in text, text
    assert not listening(sock)
    assert segments() == before


@needs_root
def test_a_socket_activated_daemon_refuses_a_socket_of_its_own_group(open_dir):
    """The same with the socket from systemd (shmbrokerd.socket's SocketGroup=)."""
    g = socket_group()
    sock = str(open_dir / "activated.sock")
    proc, _, log = start_as(open_dir, "activated", {}, DAEMON_UID, g.gr_gid, sock=str(open_dir / "ignored.sock"),
                            argv_prefix=["systemd-socket-activate", "-l", sock])
    try:
        wait_for(lambda: listening(sock), what="the activation socket")
        os.chown(sock, -1, g.gr_gid)
        os.chmod(sock, 0o660)
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)             # starts the daemon
        text = refused_start(proc, log)
        c.close()
    finally:
        if proc.poll() is None:
            stop(proc)
    assert f'"{g.gr_name}"' in text and "daemon's own group" in text, text


@needs_root
def test_a_socket_group_member_cannot_attach_another_groups_pool(open_dir):
    """The shipped setup: the daemon in a group of its own, the clients in the socket's
    group. A client of the socket's group cannot shmat() a 0660 pool of another group,
    a member of that group can; the daemon agrees with the kernel."""
    g = socket_group()
    before = segments()
    # the daemon is in the socket's group too, as a supplementary group (to give its socket
    # that group): the kernel takes a segment's creator group from the effective gid alone
    proc, sock, log = start_as(open_dir, "split", {"socket_mode": "0660", "socket_group": g.gr_name},
                               DAEMON_UID, DAEMON_GID, groups=str(g.gr_gid))
    try:
        wait_for(lambda: listening(sock) or proc.poll() is not None, what="the daemon to listen")
        assert proc.poll() is None, log.read_text()
        member_groups = f"{g.gr_gid},{POOL_GID}"
        [_, made] = requests_as_user(sock, [{"op": "hello", "role": "producer"},
                                            {"op": "create", "pool": "team", "slot_size": 4096, "slots": 1,
                                             "mode": "0660", "group": str(POOL_GID), "persistent": True}],
                                     uid=OWNER_UID, groups=member_groups)
        assert made["ok"] and made["gid"] == POOL_GID, made
        info = segment_info(made["shmid"])
        # the kernel's view: owned by the creator, in the pool's group, created by the daemon
        assert (int(info["uid"]), int(info["gid"]), int(info["cuid"]), int(info["cgid"])) == \
            (OWNER_UID, POOL_GID, DAEMON_UID, DAEMON_GID), info
        steps = [{"op": "hello", "role": "producer"}, {"op": "open", "pool": "team"}, {"attach": made["shmid"]}]
        stranger = requests_as_user(sock, steps, uid=OTHER_UID, groups=str(g.gr_gid))
        assert stranger[1]["error"] == "permission_denied", stranger
        assert stranger[2] == {"attached": False, "errno": 13}, stranger     # EACCES from the kernel
        member = requests_as_user(sock, steps, uid=MEMBER_UID, groups=member_groups)
        assert member[1]["ok"] and member[2]["attached"] is True, member
    finally:
        assert stop(proc) == 0, log.read_text()
    assert segments() == before


@needs_root
def test_a_root_daemons_own_group_gets_nothing(open_daemon_factory):
    """A daemon running as root creates each segment under the pool's own group, so its
    creator's group (cgid) admits nobody the pool's group does not: a client in root's
    group (the daemon's) cannot attach a 0660 pool of another group."""
    d = open_daemon_factory()
    root = d.client(role="admin")
    made = root.ok("create", pool="team", slot_size=4096, slots=1, mode="0660", group=str(POOL_GID))
    info = segment_info(made["shmid"])
    assert (int(info["gid"]), int(info["cgid"])) == (POOL_GID, POOL_GID), info
    steps = [{"attach": made["shmid"]}, {"op": "hello", "role": "producer"}, {"op": "open", "pool": "team"}]
    in_roots_group = requests_as_user(d.path, steps, groups="0")
    assert in_roots_group[0] == {"attached": False, "errno": 13}, in_roots_group
    assert in_roots_group[2]["error"] == "permission_denied"
    member = requests_as_user(d.path, steps, groups=str(POOL_GID))
    assert member[0]["attached"] is True and member[2]["ok"], member


@needs_root
def test_a_daemon_whose_socket_keeps_its_group_refuses_group_access(open_dir):
    """A personal daemon (no socket_group): its socket has the daemon's own group, whose
    members the kernel would admit to every pool's group bits. Pools without group
    access work; group access is refused, over the socket and in the configuration."""
    before = segments()
    proc, sock, log = start_as(open_dir, "personal", {"socket_mode": "0666"}, DAEMON_UID, DAEMON_GID)
    try:
        wait_for(lambda: listening(sock) or proc.poll() is not None, what="the daemon to listen")
        assert proc.poll() is None, log.read_text()
        r = requests_as_user(sock, [{"op": "hello", "role": "producer"},
                                    {"op": "create", "pool": "mine", "slot_size": 4096, "slots": 1},
                                    {"op": "create", "pool": "open", "slot_size": 4096, "slots": 1, "mode": "0606"},
                                    {"op": "create", "pool": "team", "slot_size": 4096, "slots": 1, "mode": "0660",
                                     "group": str(POOL_GID)}],
                             uid=OWNER_UID, groups=str(POOL_GID))
        assert r[1]["ok"] and r[2]["ok"], r
        assert r[3]["error"] == "permission_denied" and f"gid {DAEMON_GID}" in r[3]["message"], r
    finally:
        assert stop(proc) == 0, log.read_text()
    proc, sock, log = start_as(open_dir, "personal-cfg", {"socket_mode": "0666", "pools": [
        {"name": "cfg", "slot_size": 4096, "slots": 1, "mode": "0640", "group": socket_group().gr_name}]},
        DAEMON_UID, DAEMON_GID)
    text = refused_start(proc, log)
    assert 'pool "cfg"' in text and "group access is refused" in text, text
    assert segments() == before


# --- 4. segments orphaned by a daemon killed between shmget() and IPC_RMID ----------------------

MAKE_SEGMENT = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
key, mode, hold = sys.argv[1], int(sys.argv[2], 8), sys.argv[3] == "hold"
if key == "ours":            # as shmbrokerd makes it: its prefix and the creator's pid
    key = 0x6CC00000 | os.getpid()
elif key == "ours-other-pid":
    key = 0x6CC00000 | (os.getpid() ^ 0x200000)
else:
    key = int(key, 0)
shmid = libc.shmget(key, 4096, 0o1000 | 0o2000 | mode)
if shmid < 0:
    sys.exit(f"shmget: {os.strerror(ctypes.get_errno())}")
print(shmid, flush=True)
if hold:
    sys.stdin.read()          # the creator lives until the test closes its stdin
"""


def make_segment(key: str, mode: str = "600", hold: bool = False, uid: int | None = None) -> tuple[int, subprocess.Popen]:
    """A segment made by a process of its own that then exits (or, @hold, stays alive)."""
    argv = [sys.executable, "-c", MAKE_SEGMENT, key, mode, "hold" if hold else "exit"]
    if uid is not None:
        argv = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + argv
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.strip().isdigit(), line
    if not hold:
        assert p.wait() == 0
    return int(line), p


@needs_root
def test_orphans_of_a_killed_daemon_are_removed_and_nothing_else(daemon_factory):
    """A daemon killed between shmget() and IPC_RMID leaves a segment with its key, mode
    0600, no attachment and no "dest" mark. The next daemon removes exactly those, and no
    other segment of its uid (root's, here): not one of another key, nor IPC_PRIVATE, nor
    one in flight in a live daemon, nor one that differs in any way."""
    orphan, _ = make_segment("ours")
    kept = {}
    holders, attachments = [], []
    try:
        kept["private"], _ = make_segment("0")
        kept["other key"], _ = make_segment("0x12345678")
        kept["other key, same pid bits"], _ = make_segment(hex(0x2CC00000 | 77))
        kept["mode 0644"], _ = make_segment("ours", mode="644")
        kept["key pid is not the creator"], _ = make_segment("ours-other-pid")
        kept["other uid"], _ = make_segment("ours", uid=OTHER_UID)
        kept["live creator"], holder = make_segment("ours", hold=True)
        holders.append(holder)
        attached_id, _ = make_segment("ours")
        kept["attached"] = attached_id
        attachments.append(Attachment(attached_id, 4096))
        assert int(segment_info(orphan)["cpid"]) == int(segment_info(orphan)["key"]) & KEY_PID_MASK

        d = daemon_factory()
        assert segment_info(orphan) is None, "the orphan is still there"
        for what, shmid in kept.items():
            assert segment_info(shmid) is not None, f"the daemon removed a segment that was not its: {what}"
        assert f"removed segment {orphan} " in d.log_text()

        # a live daemon's segments carry no key once marked: nothing to mistake for an orphan
        admin = d.client(role="admin")
        shmid = admin.ok("create", pool="p", slot_size=4096, slots=1)["shmid"]
        info = segment_info(shmid)
        assert int(info["key"]) == 0 and int(info["perms"], 8) & 0o1000, info       # SHM_DEST
    finally:
        for a in attachments:
            a.detach()
        for h in holders:
            h.stdin.close()
            h.wait()
        for shmid in kept.values():
            remove_segment(shmid)
        info = segment_info(orphan)
        if info and int(info["key"]) & KEY_PREFIX_MASK == KEY_PREFIX:     # not removed: do it for the daemon
            remove_segment(orphan)


def create_drop_flood(path: str, tag: str, stop_flag: threading.Event) -> None:
    """Create and drop pools, pipelined, until the daemon goes."""
    try:
        c = Client(path, role="admin")
        c.sock.settimeout(5)
        i = 0
        while not stop_flag.is_set():
            lines = []
            for _ in range(32):
                name = f"{tag}-{i}"
                i += 1
                lines.append(json.dumps({"op": "create", "pool": name, "slot_size": 4096, "slots": 1}))
                lines.append(json.dumps({"op": "drop", "pool": name}))
            c.send_raw(("\n".join(lines) + "\n").encode())
            for _ in range(len(lines)):
                c.recv()
    except (OSError, EOFError, ValueError):
        pass


def test_daemon_killed_during_create_and_drop_leaves_no_segment(daemon_factory):
    """SIGKILL of the daemon, again and again, while clients create and drop pools as fast
    as they can: whatever a killed daemon orphaned is gone once the next one listens.
    SHMBROKER_KILL_SECONDS sets how long (`make sigkill` runs it longer)."""
    seconds = float(os.environ.get("SHMBROKER_KILL_SECONDS", "3"))
    rng = random.Random(12)
    before = segments()
    d = daemon_factory(start=False)
    end = time.monotonic() + seconds
    rounds = 0
    while rounds < 3 or time.monotonic() < end:
        d.start()
        left = segments() - before
        assert not left, f"round {rounds}: segments left by the killed daemon: {[segment_info(s) for s in left]}"
        flag = threading.Event()
        threads = [threading.Thread(target=create_drop_flood, args=(d.path, f"t{k}", flag)) for k in range(2)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.02, 0.1))
        d.stop(signal.SIGKILL)
        flag.set()
        for t in threads:
            t.join()
        rounds += 1
    d.start()
    assert segments() == before
    d.stop()
    removed = d.log_text().count("orphaned by")
    print(f"{rounds} kills, {removed} orphaned segments removed at the next start")


# --- 5. a dropped pool counts against its owner until its segment is gone ---------------------

QUOTA_SCRIPT = r"""
import ctypes, json, os, socket, sys, time
path, limit_kind = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
def rpc(**req):
    f.write((json.dumps(req) + "\n").encode()); f.flush()
    return json.loads(f.readline())
page = os.sysconf("SC_PAGESIZE")
assert rpc(op="hello", role="admin")["ok"]
slots = 4 if limit_kind == "bytes" else 1
# a second process keeps each segment attached, as a trainer still reading would
r, w = os.pipe()
holders = []
for i in range(2 if limit_kind == "pools" else 1):
    made = rpc(op="create", pool=f"a{i}", slot_size=page, slots=slots)
    assert made["ok"], made
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        addr = libc.shmat(made["shmid"], None, 0)
        os.write(ready_w, b"1" if addr not in (None, ctypes.c_void_p(-1).value) else b"0")
        os.read(r, 1)
        os._exit(0)
    assert os.read(ready_r, 1) == b"1"
    holders.append(pid)
    print(json.dumps(rpc(op="drop", pool=f"a{i}")), flush=True)
print(json.dumps(rpc(op="create", pool="b", slot_size=page, slots=slots)), flush=True)
os.write(w, b"x" * len(holders))
for pid in holders:
    os.waitpid(pid, 0)
# allowed again, within a bounded wait
end = time.monotonic() + 10
while True:
    again = rpc(op="create", pool="b", slot_size=page, slots=slots)
    if again["ok"] or time.monotonic() > end:
        break
    time.sleep(0.05)
print(json.dumps(again), flush=True)
"""


@needs_root
@pytest.mark.parametrize("kind,limits", [("bytes", {"max_bytes_per_uid": "4p"}),
                                         ("pools", {"max_pools_per_uid": 2})])
def test_a_dropped_pool_counts_against_its_owner_until_detached(open_daemon_factory, kind, limits):
    page = os.sysconf("SC_PAGESIZE")
    limits = {k: (4 * page if v == "4p" else v) for k, v in limits.items()}
    d = open_daemon_factory({"limits": limits})
    *drops, refused, again = python_as_user(QUOTA_SCRIPT, d.path, kind)
    assert all(r["ok"] for r in drops), drops
    assert refused["ok"] is False and refused["error"] == "limit", refused
    assert ("max_bytes_per_uid" if kind == "bytes" else "max_pools_per_uid") in refused["message"], refused
    assert f"with {len(drops)} dropped pool" in refused["message"], refused
    assert again["ok"], again


@needs_root
def test_a_dropped_pools_charge_goes_back_on_a_timer(open_dir, daemon_factory):
    """Without a refused create to look: the daemon notices by itself that the segment of a
    dropped pool is gone, and gives its owner's quota back."""
    sock = str(open_dir / "timer.sock")
    d = daemon_factory(config=json.dumps({"socket_mode": "0666"}), socket=sock, args=["--socket", sock, "-v"])
    [_, made] = requests_as_user(sock, [{"op": "hello", "role": "admin"},
                                        {"op": "create", "pool": "a", "slot_size": 4096, "slots": 1,
                                         "persistent": True}])
    gone = f"segment {made['shmid']} of a dropped pool is gone"
    holder = Attachment(made["shmid"], 4096)
    try:
        admin = d.client(role="admin")
        admin.ok("open", pool="a")
        admin.ok("drop", pool="a")
        time.sleep(0.3)
        assert gone not in d.log_text()
    finally:
        holder.detach()
    wait_for(lambda: gone in d.log_text(), what="the daemon to notice that the dropped pool's segment is gone")

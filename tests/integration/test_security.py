"""Permissions and quotas, checked with clients that drop to uid 65534 (root bypasses IPC
permissions, so the tests must not be root on the client side)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another uid")

AS_NOBODY = r"""
import ctypes, json, socket, sys
path, requests = sys.argv[1], json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
for r in requests:
    if "attach" in r:      # shmat() the segment directly, as a client that guessed the shmid
        addr = libc.shmat(r["attach"], None, 0)
        ok = addr not in (None, ctypes.c_void_p(-1).value)
        print(json.dumps({"attached": ok, "errno": 0 if ok else ctypes.get_errno()}))
        continue
    f.write((json.dumps(r) + "\n").encode()); f.flush()
    print(f.readline().decode().strip(), flush=True)
"""


@pytest.fixture
def open_daemon(daemon_factory):
    d = tempfile.mkdtemp(prefix="shmbroker-sec-")
    os.chmod(d, 0o777)
    sock = str(Path(d) / "s.sock")
    config = json.dumps({"socket_mode": "0666", "limits": {"max_pools_per_uid": 2, "max_clients_per_uid": 3}})
    daemon = daemon_factory(config=config, args=["--socket", sock], start=False)
    daemon.path = sock
    daemon.start()
    yield daemon
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(path: str, requests: list[dict], groups: str = "") -> list[dict]:
    who = ["setpriv", "--reuid", "65534", "--regid", "65534"] + (["--groups", groups] if groups else
                                                                  ["--clear-groups"])
    out = subprocess.run(who + ["/usr/bin/python3", "-c", AS_NOBODY, path, json.dumps(requests)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_private_pool_cannot_be_opened_attached_or_dropped(open_daemon):
    owner = open_daemon.client(role="producer")
    shmid = owner.ok("create", pool="mine", slot_size=4096, slots=1)["shmid"]
    r = as_nobody(open_daemon.path, [{"op": "hello", "role": "consumer"}, {"op": "open", "pool": "mine"},
                                     {"attach": shmid}, {"op": "drop", "pool": "mine"}, {"op": "status"}])
    assert r[0]["uid"] == 65534
    assert r[1]["error"] == "permission_denied" and "shmid" not in r[1]
    assert r[2] == {"attached": False, "errno": 13}           # the kernel agrees: EACCES
    assert r[3]["error"] == "no_such_pool"
    assert "shmid" not in r[4]["pools"][0]


def test_another_users_slots_cannot_be_published_or_released(open_daemon):
    owner = open_daemon.client(role="producer")
    owner.ok("create", pool="shared", slot_size=4096, slots=2, mode="0666")
    s = owner.ok("acquire", pool="shared")["slot"]
    r = as_nobody(open_daemon.path, [{"op": "hello", "role": "producer"}, {"op": "open", "pool": "shared"},
                                     {"op": "publish", "pool": "shared", "slot": s, "nbytes": 1},
                                     {"op": "release", "pool": "shared", "slot": s},
                                     {"op": "drop", "pool": "shared"}])
    assert r[1]["ok"] and r[2]["error"] == "not_holder" and r[3]["error"] == "not_holder"
    assert r[4]["error"] == "permission_denied"
    owner.ok("publish", pool="shared", slot=s, nbytes=1)       # still the owner's


def test_a_group_pool_admits_members_by_supplementary_group(open_daemon):
    owner = open_daemon.client(role="producer")
    shmid = owner.ok("create", pool="team", slot_size=4096, slots=1, group="4242", mode="0660")["shmid"]
    steps = [{"op": "hello", "role": "producer"}, {"op": "open", "pool": "team"}, {"attach": shmid},
             {"op": "acquire", "pool": "team", "timeout_ms": 1000}]
    member = as_nobody(open_daemon.path, steps, groups="4242")
    assert member[1]["ok"] and member[1]["gid"] == 4242 and member[1]["mode"] == "0660"
    assert member[2]["attached"] is True and member[3]["ok"]
    stranger = as_nobody(open_daemon.path, steps)
    assert stranger[1]["error"] == "permission_denied"
    assert stranger[2] == {"attached": False, "errno": 13}
    # a user cannot hand a pool to a group it is not in
    r = as_nobody(open_daemon.path, [{"op": "hello", "role": "admin"},
                                     {"op": "create", "pool": "x", "slot_size": 64, "slots": 1, "group": "4242"}])
    assert r[1]["error"] == "permission_denied"


def test_per_uid_quotas(open_daemon):
    r = as_nobody(open_daemon.path, [{"op": "hello", "role": "admin"}] +
                  [{"op": "create", "pool": f"q{i}", "slot_size": 4096, "slots": 1, "persistent": True}
                   for i in range(3)])
    assert r[1]["ok"] and r[2]["ok"]
    assert r[3]["error"] == "limit" and "max_pools_per_uid" in r[3]["message"]
    # root is not held to the quota of uid 65534
    open_daemon.client(role="admin").ok("create", pool="root-pool", slot_size=4096, slots=1)
    code = ("import socket, sys, json\n"
            "socks = [socket.socket(socket.AF_UNIX) for _ in range(4)]\n"
            "for s in socks: s.connect(sys.argv[1])\n"
            "s = socks[3]; s.settimeout(5); print(s.makefile('rb').readline().decode().strip())\n")
    out = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3",
                          "-c", code, open_daemon.path], capture_output=True, text=True, timeout=30).stdout
    reply = json.loads(out)
    assert reply["error"] == "limit" and "max_clients_per_uid" in reply["message"]
    admin = open_daemon.client(role="admin")
    for i in range(2):
        admin.ok("open", pool=f"q{i}")
        admin.ok("drop", pool=f"q{i}")          # root may drop anyone's pool

"""Permissions and quotas, checked with clients that drop to uid 65534 (root bypasses IPC
permissions, so the tests must not be root on the client side)."""
from __future__ import annotations

import os

from sbtest import needs_root, python_as_user, requests_as_user

pytestmark = needs_root


def test_a_private_pool_cannot_be_opened_attached_or_dropped(open_daemon):
    owner = open_daemon.client(role="producer")
    shmid = owner.ok("create", pool="mine", slot_size=4096, slots=1)["shmid"]
    r = requests_as_user(open_daemon.path, [{"op": "hello", "role": "consumer"}, {"op": "open", "pool": "mine"},
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
    r = requests_as_user(open_daemon.path, [{"op": "hello", "role": "producer"}, {"op": "open", "pool": "shared"},
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
    member = requests_as_user(open_daemon.path, steps, groups="4242")
    assert member[1]["ok"] and member[1]["gid"] == 4242 and member[1]["mode"] == "0660"
    assert member[2]["attached"] is True and member[3]["ok"]
    stranger = requests_as_user(open_daemon.path, steps)
    assert stranger[1]["error"] == "permission_denied"
    assert stranger[2] == {"attached": False, "errno": 13}
    # a user cannot hand a pool to a group it is not in
    r = requests_as_user(open_daemon.path, [{"op": "hello", "role": "admin"},
                         {"op": "create", "pool": "x", "slot_size": 64, "slots": 1, "group": "4242"}])
    assert r[1]["error"] == "permission_denied"


def test_per_uid_quotas(open_daemon):
    r = requests_as_user(open_daemon.path, [{"op": "hello", "role": "admin"}] +
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
    [reply] = python_as_user(code, open_daemon.path)
    assert reply["error"] == "limit" and "max_clients_per_uid" in reply["message"]
    admin = open_daemon.client(role="admin")
    for i in range(2):
        admin.ok("open", pool=f"q{i}")
        admin.ok("drop", pool=f"q{i}")          # root may drop anyone's pool


def test_max_bytes_per_uid(open_daemon_factory):
    page = os.sysconf("SC_PAGESIZE")
    d = open_daemon_factory({"limits": {"max_bytes_per_uid": 3 * page}})

    def create(name: str, slots: int) -> dict:
        return {"op": "create", "pool": name, "slot_size": page, "slots": slots}
    r = requests_as_user(d.path, [{"op": "hello", "role": "admin"}, create("a", 2), create("b", 2), create("c", 1),
                                  {"op": "drop", "pool": "a"}, create("b", 2)])
    assert r[1]["ok"]
    assert r[2]["error"] == "limit" and "max_bytes_per_uid" in r[2]["message"], r[2]
    assert r[3]["ok"], r[3]                                    # exactly the quota: allowed
    assert r[4]["ok"] and r[5]["ok"], r                        # a dropped pool gives its bytes back
    d.client(role="admin").ok("create", pool="root", slot_size=page, slots=8)   # root has no quota

"""The daemon as a program: signals, sockets, configuration, logs, and running unprivileged."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from sbtest import DAEMON, ROOT, Client, as_user_argv, listening, needs_root, requests_as_user, segments, wait_for


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(daemon, sig):
    c = daemon.client(role="producer")
    c.ok("create", pool="p", slot_size=4096, slots=2)
    c.ok("acquire", pool="p")
    assert daemon.stop(sig) == 0
    assert not Path(daemon.path).exists()       # socket file removed
    log = daemon.log_text()
    assert "<6>listening on" in log and "<6>received" in log   # sd-daemon priority prefixes


def test_shmbroker_socket_environment_is_honoured(daemon_factory, tmp_path):
    path = str(tmp_path / "env.sock")
    daemon_factory(args=[], env={"SHMBROKER_SOCKET": path}, socket=path)
    Client(path, role="admin").ok("status")


def test_configured_pools_exist_at_start(daemon_factory):
    d = daemon_factory(config="""// comment
    { "pools": [ { "name": "train", "slot_size": "1MiB", "slots": 3, "ordered": true,
                   "mode": "0640", "group": "no-such-group-here" } ] }""")
    st = d.client(role="admin").ok("status")["pools"]
    assert len(st) == 1
    p = st[0]
    assert (p["pool"], p["slots"], p["slot_size"], p["ordered"], p["persistent"]) == ("train", 3, 1 << 20, True, True)
    assert p["mode"] == "0600"     # the missing group lost its access instead of falling back
    assert "no group \"no-such-group-here\"" in d.log_text()


def test_configured_groups_are_names_and_a_pool_key_is_ignored(daemon_factory):
    """A configured group is looked up by name: digits that name no group lose the group's
    access, as any unknown name does, rather than granting it to a bare gid. A configured
    pool may carry a "pool" key beside its "name" (ignored), as it always could."""
    d = daemon_factory(config="""{ "pools": [
        { "name": "train", "pool": "train", "slot_size": 4096, "slots": 1, "mode": "0660", "group": "4242" } ] }""")
    p = d.client(role="admin").ok("status")["pools"][0]
    assert (p["pool"], p["mode"], p["gid"]) == ("train", "0600", os.getegid())
    assert "no group \"4242\"" in d.log_text()


def test_bad_configuration_is_refused_with_line_and_reason(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('{\n  "pools": [\n    { "name": "x", "slot_size": "lots", "slots": 1 }\n  ]\n}\n')
    r = subprocess.run([DAEMON, "--config", str(conf), "--socket", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "line 3" in r.stderr and "slot_size" in r.stderr and r.stderr.startswith("<3>")
    r = subprocess.run([DAEMON, "--config", str(tmp_path / "missing.conf")], capture_output=True, text=True)
    assert r.returncode == 1 and "missing.conf" in r.stderr


def test_bad_usage_exits_2():
    assert subprocess.run([DAEMON, "--bogus"], capture_output=True).returncode == 2
    r = subprocess.run([DAEMON, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--socket" in r.stdout


def test_stale_socket_is_replaced_and_a_live_one_is_not(daemon_factory, tmp_path):
    path = tmp_path / "shmbroker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))     # a socket file nobody listens on: stale
    s.close()
    d = daemon_factory()
    d.client(role="admin").ok("status")
    r = subprocess.run([DAEMON, "--config", str(d.config), "--socket", d.path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and "another shmbrokerd" in r.stderr
    d.client(role="admin").ok("status")    # the first one is untouched


def test_sighup_reload_adds_pools_and_keeps_the_old_config_when_bad(daemon_factory):
    d = daemon_factory(config='{"pools":[{"name":"a","slot_size":4096,"slots":1}]}')
    c = d.client(role="admin")
    assert d.reload('{"pools":[{"name":"a","slot_size":4096,"slots":1},{"name":"b","slot_size":4096,"slots":2}]}')
    assert sorted(p["pool"] for p in c.ok("status")["pools"]) == ["a", "b"]
    assert not d.reload('{"pools": [ oops ]}')
    assert sorted(p["pool"] for p in c.ok("status")["pools"]) == ["a", "b"]
    assert d.reload('{"pools":[{"name":"b","slot_size":4096,"slots":2}]}')
    assert [p["pool"] for p in c.ok("status")["pools"]] == ["b"]      # unused: gone at once


@needs_root
def test_other_users_cannot_open_or_drop_a_private_pool(open_daemon_factory):
    d = open_daemon_factory()
    owner = d.client(role="producer")
    owner.ok("create", pool="mine", slot_size=4096, slots=1)
    owner.ok("create", pool="shared", slot_size=4096, slots=1, mode="0606")
    replies = requests_as_user(d.path, [
        {"op": "hello", "role": "consumer"},
        {"op": "open", "pool": "mine"},
        {"op": "drop", "pool": "mine"},
        {"op": "status"},
        {"op": "open", "pool": "shared"},
        {"op": "drop", "pool": "shared"},
    ])
    assert replies[0]["uid"] == 65534
    assert replies[1]["error"] == "permission_denied" and "shmid" not in replies[1]
    assert replies[2]["error"] == "no_such_pool"
    hidden = {p["pool"]: p for p in replies[3]["pools"]}
    assert "shmid" not in hidden["mine"] and "shmid" in hidden["shared"]
    assert replies[4]["ok"] and "shmid" in replies[4]
    assert replies[5]["error"] == "permission_denied"


@needs_root
def test_daemon_runs_without_root(open_dir):
    before = segments()
    sock = str(open_dir / "nobody.sock")
    conf = open_dir / "c.conf"
    conf.write_text('{"socket_mode": "0666", "pools": [{"name": "cfg", "slot_size": 4096, "slots": 2}]}')
    proc = subprocess.Popen(as_user_argv() + [DAEMON, "--config", str(conf), "--socket", sock],
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listening(sock), what="the unprivileged daemon")
        replies = requests_as_user(sock, [
            {"op": "hello", "role": "producer"},
            {"op": "create", "pool": "eph", "slot_size": 4096, "slots": 2},
            {"op": "acquire", "pool": "eph"},
            {"op": "open", "pool": "cfg"},
        ])
        assert all(r["ok"] for r in replies), replies
        root = Client(sock, role="admin")
        assert {p["pool"]: p["uid"] for p in root.ok("status")["pools"]} == {"cfg": 65534}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert segments() == before


def configuration_keys() -> dict[str, set[str]]:
    """Every key the configuration takes, read from the code that takes it: the top level's
    and the limits' (daemon/config.c), a pool's (daemon/pool-spec.c)."""
    config_c = (ROOT / "daemon" / "config.c").read_text()
    spec_c = (ROOT / "daemon" / "pool-spec.c").read_text()

    def strings(text: str, start: str) -> set[str]:
        at = text.index(start)
        return set(re.findall(r'"(\w+)"', text[at:text.index("};", at)]))
    fields = spec_c[spec_c.index("spec_fields[] = {"):]
    limits_at = config_c.index("limit_fields[] = {")
    limits = set(re.findall(r"LIMIT\((max_\w+)\)", config_c[limits_at:config_c.index("};", limits_at)]))
    return {"top": strings(config_c, "top_keys[] = {"), "limits": limits,
            "pool": {"name"} | set(re.findall(r'\{ "(\w+)", offsetof', fields[:fields.index("};")]))}


def test_the_manual_documents_every_configuration_key_with_its_default():
    """shmbrokerd(8) names every key the code takes, and gives each limit the default of the
    example configuration (whose limits are the defaults: test-config.c)."""
    man = (ROOT / "docs" / "shmbrokerd.8").read_text().replace("\\-", "-").replace("\\(dq", '"')
    keys = configuration_keys()
    assert len(keys["limits"]) == 11 and {"socket_group", "pools"} <= keys["top"] and "on_consumer_death" in keys["pool"]
    for key in set().union(*keys.values()):
        assert re.search(rf"^\.BR? {key}\b", man, re.M), f"shmbrokerd(8) does not document {key}"
    example = (ROOT / "conf" / "shmbroker.conf").read_text()
    for key in keys["limits"]:
        value = re.search(rf'"{key}":\s*"?(\w+)"?', example).group(1)
        assert re.search(rf'^\.BR {key} " \(default {value}\)"$', man, re.M), f"{key}: the default is {value}"

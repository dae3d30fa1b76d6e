"""The configuration as a whole: a start, a SIGHUP reload and `shmbrokerd --check-config`
apply the same checks; a reload is all or nothing; configured names are reserved; a
configured pool put back in the file while in use stays."""
from __future__ import annotations

import json
import os
import subprocess

from sbtest import DAEMON, OTHER_UID, needs_root, requests_as_user, wait_for

ONE = {"slot_size": 4096, "slots": 1}


def conf(pools: dict[str, dict] | None = None, **top) -> str:
    """A configuration with @pools (name: settings) and the top-level settings @top."""
    return json.dumps({**top, "pools": [{"name": n, **v} for n, v in (pools or {}).items()]}, indent=1)


def pool_names(c) -> list[str]:
    return sorted(p["pool"] for p in c.ok("status")["pools"])


def check_config(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DAEMON, "--check-config", str(path), *args], capture_output=True, text=True, timeout=10)


def error_lines(d) -> list[str]:
    return [line for line in d.log_text().splitlines() if line.startswith("<3>")]


def test_a_reload_refuses_what_a_start_refuses_and_keeps_the_running_configuration(daemon_factory, tmp_path):
    """A configured pool over max_bytes stops a start; the same file on SIGHUP is refused
    with its file, line and reason, and every part of the running configuration stays,
    the limits included (max_pools 3, not the file's 2). --check-config says the same."""
    good = conf({"a": ONE}, limits={"max_pools": 3, "max_bytes": "1MiB"})
    bad = conf({"a": ONE, "big": {"slot_size": "1MiB", "slots": 1}}, limits={"max_pools": 2, "max_bytes": "1MiB"})
    big_line = next(i for i, x in enumerate(bad.splitlines(), 1) if '"big"' in x)
    d = daemon_factory(config=good)
    c = d.client(role="admin")
    assert not d.reload(bad)
    assert pool_names(c) == ["a"]
    c.ok("create", pool="u1", **ONE)
    c.ok("create", pool="u2", **ONE)          # the third pool: max_pools is still 3
    assert "max_pools (3)" in c.err("create", "limit", pool="u3", **ONE)["message"]
    [line] = [line for line in error_lines(d) if "not reloaded" in line]
    assert f"{d.config}: line {big_line}: " in line and "max_bytes" in line and '"big"' in line, line

    (tmp_path / "bad.conf").write_text(bad)
    start = subprocess.run([DAEMON, "--config", str(tmp_path / "bad.conf"), "--socket", str(tmp_path / "bad.sock")],
                           capture_output=True, text=True, timeout=10)
    assert start.returncode == 1 and f"line {big_line}: " in start.stderr and "max_bytes" in start.stderr

    r = check_config(d.config)
    assert r.returncode == 1 and str(d.config) in r.stderr and "line " in r.stderr and "max_bytes" in r.stderr
    d.config.write_text(good)
    r = check_config(d.config)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_check_config_applies_every_check_of_a_start(tmp_path):
    f = tmp_path / "c.conf"
    cases = {
        '{\n "pools": [ oops ]\n}': "line 2",
        conf({"a": ONE, "b": ONE}, limits={"max_pools": 1}): "max_pools",
        conf({"a": {"slot_size": "1GiB", "slots": 1048576}}): "max_bytes",
        conf({"a": {"slot_size": 2**53, "slots": 2**20}}): "overflow",
        conf(socket="/" + "s" * 200): "socket",
        conf({"a": ONE, "a2": {**ONE, "colour": 1}}): "colour",
        "": "line 1: the file is empty: write {} to configure nothing",
        "\n \n": "the file is empty",
        '{\n "socket_mode": "0600",\n "socket_mode": "0666"\n}': 'line 3: "socket_mode" is set twice (first on line 2)',
        '{\n "pools": [\n  {"name": "a", "slot_size": 1, "slots": 1}\n  {"name": "b", "slot_size": 1, "slots": 1}\n ]\n}':
            "line 3: not valid JSON: a ',' is missing between two elements (the next starts on line 4)",
        '{"pools": [\n {"name": "a", "slot_size": 0, "slots": 1}]}': 'line 2: pool "a": "slot_size" must be',
    }
    for text, want in cases.items():
        f.write_text(text)
        r = check_config(f)
        assert r.returncode == 1 and str(f) in r.stderr and want in r.stderr, (text, r.stderr)
        start = subprocess.run([DAEMON, "--config", str(f), "--socket", str(tmp_path / "s")], capture_output=True,
                               text=True, timeout=10)
        assert start.returncode == 1 and want in start.stderr, (text, start.stderr)
    r = check_config(tmp_path / "missing.conf")
    assert r.returncode == 1 and "missing.conf" in r.stderr
    f.write_text("// nothing configured\n")
    assert check_config(f).returncode == 0
    f.write_text("{}")
    assert check_config(f).returncode == 0
    assert check_config("/dev/null").returncode == 0       # not a file: "no configuration", on purpose
    assert "--check-config" in subprocess.run([DAEMON, "--help"], capture_output=True, text=True).stdout


def test_a_reload_whose_pool_cannot_be_made_changes_nothing(daemon_factory):
    """The file passes the checks, but the pools that clients hold leave no room under
    max_bytes for its last new pool: the pools made for it go again, and its limits are
    not applied."""
    d = daemon_factory(config=conf({"a": ONE}, limits={"max_bytes": "64KiB", "max_pools": 8}))
    c = d.client(role="admin")
    c.ok("create", pool="u", slot_size="44KiB", slots=1)
    assert not d.reload(conf({"a": ONE, "b": ONE, "c": {"slot_size": "16KiB", "slots": 1}},
                             limits={"max_bytes": "64KiB", "max_pools": 4}))
    assert pool_names(c) == ["a", "u"]
    assert any('pool "c"' in line and "max_bytes" in line for line in error_lines(d))
    for name in ("x1", "x2", "x3"):
        c.ok("create", pool=name, slot_size=64, slots=1)     # 5 pools: max_pools is still 8
    c.ok("drop", pool="u")
    assert d.reload(conf({"a": ONE, "b": ONE, "c": {"slot_size": "16KiB", "slots": 1}},
                         limits={"max_bytes": "64KiB", "max_pools": 8}))
    assert pool_names(c) == ["a", "b", "c", "x1", "x2", "x3"]


def test_configured_names_are_reserved(daemon_factory):
    """Nobody creates a pool of a configured name, even while the configured pool does not
    exist (dropped): a reload makes it again, the daemon's."""
    d = daemon_factory(config=conf({"cfg": {**ONE, "mode": "0600"}}))
    c = d.client(role="admin")
    c.err("create", "pool_exists", pool="cfg", **ONE)
    c.ok("open", pool="cfg")
    c.ok("drop", pool="cfg")
    assert pool_names(c) == []
    r = c.err("create", "permission_denied", pool="cfg", **ONE, mode="0666", persistent=True)
    assert "reserved" in r["message"] and "configuration" in r["message"]
    assert pool_names(c) == []
    c.ok("create", pool="cfg2", **ONE)          # other names are free
    assert d.reload(d.config.read_text())
    p = c.ok("status", pool="cfg")["pools"][0]
    assert (p["persistent"], p["mode"], p["uid"]) == (True, "0600", os.geteuid())


@needs_root
def test_a_reload_that_would_configure_a_users_pool_keeps_the_running_configuration(open_daemon_factory):
    """A user made "train" before the administrator configured it: the reload is refused
    whole (its limits too) and the clash logged with the pool and its owner; once the user's
    pool is dropped, the same reload makes the daemon's pool."""
    d = open_daemon_factory({"limits": {"max_pools": 5}})
    r = requests_as_user(d.path, [{"op": "hello", "role": "admin"},
                                  {"op": "create", "pool": "train", **ONE, "mode": "0666", "persistent": True}])
    assert r[1]["ok"] and r[1]["uid"] == OTHER_UID
    wanted = conf({"train": {**ONE, "mode": "0600"}}, socket_mode="0666", limits={"max_pools": 1})
    assert not d.reload(wanted)
    [line] = [line for line in error_lines(d) if "not reloaded" in line]
    assert 'pool "train"' in line and f"uid {OTHER_UID}" in line, line
    c = d.client(role="admin")
    p = c.ok("status", pool="train")["pools"][0]
    assert (p["uid"], p["mode"], p["persistent"]) == (OTHER_UID, "0666", True)
    c.ok("create", pool="x", **ONE)               # max_pools is still 5
    c.ok("drop", pool="x")
    r = check_config(d.config)                    # no daemon's pools to clash with: the file is good
    assert r.returncode == 0, r.stderr

    c.ok("open", pool="train")
    c.ok("drop", pool="train")
    assert d.reload(wanted)
    p = c.ok("status", pool="train")["pools"][0]
    assert (p["uid"], p["mode"], p["persistent"]) == (os.geteuid(), "0600", True)


def test_a_configured_pool_put_back_while_in_use_stays_configured(daemon_factory):
    d = daemon_factory(config=conf({"cfg": ONE}))
    user = d.pool_client("cfg", "consumer")
    admin = d.client(role="admin")
    shmid = admin.ok("status", pool="cfg")["pools"][0]["shmid"]
    assert d.reload(conf())
    assert admin.ok("status", pool="cfg")["pools"][0]["persistent"] is False    # goes once unused
    assert d.reload(conf({"cfg": ONE}))
    p = admin.ok("status", pool="cfg")["pools"][0]
    assert (p["persistent"], p["shmid"]) == (True, shmid)
    user.close()
    wait_for(lambda: len(admin.ok("status")["clients"]) == 1, what="the daemon to see the user go")
    p = admin.ok("status", pool="cfg")["pools"][0]
    assert (p["persistent"], p["shmid"]) == (True, shmid)
    admin.err("create", "pool_exists", pool="cfg", **ONE)
    assert d.reload(conf())                        # removed again while unused: gone at once
    assert pool_names(admin) == []


def test_a_changed_pool_keeps_what_it_was_made_with_until_dropped_and_says_so(daemon_factory, tmp_path):
    """A pool's segment cannot change under its users: a reload that changes a configured
    pool leaves it as it is, with a notice that says what differs and how to apply it;
    --check-config against the running daemon says the same before the reload. Dropped,
    the pool is made anew by the next reload."""
    d = daemon_factory(config=conf({"cfg": ONE}))
    c = d.client(role="admin")
    assert c.ok("status", pool="cfg")["pools"][0]["configured"] is True
    changed = conf({"cfg": {"slot_size": 8192, "slots": 2, "mode": "0640"}})
    notice = ('<5>pool "cfg" keeps what it was made with until it is dropped: the configuration says slot_size 8 KiB '
              '(live: 4 KiB), slots 2 (live: 1), mode 0640 (live: 0600); drop it (shmbrokerctl drop cfg) once its users '
              'are done, and reload to make it anew')
    f = tmp_path / "changed.conf"
    f.write_text(changed)
    r = check_config(f, "--socket", d.path)
    assert (r.returncode, r.stderr) == (0, notice + "\n")
    assert d.reload(changed)
    assert d.log_text().count(notice) == 1
    p = c.ok("status", pool="cfg")["pools"][0]
    assert (p["slots"], p["slot_size"], p["mode"]) == (1, 4096, "0600")

    c.ok("open", pool="cfg")
    c.ok("drop", pool="cfg")
    assert d.reload(changed)
    p = c.ok("status", pool="cfg")["pools"][0]
    assert (p["slots"], p["slot_size"], p["mode"]) == (2, 8192, "0640")
    assert d.log_text().count(notice) == 1
    r = check_config(f, "--socket", d.path)
    assert (r.returncode, r.stderr) == (0, "")
    r = check_config(f, "--socket", str(tmp_path / "nobody.sock"))      # no daemon: nothing to compare
    assert (r.returncode, r.stderr) == (0, "")


def test_check_config_refuses_a_name_a_clients_pool_holds_in_the_running_daemon(daemon_factory, tmp_path):
    """What a reload would refuse, --check-config refuses before it: systemctl reload fails
    at once rather than leaving the reason in the log."""
    d = daemon_factory()
    c = d.client(role="admin")
    c.ok("create", pool="mine", **ONE, persistent=True)
    assert c.ok("status", pool="mine")["pools"][0]["configured"] is False
    f = tmp_path / "c.conf"
    f.write_text(conf({"other": ONE, "mine": ONE}))
    line = next(i for i, x in enumerate(f.read_text().splitlines(), 1) if '"mine"' in x)
    r = check_config(f, "--socket", d.path)
    assert r.returncode == 1
    assert f'{f}: line {line}: pool "mine" is configured, but a pool of that name created by uid {os.geteuid()} ' \
        'exists' in r.stderr
    assert not d.reload(f.read_text())

"""The service side, without systemd as PID 1: unit files, socket activation, sd_notify."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from sbtest import DAEMON, ROOT, Client, listening, segments, wait_for


def make_install(prefix: Path) -> Path:
    """`make install` under @prefix; the directory of the installed units."""
    subprocess.run(["make", "-C", str(ROOT), "-s", "--no-print-directory", "install", f"PREFIX={prefix}",
                    f"SYSCONFDIR={prefix}/etc", "NO_SYSUSERS=1"], check=True, capture_output=True)
    return prefix / "lib" / "systemd" / "system"


def test_installed_units_verify(tmp_path):
    prefix = tmp_path / "prefix"
    units = make_install(prefix)
    service = (units / "shmbrokerd.service").read_text()
    assert f"ExecStart={prefix}/sbin/shmbrokerd --config {prefix}/etc/shmbroker/shmbroker.conf" in service
    assert f"ExecReload={prefix}/sbin/shmbrokerd --check-config {prefix}/etc/shmbroker/shmbroker.conf" in service
    assert "Type=notify" in service and "PrivateIPC" not in service.split("# Hardening")[1].split("\n", 2)[2]
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "shmbrokerd.service"),
                        str(units / "shmbrokerd.socket"), str(units / "shmbroker-metrics.service"),
                        str(units / "shmbroker-metrics.timer")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the metrics timer: installed, every 15 s, and left disabled (nothing links it into timers.target)
    assert f"{prefix}/bin/shmbrokerctl " in (units / "shmbroker-metrics.service").read_text()
    timer = (units / "shmbroker-metrics.timer").read_text()
    assert "OnUnitActiveSec=15s\n" in timer and "WantedBy=timers.target\n" in timer
    assert not list(units.glob("*.wants")) and not list(units.glob("*/*.timer"))
    # the daemon in a group of its own, its clients in the socket's group (test_kernel.py)
    sysusers = [line.split()[:2] for line in (prefix / "lib" / "sysusers.d" / "shmbroker.conf").read_text().splitlines()
                if line and not line.startswith("#")]
    assert sysusers == [["g", "shmbroker"], ["u", "shmbrokerd"]], sysusers
    assert "User=shmbrokerd\nGroup=shmbrokerd\n" in service
    assert "SocketGroup=shmbroker\n" in (units / "shmbrokerd.socket").read_text()


def test_socket_activation(tmp_path):
    path = tmp_path / "activated.sock"
    conf = tmp_path / "c.conf"
    conf.write_text('{"pools": [{"name": "cfg", "slot_size": 4096, "slots": 1}]}')
    before = segments()
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(path), DAEMON, "--config", str(conf),
                             "--socket", str(tmp_path / "ignored.sock")], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listening(str(path)), what="the activation socket")
        c = Client(str(path), role="admin")            # the first connection starts the daemon
        assert [p["pool"] for p in c.ok("status")["pools"]] == ["cfg"]
        c.close()
        assert not (tmp_path / "ignored.sock").exists()   # LISTEN_FDS wins over --socket
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "listening on the socket passed by systemd" in err
    assert path.exists()            # not ours to unlink: it belongs to the socket unit
    assert segments() == before


class Notifications:
    """A NOTIFY_SOCKET to listen on, as the service manager's: read all the time by a
    thread, as systemd does (sd_notify() blocks once 10 datagrams wait unread)."""

    def __init__(self, tmp_path: Path):
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def wait(self, pred, timeout=10.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in list(self.messages):
                if pred(m):
                    return m
            time.sleep(0.01)
        raise AssertionError(f"no such notification; got {self.messages}")

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def test_notify_ready_status_watchdog_reloading_stopping(tmp_path):
    n = Notifications(tmp_path)
    sock = str(tmp_path / "s.sock")
    conf = tmp_path / "c.conf"
    conf.write_text('{"pools": [{"name": "cfg", "slot_size": 4096, "slots": 1}]}')
    env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="400000")
    proc = subprocess.Popen([DAEMON, "--config", str(conf), "--socket", sock], env=env, stderr=open(tmp_path / "log", "w"))
    try:
        n.wait(lambda m: "READY=1" in m)
        # READY comes once the socket listens and the configured pools exist
        assert [p["pool"] for p in Client(sock, role="admin").ok("status")["pools"]] == ["cfg"]
        status = n.wait(lambda m: m.startswith("STATUS="))
        assert "1 pools" in status and "clients" in status and "batches/s" in status
        n.wait(lambda m: "WATCHDOG=1" in m, timeout=3)
        # kept current: another STATUS= comes without anything happening
        n.wait(lambda m: sum(x.startswith("STATUS=") for x in n.messages) >= 2, timeout=5)
        conf.write_text("{ broken")
        proc.send_signal(signal.SIGHUP)
        n.wait(lambda m: "RELOADING=1" in m)
        n.wait(lambda m: "READY=1" in n.messages[n.messages.index("RELOADING=1") + 1:])
        proc.send_signal(signal.SIGTERM)
        n.wait(lambda m: "STOPPING=1" in m)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        n.close()
    ready_after_reload = [i for i, m in enumerate(n.messages) if "READY=1" in m]
    reload_at = next(i for i, m in enumerate(n.messages) if "RELOADING=1" in m)
    assert any(i > reload_at for i in ready_after_reload), n.messages


def exec_start(unit: Path) -> list[str]:
    """The command line of @unit's ExecStart= as systemd reads it: continued lines joined,
    split into words with their quotes, "$$" an escaped "$"."""
    text = unit.read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return [w.replace("$$", "$") for w in shlex.split(line[len("ExecStart="):])]


def test_metrics_timer_writes_the_textfile_atomically(tmp_path, daemon):
    from prometheus_client.parser import text_string_to_metric_families

    units = make_install(tmp_path / "prefix")
    argv = exec_start(units / "shmbroker-metrics.service")
    assert argv[:2] == ["/bin/sh", "-c"]
    out = tmp_path / "textfile"
    out.mkdir()
    env = dict(os.environ, TEXTFILE_DIR=str(out), SHMBROKER_SOCKET=daemon.path)
    c = daemon.pool_client("t", "producer", slot_size=64, slots=3)
    for _ in range(2):
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in out.iterdir()) == ["shmbroker.prom"]    # no temporary file left
    fams = {m.name: m for m in text_string_to_metric_families((out / "shmbroker.prom").read_text())}
    assert sum(s.value for s in fams["shmbroker_pool_slots"].samples) == 3
    assert fams["shmbroker_pool_batches_published"].type == "counter"
    c.close()
    # Without a daemon, the file goes rather than stay frozen, and the run fails.
    r = subprocess.run(argv, env=dict(env, SHMBROKER_SOCKET=str(tmp_path / "none.sock")), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "cannot connect" in r.stderr
    assert list(out.iterdir()) == []
    r = subprocess.run(argv, env=dict(env, TEXTFILE_DIR=str(tmp_path / "missing")), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "no such directory" in r.stderr

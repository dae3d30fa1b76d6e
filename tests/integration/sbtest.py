"""Helpers for the integration tests: a daemon on a temporary socket, protocol clients,
client processes that can be killed, clients running as another user, bounded polls for
the daemon's state, and the SysV segments that exist."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAEMON = os.environ.get("SHMBROKERD", str(ROOT / "build" / "shmbrokerd"))
# Under valgrind the daemon is some 50 times slower, and valgrind emulates shmget() itself.
UNDER_VALGRIND = "valgrind" in DAEMON
# How long a poll for the daemon's state may take before the test fails.
POLL_SECONDS = 60.0 if UNDER_VALGRIND else 5.0

# Root bypasses IPC permissions: tests of what the daemon refuses to another user run
# their clients as OTHER_UID, which only root can switch to.
OTHER_UID = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (to run clients as another uid, or to give a pool any group)")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmdt.argtypes = [ctypes.c_void_p]
SHM_RDONLY = 0o10000


def segments() -> set[int]:
    """The shmids of every SysV segment on the machine."""
    with open("/proc/sysvipc/shm") as f:
        next(f)
        return {int(line.split()[1]) for line in f if line.strip()}


def segment_info(shmid: int) -> dict | None:
    with open("/proc/sysvipc/shm") as f:
        names = next(f).split()
        for line in f:
            vals = line.split()
            if vals and int(vals[1]) == shmid:
                return dict(zip(names, vals))
    return None


def segment_marked_for_removal(shmid: int) -> bool:
    """Whether the segment carries SHM_DEST (ipcs shows status "dest")."""
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[1] == str(shmid):
            return "dest" in cols[6:]
    return False


def wait_for(pred, timeout: float | None = None, what="condition"):
    """Poll @pred every 10 ms until it returns something true, and return that; fail the
    test after @timeout seconds (POLL_SECONDS by default), naming @what and the last value."""
    end = time.monotonic() + (POLL_SECONDS if timeout is None else timeout)
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= end:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.01)


def status_of(observer, pool: str | None = None) -> dict:
    """A status reply, asked through a protocol Client or a shmbroker.Client."""
    if hasattr(observer, "ok"):
        return observer.ok("status", **({"pool": pool} if pool else {}))
    return observer.status(pool)


def pool_status(observer, pool: str) -> dict:
    """The status entry of @pool."""
    return status_of(observer, pool)["pools"][0]


def wait_waiting(observer, pool: str, kind: str, count: int = 1, timeout: float | None = None) -> dict:
    """Poll the status of @pool until exactly @count of its clients wait to @kind
    ("acquire" or "consume"): the pool's `acquire_waiters`/`consume_waiters` and the
    clients' `waiting` fields must both say so. Returns that status reply. @observer must
    be another connection: a waiting one holds back the replies behind its wait."""
    assert kind in ("acquire", "consume"), kind

    def state():
        st = status_of(observer, pool)
        clients = sum(c["waiting"] == kind for c in st["clients"])
        return st if st["pools"][0][f"{kind}_waiters"] == count and clients == count else None
    return wait_for(state, timeout, what=f"{count} client(s) of pool {pool} waiting to {kind}")


def listening(path: str) -> bool:
    """Whether a socket listens at @path (its file exists a moment before listen()). Read
    from /proc/net/unix, not by connecting: a connection would start a socket-activated
    daemon, and count as a client."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            cols = line.split()
            if len(cols) >= 8 and cols[7] == path and int(cols[3], 16) & 0x10000:   # __SO_ACCEPTCON
                return True
    return False


class Attachment:
    """A segment attached in this process (by shmid), as a client attaches it."""

    def __init__(self, shmid: int, size: int, readonly: bool = False):
        addr = _libc.shmat(shmid, None, SHM_RDONLY if readonly else 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.addr, self.size = addr, size

    def write(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self.addr + offset, data, len(data))

    def read(self, offset: int, n: int) -> bytes:
        return ctypes.string_at(self.addr + offset, n)

    def detach(self) -> None:
        if self.addr:
            _libc.shmdt(ctypes.c_void_p(self.addr))
            self.addr = None


class Client:
    """A protocol client: one request line out, one reply line in."""

    def __init__(self, path: str, role: str | None = None, name: str | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        if role:
            r = self.rpc("hello", role=role, **({"name": name} if name else {}))
            assert r["ok"], r

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, op: str, **fields) -> None:
        self.send_raw((json.dumps({"op": op, **fields}) + "\n").encode())

    def recv(self, timeout: float | None = 10) -> dict:
        return json.loads(self.recv_line(timeout))

    def recv_line(self, timeout: float | None = 10) -> bytes:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the daemon closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def rpc(self, op: str, **fields) -> dict:
        self.send(op, **fields)
        return self.recv()

    def ok(self, op: str, **fields) -> dict:
        r = self.rpc(op, **fields)
        assert r["ok"], r
        return r

    def err(self, op: str, code: str, **fields) -> dict:
        """Send a request that must be refused with @code; the reply."""
        r = self.rpc(op, **fields)
        assert not r["ok"] and r["error"] == code, r
        assert r["message"], r
        return r

    def closed_by_peer(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """shmbrokerd on a socket in a temporary directory."""

    def __init__(self, tmp: Path, config: str | None = None, args: list[str] | None = None,
                 env: dict | None = None, socket: str | None = None):
        self.tmp = tmp
        self.path = socket or str(tmp / "shmbroker.sock")
        self.config = tmp / "shmbroker.conf"
        self.config.write_text(config if config is not None else "{}\n")
        self.log = tmp / "shmbrokerd.log"
        self.args = args if args is not None else ["--socket", self.path]
        self.env = env
        self.proc: subprocess.Popen | None = None
        # Whether the test means the daemon to end (stop(), or expect_exit()): a daemon
        # that ends otherwise during a test fails it (conftest.py).
        self.exit_expected = False

    def start(self, wait: bool = True) -> "Daemon":
        logf = open(self.log, "ab")
        env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", **(self.env or {})}
        self.exit_expected = False
        self.proc = subprocess.Popen([DAEMON, "--config", str(self.config), *self.args],
                                     stdout=logf, stderr=logf, env=env)
        logf.close()
        if wait:
            wait_for(lambda: listening(self.path) or self.proc.poll() is not None, what="the daemon to listen")
            assert self.proc.poll() is None, self.log_text()
        return self

    def client(self, role: str | None = None, name: str | None = None) -> Client:
        return Client(self.path, role, name)

    def pool_client(self, pool: str, role: str, name: str | None = None, **create) -> Client:
        """A client that said hello as @role (and @name) and has @pool open: it creates the
        pool with the fields in @create (slot_size, slots, ...), or opens it without."""
        c = Client(self.path, role, name)
        c.ok("create" if create else "open", pool=pool, **create)
        return c

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def reload(self, config: str) -> bool:
        """Write @config to the daemon's file and send SIGHUP; once the daemon has read it
        (its log says so), whether it took it (False: refused, the running one stays)."""
        def outcomes() -> tuple[int, int]:
            log = self.log_text()
            return log.count("configuration reloaded from"), log.count("configuration not reloaded")
        before = outcomes()
        self.config.write_text(config)
        self.proc.send_signal(signal.SIGHUP)
        after = wait_for(lambda: (now := outcomes()) != before and now, what="the daemon to read its new configuration")
        return after[0] > before[0]

    def expect_exit(self) -> None:
        """Say that the daemon may end during this test by other means than stop()."""
        self.exit_expected = True

    def unexpected_exit(self) -> int | None:
        """The exit status of a daemon that ended without the test meaning it to, else None."""
        rc = self.proc.poll() if self.proc else None
        return None if rc is None or self.exit_expected else rc

    def stop(self, sig=signal.SIGTERM) -> int:
        """Send @sig (an expected end) and return the exit status (-N: killed by signal N).
        A daemon that had already ended on its own fails the test."""
        rc = self.unexpected_exit()
        assert rc is None, f"the daemon had already exited with status {rc}:\n{self.log_text()}"
        self.exit_expected = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


CLIENT_SCRIPT = r"""
import json, socket, sys, time, ctypes
path, steps, attach = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
libc = ctypes.CDLL(None); libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
for step in steps:
    wait = step.pop("_noreply", False)
    f.write((json.dumps(step) + "\n").encode()); f.flush()
    if wait:
        continue
    reply = json.loads(f.readline())
    if not reply.get("ok"):
        print("FAILED", reply, flush=True); sys.exit(1)
    if attach and "shmid" in reply:
        if libc.shmat(reply["shmid"], None, 0) in (None, ctypes.c_void_p(-1).value):
            print("FAILED attach", flush=True); sys.exit(1)
print("READY", flush=True)
time.sleep(3600)
"""


def spawn_client(path: str, steps: list[dict], attach: bool = False) -> subprocess.Popen:
    """A client process that runs @steps (a step with "_noreply" is sent without
    waiting for its reply), prints READY and sleeps, to be killed by the test."""
    p = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, path, json.dumps(steps), "1" if attach else "0"],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line == "READY", line
    return p


def kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait()


# --- clients running as another user ------------------------------------------------------

def as_user_argv(uid: int = OTHER_UID, groups: str = "") -> list[str]:
    """The command prefix that runs a program as @uid (and gid @uid), in the supplementary
    @groups (comma-separated) or in none."""
    return (["setpriv", "--reuid", str(uid), "--regid", str(uid)] +
            (["--groups", groups] if groups else ["--clear-groups"]))


REQUESTS_SCRIPT = r"""
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


def python_as_user(code: str, *args: str, uid: int = OTHER_UID, groups: str = "") -> list:
    """Run Python @code as @uid, with the shmbroker package of the source tree importable;
    the JSON values it printed, one a line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    r = subprocess.run(as_user_argv(uid, groups) + ["/usr/bin/python3", "-c", code, *args], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return [json.loads(line) for line in r.stdout.splitlines()]


def requests_as_user(path: str, requests: list[dict], uid: int = OTHER_UID, groups: str = "") -> list[dict]:
    """Send @requests one after the other on one connection as @uid; their replies. A
    step {"attach": shmid} shmat()s the segment instead, giving {"attached", "errno"}."""
    return python_as_user(REQUESTS_SCRIPT, path, json.dumps(requests), uid=uid, groups=groups)

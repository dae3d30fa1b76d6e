"""Helpers for the integration tests: a daemon on a temporary socket, protocol clients,
client processes that can be killed, and the SysV segments that exist."""
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

ROOT = Path(__file__).resolve().parents[2]
DAEMON = os.environ.get("SHMBROKERD", str(ROOT / "build" / "shmbrokerd"))
# Under valgrind the daemon is some 50 times slower, and valgrind emulates shmget() itself.
UNDER_VALGRIND = "valgrind" in DAEMON

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


def wait_for(pred, timeout=5.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


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
                 env: dict | None = None):
        self.tmp = tmp
        self.path = str(tmp / "shmbroker.sock")
        self.config = tmp / "shmbroker.conf"
        self.config.write_text(config if config is not None else "{}\n")
        self.log = tmp / "shmbrokerd.log"
        self.args = args if args is not None else ["--socket", self.path]
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "Daemon":
        logf = open(self.log, "ab")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   **(self.env or {}))
        self.proc = subprocess.Popen([DAEMON, "--config", str(self.config), *self.args],
                                     stdout=logf, stderr=logf, env=env)
        logf.close()
        if wait:
            wait_for(lambda: self._answers() or self.proc.poll() is not None, what="the daemon to listen")
            assert self.proc.poll() is None, self.log_text()
        return self

    def _answers(self) -> bool:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
            s.close()
            return True
        except OSError:
            return False

    def client(self, role: str | None = None, name: str | None = None) -> Client:
        return Client(self.path, role, name)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM) -> int:
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

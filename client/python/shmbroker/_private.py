"""The private daemon: a shmbrokerd of this process tree, for when no daemon is reachable.

``loader_socket()`` tells shmbroker.DataLoader which socket to use. A socket it is given,
or $SHMBROKER_SOCKET, is used as it is: a socket someone named must work, or fail loudly at
connect. Otherwise the default socket is used when a daemon there accepts this user; and
when none does (nothing there, nobody listening, or a socket this user may not use), the
first call starts a private shmbrokerd for this process and returns its socket, which every
later call of the process returns too, and so do calls in the children it forks: one
private daemon serves any number of loaders. It goes when the process goes.

Where it lives. A directory of its own, made 0700 with mkdtemp, in $XDG_RUNTIME_DIR when
that is this user's and writable, else in the temporary directory (/tmp unless $TMPDIR
says otherwise; /tmp itself when the socket's path would be too long for a socket address):
``shmbroker-<pid>-XXXXXXXX/`` holds the socket ``shmbroker.sock`` (mode 0600: no other
user connects, root aside), the configuration ``shmbroker.conf`` and the daemon's log
``shmbrokerd.log`` (its stdout and stderr). The log is kept for as long as the daemon
runs: a daemon that fails to start is reported with its last log lines, and a running
one can be looked at.

Which binary. $SHMBROKERD when set (and then nothing else: a named binary must work);
else the one next to the loaded libshmbroker (``build/shmbrokerd`` beside
``build/libshmbroker.so`` in the source tree; ``../sbin/shmbrokerd`` of an installed
library's directory, ``../../sbin`` from a multiarch one); else ``shmbrokerd`` on $PATH,
/usr/local/sbin, /usr/sbin or /sbin.

Its configuration. An explicit ``--config`` of its own (so /etc/shmbroker/shmbroker.conf,
written for the system's daemon, is never read), with no pools, and limits for one process
tree rather than for a machine shared by users. Every client is this user (or root), and
the daemon exempts its own uid and root from the per-uid quotas (max_pools_per_uid and the
others): what bounds the loaders are the daemon-wide limits, so those are set from the
machine: ``max_pools`` to the kernel's shmmni (4096 by default, where the system daemon
allows 64 pools), ``max_bytes`` to the machine's memory (a pool the machine cannot hold is
refused with an error naming the limit, not left to the OOM killer), ``max_clients`` to
what the descriptor limit allows. The per-uid quotas get the same values, should a client
ever be counted. The kernel's own limits (shmmax, shmall, shmmni) are still checked at
every create, and named when they refuse a pool.

How it starts. Through a thread of this module that lives as long as the daemon: the
daemon is started with PR_SET_PDEATHSIG (SIGTERM), which Linux sends when the *thread*
that forked it ends, not the process. Forked from the caller's thread, a daemon started
by a loader made in a short-lived thread (a thread pool, a framework's worker thread)
would be stopped when that thread returned, under the loaders still using it; the main
thread would do, but the caller cannot be required to be it. The thread costs nothing
while it waits. The daemon gets a session of its own (a Ctrl-C in the terminal, meant for
the trainer, does not reach it) and a NOTIFY_SOCKET of this module's: it is ready when it
says READY=1 (shmbrokerd.service is Type=notify), within 10 seconds; a daemon that exits
before, or is not ready by then, is reported with the last lines of its log.

How it stops. At the exit of the process that started it (atexit): SIGTERM, then SIGKILL
after 5 seconds, and its directory removed. When the process dies without running atexit
(SIGKILL, os._exit(), a fatal signal), the kernel sends the daemon SIGTERM as the process's
threads end, and the daemon removes its socket; the rest of the directory is removed when
this user next starts a private daemon there. Either way every segment goes (the daemon
marks each IPC_RMID as soon as it has attached it). A forked child reuses its parent's
daemon and never stops it, not even from atexit handlers it inherited (only a child forked
while its parent was still starting one sees none, and starts its own if it asks). A
private daemon that died while its process lives is started again at the next call, with a
warning that carries its last log lines.
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import re
import resource
import select
import shutil
import signal
import socket as _socket
import subprocess
import sysconfig
import tempfile
import threading
import time
import warnings

from . import _lib, errors

#: Seconds a private daemon has to say READY=1.
READY_SECONDS = 10.0
#: Seconds between SIGTERM and SIGKILL when it is stopped.
STOP_SECONDS = 5.0
#: Where shmbrokerd is looked for after $PATH (an installed daemon is in an sbin directory,
#: which the PATH of a user often lacks).
SYSTEM_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: connect() errors that mean "no daemon this user can use there": a private one is started.
UNUSABLE = (errno.ENOENT, errno.ENOTDIR, errno.ECONNREFUSED, errno.EACCES, errno.EPERM)

_PR_SET_PDEATHSIG = 1
_SUN_PATH_MAX = 107          # sizeof(sockaddr_un.sun_path) less the NUL
_DIR_PREFIX = "shmbroker-"
_DIR_RE = re.compile(r"shmbroker-(\d+)-[^/]+\Z")
_SOCKET_NAME, _CONFIG_NAME, _LOG_NAME, _NOTIFY_NAME = "shmbroker.sock", "shmbroker.conf", "shmbrokerd.log", "notify"
# What the daemon must not inherit from this process: a socket or a service manager that are
# this process's (a trainer run as a systemd service), or another daemon's socket.
_ENV_DROPPED = ("SHMBROKER_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                "WATCHDOG_PID")

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl           # looked up here: the child between fork and exec only calls it
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class _ParentThread(threading.Thread):
    """The thread that forks the daemon and then waits as long as the daemon runs: its end
    is what PR_SET_PDEATHSIG answers (see the module's docstring). A daemon thread: at
    interpreter exit it is not waited for (atexit has stopped the daemon by then), and when
    the process dies it ends with it, which sends the daemon its SIGTERM."""

    def __init__(self, argv: list[str], env: dict, log_fd: int):
        super().__init__(name="shmbrokerd-parent", daemon=True)
        self._argv, self._env, self._log_fd = argv, env, log_fd
        self._forked = threading.Event()
        self._done = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        parent, sig = os.getpid(), int(signal.SIGTERM)

        def in_child() -> None:
            # Between fork and exec: no allocation worth the name, no lock.
            _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:          # the parent died before prctl() took effect
                os._exit(1)
        try:
            self.proc = subprocess.Popen(self._argv, env=self._env, stdin=subprocess.DEVNULL, stdout=self._log_fd,
                                         stderr=self._log_fd, start_new_session=True, preexec_fn=in_child)
        except BaseException as e:      # handed to the caller
            self.error = e
        finally:
            self._forked.set()
        if self.proc is not None:
            self._done.wait()

    def fork(self) -> subprocess.Popen:
        """Start the thread, and return the daemon's process once it is forked."""
        self.start()
        self._forked.wait()
        if self.error is not None:
            raise self.error
        return self.proc

    def finish(self) -> None:
        """The daemon has ended: the thread may end too."""
        self._done.set()


class _Daemon:
    """A private daemon: its process, its directory, the process that started it."""

    def __init__(self, directory: str, binary: str):
        self.dir, self.binary = directory, binary
        self.socket = os.path.join(directory, _SOCKET_NAME)
        self.log = os.path.join(directory, _LOG_NAME)
        self.owner = os.getpid()
        self.proc: subprocess.Popen | None = None
        self.thread: _ParentThread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        """Whether it runs (asked by the process that started it: only that one can wait for it)."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start it and wait until it says READY=1; on any failure, stop what was started,
        remove the directory and raise NoDaemon with the daemon's last log lines."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        config = os.path.join(self.dir, _CONFIG_NAME)
        with open(config, "w") as f:
            json.dump(_config(), f, indent=2)
            f.write("\n")
        notify_path = os.path.join(self.dir, _NOTIFY_NAME)
        with _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM) as notify:
            notify.bind(notify_path)
            env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED}
            env["NOTIFY_SOCKET"] = notify_path
            log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                self.thread = _ParentThread([self.binary, "--socket", self.socket, "--config", config], env, log_fd)
                try:
                    self.proc = self.thread.fork()
                except OSError as e:
                    self.thread = None
                    raise errors.NoDaemon(f"cannot start the private shmbrokerd {self.binary}: {e}",
                                          errno=e.errno) from e
            finally:
                os.close(log_fd)
            self._wait_ready(notify)
        # The daemon's later STATUS= messages go nowhere, which sd_notify() takes quietly.
        os.unlink(notify_path)

    def _wait_ready(self, notify: _socket.socket) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.NoDaemon(f"the private shmbrokerd ({self.binary}, pid {self.pid}) did not say it was "
                                      f"ready within {READY_SECONDS:g} s; its last log lines:\n{self.log_tail()}")
            if select.select([notify], [], [], min(left, 0.05))[0]:
                if b"READY=1" in notify.recv(4096).split(b"\n"):
                    return
            rc = self.proc.poll()
            if rc is not None:
                raise errors.NoDaemon(f"the private shmbrokerd ({self.binary}) exited with status {rc} before it "
                                      f"was ready; its last log lines:\n{self.log_tail()}")

    def log_tail(self, n: int = 8) -> str:
        """The last @n lines of the daemon's log, without their journald priorities."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
                lines = f.read().decode(errors="replace").splitlines()[-n:]
        except OSError as e:
            return f"  (no log: {e})"
        return "\n".join("  " + re.sub(r"^<\d>", "", line) for line in lines) or "  (the log is empty)"

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after STOP_SECONDS; the directory removed. Its exit status."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
        if self.thread is not None:
            self.thread.finish()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


_lock = threading.Lock()
_daemon: _Daemon | None = None       # this process's, or inherited from the parent it forked from
_atexit_registered = False


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock (starting a daemon) leaves it held for good in
    # the child, where that thread does not exist: the child starts with a free one. Such a
    # child sees no daemon yet, and would start its own if it asked.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def loader_socket(socket: str | None = None, *, default: str | None = None) -> str | None:
    """The socket a DataLoader should connect to, given the ``socket`` it was given.

    - ``socket`` when given, and else $SHMBROKER_SOCKET when set, unchanged: a socket someone
      named must work or fail at connect, never be replaced;
    - else a private daemon's socket when this process (or the parent it was forked from)
      already has one running;
    - else None ("the library's default") when a daemon at the default socket (``default``,
      else shmbroker._lib.DEFAULT_SOCKET) accepts a connection from this user;
    - else the socket of a private daemon started now (see the module's docstring).

    Raises errors.NoDaemon when a private daemon is needed but cannot be started (no
    shmbrokerd binary found, or it failed to start). Thread-safe.
    """
    global _daemon
    if socket:
        return socket
    env = os.environ.get("SHMBROKER_SOCKET")
    if env:
        return env
    with _lock:
        d = _daemon
        if d is not None:
            if d.owner != os.getpid() or d.running():
                return d.socket
            # Ours, and it died: say so, and start another.
            warnings.warn(f"the private shmbrokerd (pid {d.pid}) had exited with status {d.proc.returncode}; "
                          f"starting another. Its last log lines:\n{d.log_tail()}", RuntimeWarning, stacklevel=2)
            _daemon = None
            d.stop()
        default = default or _lib.DEFAULT_SOCKET
        err = _probe(default)
        if err not in UNUSABLE:
            return None
        d = _start(default, err)
        _daemon = d
        return d.socket


def private_daemon_pid() -> int | None:
    """The pid of the private daemon this process uses (its own, or the one of the parent it
    was forked from), or None when it has none."""
    d = _daemon
    if d is None or (d.owner == os.getpid() and not d.running()):
        return None
    return d.pid


def stop_private_daemon() -> int | None:
    """Stop this process's private daemon now, as at exit (its exit status; None when this
    process started none). Loaders still using it lose their connection. A forked child
    never stops its parent's: this does nothing there."""
    global _daemon
    with _lock:
        d = _daemon
        if d is None or d.owner != os.getpid():
            return None
        _daemon = None
    return d.stop()


def _at_exit() -> None:
    try:
        stop_private_daemon()
    except Exception:        # interpreter shutdown: nothing left to report it to
        pass


def _probe(path: str) -> int:
    """0 when a daemon at @path accepts this user (a connection and its hello), else the errno."""
    handle = ctypes.c_void_p()
    rc = _lib.lib.sb_connect(ctypes.byref(handle), os.fsencode(path), _lib.ROLES["consumer"], b"probe")
    if rc < 0:
        return -rc
    _lib.lib.sb_client_free(handle)
    return 0


def _start(default: str, default_errno: int) -> _Daemon:
    global _atexit_registered
    binary = find_daemon(default, default_errno)
    base = _runtime_dir()
    _sweep(base)
    directory = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=base)
    d = _Daemon(directory, binary)
    if len(os.fsencode(d.socket)) > _SUN_PATH_MAX:
        os.rmdir(directory)
        directory = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir="/tmp")
        d = _Daemon(directory, binary)
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True
    d.start()
    return d


def _runtime_dir() -> str:
    """$XDG_RUNTIME_DIR when it is this user's directory and writable, else the temporary
    directory (/tmp unless $TMPDIR says otherwise)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        try:
            st = os.stat(xdg)
        except OSError:
            st = None
        if st is not None and st.st_uid == os.geteuid() and os.access(xdg, os.W_OK | os.X_OK):
            return xdg
    return tempfile.gettempdir()


def _sweep(base: str) -> None:
    """Remove the directories of this user's private daemons whose process died without
    removing them (SIGKILL): the process is gone, and nothing listens on the socket."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for e in entries:
        m = _DIR_RE.match(e.name)
        if not m:
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or e.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            os.kill(int(m.group(1)), 0)
            continue                        # its process lives (or the pid is another's now)
        except ProcessLookupError:
            pass
        except OSError:
            continue
        if _listening(os.path.join(e.path, _SOCKET_NAME)):
            continue
        shutil.rmtree(e.path, ignore_errors=True)


def _listening(path: str) -> bool:
    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _library_path() -> str | None:
    """The file of the loaded libshmbroker: the path ctypes loaded, or, for a library found by
    its soname, the one this process mapped."""
    name = getattr(_lib.lib, "_name", None) or ""
    if os.path.isabs(name):
        return name
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(None, 5)[-1].strip() if line.count(" ") >= 5 else ""
                if os.path.basename(path).startswith("libshmbroker.so"):
                    return path
    except OSError:
        pass
    return None


def _beside_library() -> list[str]:
    """Where a shmbrokerd that goes with the loaded library would be."""
    lib = _library_path()
    if not lib:
        return []
    d = os.path.dirname(lib)
    found = [os.path.join(d, "shmbrokerd"), os.path.normpath(os.path.join(d, "..", "sbin", "shmbrokerd"))]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch and os.path.basename(d) == multiarch:       # /usr/lib/x86_64-linux-gnu -> /usr/sbin
        found.append(os.path.normpath(os.path.join(d, "..", "..", "sbin", "shmbrokerd")))
    return list(dict.fromkeys(found))


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_daemon(default: str | None = None, default_errno: int | None = None) -> str:
    """The shmbrokerd a private daemon runs: $SHMBROKERD, else the one beside the loaded
    library, else on $PATH or in SYSTEM_SBIN. Raises errors.NoDaemon naming what was tried
    and what to do (``default`` and ``default_errno`` say why a daemon was needed)."""
    named = os.environ.get("SHMBROKERD")
    if named:
        if _executable(named):
            return os.path.abspath(named)
        raise errors.NoDaemon(f"$SHMBROKERD is {named!r}, which is not an executable file; "
                              f"{_no_daemon_reason(default, default_errno)}. Point $SHMBROKERD at shmbrokerd, or "
                              f"unset it to use an installed one", errno=errno.ENOENT)
    beside = _beside_library()
    for path in beside:
        if _executable(path):
            return path
    search = os.pathsep.join([p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p] +
                             list(SYSTEM_SBIN))
    found = shutil.which("shmbrokerd", path=search)
    if found:
        return os.path.abspath(found)
    tried = ", ".join(beside) if beside else "(the library's directory unknown)"
    raise errors.NoDaemon(
        f"{_no_daemon_reason(default, default_errno)}, and no shmbrokerd was found to start a private one: "
        f"$SHMBROKERD is unset; not beside the library ({tried}); not on $PATH nor in {', '.join(SYSTEM_SBIN)}. "
        f"Install shmbroker (`make install`, or the shmbroker package), or set $SHMBROKERD to a shmbrokerd binary "
        f"(`make` builds build/shmbrokerd), or start a daemon (`systemctl start shmbrokerd.socket`, or "
        f"`shmbrokerd --socket PATH`) and name its socket (socket=... or $SHMBROKER_SOCKET)",
        errno=errno.ENOENT)


def _no_daemon_reason(default: str | None, err: int | None) -> str:
    path = default or _lib.DEFAULT_SOCKET
    why = f" ({errno.errorcode.get(err, err)}: {os.strerror(err)})" if err else ""
    return f"no shmbrokerd is reachable: no socket was named and none at the default socket {path}{why}"


def _config() -> dict:
    """The private daemon's configuration: no pools, the socket for this user alone, and
    limits from the machine rather than for a shared one (see the module's docstring)."""
    try:
        with open("/proc/sys/kernel/shmmni") as f:
            pools = max(64, int(f.read()))
    except (OSError, ValueError):
        pools = 4096
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        memory = 0
    if memory <= 0:
        memory = 64 << 30
    # The daemon raises its descriptors to the hard limit and warns when that is below
    # max_clients plus the 16 it keeps for itself.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    clients = 1 << 20 if hard == resource.RLIM_INFINITY else max(64, min(hard - 16, 1 << 20))
    return {
        "socket_mode": "0600",
        "limits": {
            "max_pools": pools, "max_bytes": memory, "max_clients": clients,
            "max_pools_per_uid": pools, "max_bytes_per_uid": memory, "max_clients_per_uid": clients,
        },
    }

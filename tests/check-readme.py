#!/usr/bin/python3
"""Every code block of README.md runs as written (make check runs this).

The README is followed as a new user would follow it, top to bottom, in one terminal
session: each ```sh block runs with `sh -e` from the top of the source tree, and what it
exports holds for the blocks after it; each ```python block is saved as a script in a
directory of its own (not the source tree) and run there with /usr/bin/python3, in the
environment the shell blocks before it set up. A block of another kind fails the test: say
how to run it here first.

Two commands cannot run as written inside make check, and are handled so:
  - `make run` runs in the background, as in the other terminal the README speaks of: the
    blocks after it talk to that daemon. It must print the `export SHMBROKER_SOCKET=...`
    line the README tells the user to run, naming the socket it listens on; it is stopped
    (SIGTERM) at the end.
  - `make check` is not run again: this test runs inside it.

The source tree is a sandbox: a temporary directory whose entries are symbolic links to
the tree's, and whose build/ is a directory of links to the tree's build outputs. So
`make run` finds everything built, and its socket, and anything else a block writes at
the top of the tree, lands in the sandbox; HOME and TMPDIR are temporary too (a venv made in
~ goes there). The user starts clean: no SHMBROKER_SOCKET, PYTHONPATH or SHMBROKER_LIBRARY
from the caller's environment.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON = "/usr/bin/python3"
BLOCK_SECONDS = 300


def blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, language, code) of each fenced block."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            start, lang, body = i + 1, m.group(1), []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((start, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def make_sandbox(top: Path) -> Path:
    tree = top / "tree"
    tree.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in (".git", "build"):
            continue
        (tree / entry.name).symlink_to(entry)
    (tree / "build").mkdir()
    for entry in (ROOT / "build").iterdir():
        if not entry.is_socket():
            (tree / "build" / entry.name).symlink_to(entry)
    return tree


def listening(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Session:
    def __init__(self, top: Path):
        self.top = top
        self.tree = make_sandbox(top)
        self.work = top / "work"
        self.work.mkdir()
        (top / "home").mkdir()
        (top / "tmp").mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SHMBROKER_SOCKET", "PYTHONPATH", "SHMBROKER_LIBRARY", "MAKEFLAGS", "MAKELEVEL",
                                 "MFLAGS", "VIRTUAL_ENV")}
        self.env.update(HOME=str(top / "home"), TMPDIR=str(top / "tmp"), PWD=str(self.tree))
        self.background: list[subprocess.Popen] = []
        self.n = 0

    def fail(self, where: str, what: str, output: str = "") -> None:
        raise SystemExit(f"FAILED: README.md {where}: {what}" + (f"\n--- its output:\n{output}" if output else ""))

    # -- shell blocks -------------------------------------------------------------------
    def run_sh(self, line: int, code: str) -> None:
        if code.strip() == "make run":
            return self.make_run(line)
        script = "\n".join(": make check, which runs this test" if re.match(r"^\s*make check\b", c) else c
                           for c in code.splitlines())
        envfile = self.top / f"env-{line}"
        # What the block exports goes on to the next blocks, as in one terminal.
        script += f"\nenv -0 > {envfile}\n"
        r = subprocess.run(["sh", "-e", "-c", script], cwd=self.tree, env=self.env, capture_output=True, text=True,
                           timeout=BLOCK_SECONDS)
        if r.returncode != 0:
            self.fail(f"line {line}", f"the sh block exits with status {r.returncode}", r.stdout + r.stderr)
        env = {}
        for item in envfile.read_bytes().split(b"\0"):
            if b"=" in item:
                k, v = item.decode().split("=", 1)
                env[k] = v
        for k in ("SHLVL", "_", "OLDPWD"):
            env.pop(k, None)
        self.env = env
        self.report(line, "sh", code, r.stdout)

    def make_run(self, line: int) -> None:
        socket_path = str(self.tree / "build" / "shmbroker.sock")
        proc = subprocess.Popen(["sh", "-c", "make run"], cwd=self.tree, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.background.append(proc)
        printed, seen = "", []
        end = time.monotonic() + 120
        # The line `make run` prints for the user, before the daemon starts.
        while time.monotonic() < end:
            out = proc.stdout.readline()
            if not out:
                break
            seen.append(out)
            m = re.match(r"^\s*export SHMBROKER_SOCKET=(\S+)\s*$", out)
            if m:
                printed = m.group(1)
                break
        if printed != socket_path:
            self.fail(f"line {line}", f"`make run` does not print `export SHMBROKER_SOCKET={socket_path}`",
                      "".join(seen))
        while time.monotonic() < end and not listening(socket_path):
            if proc.poll() is not None:
                self.fail(f"line {line}", "`make run` ended", "".join(seen) + proc.stdout.read())
            time.sleep(0.05)
        if not listening(socket_path):
            self.fail(f"line {line}", f"`make run` does not listen on {socket_path}", "".join(seen))
        self.report(line, "sh", "make run", f"in the background, on {socket_path}")

    # -- python blocks ------------------------------------------------------------------
    def run_python(self, line: int, code: str) -> None:
        self.n += 1
        script = self.work / f"readme_{self.n}.py"
        script.write_text(code)
        r = subprocess.run([PYTHON, script.name], cwd=self.work, env=self.env, capture_output=True, text=True,
                           timeout=BLOCK_SECONDS)
        if r.returncode != 0:
            self.fail(f"line {line}", f"the python block exits with status {r.returncode}", r.stdout + r.stderr)
        self.report(line, "python", code, r.stdout)

    def report(self, line: int, lang: str, code: str, out: str) -> None:
        first = code.strip().splitlines()[0]
        last = out.strip().splitlines()[-1] if out.strip() else ""
        print(f"  line {line} ({lang}): {first[:60]}{' ...' if len(code.strip().splitlines()) > 1 else ''}"
              f"{'  -> ' + last[:70] if last else ''}")

    def close(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if proc.stdout:
                proc.stdout.close()


def main() -> int:
    found = blocks(README.read_text())
    if not found:
        print("FAILED: README.md has no code block")
        return 1
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        session = Session(Path(tmp))
        try:
            for line, lang, code in found:
                if lang == "sh":
                    session.run_sh(line, code)
                elif lang == "python":
                    session.run_python(line, code)
                else:
                    session.fail(f"line {line}", f"a ```{lang} block: this test knows how to run sh and python only")
        finally:
            session.close()
    print(f"README.md: every one of its {len(found)} code blocks runs as written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

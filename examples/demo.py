#!/usr/bin/python3
"""make demo: shmbrokerd, two Python workers and one Python trainer moving real-sized numpy
batches through shared memory, with `shmbrokerctl status` in the middle of the run.
Everything it starts, it stops; it checks that no segment is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
SOCKET = BUILD / "demo.sock"
SECONDS = float(os.environ.get("DEMO_SECONDS", "10"))


def segments() -> set[str]:
    with open("/proc/sysvipc/shm") as f:
        return {line.split()[1] for line in list(f)[1:]}


def main() -> int:
    before = segments()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"), SHMBROKER_SOCKET=str(SOCKET))
    procs: list[subprocess.Popen] = []
    daemon = subprocess.Popen([str(BUILD / "shmbrokerd"), "--socket", str(SOCKET), "--config", "/dev/null"],
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if SOCKET.exists():
                break
            time.sleep(0.01)
        print(f"shmbrokerd (pid {daemon.pid}) listening on {SOCKET}")
        py = "/usr/bin/python3"
        trainer = subprocess.Popen([py, str(ROOT / "examples" / "trainer.py"), "--pool", "demo"], env=env)
        procs.append(trainer)
        for i in range(2):
            procs.append(subprocess.Popen([py, str(ROOT / "examples" / "worker.py"), "--pool", "demo",
                                           "--name", f"worker-{i}", "--seconds", str(SECONDS)], env=env))
        time.sleep(SECONDS / 2)
        print("\n\n$ shmbrokerctl status")
        subprocess.run([str(BUILD / "shmbrokerctl"), "status"], env=env, check=True)
        print()
        status = 0
        for p in procs:
            status |= p.wait(timeout=SECONDS + 30)
        return status
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        left = segments() - before
        print(f"stopped everything; SysV segments left behind: {len(left)}")
        if left:
            sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())

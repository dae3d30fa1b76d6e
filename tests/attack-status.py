#!/usr/bin/python3
"""Attack: one client holds 200,000 slots; how big is an admin's status, and how long does
it take? Prints the reply's size and round trip, by default and with held_max 1024, and the
daemon's peak RSS. Run in its own IPC namespace:

    unshare --ipc --fork /usr/bin/python3 tests/attack-status.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "client" / "python"))
from sbtest import Daemon  # noqa: E402

HELD = 200_000


def main() -> int:
    d = Daemon(Path(tempfile.mkdtemp(prefix="shmbroker-attack-"))).start()
    try:
        p = d.pool_client("h", "producer", slot_size=1, slots=HELD)
        n = 0
        while n < HELD:
            n += len(p.ok("acquire", pool="h", max=1024)["slots"])
        admin = d.client(role="admin")
        for args in ({}, {"held_max": 1024}):
            t = time.monotonic()
            admin.send("status", **args)
            line = admin.recv_line()
            ms = (time.monotonic() - t) * 1000
            held = next(c for c in json.loads(line)["clients"] if c["role"] == "producer")["held_count"]
            print(f"status {args or '(default)'}: {len(line):,} bytes in {ms:.2f} ms, held_count {held:,}")
        rss = next(int(l.split()[1]) for l in open(f"/proc/{d.proc.pid}/status") if l.startswith("VmHWM"))
        print(f"daemon peak RSS {rss / 1024:.1f} MiB")
    finally:
        d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Attack: grow the daemon's memory through batch metas. Each attacker (its own uid, when
run as root) creates a pool of 1-byte slots and publishes every slot with a meta as big as
a request line allows (about 1 MiB), then with metas of max_meta (64 KiB), and keeps them
ready, until the daemon refuses. Reports what each was allowed and the daemon's RSS.

    sudo /usr/bin/python3 tests/attack-meta.py [--uids 1] [--slots 1536] [--daemon build/shmbrokerd]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE_META = (1 << 20) - 200          # the biggest meta that fits a 1 MiB request line


def rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of @pid, in MiB."""
    f = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "VmHWM"))}
    return f["VmRSS"] / 1024, f["VmHWM"] / 1024


def worker(sock: str, pool: str, slots: int) -> None:
    """One attacker: prints what it got published, then holds its batches until stdin closes."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    f = s.makefile("rwb")

    def rpc(req: dict | bytes) -> dict:
        f.write(req if isinstance(req, bytes) else json.dumps(req).encode() + b"\n")
        f.flush()
        return json.loads(f.readline())

    assert rpc({"op": "hello", "role": "producer", "name": "attacker"})["ok"]
    assert rpc({"op": "create", "pool": pool, "slot_size": 1, "slots": slots})["ok"]
    free = [x["slot"] for x in rpc({"op": "acquire", "pool": pool, "max": min(slots, 1024)})["slots"]]
    while len(free) < slots:
        free += [x["slot"] for x in rpc({"op": "acquire", "pool": pool, "max": min(slots - len(free), 1024)})["slots"]]
    report = {}
    for size in (LINE_META, 64 << 10):
        meta = b'{"p":"' + b"x" * (size - 8) + b'"}'
        n, refusal = 0, None
        while free:
            r = rpc(b'{"op":"publish","pool":"%s","slot":%d,"nbytes":1,"meta":%s}\n' % (pool.encode(), free[0], meta))
            if not r["ok"]:
                refusal = r["message"]
                break
            free.pop(0)
            n += 1
        report[str(size)] = {"published": n, "refused": refusal}
    print(json.dumps(report), flush=True)
    sys.stdin.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uids", type=int, default=1, help="attackers, each as its own uid (65534 down) when run as root")
    ap.add_argument("--slots", type=int, default=1536, help="slots of each attacker's pool")
    ap.add_argument("--daemon", default=str(ROOT / "build" / "shmbrokerd"))
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return 0
    tmp = tempfile.mkdtemp(prefix="shmbroker-attack-")
    os.chmod(tmp, 0o755)
    sock = os.path.join(tmp, "s.sock")
    conf = os.path.join(tmp, "c.conf")
    with open(conf, "w") as f:
        f.write('{"socket_mode": "0666"}')
    daemon = subprocess.Popen([args.daemon, "--socket", sock, "--config", conf], stderr=subprocess.DEVNULL)
    workers = []
    try:
        while not os.path.exists(sock):
            time.sleep(0.01)
        print(f"daemon RSS at start: {rss_mib(daemon.pid)[0]:.1f} MiB")
        for i in range(args.uids):
            uid = 65534 - i
            prefix = (["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"]
                      if os.geteuid() == 0 else [])
            w = subprocess.Popen(prefix + [sys.executable, __file__, "--worker", sock, f"atk{i}", str(args.slots)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            workers.append(w)
            report = json.loads(w.stdout.readline())
            rss, hwm = rss_mib(daemon.pid)
            print(f"attacker {i + 1} (uid {uid if prefix else os.geteuid()}): " + "; ".join(
                f"{int(k) >> 10} KiB metas: {v['published']} published"
                + (f", then refused: {v['refused']}" if v["refused"] else "") for k, v in report.items()))
            print(f"  daemon RSS {rss:.1f} MiB, peak {hwm:.1f} MiB", flush=True)
    finally:
        for w in workers:
            w.stdin.close()
            w.wait()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

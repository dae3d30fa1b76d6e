#!/usr/bin/python3
"""Chaos run: producers and consumers moving batches whose every byte is checked, while a
driver kills (SIGKILL) and restarts random clients. At the end every published batch was
consumed exactly once, or was in the hands of a killed client; none was corrupted; none
was delivered twice; and no segment is left.

    /usr/bin/python3 tests/chaos.py [--seconds 60] [--daemon build/shmbrokerd]

Accounting: a producer logs "PUBLISHING id" before its publish and the id after it
succeeded; a consumer logs "GOT id" when a batch reaches it and the id after checking every
byte and releasing it. A published batch that no consumer finished must be the last "GOT"
of a consumer that was killed (it had released the batch and died before its log line);
a finished batch that no producer logged must be the last "PUBLISHING" of a producer that
was killed. Each such batch is identified by id, with the client that held it; any other
is a loss.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
import shmbroker  # noqa: E402

SLOT = 64 << 10
A, B = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


def pattern(batch_id: int, nbytes: int) -> np.ndarray:
    k = np.arange((nbytes + 7) // 8, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(batch_id) * A + k * B + np.uint64(1)
        z ^= z >> np.uint64(31)
    return z.view(np.uint8)[:nbytes]


def producer(sock: str, log: str, ident: int) -> None:
    rng = random.Random(ident)
    with shmbroker.connect("producer", sock, name=f"chaos-p{ident}") as c, open(log, "a", buffering=1) as f:
        pool = c.open("chaos")
        n = 0
        while True:
            batch_id = ident * 10**9 + n
            size = rng.randint(1, SLOT)
            with pool.acquire() as slot:
                slot.ndarray(size, np.uint8)[:] = pattern(batch_id, size)
                f.write(f"PUBLISHING {batch_id}\n")
                slot.publish(nbytes=size, meta={"id": batch_id})
            f.write(f"{batch_id}\n")
            n += 1


def consumer(sock: str, log: str, ident: int) -> None:
    with shmbroker.connect("consumer", sock, name=f"chaos-c{ident}") as c, open(log, "a", buffering=1) as f:
        pool = c.open("chaos")
        while True:
            b = pool.get()
            batch_id = b.meta["id"]
            f.write(f"GOT {batch_id}\n")
            data = np.frombuffer(b.data, np.uint8)
            ok = np.array_equal(data, pattern(batch_id, b.nbytes))
            b.release()
            f.write(f"{batch_id}\n" if ok else f"CORRUPT {batch_id}\n")


def spawn(role: str, sock: str, logdir: Path, ident: int) -> subprocess.Popen:
    log = str(logdir / f"{role}-{ident}.log")
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import chaos; chaos.{role}(*sys.argv[1:3], int(sys.argv[3]))"
    return subprocess.Popen([sys.executable, "-c", code, sock, log, str(ident)], stderr=subprocess.DEVNULL)


def segments() -> set[str]:
    with open("/proc/sysvipc/shm") as f:
        return {line.split()[1] for line in list(f)[1:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--daemon", default=str(ROOT / "build" / "shmbrokerd"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    before = segments()
    tmp = Path(tempfile.mkdtemp(prefix="shmbroker-chaos-"))
    sock = str(tmp / "s.sock")
    daemon = subprocess.Popen([args.daemon, "--socket", sock, "--config", "/dev/null"], stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        time.sleep(0.01)
    admin = shmbroker.connect("admin", sock)
    admin.create("chaos", slot_size=SLOT, slots=8, persistent=True)
    clients = {("producer", i): spawn("producer", sock, tmp, i) for i in range(3)}
    clients.update({("consumer", i): spawn("consumer", sock, tmp, i) for i in range(2)})
    next_id = {"producer": 3, "consumer": 2}
    kills = Counter()
    killed: set[tuple[str, int]] = set()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.05, 0.3))
        key = rng.choice(sorted(clients))
        clients[key].send_signal(signal.SIGKILL)
        clients[key].wait()
        kills[key[0]] += 1
        killed.add(key)
        del clients[key]
        role = key[0]
        clients[(role, next_id[role])] = spawn(role, sock, tmp, next_id[role])
        next_id[role] += 1
    # Stop the producers, let the consumers drain what is ready, then stop them.
    for key in [k for k in clients if k[0] == "producer"]:
        clients.pop(key).send_signal(signal.SIGKILL)
        killed.add(key)
    kills["producer (at the end)"] = 3
    for _ in range(200):
        st = admin.status("chaos")["pools"][0]
        if st["ready"] == 0 and st["reading"] == 0:
            break
        time.sleep(0.05)
    for p in clients.values():
        p.send_signal(signal.SIGTERM)
        p.wait()
    # A client's exit reaches the daemon as a hang-up it handles in its own time: the slots
    # must all be free once it has (within 5 s, on a loaded machine), not at this instant.
    for _ in range(100):
        st = admin.status("chaos")["pools"][0]
        if st["free"] == st["slots"]:
            break
        time.sleep(0.05)
    admin.close()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()

    published, consumed = Counter(), Counter()
    last_publishing: dict[int, str] = {}      # batch id -> the killed producer whose last word it was
    last_got: dict[int, str] = {}             # batch id -> the killed consumer whose last word it was
    corrupt = 0
    for role in ("producer", "consumer"):
        for f in tmp.glob(f"{role}-*.log"):
            ident = int(f.stem.split("-")[1])
            last = None
            text = f.read_text()
            lines = text.splitlines()
            if text and not text.endswith("\n") and (role, ident) in killed:
                lines.pop()     # a line the SIGKILL cut short (the next write would have ended it)
            for line in lines:
                word, _, rest = line.partition(" ")
                if word == "CORRUPT":
                    corrupt += 1
                elif word in ("PUBLISHING", "GOT"):
                    last = int(rest)
                elif line:
                    (published if role == "producer" else consumed)[int(line)] += 1
                    last = None
            if last is not None and (role, ident) in killed:
                (last_publishing if role == "producer" else last_got)[last] = f"{role} {ident}"
    duplicated = sum(1 for v in consumed.values() if v > 1)
    lost = set(published) - set(consumed)
    unlogged = set(consumed) - set(published)
    # Every batch off the books is identified: in the hands of a client killed at that moment.
    unexplained = sorted(b for b in lost if b not in last_got) + sorted(b for b in unlogged
                                                                         if b not in last_publishing)
    producer_kills = kills["producer"] + kills["producer (at the end)"]
    left = segments() - before
    print(f"chaos: {args.seconds:.0f} s, kills: {kills['producer']} producers, {kills['consumer']} consumers "
          f"(+3 producers stopped at the end)")
    print(f"chaos: {sum(published.values())} batches published and logged, {sum(consumed.values())} consumed "
          f"with every byte checked; corrupted {corrupt}, duplicated {duplicated}; published but not consumed "
          f"{len(lost)}, each released by a consumer killed before its log line; consumed from producers killed "
          f"before logging {len(unlogged)} (of {producer_kills} producer kills), each the batch that producer was "
          f"publishing; unexplained {len(unexplained)}; slots free at the end {st['free']}/{st['slots']}; "
          f"segments left {len(left)}")
    for b in unexplained[:10]:
        print(f"chaos: batch {b} is off the books and no killed client held it")
    ok = (corrupt == 0 and duplicated == 0 and not unexplained and st["free"] == st["slots"] and not left
          and sum(consumed.values()) > 0)
    print("chaos: " + ("PASS" if ok else "FAIL"))
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)      # the clients' logs: kept when they tell of a failure
    else:
        print(f"chaos: the clients' logs are in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

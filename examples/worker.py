#!/usr/bin/python3
"""A data-loading worker: builds batches straight into shared-memory slots of a pool.

    python3 examples/worker.py --socket build/shmbroker.sock --pool demo --seconds 10

Each batch is written in place (no copy through a pipe or pickle) and published with its
shape and dtype; the trainer (examples/trainer.py) gets a view of the same memory.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import shmbroker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", default=None, help="the daemon's socket (default: $SHMBROKER_SOCKET)")
    ap.add_argument("--pool", default="demo")
    ap.add_argument("--name", default="worker")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to produce")
    ap.add_argument("--shape", default="64,3,256,256", help="batch shape (uint8 images)")
    args = ap.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))

    with shmbroker.connect(role="producer", socket=args.socket, name=args.name) as client:
        for _ in range(100):                       # the trainer creates the pool
            try:
                pool = client.open(args.pool)
                break
            except shmbroker.NoSuchPool:
                time.sleep(0.05)
        else:
            raise SystemExit(f"no pool {args.pool!r}")
        end = time.monotonic() + args.seconds
        step = 0
        while time.monotonic() < end:
            with pool.acquire(timeout=5) as slot:
                images = slot.ndarray(shape, np.uint8)     # a view of the slot itself
                images.fill(step % 251)                    # "decode and augment" in place
                slot.publish(images, meta={"worker": args.name, "step": step})
            step += 1
        pool.end()                                         # this worker's epoch is over


if __name__ == "__main__":
    main()

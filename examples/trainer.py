#!/usr/bin/python3
"""A trainer: creates the pool, then consumes every batch its workers publish, reading every
byte in place, and shows batches/s and GB/s as it goes.

    python3 examples/trainer.py --socket build/shmbroker.sock --pool demo

It stops at the end of the stream: when every worker has ended its epoch.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import shmbroker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", default=None)
    ap.add_argument("--pool", default="demo")
    ap.add_argument("--slot-size", type=int, default=16 << 20)
    ap.add_argument("--slots", type=int, default=8)
    args = ap.parse_args()

    with shmbroker.connect(role="consumer", socket=args.socket, name="trainer") as client:
        pool = client.create(args.pool, slot_size=args.slot_size, slots=args.slots)
        n = nbytes = 0
        t0 = last = time.monotonic()
        for batch in pool:                          # until every worker has ended
            images = batch.array                    # zero-copy, writable until released
            checksum = int(images.view(np.uint64).sum(dtype=np.uint64)) if images.nbytes % 8 == 0 else 0
            assert checksum >= 0
            n += 1
            nbytes += images.nbytes
            now = time.monotonic()
            if now - last >= 0.5:
                sys.stdout.write(f"\rtrainer: {n} batches, {n / (now - t0):8.1f} batches/s, "
                                 f"{nbytes / (now - t0) / 1e9:6.2f} GB/s   ")
                sys.stdout.flush()
                last = now
        dt = time.monotonic() - t0
        print(f"\rtrainer: {n} batches of {nbytes // max(n, 1) >> 20} MiB in {dt:.1f} s: "
              f"{n / dt:.1f} batches/s, {nbytes / dt / 1e9:.2f} GB/s, every byte read in place")


if __name__ == "__main__":
    main()

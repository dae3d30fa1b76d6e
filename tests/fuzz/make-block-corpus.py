#!/usr/bin/python3
"""Writes tests/fuzz/corpus/block/: hand-made scripts for fuzz-block that reach deep states.

Each is a geometry and a script in the format of tests/fuzz/fuzz-block.c's banner: full
cycles, ordered pools with gaps and the kept slot, streams with early batches, waiters of
many slots, deaths inside a serve, an end of stream or a reclaim, a dead member's garbage
log, scribbles and a hostile member's calls. Run it again after changing the format.
The files named found-* beside them are inputs the fuzzer found, kept as they came.
"""
import os
import sys

ORDERED, REQUEUE, BUDGET = 1, 2, 4
PRODUCER, CONSUMER, ADMIN = 0, 1, 2
ACQUIRE, CONSUME = 0, 1
NONE = 0xFF                       # seq: none said


def lowest(d=0):
    """A seq near the lowest not yet published."""
    return 0x80 + d


def held(k):
    """The k-th slot the member holds."""
    return k


def index(i):
    """Slot index i, held or not."""
    return 0x80 | i


class Script:
    def __init__(self, slots, members, flags):
        self.b = bytearray([slots - 1, members - 1, flags])

    def op(self, *v):
        self.b += bytes(v)
        return self

    def join(self, i, role):
        return self.op(0, i - 1, role)

    def leave(self, i):
        return self.op(1, i - 1)

    def acquire(self, i, mx=1, seq=NONE):
        return self.op(2, i - 1, mx, seq)

    def consume(self, i, mx=1, budget=0):
        return self.op(3, i - 1, mx, budget)

    def publish(self, i, entries):
        """entries: (slot, nbytes, seq) each."""
        self.op(4, i - 1, len(entries) - 1)
        for e in entries:
            self.op(*e)
        return self

    def release(self, i, slots, requeue=False):
        return self.op(5, i - 1, len(slots) - 1, int(requeue), *slots)

    def end(self, i):
        return self.op(6, i - 1)

    def wait(self, i, kind, mx=1, seq=NONE):
        return self.op(7, i - 1, kind, mx, seq)

    def unwait(self, i):
        return self.op(8, i - 1)

    def poke(self, off, data):
        return self.op(9, off >> 8, off & 0xFF, len(data) - 1, *data)

    def die(self, k, garbage=None):
        """The next member operation dies after its k-th store."""
        self.op(10, k - 1, 1 if garbage else 0)
        return self if garbage is None else self.op(*garbage)

    def check(self):
        return self.op(11)

    def reads(self, i):
        return self.op(12, i)

    def raw(self, op, i, *rest):
        return self.op(13, op, i, *rest)


def corpus():
    c = {}
    # the whole cycle, waiters of many, an end and the eofs
    c["cycle"] = (Script(4, 4, REQUEUE)
           .join(1, PRODUCER).join(2, CONSUMER).join(3, CONSUMER)
           .wait(3, CONSUME, 2)
           .acquire(1, 3)
           .publish(1, [(held(0), 10, NONE), (held(1), 20, NONE), (held(2), 30, NONE)])
           .consume(2, 1).release(2, [held(0)])
           .release(3, [held(0), held(1)], requeue=True)
           .consume(2, 4).reads(2)
           .end(1).consume(2).consume(3).consume(2)
           .leave(1).leave(2).leave(3).check())
    # an ordered pool: the consumer waits for exactly the next seq, a gap, the last
    # free slot kept for the lowest missing seq
    c["ordered-gaps"] = (Script(3, 4, ORDERED | REQUEUE)
              .join(1, PRODUCER).join(2, PRODUCER).join(3, CONSUMER)
              .acquire(1, 1, NONE)
              .acquire(2, 1, 1).publish(2, [(held(0), 5, 1)])
              .acquire(2, 1, 2).release(2, [held(0)])
              .release(1, [held(0)])
              .acquire(2, 1, 2).acquire(2, 1, 3)
              .wait(3, CONSUME, 3)
              .join(4, PRODUCER).wait(4, ACQUIRE, 1, lowest())
              .publish(2, [(held(0), 7, 2)])
              .acquire(1, 1, 0).publish(1, [(held(0), 1, 0)])
              .consume(3, 3).release(3, [held(0), held(1)])
              .reads(4).end(1).end(2).end(4).consume(3).consume(3).check())
    # streams: an ended producer's early batches, a producer that leaves counts as ended
    c["streams"] = (Script(8, 5, 0)
            .join(1, PRODUCER).join(2, PRODUCER).join(3, CONSUMER).join(4, CONSUMER)
            .acquire(1).publish(1, [(held(0), 1, NONE)])
            .end(1)
            .acquire(1, 2).publish(1, [(held(0), 2, 100), (held(1), 3, 101)])
            .acquire(2).publish(2, [(held(0), 4, 2)])
            .wait(4, CONSUME, 8)
            .consume(3, 8).release(3, [held(0), held(1)])
            .leave(2)
            .consume(3).consume(3, 2).join(5, CONSUMER).end(1).consume(5).consume(4)
            .check())
    # a consumer waiting for 3: the producer dies half way through the serve
    for k in (18, 30, 44):
        c["death-in-serve-%d" % k] = (Script(4, 3, REQUEUE)
                       .join(1, PRODUCER).join(2, CONSUMER)
                       .acquire(1, 4)
                       .wait(2, CONSUME, 3)
                       .die(k)
                       .publish(1, [(held(0), 1, NONE), (held(1), 2, NONE),
                             (held(2), 3, NONE), (held(3), 4, NONE)])
                       .join(1, PRODUCER).acquire(1).reads(2).check())
    # consumers waiting when the last producer ends: it dies serving their eofs
    for k in (10, 16, 24):
        c["death-in-end-%d" % k] = (Script(2, 4, ORDERED)
                      .join(1, PRODUCER).join(2, CONSUMER).join(3, CONSUMER)
                      .wait(2, CONSUME, 2).wait(3, CONSUME, 1)
                      .die(k).end(1)
                      .join(4, PRODUCER).acquire(4, 1, 0)
                      .publish(4, [(held(0), 9, 0)])
                      .consume(2).consume(3).check())
    # a reader dies, its batches requeued at the head of an ordered pool
    c["death-reading"] = (Script(6, 3, ORDERED | REQUEUE)
               .join(1, PRODUCER).join(2, CONSUMER).join(3, CONSUMER)
               .acquire(1, 6)
               .publish(1, [(held(5), 1, 5), (held(0), 1, 0), (held(1), 1, 1),
                     (held(2), 1, 2), (held(3), 1, 3), (held(4), 1, 4)])
               .consume(2, 3)
               .die(9).release(2, [held(0), held(1)], requeue=True)
               .consume(3, 8, 0x40).check())
    # the dead member left garbage in its log: the daemon refuses it
    c["garbage-log"] = (Script(4, 2, ORDERED)
              .join(1, PRODUCER).join(2, CONSUMER)
              .acquire(1, 2)
              .die(6, garbage=[0x40, 0, 0, 0, 8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
              .publish(1, [(held(0), 1, 1), (held(1), 1, 0)])
              .consume(2).acquire(1).check())
    # scribbles on the pool line, the members and the slots between operations
    c["scribbles"] = (Script(5, 3, REQUEUE)
             .join(1, PRODUCER).join(2, CONSUMER)
             .acquire(1, 3).publish(1, [(held(0), 1, NONE)])
             .wait(2, ACQUIRE, 1)
             .poke(0, [0xFF, 0xFF, 0xFF, 0xFF])
             .poke(0x80 + 0x40, [3, 0, 0, 0, 0xFF])
             .poke(0x200, [0xFF] * 8)
             .consume(2).acquire(1).release(1, [held(0), held(1)])
             .leave(1).leave(2).reads(1).check())
    # a hostile member's calls: joins twice, leaves others, waits twice
    c["raw"] = (Script(3, 3, ORDERED)
          .join(1, PRODUCER).join(2, CONSUMER)
          .raw(0, 1, PRODUCER).raw(1, 3).raw(7, 2, 1, 1, NONE).raw(7, 2, 1, 1, NONE)
          .raw(3, 0, 1).raw(5, 4, 0, 0, index(9))
          .acquire(1).consume(2).leave(1).check())
    # a consume of many stopped by its budget
    c["budget"] = (Script(8, 2, BUDGET)
           .join(1, PRODUCER).join(2, CONSUMER)
           .acquire(1, 8)
           .publish(1, [(held(i), 50, NONE) for i in range(8)])
           .consume(2, 8, 40).consume(2, 8, 1).consume(2, 0xFF, 0).check())
    return c


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "block")
    os.makedirs(out, exist_ok=True)
    for name, script in sorted(corpus().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes(script.b))
    print("%d inputs in %s" % (len(corpus()), out), file=sys.stderr)


if __name__ == "__main__":
    main()

"""What the Python readers cost per tick, without a writer to wait for: reads a stopped segment's
whole ring from its oldest sequence, pinned to CPU, with qilin_shm.batch.Reader.read_batch(N)
(ROUNDS times; each round copies every record into one reused array) and with the stdlib
qilin_shm.Reader.try_next (once, over the first STDLIB ticks). Prints ticks/s of each round: ROUNDS
with a fresh mapping each (the ring's pages are faulted in while reading, as in any new reader
process), then ROUNDS on the same mapping (warm).

Usage:
    python benches/python/batch_read.py SEGMENT [--cpu C] [--batch N] [--rounds R] [--stdlib T]
(python/ on PYTHONPATH, numpy installed). The segment: a qilin-core run with --sim-max-ticks into a
ring at least that big, then stopped (SIGTERM). See BENCHMARKS.md, "Python batch reads".
"""

import argparse
import os
import statistics
import time

import numpy as np

import qilin_shm
from qilin_shm import batch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("segment")
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--batch", type=int, default=65536)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--stdlib", type=int, default=300_000)
    a = p.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    r = batch.Reader(a.segment)
    r.seek_oldest()
    first = r.next_sequence
    total = r.write_cursor() - first + 1
    buf = np.empty(a.batch, batch.TICK_DTYPE)

    def one_round(reader):
        reader.seek(first)
        n = 0
        t = time.perf_counter()
        while True:
            ticks = reader.read_batch(a.batch, buf)
            if not len(ticks):
                break
            n += len(ticks)
        el = time.perf_counter() - t
        assert n == total and not reader.events, (n, total, reader.events)
        return n / el

    # Cold: a fresh mapping each round, so every page of the ring is faulted in during the read (as
    # a new reader process, e.g. the Rust one below, pays); warm: the same mapping again.
    cold = [one_round(r)]
    for _ in range(a.rounds - 1):
        r.close()
        r = batch.Reader(a.segment)
        cold.append(one_round(r))
    warm = [one_round(r) for _ in range(a.rounds)]
    for name, rates in (("cold (new mapping)", cold), ("warm (same mapping)", warm)):
        print(f"batch read_batch({a.batch}), {name}: {total} ticks per round, M ticks/s per round: "
              + " ".join(f"{x / 1e6:.2f}" for x in rates) + f" (median {statistics.median(rates) / 1e6:.2f})")
    s = qilin_shm.Reader(a.segment)
    s.seek(first)
    want = min(a.stdlib, total)
    t = time.perf_counter()
    for _ in range(want):
        ev = s.try_next()
    el = time.perf_counter() - t
    assert ev.sequence == first + want - 1
    print(f"stdlib try_next: {want} ticks, M ticks/s: {want / el / 1e6:.3f}")


if __name__ == "__main__":
    main()

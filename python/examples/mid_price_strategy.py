#!/usr/bin/env python3
"""A mid-price strategy skeleton in numpy, reading the segment live in batches.

    qilin-core &                                       # the default simulator, /dev/shm/qilin
    python3 python/examples/mid_price_strategy.py      # pip install "./python[numpy]" first

It joins late: the last value of every instrument (``snapshot()``) seeds its mid price, and the ring
is read from the snapshot's ``as_of + 1``. Then, batch after batch (``read_batch``, one numpy array
of whole ticks each), it computes every tick's mid price ``(bid1 + ask1) / 2`` at once, keeps each
instrument's last one, and at the end of a batch compares it with the instrument's mid at the end
of the previous batch: a move of at least ``--threshold`` price ticks (the instrument's
``price_tick`` from the directory) is a signal, printed as

    signal SEQUENCE INSTRUMENT buy|sell MID_BEFORE MID_AFTER

(SEQUENCE is the instrument's last tick in the batch; mids with 4 decimals). Gaps (the strategy fell
a lap behind) and restarts of the core are printed as ``gap FIRST LAST`` and ``restart``; the first
resets nothing (the next mids are compared with the last known ones), the second drops the mids.
When it stops (``--count`` ticks read, ``--seconds`` elapsed, or Ctrl-C) it prints one line per
instrument that had a mid: ``INSTRUMENT ticks N mid MID``.

A real strategy replaces ``on_batch``'s rule (and sends orders elsewhere: this is a feed).

Options: ``SEGMENT`` (default /dev/shm/qilin), ``--oldest`` (read the ring from its oldest tick
instead of joining at the snapshot), ``--count N``, ``--seconds S``, ``--batch B`` (max ticks per
batch, default 4096), ``--threshold T`` (price ticks, default 2).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qilin_shm  # noqa: E402
from qilin_shm import batch  # noqa: E402


class MidPriceStrategy:
    """Per-instrument state in numpy arrays indexed by the segment's instrument index."""

    def __init__(self, reader, threshold, out):
        self.reader = reader
        self.threshold = threshold
        self.out = out
        cap = reader.instrument_capacity
        self.mid = np.full(cap, np.nan)           # last mid of each instrument
        self.ticks = np.zeros(cap, dtype=np.int64)  # ticks seen per instrument
        self.price_tick = np.full(cap, np.nan)
        self.names = {}
        self.refresh_directory()

    def refresh_directory(self):
        for inst in self.reader.instruments():
            self.price_tick[inst.index] = inst.price_tick if inst.price_tick > 0 else np.nan
            self.names[inst.index] = inst.instrument_id

    def seed(self, ticks):
        """Last values (a snapshot) as the starting mids."""
        mids = (ticks["bid_price"][:, 0] + ticks["ask_price"][:, 0]) / 2
        index = ticks["instrument_index"].astype(np.intp)
        ok = ~np.isnan(mids)
        self.mid[index[ok]] = mids[ok]

    def on_batch(self, ticks):
        index = ticks["instrument_index"].astype(np.intp)
        if index.size and index.max() >= len(self.names):
            self.refresh_directory()             # a new instrument was listed since
        np.add.at(self.ticks, index, 1)
        mids = (ticks["bid_price"][:, 0] + ticks["ask_price"][:, 0]) / 2
        ok = ~np.isnan(mids)
        index, mids, seqs = index[ok], mids[ok], ticks["sequence"][ok]
        if not index.size:
            return
        # The last tick of each instrument in this batch: first occurrence in the reversed batch.
        instruments, from_end = np.unique(index[::-1], return_index=True)
        last = index.size - 1 - from_end
        before = self.mid[instruments]
        after = mids[last]
        moved = (after - before) / self.price_tick[instruments]
        signal = np.abs(moved) >= self.threshold          # NaN (no mid before) compares false
        for i in np.flatnonzero(signal):
            side = "buy" if moved[i] > 0 else "sell"
            name = self.names.get(int(instruments[i]), "?")
            self.out.write(f"signal {int(seqs[last[i]])} {name} {side} {before[i]:.4f} {after[i]:.4f}\n")
        self.mid[instruments] = after

    def on_gap(self, gap):
        self.out.write(f"gap {gap.first} {gap.last}\n")

    def on_restart(self):
        self.out.write("restart\n")
        self.mid[:] = np.nan

    def summary(self):
        for index in np.flatnonzero(~np.isnan(self.mid)):
            name = self.names.get(int(index), "?")
            self.out.write(f"{name} ticks {int(self.ticks[index])} mid {self.mid[index]:.4f}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("segment", nargs="?", default="/dev/shm/qilin")
    parser.add_argument("--oldest", action="store_true", help="from the ring's oldest tick, not the snapshot")
    parser.add_argument("--count", type=int, default=0, help="stop after this many ticks (0: never)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    parser.add_argument("--batch", type=int, default=4096, help="max ticks per batch")
    parser.add_argument("--threshold", type=float, default=2.0, help="signal on a move of this many price ticks")
    args = parser.parse_args()

    reader = batch.Reader(args.segment)
    strategy = MidPriceStrategy(reader, args.threshold, sys.stdout)
    if args.oldest:
        reader.seek_oldest()
    else:
        snap = reader.snapshot()
        strategy.seed(snap.ticks)
        reader.seek(snap.as_of + 1)
    buf = np.empty(args.batch, batch.TICK_DTYPE)
    end = time.monotonic() + args.seconds if args.seconds else None
    read = 0
    try:
        while not args.count or read < args.count:
            want = args.batch if not args.count else min(args.batch, args.count - read)
            ticks = reader.read_batch(want, out=buf)
            if len(ticks):
                read += len(ticks)
                strategy.on_batch(ticks)
            for event in reader.events:
                if isinstance(event, qilin_shm.Gap):
                    strategy.on_gap(event)
                else:
                    strategy.on_restart()
            if not len(ticks) and not reader.events:
                if end is not None and time.monotonic() > end:
                    break
                time.sleep(0.0005)           # nothing new: a real strategy spins or does other work
            elif end is not None and time.monotonic() > end:
                break
    except KeyboardInterrupt:
        pass
    strategy.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())

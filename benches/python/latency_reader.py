"""The Python strategy readers of the qilin-bench end-to-end series.

Usage: python3 latency_reader.py SEGMENT CPU WARMUP COUNT [--batch N] [--stamp due]
(python/ on PYTHONPATH)

Pins itself to CPU, opens SEGMENT at the newest sequence, prints "ready", then spins on
Reader.try_next() (series e2e/python), or with --batch on qilin_shm.batch.Reader.read_batch(N)
(series e2e/python_batch; needs numpy). For each tick after the first WARMUP it keeps
time.time_ns() (CLOCK_REALTIME) minus the tick's receive_ns: one clock read per tick, or per batch
for every tick of the batch (the moment the strategy holds them all). After WARMUP + COUNT
sequences (read or lost) it prints "ticks N lost L" and then one latency in ns per line.

With --stamp due the latency is measured from the due time the harness's paced UDP sender carries
in curr_delta (the 64 bits of the double are the due time in ns) instead of receive_ns.
"""

import os
import struct
import sys
import time

import qilin_shm


STAMP_MIN_NS = 1_000_000_000_000_000_000
STAMP_MAX_NS = 4_000_000_000_000_000_000


def due_of(delta, _pack=struct.Struct("<d").pack, _unpack=struct.Struct("<q").unpack):
    due = _unpack(_pack(delta))[0]
    if not STAMP_MIN_NS <= due < STAMP_MAX_NS:
        raise SystemExit(f"latency_reader.py: a tick carries no due time in curr_delta ({delta!r})")
    return due


def stdlib(reader, warmup, count, stamp_due):
    now = time.time_ns
    empty, gap = qilin_shm.Empty, qilin_shm.Gap
    lat = []
    keep = lat.append
    seen = lost = 0
    total = warmup + count
    while seen < total:
        ev = reader.try_next()
        if ev is empty:
            continue
        if isinstance(ev, gap):
            n = ev.last - ev.first + 1
            lost += min(n, total - seen)
            seen += n
            continue
        t = now()
        if not hasattr(ev, "receive_ns"):
            continue  # NewEpoch
        if seen >= warmup:
            keep(t - (due_of(ev.curr_delta) if stamp_due else ev.receive_ns))
        seen += 1
    return lat, lost


def batched(reader, warmup, count, max_n, stamp_due):
    import numpy as np

    from qilin_shm import batch

    now = time.time_ns
    buf = np.empty(max_n, batch.TICK_DTYPE)
    parts = []
    seen = lost = 0
    total = warmup + count
    while seen < total:
        ticks = reader.read_batch(min(max_n, total - seen), buf)
        t = now()
        for ev in reader.events:
            if isinstance(ev, qilin_shm.Gap):
                n = ev.last - ev.first + 1
                lost += min(n, total - seen)
                seen += n
        n = len(ticks)
        if not n:
            continue
        skip = max(0, min(n, warmup - seen))
        if skip < n:
            if stamp_due:
                since = ticks["curr_delta"][skip:].view(np.int64)
                if since.min() < STAMP_MIN_NS or since.max() >= STAMP_MAX_NS:
                    raise SystemExit("latency_reader.py: a tick carries no due time in curr_delta")
            else:
                since = ticks["receive_ns"][skip:]
            parts.append(t - since)
        seen += n
    lat = np.concatenate(parts).tolist() if parts else []
    return lat, lost


def main():
    args = sys.argv[1:]
    max_n = 0
    if "--batch" in args:
        at = args.index("--batch")
        max_n = int(args[at + 1])
        del args[at:at + 2]
    stamp_due = False
    if "--stamp" in args:
        at = args.index("--stamp")
        stamp_due = args[at + 1] == "due"
        del args[at:at + 2]
    path, cpu, warmup, count = args[0], int(args[1]), int(args[2]), int(args[3])
    os.sched_setaffinity(0, {cpu})
    if max_n:
        from qilin_shm import batch

        reader = batch.Reader(path)
    else:
        reader = qilin_shm.Reader(path)
    reader.seek_newest()
    print("ready", flush=True)
    if max_n:
        lat, lost = batched(reader, warmup, count, max_n, stamp_due)
    else:
        lat, lost = stdlib(reader, warmup, count, stamp_due)
    out = [f"ticks {len(lat)} lost {lost}"]
    out.extend(map(str, lat))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

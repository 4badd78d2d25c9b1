"""The Python strategy reader of the qilin-bench end-to-end series.

Usage: python3 latency_reader.py SEGMENT CPU WARMUP COUNT   (python/ on PYTHONPATH)

Pins itself to CPU, opens SEGMENT at the newest sequence, prints "ready", then spins on
Reader.try_next(). For each tick after the first WARMUP it keeps time.time_ns() (CLOCK_REALTIME)
minus the tick's receive_ns. After WARMUP + COUNT sequences (read or lost) it prints
"ticks N lost L" and then one latency in ns per line.
"""

import os
import sys
import time

import qilin_shm


def main():
    path, cpu, warmup, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    os.sched_setaffinity(0, {cpu})
    reader = qilin_shm.Reader(path)
    reader.seek_newest()
    print("ready", flush=True)
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
            keep(t - ev.receive_ns)
        seen += 1
    out = [f"ticks {len(lat)} lost {lost}"]
    out.extend(map(str, lat))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

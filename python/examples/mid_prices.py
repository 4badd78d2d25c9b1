#!/usr/bin/env python3
"""Prints the mid price (bid1 + ask1) / 2 of each instrument as its ticks arrive.

    python3 python/examples/mid_prices.py                  # /dev/shm/qilin, until Ctrl-C
    python3 python/examples/mid_prices.py /dev/shm/other --count 100

A one-sided or empty book (NaN on either side) prints "-". Gaps and core restarts are reported
on stderr; sequences continue across a restart.
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qilin_shm  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("segment", nargs="?", default="/dev/shm/qilin", help="segment file (default /dev/shm/qilin)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many ticks (0: run until Ctrl-C)")
    parser.add_argument("--oldest", action="store_true", help="start at the oldest tick in the ring, not the newest")
    args = parser.parse_args()

    try:
        reader = qilin_shm.Reader(args.segment)
    except qilin_shm.SegmentError as e:
        print(f"mid_prices: {e}", file=sys.stderr)
        return 1
    if args.oldest:
        reader.seek_oldest()
    printed = 0
    idle = 0
    try:
        while not args.count or printed < args.count:
            event = reader.try_next()
            if event is qilin_shm.Empty:
                idle += 1
                if idle > 1000:  # nothing for a while: stop burning a core
                    time.sleep(0.0005)
                continue
            idle = 0
            if isinstance(event, qilin_shm.Tick):
                bid, ask = event.bid_price[0], event.ask_price[0]
                mid = (bid + ask) / 2
                shown = "-" if math.isnan(mid) else f"{mid:.4f}"
                print(f"{event.sequence:>10} {event.instrument_id:<10} {shown}")
                printed += 1
            elif isinstance(event, qilin_shm.Gap):
                print(f"gap: lost sequences {event.first}..{event.last}", file=sys.stderr)
            elif isinstance(event, qilin_shm.NewEpoch):
                print(f"core restarted (epoch {event.previous} -> {event.current})", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Test driver for core/tests/reader_python.rs (not a unittest module): prints what the Python reader
sees as canonical lines that the Rust test produces the same way from qilin_shm::Reader.

    dump_events.py layout                      the reader's layout table as JSON
    dump_events.py dump SEGMENT [options]      one line per event (tick / gap / epoch)
    dump_events.py snapshot SEGMENT            liveness, directory and Reader.snapshot()

Tick line: "tick" then every TickRecord field in declaration order; integers in decimal, doubles as
their IEEE-754 bits in 16 hex digits (exact, NaN included), byte fields in hex, instrument_id as
text, arrays comma-joined. Gap: "gap FIRST LAST". Restart: "epoch PREVIOUS CURRENT".
"""

import argparse
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qilin_shm as q  # noqa: E402

_bits = struct.Struct("<d").pack
_u64 = struct.Struct("<Q").unpack


def value(v):
    if isinstance(v, float):
        return f"{_u64(_bits(v))[0]:016x}"
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, tuple):
        return ",".join(value(x) for x in v)
    return str(v)


def line(event):
    if isinstance(event, q.Tick):
        return "tick " + " ".join(value(v) for v in event)
    if isinstance(event, q.Gap):
        return f"gap {event.first} {event.last}"
    if isinstance(event, q.NewEpoch):
        return f"epoch {event.previous} {event.current}"
    raise TypeError(event)


def dump(args):
    reader = q.Reader(args.segment)
    if args.start == "oldest":
        reader.seek_oldest()
    elif args.start == "newest":
        reader.seek_newest()
    else:
        reader.seek(int(args.start))
    out = open(args.out, "w") if args.out else sys.stdout
    if args.ready:
        print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    read_since_pause = 0
    after_epoch = None
    while True:
        if args.until_file and not args.until:
            # Set once the test knows where to stop (after it restarted the core).
            try:
                args.until = int(open(args.until_file).read())
            except (OSError, ValueError):
                pass
        if args.until and reader.next_sequence > args.until:
            break
        if args.after_epoch and after_epoch is not None and after_epoch >= args.after_epoch:
            break
        event = reader.try_next()
        if event is q.Empty:
            if time.monotonic() > deadline:
                print(f"timeout at sequence {reader.next_sequence}", file=sys.stderr)
                return 3
            continue
        out.write(line(event) + "\n")
        if isinstance(event, q.NewEpoch):
            after_epoch = 0
        elif isinstance(event, q.Tick):
            if after_epoch is not None:
                after_epoch += 1
            read_since_pause += 1
            if args.lap_every and read_since_pause >= args.lap_every:
                # Get lapped on purpose: wait until the writer is a whole ring (plus lap_by) ahead,
                # or has published everything.
                read_since_pause = 0
                target = reader.next_sequence + reader.ring_slots + args.lap_by
                while reader.write_cursor() < target and not (args.until and reader.write_cursor() >= args.until):
                    if time.monotonic() > deadline:
                        print("timeout waiting to be lapped", file=sys.stderr)
                        return 3
    out.flush()
    return 0


def snapshot(args):
    reader = q.Reader(args.segment)
    live = reader.liveness(time.time_ns(), 10**9)
    print(f"liveness {live.state} {live.at_ns if live.state == 'stopped' else ''}".rstrip())
    print(f"cursor {reader.write_cursor()} epoch {reader.current_epoch()} pid {reader.writer_pid()}")
    for i in reader.instruments():
        print(f"instrument {i.index} {i.instrument_id} {i.exchange_id} {i.exchange} {i.volume_multiple} "
              f"{value(i.price_tick)}")
    snap = reader.snapshot()
    print(f"as_of {snap.as_of}")
    for tick in snap.ticks:
        print(line(tick))
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("layout")
    d = sub.add_parser("dump")
    d.add_argument("segment")
    d.add_argument("--start", default="oldest", help="oldest | newest | SEQUENCE")
    d.add_argument("--until", type=int, default=0, help="stop once every sequence up to this is accounted for")
    d.add_argument("--until-file", help="like --until, with the sequence read from this file once it exists")
    d.add_argument("--after-epoch", type=int, default=0, help="stop this many ticks after a NewEpoch")
    d.add_argument("--lap-every", type=int, default=0, help="after this many ticks, wait to be lapped")
    d.add_argument("--lap-by", type=int, default=100)
    d.add_argument("--out")
    d.add_argument("--ready", action="store_true", help='print "ready" once the reader is open')
    d.add_argument("--timeout", type=float, default=120.0, help="watchdog (seconds), not a speed check")
    s = sub.add_parser("snapshot")
    s.add_argument("segment")
    args = parser.parse_args()
    if args.command == "layout":
        print(json.dumps(q.layout_json()))
        return 0
    if args.command == "dump":
        return dump(args)
    return snapshot(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Test driver for core/tests/reader_python.rs (not a unittest module): prints what the Python reader
sees as canonical lines that the Rust test produces the same way from qilin_shm::Reader.

    dump_events.py layout                      the reader's layout table as JSON
    dump_events.py dump SEGMENT [options]      one line per event (tick / gap / epoch)
    dump_events.py snapshot SEGMENT            liveness, directory and Reader.snapshot()
    dump_events.py open SEGMENT                "ok", or the SegmentError message (exit 2)

With --batch (N for dump) the numpy reader, qilin_shm.batch.Reader, reads instead: read_batch(N) and
its vectorised snapshot(); its ticks are printed from the bytes it copied, its gaps where they sit
among them. --lap-headroom H sets the reader's lap_headroom (default: ring_slots // 8, as Rust).

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


def open_reader(args):
    if args.batch:
        from qilin_shm import batch
        return batch.Reader(args.segment, lap_headroom=args.lap_headroom)
    return q.Reader(args.segment, lap_headroom=args.lap_headroom)


def batch_step(reader, max_n):
    """One read_batch as events in reading order: each Gap where it sits among the ticks (by
    sequence), a NewEpoch after them. Ticks decoded from the copied bytes, so a line is the record's
    bytes."""
    ticks = reader.read_batch(max_n)
    gaps = [e for e in reader.events if isinstance(e, q.Gap)]
    out = []
    for raw in (ticks[i:i + 1].tobytes() for i in range(len(ticks))):
        tick = q.decode_record(raw)
        while gaps and gaps[0].last < tick.sequence:
            out.append(gaps.pop(0))
        out.append(tick)
    out.extend(gaps)
    out.extend(e for e in reader.events if not isinstance(e, q.Gap))
    return out


def dump(args):
    reader = open_reader(args)
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
        if args.batch:
            max_n = args.batch
            if args.lap_every:
                max_n = min(max_n, args.lap_every - read_since_pause)
            if args.until:
                max_n = max(1, min(max_n, args.until + 1 - reader.next_sequence))
            events = batch_step(reader, max_n)
        else:
            event = reader.try_next()
            events = [] if event is q.Empty else [event]
        if not events:
            if time.monotonic() > deadline:
                print(f"timeout at sequence {reader.next_sequence}", file=sys.stderr)
                return 3
            continue
        for event in events:
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
    reader = open_reader(args)
    live = reader.liveness(time.time_ns(), 10**9)
    print(f"liveness {live.state} {live.at_ns if live.state == 'stopped' else ''}".rstrip())
    print(f"cursor {reader.write_cursor()} epoch {reader.current_epoch()} pid {reader.writer_pid()}")
    for i in reader.instruments():
        print(f"instrument {i.index} {i.instrument_id} {i.exchange_id} {i.exchange} {i.volume_multiple} "
              f"{value(i.price_tick)}")
    snap = reader.snapshot()
    print(f"as_of {snap.as_of}")
    if args.batch:
        ticks = [q.decode_record(snap.ticks[i:i + 1].tobytes()) for i in range(len(snap.ticks))]
    else:
        ticks = snap.ticks
    for tick in ticks:
        print(line(tick))
    return 0


def open_only(args):
    """Opens the segment: prints "ok", or the SegmentError's message (exit 2)."""
    try:
        open_reader(args).close()
    except q.SegmentError as e:
        print(str(e))
        return 2
    print("ok")
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
    d.add_argument("--batch", type=int, default=0, help="read with qilin_shm.batch.Reader.read_batch(N)")
    d.add_argument("--lap-headroom", type=int, default=None, help="the reader's lap_headroom (default: its own)")
    s = sub.add_parser("snapshot")
    s.add_argument("segment")
    s.add_argument("--batch", action="store_const", const=1, default=0, help="qilin_shm.batch.Reader.snapshot()")
    s.set_defaults(lap_headroom=None)
    o = sub.add_parser("open")
    o.add_argument("segment")
    o.add_argument("--batch", action="store_const", const=1, default=0, help="qilin_shm.batch.Reader")
    o.set_defaults(lap_headroom=None)
    args = parser.parse_args()
    if args.command == "layout":
        print(json.dumps(q.layout_json()))
        return 0
    if args.command == "dump":
        return dump(args)
    if args.command == "open":
        return open_only(args)
    return snapshot(args)


if __name__ == "__main__":
    sys.exit(main())

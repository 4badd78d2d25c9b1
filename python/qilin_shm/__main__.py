"""``python -m qilin_shm layout | tail [PATH] | keepup [PATH] [SECONDS] [--batch [N]]``: the layout
table as JSON, every event of a segment, or a keep-up check (exit 1 on any gap). ``--batch`` reads
with ``qilin_shm.batch.Reader.read_batch(N)`` (numpy; N = 65536 by default) instead of ``try_next``;
``--idle-us US`` (batch mode) sleeps US µs after a read that found nothing instead of spinning."""

import json
import sys

from . import Reader, _keepup, layout_json

USAGE = ("usage: python -m qilin_shm layout | tail [PATH] | keepup [PATH] [SECONDS] [--batch [N]] "
         "[--idle-us US]")

args = sys.argv[1:]
batch = None
idle_us = 0
if "--idle-us" in args:
    at = args.index("--idle-us")
    idle_us = int(args.pop(at + 1))
    args.pop(at)
if "--batch" in args:
    at = args.index("--batch")
    batch = 65536
    if at + 1 < len(args) and args[at + 1].isdigit():
        batch = int(args.pop(at + 1))
    args.pop(at)
command = args[0] if args else ""
segment = args[1] if len(args) > 1 else "/dev/shm/qilin"
if command == "layout":
    print(json.dumps(layout_json(), indent=1))
elif command == "tail":
    for event in Reader(segment):
        print(event)
elif command == "keepup":
    seconds = float(args[2]) if len(args) > 2 else 30.0
    if batch is None:
        sys.exit(_keepup(segment, seconds))
    from . import batch as _batch

    sys.exit(_batch._keepup(segment, seconds, batch, idle_us / 1e6))
else:
    print(USAGE, file=sys.stderr)
    sys.exit(2)

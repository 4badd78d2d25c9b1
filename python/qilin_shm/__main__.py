"""``python -m qilin_shm layout | tail [PATH] | keepup [PATH] [SECONDS]``: the layout table as JSON,
every event of a segment, or a keep-up check (exit 1 on any gap)."""

import json
import sys

from . import Reader, _keepup, layout_json

command = sys.argv[1] if len(sys.argv) >= 2 else ""
segment = sys.argv[2] if len(sys.argv) > 2 else "/dev/shm/qilin"
if command == "layout":
    print(json.dumps(layout_json(), indent=1))
elif command == "tail":
    for event in Reader(segment):
        print(event)
elif command == "keepup":
    sys.exit(_keepup(segment, float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
else:
    print("usage: python -m qilin_shm layout | tail [PATH] | keepup [PATH] [SECONDS]", file=sys.stderr)
    sys.exit(2)

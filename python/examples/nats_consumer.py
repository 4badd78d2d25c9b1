#!/usr/bin/env python3
"""Reads the ticks qilin-nats publishes, on another host, with nats-py and numpy.

    python3 python/examples/nats_consumer.py --feed qilin                  # every tick the JetStream stream holds
    python3 python/examples/nats_consumer.py --feed qilin --deliver new    # only ticks published from now on
    python3 python/examples/nats_consumer.py --feed qilin --durable desk1  # resumable: the server keeps the position
    python3 python/examples/nats_consumer.py --feed qilin --core           # core NATS subscription (nats.mode = "core")
    python3 python/examples/nats_consumer.py --url nats://host:4222 --feed qilin --until 100000

What qilin-nats publishes (docs/SIDECARS.md, "qilin-nats", has it byte by byte):

- ticks on `<prefix>.<ExchangeID>.<InstrumentID>` (prefix `qilin.<feed>` unless `nats.subject_prefix`
  says otherwise), one message per tick, headers `Nats-Msg-Id: <feed>-<sequence>`, `Qilin-Seq`,
  `Qilin-Epoch`, `Qilin-Source`, and for raw bodies `Qilin-Layout`;
- body `raw` (the default): the 376-byte TickRecord of shm-layout/LAYOUT.md, little-endian, exactly as
  in the segment. It is decoded with `qilin_shm.batch.TICK_DTYPE` (`np.frombuffer`), the numpy
  dtype generated from the layout; a message whose `Qilin-Layout` header is not this package's
  fingerprint (`qilinctl layout --json`'s `fingerprint`, `0x` + 16 hex digits) is refused with
  `LayoutMismatch`, never misread. Body `json`: the tick with CTP field names, as
  `qilinctl tail --json` prints it (no `Qilin-Layout` header);
- gap events on `<prefix>._gap`: headers `Qilin-Gap-First`, `Qilin-Gap-Last` (inclusive), JSON body
  `{"feed", "first", "last", "count", "reason", "detected_ns"}`. Those sequences were lost in the
  ring before qilin-nats could publish them and will never come.

This consumer yields, in order: `Tick` (the decoded record, or the JSON object), `Gap` (from a gap
event) and `Missing` (sequences neither delivered nor covered by a gap event: core NATS is at most
once on the wire, and a consumer that started late missed what came before). Sequences increase by
one; repeats (core NATS republishes after a sidecar restart, a durable consumer redelivers what was
not acked) are dropped by `Qilin-Seq` and counted in `Stats.duplicates`. A `Qilin-Epoch` change (the
core restarted; sequences continue) is counted in `Stats.epochs`.

Transports: JetStream (`nats.mode = "jetstream"`, the default) is read with a pull consumer on the
feed's stream (`QILIN_<FEED>`), ephemeral without acks, or `--durable NAME` with acks (each fetched
batch is acked after it has been handled, so a restarted consumer resumes after it; what was
handled but not yet acked when it stopped comes again and is dropped as a repeat only within one
run: keep the last `Qilin-Seq` yourself if that matters). Core NATS (`--core`) is a plain
subscription: only what is published while it is subscribed.

Run it from the repository (it imports `python/qilin_shm` from beside it) or with the package
installed (`pip install "./python[numpy]"`); it needs `nats-py` and `numpy`.
"""

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass, field

import nats
import numpy as np
from nats.js import api

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qilin_shm  # noqa: E402
from qilin_shm.batch import TICK_DTYPE  # noqa: E402

#: The `Qilin-Layout` header raw bodies of this package's layout carry: the fingerprint as
#: `qilinctl layout --json` writes it (`0x` and 16 lowercase hex digits).
FINGERPRINT_TEXT = qilin_shm.layout_json()["fingerprint"]
RECORD_SIZE = TICK_DTYPE.itemsize  # 376

SEQ_HEADER = "Qilin-Seq"
EPOCH_HEADER = "Qilin-Epoch"
SOURCE_HEADER = "Qilin-Source"
LAYOUT_HEADER = "Qilin-Layout"
GAP_FIRST_HEADER = "Qilin-Gap-First"
GAP_LAST_HEADER = "Qilin-Gap-Last"


class LayoutMismatch(Exception):
    """A raw body of another layout (or of no stated layout): decoding it would misread it."""


@dataclass(frozen=True)
class Tick:
    """One tick. `record` is a `TICK_DTYPE` element (raw bodies: `record["last_price"]`,
    `record["bid_price"][0]`, …; a view into the batch's array), `json` the object of a JSON body;
    the other is None."""

    sequence: int
    epoch: int
    source: str
    subject: str
    record: object = None
    json: dict = None


@dataclass(frozen=True)
class Gap:
    """A gap event: `first..=last` were lost in the ring before qilin-nats published them."""

    first: int
    last: int
    reason: str
    detected_ns: int


@dataclass(frozen=True)
class Missing:
    """`first..=last` were neither delivered nor announced by a gap event (core NATS lost them,
    or they came before this consumer started)."""

    first: int
    last: int


@dataclass
class Stats:
    ticks: int = 0
    gap_events: int = 0
    gap_sequences: int = 0
    missing: int = 0
    duplicates: int = 0
    epochs: int = 0
    layouts: set = field(default_factory=set)


def subject_prefix(feed):
    """qilin-nats' default prefix: `qilin.<feed>`, the feed made one subject token."""
    token = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in feed) or "_"
    return f"qilin.{token}"


def stream_name(feed):
    """qilin-nats' default stream name: `QILIN_<FEED>` with `-` as `_`."""
    return "QILIN_" + feed.upper().replace("-", "_")


class Decoder:
    """Turns qilin-nats messages into events, in sequence order, each sequence once."""

    def __init__(self, expect=None):
        #: The next sequence wanted (None: whatever comes first).
        self.next = expect
        self.epoch = None
        self.stats = Stats()

    def _sequence(self, first, last):
        """Whether `first..=last` is new; reports what was skipped before it."""
        events = []
        if self.next is not None:
            if last < self.next:
                self.stats.duplicates += 1
                return False, events
            if first > self.next:
                events.append(Missing(self.next, first - 1))
                self.stats.missing += first - self.next
        self.next = last + 1
        return True, events

    def decode(self, messages):
        """Events of a batch of messages (in the order received). Raw bodies of the batch are
        decoded with one `np.frombuffer` over their concatenation."""
        events = []
        raw = []  # (index in events, message)
        for msg in messages:
            headers = msg.headers or {}
            if GAP_FIRST_HEADER in headers:
                first, last = int(headers[GAP_FIRST_HEADER]), int(headers[GAP_LAST_HEADER])
                new, skipped = self._sequence(first, last)
                if new:
                    body = json.loads(msg.data)
                    events.extend(skipped)
                    events.append(Gap(first, last, body.get("reason", ""), body.get("detected_ns", 0)))
                    self.stats.gap_events += 1
                    self.stats.gap_sequences += last - first + 1
                continue
            if SEQ_HEADER not in headers:
                continue  # not qilin-nats' (nothing of it lacks Qilin-Seq)
            seq = int(headers[SEQ_HEADER])
            new, skipped = self._sequence(seq, seq)
            if not new:
                continue
            events.extend(skipped)
            epoch = int(headers.get(EPOCH_HEADER, 0))
            if self.epoch is not None and epoch != self.epoch:
                self.stats.epochs += 1
            self.epoch = epoch
            layout = headers.get(LAYOUT_HEADER)
            tick = dict(sequence=seq, epoch=epoch, source=headers.get(SOURCE_HEADER, ""), subject=msg.subject)
            if layout is None:  # JSON body
                body = json.loads(msg.data)
                if body.get("sequence") != seq:
                    raise ValueError(f"{msg.subject}: {SEQ_HEADER} {seq} but the body says {body.get('sequence')}")
                events.append(Tick(**tick, json=body))
            else:
                self.stats.layouts.add(layout)
                if layout != FINGERPRINT_TEXT:
                    raise LayoutMismatch(
                        f"{msg.subject} sequence {seq}: {LAYOUT_HEADER} {layout!r}, this package's layout is "
                        f"{FINGERPRINT_TEXT!r} (qilinctl layout --json): update qilin_shm to the publisher's version")
                if len(msg.data) != RECORD_SIZE:
                    raise LayoutMismatch(
                        f"{msg.subject} sequence {seq}: {len(msg.data)}-byte body, a record is {RECORD_SIZE}")
                events.append(tick)
                raw.append((len(events) - 1, msg))
            self.stats.ticks += 1
        if raw:
            records = np.frombuffer(b"".join(m.data for _, m in raw), dtype=TICK_DTYPE)
            for (i, msg), record in zip(raw, records):
                if int(record["sequence"]) != events[i]["sequence"]:
                    raise ValueError(f"{msg.subject}: {SEQ_HEADER} {events[i]['sequence']} but the record says "
                                     f"{int(record['sequence'])}")
                events[i] = Tick(**events[i], record=record)
        return events


async def events(url, feed, *, core=False, durable=None, deliver="all", batch=512, stop=None,
                 prefix=None, stream=None, decoder=None, ready=None, connect_options=None):
    """Yields events (Tick, Gap, Missing) until `stop(decoder)` says so (checked after every
    batch; None: forever). JetStream unless `core`. Pass a `Decoder` to read its `stats`, an
    `asyncio.Event` as `ready` to learn when the subscription is in place on the server."""
    prefix = prefix or subject_prefix(feed)
    decoder = decoder if decoder is not None else Decoder()
    nc = await nats.connect(url, **(connect_options or {}))
    try:
        if core:
            sub = await nc.subscribe(f"{prefix}.>", pending_msgs_limit=1 << 20, pending_bytes_limit=1 << 30)
            await nc.flush()  # a round trip: the server has the subscription
            if ready is not None:
                ready.set()
            while stop is None or not stop(decoder):
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                for event in decoder.decode([msg]):
                    yield event
            return
        js = nc.jetstream()
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.ALL if durable else api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.NEW if deliver == "new" else api.DeliverPolicy.ALL,
        )
        psub = await js.pull_subscribe(f"{prefix}.>", durable=durable, stream=stream or stream_name(feed),
                                       config=config)
        if ready is not None:
            ready.set()
        while stop is None or not stop(decoder):
            try:
                msgs = await psub.fetch(batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for event in decoder.decode(msgs):
                yield event
            if durable and msgs:
                await msgs[-1].ack()  # AckPolicy.ALL: acks the whole batch
    finally:
        await nc.close()


def instrument_id(record):
    """A record's InstrumentID as text (NUL padding removed; "?" if it is not ASCII)."""
    value = record["instrument_id"]
    raw = value if isinstance(value, bytes) else bytes(np.asarray(value).tobytes())
    try:
        return raw.split(b"\0", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        return "?"


def _price(x):
    return "-" if x != x else f"{x:.4f}"


async def _main(args):
    stop = (lambda d: d.next is not None and d.next > args.until) if args.until else None
    exchanges = qilin_shm.EXCHANGES
    try:
        async for event in events(args.url, args.feed, core=args.core, durable=args.durable, deliver=args.deliver,
                                  stop=stop, prefix=args.prefix, stream=args.stream):
            if isinstance(event, Tick):
                if event.record is not None:
                    r = event.record
                    print(f"{event.sequence:>10} {exchanges.get(int(r['exchange']), '?'):<5} "
                          f"{instrument_id(r):<12} last {_price(r['last_price'])} "
                          f"bid {_price(r['bid_price'][0])} ask {_price(r['ask_price'][0])} volume {int(r['volume'])}")
                else:
                    j = event.json
                    print(f"{event.sequence:>10} {j['ExchangeID']:<5} {j['InstrumentID']:<12} last {j['LastPrice']} "
                          f"bid {j['BidPrice1']} ask {j['AskPrice1']} volume {j['Volume']}")
            elif isinstance(event, Gap):
                print(f"gap event: sequences {event.first}..{event.last} lost ({event.reason})", file=sys.stderr)
            elif isinstance(event, Missing):
                print(f"missing: sequences {event.first}..{event.last} never arrived", file=sys.stderr)
    except LayoutMismatch as e:
        print(f"nats_consumer: {e}", file=sys.stderr)
        return 2
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--feed", default="qilin", help="the feed name (the segment's; default qilin)")
    parser.add_argument("--prefix", help="subject prefix if qilin-nats has nats.subject_prefix (default qilin.<feed>)")
    parser.add_argument("--stream", help="stream name if qilin-nats has jetstream.stream (default QILIN_<FEED>)")
    parser.add_argument("--core", action="store_true", help="core NATS subscription instead of the JetStream stream")
    parser.add_argument("--durable", help="JetStream: a durable consumer of this name (acked, resumable)")
    parser.add_argument("--deliver", choices=("all", "new"), default="all",
                        help="JetStream, a new consumer: from the stream's first message or only new ones")
    parser.add_argument("--until", type=int, default=0,
                        help="stop once this sequence is delivered or covered (0: never)")
    args = parser.parse_args()
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

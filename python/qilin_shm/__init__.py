"""qilin_shm: a pure-Python reader of the qilin-feed shared-memory segment.

Standard library only, nothing compiled: ``pip install ./python`` installs it (``./python[numpy]``
adds numpy for the batch reads), or put ``python/`` on ``sys.path``; this one file, copied next to a
strategy as ``qilin_shm.py``, works alone too. It maps the segment read-only (file opened ``O_RDONLY``, mapping
``PROT_READ``), so it cannot corrupt it, and it never makes a syscall per tick.

    import qilin_shm
    with qilin_shm.Reader("/dev/shm/qilin") as r:
        r.seek_oldest()
        while True:
            ev = r.try_next()
            if ev is qilin_shm.Empty:
                continue                      # nothing new: spin, sleep or do other work
            if isinstance(ev, qilin_shm.Tick):
                print(ev.sequence, ev.instrument_id, ev.last_price, ev.bid_price[0])
            elif isinstance(ev, qilin_shm.Gap):
                print("lost", ev.first, "..", ev.last)
            elif isinstance(ev, qilin_shm.NewEpoch):
                print("the core restarted; sequences continue")

Layout
------
The byte layout is the Rust crate qilin-shm's (``shm-layout/src/layout.rs``). This module carries a
copy of every shared struct's field table (``LAYOUT``: name, offset, size and ``struct`` format of
each field) and *checks itself* against it at import: the fields of each struct must tile it
exactly, and each field's format must have the field's size. From the same tables it computes the
layout fingerprint (FNV-1a over every struct's name, size and fields, then the counter names) the
way ``shm-layout/src/descriptor.rs`` does, and refuses a segment whose header carries another one:
a stale copy of this file cannot misread a segment of another layout. The test suite also compares
``LAYOUT`` field by field with ``qilinctl layout --json`` and with the Rust ``layout::STRUCTS``.

Read protocol (the Rust ``Reader::try_next``, transcribed)
----------------------------------------------------------
Ring slot of sequence ``s``: ``ring_offset + (s & (ring_slots - 1)) * 384``; a slot is an 8-byte
stamp (``2s - 1`` while the writer writes it, ``2s`` once whole) followed by the 376-byte record.

1. load the stamp (``struct.unpack_from('<Q', mm, off)``): ``< 2s`` → not yet written (``Empty``);
   ``> 2s`` → overwritten (``Gap``); ``== 2s`` → go on;
2. copy the record: one ``mm[off + 8:off + 384]`` slice, i.e. one ``memcpy`` into a new ``bytes``;
3. load the stamp again: still ``2s`` → the copy is whole (decode it, ``Tick``); otherwise the
   writer lapped us during the copy → ``Gap``.

On a gap the reader resumes ``lap_headroom`` slots past the oldest sequence still in the ring
(computed from the write cursor; default ``ring_slots // 8``, ``Reader(path, lap_headroom=N)`` or
``set_lap_headroom``), never past the newest, and reports exactly the sequences it skipped, as the
Rust reader does.

Why this is sound, and where
----------------------------
Python has no atomics or fences; soundness rests on the hardware and on how CPython executes the
three steps, and is therefore claimed for **x86-64 only** (the module refuses to open a segment
on any other machine):

* **An aligned 8-byte load is atomic on x86-64.** Every stamp and header word sits on an 8-byte
  boundary of a page-aligned mapping. On a little-endian machine CPython's ``_struct`` swaps its
  native unpackers into the ``'<'`` table for the integer formats whose sizes agree, so
  ``'<Q'`` runs ``nu_ulonglong``, a ``memcpy`` of 8 bytes that compiles to one ``mov`` (checked on
  CPython 3.11's ``_struct`` with ``objdump``). A stamp is therefore never seen half-updated.
* **CPython performs the three accesses in program order.** Each is a separate C call reached
  through the interpreter's dynamic dispatch; no compiler can move a load of one across another,
  and nothing else in the interpreter touches the mapping.
* **x86-64 is TSO: a load is not reordered with older loads, a store not with older stores.** The
  writer's stores reach memory in its program order (busy stamp, record words, whole stamp: the
  Rust writer's Release fence and Release store compile to plain ordered ``mov``s on x86-64), and
  the reader's loads are satisfied in its program order. If any byte of the copy came from a later
  write of the slot, that write's busy-stamp store was visible before that byte, hence before the
  second stamp load, which therefore cannot read ``2s`` again: the torn copy is rejected. Inside
  the copy the order and width of the loads does not matter (glibc ``memcpy`` may use overlapping
  vector loads; with its default tunables it uses ``rep movsb``, whose internal accesses Intel
  does not order, only from 2 KiB up, not for 376 bytes); only that all of them fall between the
  two stamp loads, which TSO guarantees.
* Evidence, not proof: a shadow reader that repeats the three steps while the core laps a
  1024-slot ring at 10^6 ticks/s saw the second stamp differ a few times per 10^5 reads, the
  copied ``sequence`` then usually belonging to the next lap; ``try_next`` turned every such case
  into a ``Gap`` and returned no tick whose sequence was not the one asked for.

On a weakly ordered machine (AArch64, POWER) the same three Python statements would need load
fences Python cannot issue; this module is not supported there. The Rust reader is the reference
implementation; its protocol is argued in ``shm-layout/src/seqlock.rs`` and model-checked.

Values: absent prices are NaN (the core stores NaN for CTP's DBL_MAX). ``Tick`` has the field
names of Rust's ``TickRecord``; array fields are tuples; ``instrument_id`` is a ``str``.
"""

from __future__ import annotations

import collections
import mmap
import os
import platform
import struct
import sys
import time

__all__ = [
    "Reader", "Tick", "Gap", "NewEpoch", "Empty", "Instrument", "Snapshot", "Liveness", "Status",
    "SegmentError", "UnknownInstrument", "Contended", "LAYOUT", "FIELDS", "FINGERPRINT",
    "LAYOUT_VERSION", "MAGIC", "COUNTERS", "QUALITY", "EXCHANGES", "SOURCES", "layout_json",
    "LAP_HEADROOM_DIVISOR", "default_lap_headroom", "lap_resume", "decode_record",
]

# --------------------------------------------------------------------------------------------
# The layout: a copy of shm-layout/src/layout.rs, struct by struct, field by field.
# Each field: (name, offset, size, struct format). Checked at import and against the Rust side.
# --------------------------------------------------------------------------------------------

MAGIC = b"QILINSHM"
LAYOUT_VERSION = 1
BAR_MAGIC = b"QILINBAR"  # a bar segment's (qilin-bars; read it with qilin_shm.bars.BarReader)

# Order matters: it is the order `layout::STRUCTS` hashes into the fingerprint.
LAYOUT = {
    "Header": (1152, (
        ("identity", 0, 128, "128s"),
        ("session", 128, 128, "128s"),
        ("heartbeat", 256, 128, "128s"),
        ("cursor", 384, 128, "128s"),
        ("status", 512, 128, "128s"),
        ("counters", 640, 512, "512s"),
    )),
    "Identity": (128, (
        ("magic", 0, 8, "8s"),
        ("layout_version", 8, 4, "I"),
        ("header_size", 12, 4, "I"),
        ("fingerprint", 16, 8, "Q"),
        ("total_size", 24, 8, "Q"),
        ("created_ns", 32, 8, "q"),
        ("ring_slots", 40, 8, "Q"),
        ("slot_size", 48, 4, "I"),
        ("record_size", 52, 4, "I"),
        ("instrument_capacity", 56, 4, "I"),
        ("directory_entry_size", 60, 4, "I"),
        ("lvc_entry_size", 64, 4, "I"),
        ("reserved0", 68, 4, "I"),
        ("directory_offset", 72, 8, "Q"),
        ("lvc_offset", 80, 8, "Q"),
        ("ring_offset", 88, 8, "Q"),
        ("feed_name", 96, 32, "32s"),
    )),
    "Session": (128, (
        ("epoch", 0, 8, "Q"),
        ("writer_pid", 8, 8, "Q"),
        ("run_state", 16, 8, "Q"),
        ("started_ns", 24, 8, "q"),
        ("stopped_ns", 32, 8, "q"),
        ("directory_len", 40, 8, "Q"),
        ("reserved", 48, 80, "10Q"),
    )),
    "Heartbeat": (128, (
        ("heartbeat_ns", 0, 8, "q"),
        ("reserved", 8, 120, "15Q"),
    )),
    "Cursor": (128, (
        ("write_cursor", 0, 8, "Q"),
        ("reserved", 8, 120, "15Q"),
    )),
    "Status": (128, (
        ("version", 0, 8, "Q"),
        ("record", 8, 120, "120s"),
    )),
    "StatusRecord": (120, (
        ("link_state", 0, 4, "I"),
        ("active_source", 4, 4, "I"),
        ("trading_day", 8, 4, "I"),
        ("failovers", 12, 4, "I"),
        ("api_version", 16, 40, "40s"),
        ("front", 56, 64, "64s"),
    )),
    "Counters": (512, (
        ("values", 0, 512, "64Q"),
    )),
    "DirectoryEntry": (64, (
        ("instrument_id", 0, 32, "32s"),
        ("exchange_id", 32, 8, "8s"),
        ("exchange", 40, 1, "B"),
        ("reserved0", 41, 3, "3s"),
        ("volume_multiple", 44, 4, "I"),
        ("price_tick", 48, 8, "d"),
        ("reserved1", 56, 8, "1Q"),
    )),
    "LvcEntry": (384, (
        ("version", 0, 8, "Q"),
        ("record", 8, 376, "376s"),
    )),
    "Slot": (384, (
        ("stamp", 0, 8, "Q"),
        ("record", 8, 376, "376s"),
    )),
    "TickRecord": (376, (
        ("sequence", 0, 8, "Q"),
        ("exchange_time_ns", 8, 8, "q"),
        ("receive_ns", 16, 8, "q"),
        ("publish_ns", 24, 8, "q"),
        ("instrument_index", 32, 4, "I"),
        ("trading_day", 36, 4, "I"),
        ("action_day", 40, 4, "I"),
        ("update_time_ms", 44, 4, "I"),
        ("quality", 48, 4, "I"),
        ("exchange", 52, 1, "B"),
        ("source", 53, 1, "B"),
        ("reserved0", 54, 2, "2s"),
        ("instrument_id", 56, 32, "32s"),
        ("last_price", 88, 8, "d"),
        ("pre_settlement_price", 96, 8, "d"),
        ("pre_close_price", 104, 8, "d"),
        ("pre_open_interest", 112, 8, "d"),
        ("open_price", 120, 8, "d"),
        ("highest_price", 128, 8, "d"),
        ("lowest_price", 136, 8, "d"),
        ("volume", 144, 8, "q"),
        ("turnover", 152, 8, "d"),
        ("open_interest", 160, 8, "d"),
        ("close_price", 168, 8, "d"),
        ("settlement_price", 176, 8, "d"),
        ("upper_limit_price", 184, 8, "d"),
        ("lower_limit_price", 192, 8, "d"),
        ("pre_delta", 200, 8, "d"),
        ("curr_delta", 208, 8, "d"),
        ("average_price", 216, 8, "d"),
        ("banding_upper_price", 224, 8, "d"),
        ("banding_lower_price", 232, 8, "d"),
        ("bid_price", 240, 40, "5d"),
        ("ask_price", 280, 40, "5d"),
        ("bid_volume", 320, 20, "5i"),
        ("ask_volume", 340, 20, "5i"),
        ("reserved1", 360, 16, "2Q"),
    )),
}

# Header counters, in index order (shm-layout/src/codes.rs `counters!`; part of the fingerprint).
COUNTERS = (
    "ticks_received", "ticks_published", "handoff_full", "directory_full", "duplicates",
    "reject_size", "reject_id", "reject_exchange", "reject_price", "reject_time",
    "reject_unknown_instrument", "flag_stale_snapshot", "flag_volume_regression",
    "flag_repeated_second", "command_queue_full", "event_queue_full", "front_disconnects",
    "failovers", "udp_datagrams", "udp_receive_errors", "standby_ticks", "flag_unknown_product",
    "calendar_missing", "udp_refused",
)
COUNTER_SLOTS = 64

# `quality` bits of a tick (codes.rs `quality`).
QUALITY = {
    "stale_snapshot": 1 << 0,
    "volume_regression": 1 << 1,
    "turnover_regression": 1 << 2,
    "repeated_second": 1 << 3,
    "derived_action_day": 1 << 4,
    "absent_price": 1 << 5,
    "average_price_scaled": 1 << 6,  # retired: never set by current feeds (LAYOUT.md)
    "unknown_product": 1 << 7,
}
# Kinds of quality bits (LAYOUT.md, "Quality flags"): anomalies a user should look at, notes on
# how the feed normalized the tick.
QUALITY_ANOMALIES = 0x1 | 0x2 | 0x4 | 0x20 | 0x80
QUALITY_NOTES = 0x8 | 0x10 | 0x40
EXCHANGES = {1: "SHFE", 2: "INE", 3: "DCE", 4: "CZCE", 5: "CFFEX", 6: "GFEX"}
SOURCES = {1: "primary", 2: "backup", 3: "sim", 4: "replay", 5: "udp"}
RUN_STATES = {1: "starting", 2: "running", 3: "stopped"}

MAX_RING_SLOTS = 1 << 26
MAX_INSTRUMENTS = 1 << 20
CACHE_LINE = 128
PAGE = 4096
INSTRUMENT_ID_LEN = 32


def _check_layout():
    """The tables must describe structs with no padding, and each format must have its field's size."""
    for name, (size, fields) in LAYOUT.items():
        end = 0
        for field, offset, fsize, fmt in fields:
            if offset != end:
                raise AssertionError(f"qilin_shm.LAYOUT: {name}.{field} at {offset}, expected {end}")
            if struct.calcsize("<" + fmt) != fsize:
                raise AssertionError(f"qilin_shm.LAYOUT: {name}.{field} format {fmt!r} is not {fsize} bytes")
            end += fsize
        if end != size:
            raise AssertionError(f"qilin_shm.LAYOUT: {name} fields end at {end}, struct is {size} bytes")
        if struct.calcsize("<" + "".join(f[3] for f in fields)) != size:
            raise AssertionError(f"qilin_shm.LAYOUT: {name} format is not {size} bytes")


_check_layout()

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


def _fnv_bytes(h, data):
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _U64
    return ((h ^ 0xFF) * _FNV_PRIME) & _U64


def _layout_fingerprint(structs, names):
    """`descriptor::fingerprint(structs, names)`: `structs` as (name, (size, fields)) pairs, then
    the code names (counters of a tick segment; periods and flags of a bar segment)."""
    h = _FNV_OFFSET
    for name, (size, fields) in structs:
        h = _fnv_bytes(h, name.encode())
        h = _fnv_bytes(h, size.to_bytes(8, "little"))
        for field, offset, fsize, _fmt in fields:
            h = _fnv_bytes(h, field.encode())
            h = _fnv_bytes(h, offset.to_bytes(8, "little"))
            h = _fnv_bytes(h, fsize.to_bytes(8, "little"))
    for name in names:
        h = _fnv_bytes(h, name.encode())
    return h


# `descriptor::fingerprint(layout::STRUCTS, Counter::NAMES)`, from this module's own tables.
FINGERPRINT = _layout_fingerprint(LAYOUT.items(), COUNTERS)

# name → (offset, struct format char(s)) of every field this reader reads, flattened:
# "Identity.ring_slots", "Session.epoch", "TickRecord.bid_price", … (offsets within the struct).
FIELDS = {f"{s}.{f}": (offset, fmt) for s, (_size, fields) in LAYOUT.items() for f, offset, _sz, fmt in fields}


def _field(path):
    return FIELDS[path][0]


def _size(name):
    return LAYOUT[name][0]


HEADER_SIZE = _size("Header")
SLOT_SIZE = _size("Slot")
RECORD_SIZE = _size("TickRecord")
LVC_ENTRY_SIZE = _size("LvcEntry")
DIRECTORY_ENTRY_SIZE = _size("DirectoryEntry")
RECORD_IN_SLOT = _field("Slot.record")
RECORD_IN_LVC = _field("LvcEntry.record")

# Absolute offsets of the header words read atomically (region.rs `Word::offset`).
_SESSION = _field("Header.session")
OFF_EPOCH = _SESSION + _field("Session.epoch")
OFF_WRITER_PID = _SESSION + _field("Session.writer_pid")
OFF_RUN_STATE = _SESSION + _field("Session.run_state")
OFF_STARTED_NS = _SESSION + _field("Session.started_ns")
OFF_STOPPED_NS = _SESSION + _field("Session.stopped_ns")
OFF_DIRECTORY_LEN = _SESSION + _field("Session.directory_len")
OFF_HEARTBEAT = _field("Header.heartbeat") + _field("Heartbeat.heartbeat_ns")
OFF_WRITE_CURSOR = _field("Header.cursor") + _field("Cursor.write_cursor")
OFF_STATUS = _field("Header.status")
OFF_COUNTERS = _field("Header.counters") + _field("Counters.values")


def _struct_of(name):
    return struct.Struct("<" + "".join(f[3] for f in LAYOUT[name][1]))


# What a segment carries: ticks (this module) or bars (qilin_shm.bars). The reader validates a
# segment against its kind; a segment of the other kind is refused with the Rust reader's message.
_Kind = collections.namedtuple(
    "_Kind", "name magic layout_version fingerprint slot_size record_size lvc_entry_size lvc_per_instrument")
TICK_KIND = _Kind("tick", MAGIC, LAYOUT_VERSION, FINGERPRINT, SLOT_SIZE, RECORD_SIZE, LVC_ENTRY_SIZE, 1)
_KIND_OF_MAGIC = {MAGIC: "tick", BAR_MAGIC: "bar"}

_RECORD = _struct_of("TickRecord")
_IDENTITY = _struct_of("Identity")
_DIRECTORY_ENTRY = _struct_of("DirectoryEntry")
_STATUS_RECORD = _struct_of("StatusRecord")
assert _RECORD.size == RECORD_SIZE and _IDENTITY.size == _size("Identity")

# --------------------------------------------------------------------------------------------
# Values handed to the caller.
# --------------------------------------------------------------------------------------------

Tick = collections.namedtuple("Tick", [f[0] for f in LAYOUT["TickRecord"][1]])
Tick.__doc__ = ("One tick, with the field names of Rust's TickRecord. Prices are floats (NaN = absent); "
                "bid_price/ask_price/bid_volume/ask_volume are 5-tuples; instrument_id is a str.")
Gap = collections.namedtuple("Gap", "first last")
Gap.__doc__ = "Sequences first..=last were overwritten before this reader read them; reading goes on at last + 1."
NewEpoch = collections.namedtuple("NewEpoch", "previous current")
NewEpoch.__doc__ = "The core restarted (reported once); sequences continue."
Instrument = collections.namedtuple(
    "Instrument", "index instrument_id exchange_id exchange volume_multiple price_tick")
Snapshot = collections.namedtuple("Snapshot", "as_of ticks")
Snapshot.__doc__ = ("Every instrument's last value (each whole), in directory order; as_of is the write "
                    "cursor read before the first of them: ring reading continues at as_of + 1.")
Liveness = collections.namedtuple("Liveness", "state age_ns at_ns")
Liveness.__doc__ = ("state is 'live' or 'stale' (age_ns = heartbeat age, at_ns None) or 'stopped' "
                    "(at_ns = when it stopped, age_ns None).")
Status = collections.namedtuple("Status", "version link_state active_source trading_day failovers api_version front")


class _EmptyType:
    __slots__ = ()

    def __repr__(self):
        return "Empty"

    def __bool__(self):
        return False


Empty = _EmptyType()
"""Returned by try_next when nothing new has been published (falsy)."""


class SegmentError(Exception):
    """The segment cannot be opened or is not one this reader can read. `kind` says why."""

    def __init__(self, kind, path, message):
        super().__init__(message)
        self.kind = kind
        self.path = path


class UnknownInstrument(LookupError):
    """No such instrument index or InstrumentID in the directory."""


class Contended(RuntimeError):
    """A last-value or status read raced with the writer on every attempt; try again."""


def _text(raw):
    """A NUL-padded fixed field as text; '?' if it is not ASCII (Rust `id_str(..).unwrap_or("?")`)."""
    raw = raw.split(b"\0", 1)[0]
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return "?"


def _build_decoder():
    """Source of `decode(values) -> Tick` for the flat tuple `_RECORD.unpack` returns: scalars
    pass through, arrays become tuples, instrument_id becomes str (through a cache)."""
    parts = []
    i = 0
    for name, _offset, _size, fmt in LAYOUT["TickRecord"][1]:
        count = int(fmt[:-1]) if fmt[:-1] and fmt[-1] != "s" else 1
        if name == "instrument_id":
            parts.append(f"_ids.get(v[{i}]) or _intern_id(v[{i}])")
        elif count == 1:
            parts.append(f"v[{i}]")
        else:
            parts.append("(" + ", ".join(f"v[{i + k}]" for k in range(count)) + ",)")
        i += count
    assert i == len(_RECORD.unpack(bytes(RECORD_SIZE)))
    return "def decode(v):\n    return _new(Tick, (" + ", ".join(parts) + "))\n"


_ids = {}


def _intern_id(raw):
    text = _text(raw)
    if len(_ids) < 1 << 16:
        _ids[raw] = text
    return text


_ns = {"_new": tuple.__new__, "Tick": Tick, "_ids": _ids, "_intern_id": _intern_id}
exec(_build_decoder(), _ns)
_decode_values = _ns["decode"]
_unpack_record = _RECORD.unpack


def decode_record(record: bytes) -> Tick:
    """A Tick from the 376 bytes of a TickRecord (one struct.unpack)."""
    return _decode_values(_unpack_record(record))


def layout_json():
    """This module's layout in the shape of `qilinctl layout --json` (for the self-check tests)."""
    return {
        "layout_version": LAYOUT_VERSION,
        "fingerprint": f"{FINGERPRINT:#018x}",
        "magic": MAGIC.decode(),
        "structs": [
            {"name": name, "size": size,
             "fields": [{"name": f, "offset": o, "size": s, "format": fmt} for f, o, s, fmt in fields]}
            for name, (size, fields) in LAYOUT.items()
        ],
        "counters": list(COUNTERS),
        "quality": [{"bit": bit, "name": name} for name, bit in QUALITY.items()],
        "quality_anomalies": QUALITY_ANOMALIES,
        "quality_notes": QUALITY_NOTES,
        "reader": {"lap_headroom_divisor": LAP_HEADROOM_DIVISOR},
    }


# --------------------------------------------------------------------------------------------
# Geometry (region.rs `Geometry::new`).
# --------------------------------------------------------------------------------------------

def _align_up(value, to):
    return -(-value // to) * to


def geometry(ring_slots, instrument_capacity, kind=None):
    """Offsets of the regions for these capacities (of a tick segment, or of `kind`'s); raises
    ValueError (with Rust's wording) if unusable."""
    kind = kind or TICK_KIND
    if ring_slots < 2 or ring_slots > MAX_RING_SLOTS or ring_slots & (ring_slots - 1):
        raise ValueError(f"ring_slots = {ring_slots}: must be a power of two between 2 and {MAX_RING_SLOTS}")
    if not 1 <= instrument_capacity <= MAX_INSTRUMENTS:
        raise ValueError(
            f"instrument_capacity = {instrument_capacity}: must be between 1 and {MAX_INSTRUMENTS}")
    directory_offset = _align_up(HEADER_SIZE, CACHE_LINE)
    lvc_offset = _align_up(directory_offset + instrument_capacity * DIRECTORY_ENTRY_SIZE, CACHE_LINE)
    ring_offset = _align_up(lvc_offset + instrument_capacity * kind.lvc_per_instrument * kind.lvc_entry_size, PAGE)
    total_size = _align_up(ring_offset + ring_slots * kind.slot_size, PAGE)
    return {
        "ring_slots": ring_slots, "instrument_capacity": instrument_capacity,
        "directory_offset": directory_offset, "lvc_offset": lvc_offset,
        "ring_offset": ring_offset, "total_size": total_size,
    }


LAP_HEADROOM_DIVISOR = 8
"""``ring_slots // LAP_HEADROOM_DIVISOR`` is a lapped reader's default headroom (Rust
``qilin_shm::LAP_HEADROOM_DIVISOR``, C ``QILIN_LAP_HEADROOM_DIVISOR``)."""


def default_lap_headroom(ring_slots):
    """A lapped reader's default headroom: ``ring_slots // 8`` slots (Rust ``default_lap_headroom``).
    A reader that was lapped is, for now, slower than the writer; resuming at the oldest slot hands
    it the slot the writer overwrites next. An eighth of a ring gives it that many writer ticks
    before the next lap and keeps seven eighths to catch up through."""
    return ring_slots // LAP_HEADROOM_DIVISOR


def lap_resume(want, oldest, cursor, headroom):
    """Where a reader lapped while wanting `want` resumes (Rust ``reader::lap_resume``):
    ``oldest + headroom``, never past ``cursor + 1`` and never before ``want + 1``, so the gap
    ``want..resume - 1`` is never empty and never re-reports a sequence."""
    return max(min(oldest + headroom, cursor + 1), want + 1)


def _supported_machine():
    return sys.byteorder == "little" and platform.machine().lower() in ("x86_64", "amd64")


VERSIONED_ATTEMPTS = 1024
SNAPSHOT_ATTEMPTS = 64


class Reader:
    """A read-only view of a segment with its own cursor. Starts at the newest sequence (only new
    ticks), like the Rust reader; use seek_oldest() / seek(seq) to start elsewhere."""

    LAYOUT = LAYOUT
    FIELDS = FIELDS
    FINGERPRINT = FINGERPRINT
    LAYOUT_VERSION = LAYOUT_VERSION
    KIND = TICK_KIND

    def __init__(self, path="/dev/shm/qilin", lap_headroom=None):
        self.path = os.fspath(path)
        self._mm = None
        if not _supported_machine():
            raise SegmentError(
                "platform", self.path,
                f"qilin_shm reads segments only on little-endian x86-64 (its soundness argument is "
                f"x86-64 TSO); this is {platform.machine()} — use the Rust or C reader")
        self._mm, geo = _open_validated(self.path, kind=self.KIND)
        self._slot_size = self.KIND.slot_size
        self._record_end = 8 + self.KIND.record_size
        self.identity = geo["identity"]
        self.ring_slots = geo["ring_slots"]
        self.instrument_capacity = geo["instrument_capacity"]
        self._mask = self.ring_slots - 1
        self._ring = geo["ring_offset"]
        self._lvc = geo["lvc_offset"]
        self._dir = geo["directory_offset"]
        self.feed_name = _text(self.identity["feed_name"])
        self.set_lap_headroom(default_lap_headroom(self.ring_slots) if lap_headroom is None else lap_headroom)
        self.epoch = self._word(OFF_EPOCH)
        self._next = 1
        self.seek_newest()

    # -- lifetime ---------------------------------------------------------------------------
    def close(self):
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- header words -----------------------------------------------------------------------
    def _word(self, offset, _u=struct.Struct("<Q").unpack_from):
        return _u(self._mm, offset)[0]

    def write_cursor(self):
        """Last published sequence (0 if none)."""
        return self._word(OFF_WRITE_CURSOR)

    def current_epoch(self):
        """Epoch in the header now (self.epoch is the one this reader last reported)."""
        return self._word(OFF_EPOCH)

    def writer_pid(self):
        return self._word(OFF_WRITER_PID)

    def run_state(self):
        """'starting', 'running', 'stopped', or None (never started / unknown)."""
        return RUN_STATES.get(self._word(OFF_RUN_STATE))

    def heartbeat_ns(self):
        """Last heartbeat, UTC ns."""
        return struct.unpack_from("<q", self._mm, OFF_HEARTBEAT)[0]

    def liveness(self, now_ns=None, stale_after_ns=1_000_000_000):
        """Live, stale (dead or stalled writer) or stopped (clean shutdown). now_ns: UTC ns
        (default time.time_ns())."""
        if self._word(OFF_RUN_STATE) == 3:
            return Liveness("stopped", None, struct.unpack_from("<q", self._mm, OFF_STOPPED_NS)[0])
        if now_ns is None:
            now_ns = time.time_ns()
        age = now_ns - self.heartbeat_ns()
        # A heartbeat further ahead than the threshold: the clock stepped back since; stale.
        stale = age > stale_after_ns or age < -stale_after_ns
        return Liveness("stale" if stale else "live", age, None)

    def counter(self, name):
        """A header counter by name ('ticks_published', …; see COUNTERS)."""
        try:
            index = COUNTERS.index(name)
        except ValueError:
            raise KeyError(f"no counter {name!r}; counters: {', '.join(COUNTERS)}") from None
        return self._word(OFF_COUNTERS + 8 * index)

    def counters(self):
        return {name: self._word(OFF_COUNTERS + 8 * i) for i, name in enumerate(COUNTERS)}

    def status(self):
        """The core's link status, consistent (seqlock'd); raises Contended if it kept changing."""
        size = _size("StatusRecord")
        raw, version = self._read_versioned(OFF_STATUS, size, VERSIONED_ATTEMPTS)
        if raw is None:
            raw = bytes(size)
        link, source, day, failovers, api, front = _STATUS_RECORD.unpack(raw)
        return Status(version, link, source, day, failovers, _text(api), _text(front))

    # -- cursor -----------------------------------------------------------------------------
    @property
    def next_sequence(self):
        """The sequence the next Tick returned by try_next will have."""
        return self._next

    def _oldest_available(self, cursor):
        return max(cursor + 1 - (self._mask + 1), 1)

    def seek_newest(self):
        """Only ticks published from now on."""
        self._next = self.write_cursor() + 1

    def seek_oldest(self):
        """The oldest sequence still in the ring. Its slot is the next one the writer overwrites,
        so on a busy ring the first read is often a Gap (which, like every lap, skips the lap
        headroom too)."""
        self._next = self._oldest_available(self.write_cursor())

    def seek(self, sequence):
        """A given sequence (e.g. a saved cursor + 1); if it is gone, the first read reports the gap."""
        self._next = max(int(sequence), 1)

    def try_next(self):
        """The next event: a Tick (a Bar for a BarReader), Gap(first, last), NewEpoch(previous,
        current), or Empty. Never blocks, never returns a torn record."""
        event = self.try_next_raw()
        return self._decode(event) if event.__class__ is bytes else event

    def try_next_raw(self, _u=struct.Struct("<Q").unpack_from):
        """``try_next`` with the record as its raw bytes (for numpy: ``qilin_shm.batch``)."""
        mm = self._mm
        epoch = _u(mm, OFF_EPOCH)[0]
        if epoch != self.epoch:
            previous, self.epoch = self.epoch, epoch
            return NewEpoch(previous, epoch)
        want = self._next
        off = self._ring + (want & self._mask) * self._slot_size
        done = want << 1
        seen = _u(mm, off)[0]                              # 1. stamp
        if seen == done:
            record = mm[off + 8:off + self._record_end]    # 2. one memcpy of the record
            if _u(mm, off)[0] == done:                     # 3. stamp again: unchanged → whole
                self._next = want + 1
                return record
            return self._lapped(want)
        if seen < done:
            return Empty
        return self._lapped(want)

    # The record's bytes → its tuple (decode_record; qilin_shm.bars' BarReader: decode_bar).
    _decode = staticmethod(decode_record)

    def _lapped(self, want):
        cursor = self.write_cursor()
        resume = lap_resume(want, self._oldest_available(cursor), cursor, self.lap_headroom)
        self._next = resume
        return Gap(want, resume - 1)

    def set_lap_headroom(self, slots):
        """After being lapped, resume `slots` past the oldest sequence still in the ring instead of
        at it: the oldest slot is the one the writer overwrites next, so a reader resuming there is
        lapped again after a single tick. The skipped sequences are part of the reported Gap.
        Clamped to ring_slots - 1; 0 resumes at the oldest. Default (``lap_headroom=None`` in the
        constructor): ``ring_slots // 8`` (``default_lap_headroom``), as the Rust and C readers."""
        slots = int(slots)
        if slots < 0:
            raise ValueError(f"lap_headroom = {slots}: must be >= 0")
        self.lap_headroom = min(slots, self._mask)

    def __iter__(self):
        """Events forever, spinning (with a short sleep after a run of Empty) while nothing is new."""
        idle = 0
        while True:
            ev = self.try_next()
            if ev is Empty:
                idle += 1
                if idle > 1000:
                    time.sleep(0.0001)
                continue
            idle = 0
            yield ev

    # -- directory and last values ----------------------------------------------------------
    def directory_len(self):
        return min(self._word(OFF_DIRECTORY_LEN), self.instrument_capacity)

    def _entry(self, index):
        values = _DIRECTORY_ENTRY.unpack_from(self._mm, self._dir + index * DIRECTORY_ENTRY_SIZE)
        iid, xid, exchange, _r0, multiple, tick, _r1 = values
        return Instrument(index, _text(iid), _text(xid), exchange, multiple, tick)

    def instrument(self, index):
        """Directory entry `index`, or None if not published."""
        return self._entry(index) if 0 <= index < self.directory_len() else None

    def instruments(self):
        """Every directory entry, in index order."""
        return [self._entry(i) for i in range(self.directory_len())]

    def find_instrument(self, instrument_id):
        """Index of an InstrumentID, or None (linear scan: resolve once, then use the index)."""
        raw = instrument_id.encode("ascii", "replace") if isinstance(instrument_id, str) else bytes(instrument_id)
        if len(raw) >= INSTRUMENT_ID_LEN or b"\0" in raw or not raw:
            return None
        padded = raw.ljust(INSTRUMENT_ID_LEN, b"\0")
        mm = self._mm
        for i in range(self.directory_len()):
            off = self._dir + i * DIRECTORY_ENTRY_SIZE
            if mm[off:off + INSTRUMENT_ID_LEN] == padded:
                return i
        return None

    def _read_versioned(self, offset, size, attempts, _u=struct.Struct("<Q").unpack_from):
        """A classic seqlock read: (bytes, version), (None, 0) if never written; Contended if every
        attempt raced with the writer (or a writer died mid-write)."""
        mm = self._mm
        for _ in range(attempts):
            seen = _u(mm, offset)[0]
            if seen == 0:
                return None, 0
            if not seen & 1:
                data = mm[offset + 8:offset + 8 + size]
                if _u(mm, offset)[0] == seen:
                    return data, seen
        raise Contended(f"{self.path}: record at offset {offset} kept changing while being read")

    def latest(self, index_or_instrument_id):
        """The last tick of an instrument (index or InstrumentID), None if it has none yet.
        Raises UnknownInstrument, or Contended if every attempt raced with the writer."""
        index = index_or_instrument_id
        if not isinstance(index, int):
            index = self.find_instrument(index_or_instrument_id)
            if index is None:
                raise UnknownInstrument(f"instrument {index_or_instrument_id!r} is not in {self.path}'s directory")
        if not 0 <= index < self.directory_len():
            raise UnknownInstrument(f"instrument index {index} is not in {self.path}'s directory")
        raw, _version = self._read_versioned(self._lvc + index * LVC_ENTRY_SIZE, RECORD_SIZE, VERSIONED_ATTEMPTS)
        return None if raw is None else _decode_values(_unpack_record(raw))

    def snapshot(self):
        """Every instrument's last value (each whole), with the write cursor read before the first."""
        as_of = self.write_cursor()
        ticks = []
        for index in range(self.directory_len()):
            for attempt in range(SNAPSHOT_ATTEMPTS + 1):
                try:
                    tick = self.latest(index)
                    break
                except Contended:
                    if attempt == SNAPSHOT_ATTEMPTS:
                        raise
                    time.sleep(0)
            if tick is not None:
                ticks.append(tick)
        return Snapshot(as_of, ticks)


# The mapping is pre-faulted once validated, as the Rust and C readers' are, so a new reader's first
# lap of the ring takes no page fault (one every 11 to 170 slots otherwise), and a large file that is
# not a segment is refused before any of its pages is mapped. MADV_POPULATE_READ (Linux >= 5.14) does
# it in one call; the mmap module does not name it, so its value comes from <linux/mman.h>. Where it
# is missing or refused, _prefault touches every page instead.
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else None)


def _prefault(mm):
    """Read one byte in every 4 KiB of ``mm``, mapping each page now (MADV_POPULATE_READ's work)."""
    for offset in range(0, len(mm), 4096):
        mm[offset]


def _populate(mm):
    """Pre-fault every page of a validated mapping."""
    if _MADV_POPULATE_READ is not None and hasattr(mm, "madvise"):
        try:
            mm.madvise(_MADV_POPULATE_READ)
            return
        except OSError:
            pass  # a kernel before 5.14 (EINVAL)
    _prefault(mm)


def _open_validated(path, populate=True, kind=None):
    """Open O_RDONLY, map PROT_READ, validate as mapping.rs `open_read_only` + `validate` do, in the
    same order and with the same messages. The mapping is pre-faulted unless ``populate`` is false."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SegmentError("io", path, f"opening {path}: {e.strerror} (os error {e.errno})") from e
    try:
        try:
            length = os.fstat(fd).st_size
        except OSError as e:
            raise SegmentError("io", path, f"reading metadata of {path}: {e.strerror} (os error {e.errno})") from e
        if length == 0:
            raise SegmentError("not_initialised", path, _not_initialised(path))
        try:
            mm = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except ValueError:
            # "cannot mmap an empty file": emptied between fstat and mmap (a writer re-creating it).
            raise SegmentError("not_initialised", path, _not_initialised(path)) from None
        except OSError as e:
            raise SegmentError("io", path, f"mapping {path}: {e.strerror} (os error {e.errno})") from e
    finally:
        os.close(fd)  # the mapping keeps the file referenced
    try:
        geometry = _validate(mm, len(mm), path, kind)
    except BaseException:
        mm.close()
        raise
    if populate:
        _populate(mm)
    return mm, geometry


def _not_initialised(path):
    return f"segment {path} is not initialised (no magic yet): its writer is starting or died while creating it"


def _validate(mm, length, path, kind=None):
    kind = kind or TICK_KIND
    if length == 0:
        raise SegmentError("not_initialised", path, _not_initialised(path))
    if length < HEADER_SIZE:
        raise SegmentError("truncated", path, f"segment {path} is truncated: {length} bytes, needs {HEADER_SIZE}")
    magic = struct.pack("<Q", struct.unpack_from("<Q", mm, 0)[0])  # one atomic load, as Rust's Acquire load
    if magic == bytes(8):
        raise SegmentError("not_initialised", path, _not_initialised(path))
    if magic != kind.magic:
        found = _KIND_OF_MAGIC.get(magic)
        if found is not None:
            raise SegmentError(
                "wrong_kind", path,
                f"segment {path} is a {found} segment, not a {kind.name} segment: open it with the {found} reader")
        raise SegmentError(
            "bad_magic", path,
            f"{path} is not a qilin segment: magic {_hexlist(magic)}, expected {_hexlist(kind.magic)} "
            f"(\"{kind.magic.decode()}\")")
    names = [f[0] for f in LAYOUT["Identity"][1]]
    identity = dict(zip(names, _IDENTITY.unpack_from(mm, 0)))
    identity["magic"] = magic
    if identity["layout_version"] != kind.layout_version:
        raise SegmentError(
            "version", path,
            f"segment {path} has layout version {identity['layout_version']}, this build reads version "
            f"{kind.layout_version}; rebuild the reader against the writer's qilin-shm")
    if identity["fingerprint"] != kind.fingerprint:
        raise SegmentError(
            "fingerprint", path,
            f"segment {path} has layout fingerprint {identity['fingerprint']:#018x}, this build has "
            f"{kind.fingerprint:#018x}; the writer and this reader disagree on field offsets, rebuild against "
            f"the same qilin-shm")
    try:
        geo = geometry(identity["ring_slots"], identity["instrument_capacity"], kind)
    except ValueError as e:
        raise SegmentError("corrupt", path, f"segment {path} has a corrupt header: {e}") from None
    expected = dict(identity)
    expected.update(
        header_size=HEADER_SIZE, total_size=geo["total_size"], slot_size=kind.slot_size,
        record_size=kind.record_size, directory_entry_size=DIRECTORY_ENTRY_SIZE, lvc_entry_size=kind.lvc_entry_size,
        reserved0=0,
        directory_offset=geo["directory_offset"], lvc_offset=geo["lvc_offset"], ring_offset=geo["ring_offset"])
    wrong = [k for k in names if expected[k] != identity[k]]
    if wrong:
        found = ", ".join(f"{k}: {identity[k]}" for k in wrong)
        want = ", ".join(f"{k}: {expected[k]}" for k in wrong)
        raise SegmentError(
            "corrupt", path,
            f"segment {path} has a corrupt header: identity line does not match its own capacities: "
            f"found {{ {found} }}, expected {{ {want} }}")
    if length < geo["total_size"]:
        raise SegmentError(
            "truncated", path, f"segment {path} is truncated: {length} bytes, needs {geo['total_size']}")
    geo["identity"] = identity
    return geo


def _hexlist(raw):
    """Rust's `{:02x?}` of a byte array."""
    return "[" + ", ".join(f"{b:02x}" for b in raw) + "]"


def _keepup(path, seconds):
    """Reads from the newest tick for `seconds`; prints ticks read, gaps, sequences lost and the
    largest lag seen (write cursor minus the reader's position). A reader keeps up at the writer's
    rate when it sees no gap and the lag stays well below the ring size."""
    reader = Reader(path)
    ticks = gaps = lost = max_lag = 0
    start = reader.next_sequence
    began = time.monotonic()
    end = began + seconds
    check = 0
    try_next = reader.try_next
    while True:
        event = try_next()
        if event is Empty:
            if time.monotonic() > end:
                break
            continue
        if event.__class__ is Tick:
            ticks += 1
            check += 1
            if check >= 4096:
                check = 0
                max_lag = max(max_lag, reader.write_cursor() - reader.next_sequence + 1)
                if time.monotonic() > end:
                    break
        elif event.__class__ is Gap:
            gaps += 1
            lost += event.last - event.first + 1
    elapsed = time.monotonic() - began
    published = reader.write_cursor() - start + 1
    print(f"{elapsed:.1f} s: published {published} ({published / elapsed:,.0f}/s), read {ticks}, "
          f"gaps {gaps} ({lost} lost), max lag {max_lag} of {reader.ring_slots} slots")
    return 1 if gaps else 0

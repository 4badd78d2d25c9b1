"""qilin_shm.bars: the bar segment qilin-bars writes (docs/BARS.md, shm-layout/LAYOUT.md "Bar segments").

A bar segment is a tick segment's header and directory with a ``BarRecord`` (184 bytes) in each ring
slot and last-value entry (192 bytes each, stamp or version first) and six last-value entries per
instrument, one per period. It is read exactly as ticks are, with the same protocol:

    from qilin_shm.bars import BarReader
    with BarReader("/dev/shm/qilin-bars") as r:
        r.seek_oldest()
        while (event := r.try_next()):           # a Bar, a Gap, a NewEpoch; Empty (falsy) when none
            print(event)
        last = r.latest("rb2605", "1m")           # the instrument's last closed 1-minute bar

``qilin_shm.Reader`` refuses a bar segment and ``BarReader`` a tick segment with the Rust reader's
message (``SegmentError.kind == "wrong_kind"``). With numpy, ``qilin_shm.batch.BAR_DTYPE`` is the
record's dtype and ``qilin_shm.batch.read_bars(reader, n)`` reads up to n bars into an array.
"""

import collections
import struct

from . import (
    BAR_MAGIC, COUNTERS, Gap, LAYOUT, NewEpoch, Reader, UnknownInstrument, VERSIONED_ATTEMPTS, _Kind,
    _layout_fingerprint, _text,
)

__all__ = ["BarReader", "Bar", "BAR_LAYOUT", "BAR_FINGERPRINT", "BAR_LAYOUT_VERSION", "BAR_PERIODS", "BAR_FLAGS",
           "BAR_MAGIC", "BAR_LVC_PER_INSTRUMENT", "decode_bar"]

BAR_LAYOUT_VERSION = 1
BAR_LVC_PER_INSTRUMENT = 6

# A copy of shm-layout/src/layout.rs's bar structs, checked against `qilinctl layout --json`
# (python/tests/test_bars_layout.py) and, through the fingerprint, at every open.
BAR_LAYOUT = {
    "BarLvcEntry": (192, (
        ("version", 0, 8, "Q"),
        ("record", 8, 184, "184s"),
    )),
    "BarSlot": (192, (
        ("stamp", 0, 8, "Q"),
        ("record", 8, 184, "184s"),
    )),
    "BarRecord": (184, (
        ("sequence", 0, 8, "Q"),
        ("start_ns", 8, 8, "q"),
        ("end_ns", 16, 8, "q"),
        ("publish_ns", 24, 8, "q"),
        ("instrument_index", 32, 4, "I"),
        ("trading_day", 36, 4, "I"),
        ("flags", 40, 4, "I"),
        ("ticks", 44, 4, "I"),
        ("exchange", 48, 1, "B"),
        ("period", 49, 1, "B"),
        ("reserved0", 50, 6, "6s"),
        ("instrument_id", 56, 32, "32s"),
        ("open", 88, 8, "d"),
        ("high", 96, 8, "d"),
        ("low", 104, 8, "d"),
        ("close", 112, 8, "d"),
        ("volume", 120, 8, "q"),
        ("turnover", 128, 8, "d"),
        ("open_interest", 136, 8, "d"),
        ("open_interest_change", 144, 8, "d"),
        ("first_sequence", 152, 8, "Q"),
        ("last_sequence", 160, 8, "Q"),
        ("reserved1", 168, 16, "2Q"),
    )),
}

# Bar periods (BarRecord.period) and flag bits (BarRecord.flags), as qilin_shm::codes.
BAR_PERIODS = {1: "1m", 2: "5m", 3: "15m", 4: "30m", 5: "60m", 6: "1d"}
BAR_FLAGS = {"volume_decrease": 0x1, "turnover_decrease": 0x2, "partial": 0x4, "gap": 0x8, "absent_price": 0x10,
             "unknown_product": 0x20}

# The structs of a bar segment in `layout::BAR_STRUCTS` order: the tick segment's header and
# directory, then the bar's own.
_SHARED = ("Header", "Identity", "Session", "Heartbeat", "Cursor", "Status", "StatusRecord", "Counters",
           "DirectoryEntry")


def _bar_structs():
    return [(name, LAYOUT[name]) for name in _SHARED] + list(BAR_LAYOUT.items())


# `descriptor::fingerprint(layout::BAR_STRUCTS, period names + flag names)`.
BAR_FINGERPRINT = _layout_fingerprint(_bar_structs(), list(BAR_PERIODS.values()) + list(BAR_FLAGS))
assert COUNTERS  # the tick module's tables are loaded (the shared structs come from them)

for _name, (_size, _fields) in BAR_LAYOUT.items():
    assert sum(f[2] for f in _fields) == _size == struct.calcsize("<" + "".join(f[3] for f in _fields)), _name

BAR_SLOT_SIZE = BAR_LAYOUT["BarSlot"][0]
BAR_RECORD_SIZE = BAR_LAYOUT["BarRecord"][0]
BAR_KIND = _Kind("bar", BAR_MAGIC, BAR_LAYOUT_VERSION, BAR_FINGERPRINT, BAR_SLOT_SIZE, BAR_RECORD_SIZE,
                 BAR_LAYOUT["BarLvcEntry"][0], BAR_LVC_PER_INSTRUMENT)

_BAR = struct.Struct("<" + "".join(f[3] for f in BAR_LAYOUT["BarRecord"][1]))

Bar = collections.namedtuple("Bar", [f[0] for f in BAR_LAYOUT["BarRecord"][1]])
Bar.__doc__ = ("One bar, with the field names of Rust's BarRecord. Prices are floats (NaN: no tick of the bar "
               "had one); instrument_id is a str; period a code of BAR_PERIODS; flags bits of BAR_FLAGS.")


def decode_bar(raw: bytes) -> Bar:
    """A Bar from the 184 bytes of a BarRecord."""
    values = _BAR.unpack(raw)
    out = []
    i = 0
    for name, _offset, _size, fmt in BAR_LAYOUT["BarRecord"][1]:
        count = int(fmt[:-1]) if fmt[:-1] and fmt[-1] != "s" else 1
        if name == "instrument_id":
            out.append(_text(values[i]))
        elif count == 1:
            out.append(values[i])
        else:
            out.append(tuple(values[i:i + count]))
        i += count
    return Bar(*out)


def _period_code(period):
    if isinstance(period, int) and period in BAR_PERIODS:
        return period
    for code, name in BAR_PERIODS.items():
        if name == period:
            return code
    raise ValueError(f"period {period!r} is not one of {', '.join(BAR_PERIODS.values())} (or codes 1 to 6)")


class BarReader(Reader):
    """A read-only view of a bar segment with its own cursor: every method of ``qilin_shm.Reader``
    (seek, liveness, directory, ...), with ``try_next`` returning ``Bar`` records and ``latest``
    taking a period. Starts at the newest bar."""

    KIND = BAR_KIND

    def __init__(self, path="/dev/shm/qilin-bars", lap_headroom=None):
        super().__init__(path, lap_headroom)

    # try_next and try_next_raw are the tick reader's: the slot and record sizes come from KIND.
    _decode = staticmethod(decode_bar)

    def latest(self, index_or_instrument_id, period):
        """The last closed bar of an instrument (index or InstrumentID) and period ("1m" ... "1d" or
        its code), None if it has none yet. Raises UnknownInstrument, or Contended."""
        code = _period_code(period)
        index = index_or_instrument_id
        if not isinstance(index, int):
            index = self.find_instrument(index_or_instrument_id)
            if index is None:
                raise UnknownInstrument(f"instrument {index_or_instrument_id!r} is not in {self.path}'s directory")
        if not 0 <= index < self.directory_len():
            raise UnknownInstrument(f"instrument index {index} is not in {self.path}'s directory")
        entry = index * BAR_LVC_PER_INSTRUMENT + code - 1
        raw, _version = self._read_versioned(self._lvc + entry * BAR_SLOT_SIZE, BAR_RECORD_SIZE, VERSIONED_ATTEMPTS)
        return None if raw is None else decode_bar(raw)

    def snapshot(self):
        raise NotImplementedError("a bar segment has a last bar per instrument and period: use latest(id, period)")


assert Gap  # re-exported events: try_next returns qilin_shm's Gap and NewEpoch

"""qilin_shm.batch against a segment written by this test, slot by slot, with the Rust writer's
stamp protocol: the dtypes, read_batch (runs, ring wrap, laps with and without headroom, a copy
overwritten mid-read, a slot completed mid-read, restarts), the vectorised snapshot and as_pandas.
The same reads against a real qilin-core, compared with the Rust reader bit for bit, are in
core/tests/reader_python.rs; the dtype against `qilinctl layout --json` is in test_batch_layout.py.
"""

import math
import mmap
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import qilin_shm as q
from qilin_shm import batch
from qilin_shm.batch import TICK_DTYPE

from conftest import PYTHON_DIR

INSTRUMENTS = [b"rb2605", b"m2605", b"IF2606"]


def record_values(sequence, instrument_index, last_price, bid, ask):
    """The flat value tuple of a TickRecord (the module's own struct format)."""
    values, index = [], {}
    for name, _off, _size, fmt in q.LAYOUT["TickRecord"][1]:
        count = int(fmt[:-1]) if fmt[:-1] and fmt[-1] != "s" else 1
        index[name] = len(values)
        if fmt.endswith("s"):
            values.append(b"")
        elif fmt.endswith("d"):
            values.extend([float("nan")] * count)
        else:
            values.extend([0] * count)
    values[index["sequence"]] = sequence
    values[index["exchange_time_ns"]] = 1_780_000_000_000_000_000 + sequence
    values[index["receive_ns"]] = 1_780_000_000_000_000_100 + sequence
    values[index["instrument_index"]] = instrument_index
    values[index["trading_day"]] = 20260604
    values[index["action_day"]] = 20260603
    values[index["update_time_ms"]] = 21 * 3_600_000 + sequence
    values[index["exchange"]] = 1
    values[index["source"]] = 3
    values[index["reserved0"]] = b"\x01\x02"  # not NUL: the bytes must survive the dtype
    values[index["instrument_id"]] = INSTRUMENTS[instrument_index]
    values[index["last_price"]] = last_price
    values[index["volume"]] = -5 if sequence == 3 else 10 * sequence  # signed
    values[index["bid_price"]] = bid
    values[index["ask_price"]] = ask
    values[index["bid_volume"]] = 7
    values[index["ask_volume"] + 4] = -1
    values[index["reserved1"] + 1] = 2**64 - 1
    return values


def canonical(event):
    """An event as something == compares exactly (a Tick as its record's bytes: NaN == NaN)."""
    if not isinstance(event, q.Tick):
        return event
    flat = []
    for name, value in zip(q.Tick._fields, event):
        if isinstance(value, tuple):
            flat.extend(value)
        else:
            flat.append(value.encode() if name == "instrument_id" else value)
    return q._RECORD.pack(*flat)


class Segment:
    """A segment file and a writer of it with the Rust writer's protocol (busy stamp, record, done
    stamp, cursor; last value under its version)."""

    def __init__(self, path, ring_slots=8, instrument_capacity=len(INSTRUMENTS)):
        self.geo = q.geometry(ring_slots, instrument_capacity)
        self.ring = ring_slots
        values = dict(
            magic=q.MAGIC, layout_version=q.LAYOUT_VERSION, header_size=q.HEADER_SIZE, fingerprint=q.FINGERPRINT,
            total_size=self.geo["total_size"], created_ns=1, ring_slots=ring_slots, slot_size=q.SLOT_SIZE,
            record_size=q.RECORD_SIZE, instrument_capacity=instrument_capacity,
            directory_entry_size=q.DIRECTORY_ENTRY_SIZE, lvc_entry_size=q.LVC_ENTRY_SIZE, reserved0=0,
            directory_offset=self.geo["directory_offset"], lvc_offset=self.geo["lvc_offset"],
            ring_offset=self.geo["ring_offset"], feed_name=b"test")
        names = [f[0] for f in q.LAYOUT["Identity"][1]]
        with open(path, "wb") as f:
            f.write(q._IDENTITY.pack(*[values[n] for n in names]).ljust(self.geo["total_size"], b"\0"))
        self.f = open(path, "r+b")
        self.mm = mmap.mmap(self.f.fileno(), 0)
        self.path = path
        self.set(q.OFF_EPOCH, 1)
        self.set(q.OFF_RUN_STATE, 2)
        for i, iid in enumerate(INSTRUMENTS):
            off = self.geo["directory_offset"] + i * q.DIRECTORY_ENTRY_SIZE
            self.mm[off:off + 64] = q._DIRECTORY_ENTRY.pack(iid, b"SHFE", 1, b"", 10, 1.0, 0)
        self.set(q.OFF_DIRECTORY_LEN, len(INSTRUMENTS))
        self.seq = 0

    def close(self):
        self.mm.close()
        self.f.close()

    def set(self, off, value):
        struct.pack_into("<Q", self.mm, off, value)

    def slot(self, sequence):
        return self.geo["ring_offset"] + (sequence & (self.ring - 1)) * q.SLOT_SIZE

    def publish(self, instrument_index=0, last_price=None, bid=3099.0, ask=3101.0):
        self.seq += 1
        s = self.seq
        price = 3100.0 + s if last_price is None else last_price
        rec = q._RECORD.pack(*record_values(s, instrument_index, price, bid, ask))
        slot = self.slot(s)
        self.set(slot, 2 * s - 1)
        self.mm[slot + 8:slot + 384] = rec
        self.set(slot, 2 * s)
        lvc = self.geo["lvc_offset"] + instrument_index * q.LVC_ENTRY_SIZE
        version = struct.unpack_from("<Q", self.mm, lvc)[0]
        self.set(lvc, version + 1)
        self.mm[lvc + 8:lvc + 384] = rec
        self.set(lvc, version + 2)
        self.set(q.OFF_WRITE_CURSOR, s)
        return rec


@pytest.fixture
def seg(tmp_path):
    s = Segment(str(tmp_path / "seg"))
    yield s
    s.close()


@pytest.fixture
def big(tmp_path):
    s = Segment(str(tmp_path / "big"), ring_slots=64)
    yield s
    s.close()


def open_batch(seg, **kw):
    r = batch.Reader(seg.path, **kw)
    return r


def stdlib_events(path, start, lap_headroom=None):
    """Every event the stdlib reader returns from `start` until Empty."""
    r = q.Reader(path, lap_headroom=lap_headroom)
    r.seek(start)
    out = []
    while True:
        ev = r.try_next()
        if ev is q.Empty:
            r.close()
            return out
        out.append(ev)


def batch_events(reader, max_n):
    """read_batch until it returns nothing and reports nothing, as one event list (ticks as
    decoded Ticks, gaps and epochs where they sit among them)."""
    out = []
    while True:
        ticks = reader.read_batch(max_n)
        gaps = [e for e in reader.events if isinstance(e, q.Gap)]
        others = [e for e in reader.events if not isinstance(e, q.Gap)]
        for row in ticks:
            tick = q.decode_record(row.tobytes())
            while gaps and gaps[0].last < tick.sequence:
                out.append(gaps.pop(0))
            out.append(tick)
        out.extend(gaps)
        out.extend(others)
        if not len(ticks) and not reader.events:
            return out


# -- dtypes ------------------------------------------------------------------------------------

def test_tick_dtype_is_the_layout_table():
    fields = q.LAYOUT["TickRecord"][1]
    assert TICK_DTYPE.itemsize == q.RECORD_SIZE == 376
    assert TICK_DTYPE.names == tuple(f[0] for f in fields)
    for name, offset, size, _fmt in fields:
        dtype, off = TICK_DTYPE.fields[name][:2]
        assert (off, dtype.itemsize) == (offset, size), name
    assert TICK_DTYPE["volume"] == np.dtype("<i8") and TICK_DTYPE["sequence"] == np.dtype("<u8")
    assert TICK_DTYPE["bid_price"].shape == (5,) and TICK_DTYPE["bid_volume"].base == np.dtype("<i4")
    assert TICK_DTYPE["instrument_id"] == np.dtype("S32")
    assert batch.SLOT_DTYPE.fields["record"][:2] == (TICK_DTYPE, 8)
    assert batch.LVC_DTYPE.itemsize == q.LVC_ENTRY_SIZE
    assert batch.DIRECTORY_DTYPE.itemsize == q.DIRECTORY_ENTRY_SIZE


def test_a_record_decodes_the_same_through_the_dtype_and_through_struct():
    raw = q._RECORD.pack(*record_values(3, 1, 3100.5, float("nan"), 3101.0))
    tick = q.decode_record(raw)
    row = np.frombuffer(raw, TICK_DTYPE)[0]
    for name in TICK_DTYPE.names:
        ours = row[name]
        theirs = getattr(tick, name)
        if name == "instrument_id":
            assert ours.decode() == theirs
        elif name == "reserved0":
            assert ours.ljust(2, b"\0") == theirs == b"\x01\x02"
        elif isinstance(theirs, tuple):
            np.testing.assert_array_equal(ours, np.array(theirs))
        elif isinstance(theirs, float) and math.isnan(theirs):
            assert np.isnan(ours), name
        else:
            assert ours == theirs, name
    assert row["volume"] == -5 and row["ask_volume"][4] == -1 and row["reserved1"][1] == 2**64 - 1
    assert row.tobytes() == raw


def test_dtype_of_rejects_a_format_it_cannot_map():
    with pytest.raises(AssertionError, match="no numpy type"):
        batch._field_format("5e", None)


def test_import_qilin_shm_does_not_need_numpy():
    code = ("import sys; sys.modules['numpy'] = None\n"
            "import qilin_shm\n"
            "assert 'qilin_shm.batch' not in sys.modules\n"
            "try:\n    import qilin_shm.batch\nexcept ImportError as e:\n    print('no batch:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=dict(os.environ, PYTHONPATH=PYTHON_DIR),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no batch:"), out.stdout


# -- read_batch --------------------------------------------------------------------------------

def test_empty_then_a_batch_equal_to_the_records_written(seg):
    r = open_batch(seg)
    assert len(r.read_batch(16)) == 0 and r.events == []
    raws = [seg.publish(i % 3) for i in range(5)]
    ticks = r.read_batch(16)
    assert ticks.dtype == TICK_DTYPE and len(ticks) == 5 and r.events == []
    assert [t.tobytes() for t in ticks] == raws, "whole records, bit for bit"
    assert list(ticks["sequence"]) == [1, 2, 3, 4, 5]
    assert r.next_sequence == 6
    assert len(r.read_batch(16)) == 0
    r.close()


def test_max_n_and_out(seg):
    r = open_batch(seg)
    for _ in range(6):
        seg.publish()
    assert list(r.read_batch(4)["sequence"]) == [1, 2, 3, 4]
    buf = np.zeros(10, TICK_DTYPE)
    got = r.read_batch(10, out=buf)
    assert list(got["sequence"]) == [5, 6] and np.shares_memory(got, buf)
    with pytest.raises(ValueError):
        r.read_batch(10, out=np.zeros(3, TICK_DTYPE))
    with pytest.raises(ValueError):
        r.read_batch(0)
    r.close()


def test_runs_wrap_around_the_ring_and_mix_with_try_next(seg):
    r = open_batch(seg)
    for _ in range(6):
        seg.publish()
    assert len(r.read_batch(6)) == 6
    for _ in range(7):  # sequences 7..13 occupy slots 7, 0, 1, …, 5
        seg.publish()
    assert r.try_next().sequence == 7
    ticks = r.read_batch(100)
    assert list(ticks["sequence"]) == list(range(8, 14)) and r.events == []
    r.close()


@pytest.mark.parametrize("headroom", [None, 0, 3, 63, 1000])
def test_a_lap_is_the_stdlib_and_rust_gap_with_the_same_headroom(big, headroom):
    for _ in range(200):  # ring of 64: 1..136 are gone, 137..200 remain
        big.publish(instrument_index=1)
    r = open_batch(big, lap_headroom=headroom)
    expected_headroom = {None: 8, 1000: 63}.get(headroom, headroom)
    assert r.lap_headroom == expected_headroom
    r.seek(1)
    resume = min(137 + expected_headroom, 201)
    events = batch_events(r, 1000)
    assert events[0] == q.Gap(1, resume - 1)
    assert [t.sequence for t in events[1:]] == list(range(resume, 201))
    assert list(map(canonical, events)) == list(map(canonical, stdlib_events(big.path, 1, headroom))), \
        "stdlib and batch readers agree"
    assert q.lap_resume(1, 137, 200, expected_headroom) == resume
    r.close()


def test_default_headroom_is_an_eighth_of_the_ring(seg, big):
    assert q.default_lap_headroom(64) == 8 and q.default_lap_headroom(8) == 1 and q.default_lap_headroom(4) == 0
    assert open_batch(big).lap_headroom == 8 and q.Reader(big.path).lap_headroom == 8
    with pytest.raises(ValueError):
        q.Reader(big.path, lap_headroom=-1)


class Racing:
    """Stands for the reader's view of the records: the first copy taken from it runs `action`
    (the writer, at that moment) before handing out the data."""

    def __init__(self, words, action):
        self.words, self.action, self.fired = words, action, False

    def __getitem__(self, key):
        if not self.fired:
            self.fired = True
            self.action()
        return self.words[key]


def test_a_slot_overwritten_during_the_copy_is_a_gap_never_a_tick(big):
    r = open_batch(big, lap_headroom=0)
    r.seek(1)
    for _ in range(10):
        big.publish()

    def lap_slot_5():
        # The writer laps slot 5 (sequence 5 → 69) while the reader copies 1..10: busy stamp, a
        # torn record. Slots 6..10 stay whole. The cursor says 68 published.
        big.seq = 68
        slot = big.slot(5)
        big.set(slot, 2 * 69 - 1)
        big.mm[slot + 8:slot + 16] = struct.pack("<Q", 69)
        big.set(q.OFF_WRITE_CURSOR, 68)

    r._words = Racing(r._words, lap_slot_5)
    ticks = r.read_batch(100)
    # 1..4 whole; 5 lapped; resume at the oldest (68 + 1 - 64 = 5 → max(5, 5 + 1) = 6); 6..10 are
    # read again, whole.
    assert list(ticks["sequence"]) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert r.events == [q.Gap(5, 5)]
    assert all(t["sequence"] != 69 for t in ticks)
    r.close()


def test_a_slot_completed_during_the_copy_is_read_again(big):
    r = open_batch(big)
    r.seek(1)
    for _ in range(3):
        big.publish()
    # Sequence 4 is being written: busy stamp, but the cursor already says 4 (a reader may see a
    # cursor from a later store; here it stands for the writer finishing during the copy).
    slot = big.slot(4)
    big.set(slot, 2 * 4 - 1)
    big.set(q.OFF_WRITE_CURSOR, 4)

    def finish_4():
        big.seq = 3
        big.publish()  # writes 4 whole

    r._words = Racing(r._words, finish_4)
    ticks = r.read_batch(100)
    assert list(ticks["sequence"]) == [1, 2, 3, 4] and r.events == []
    r.close()


def test_a_slot_not_yet_written_ends_the_batch(big):
    r = open_batch(big)
    r.seek(1)
    for _ in range(3):
        big.publish()
    big.set(big.slot(4), 2 * 4 - 1)  # busy, and stays so
    big.set(q.OFF_WRITE_CURSOR, 4)
    assert list(r.read_batch(100)["sequence"]) == [1, 2, 3] and r.events == []
    assert r.next_sequence == 4
    r.close()


def test_a_restart_ends_the_batch_is_reported_once_and_sequences_continue(seg):
    r = open_batch(seg)
    seg.publish()
    seg.publish()
    assert len(r.read_batch(10)) == 2
    seg.publish()
    seg.set(q.OFF_EPOCH, 2)
    seg.publish()
    ticks = r.read_batch(10)
    assert len(ticks) == 0 and r.events == [q.NewEpoch(1, 2)]
    ticks = r.read_batch(10)
    assert list(ticks["sequence"]) == [3, 4] and r.events == []
    assert r.epoch == 2
    r.close()


def test_liveness_and_counters_are_the_stdlib_ones(seg):
    r = open_batch(seg)
    seg.set(q.OFF_HEARTBEAT, 1_000)
    assert r.liveness(1_500, 1_000) == q.Liveness("live", 500, None)
    seg.set(q.OFF_RUN_STATE, 3)
    seg.set(q.OFF_STOPPED_NS, 4_000)
    assert r.liveness(9_000, 1_000) == q.Liveness("stopped", None, 4_000)
    r.close()


# -- snapshot and pandas -----------------------------------------------------------------------

def test_snapshot_equals_the_stdlib_snapshot(seg):
    r = open_batch(seg)
    snap = r.snapshot()
    assert snap.as_of == 0 and len(snap.ticks) == 0
    seg.publish(0, last_price=1.0)
    seg.publish(2, last_price=2.0)
    seg.publish(0, last_price=3.0)
    snap = r.snapshot()
    assert snap.as_of == 3 and snap.ticks.dtype == TICK_DTYPE
    assert list(snap.ticks["sequence"]) == [3, 2], "directory order, instrument 1 has none"
    stdlib = q.Reader(seg.path).snapshot()
    assert stdlib.as_of == 3
    assert [t.tobytes() for t in snap.ticks] == [canonical(t) for t in stdlib.ticks]
    r.close()


def test_a_last_value_being_written_is_read_again_then_contended(seg):
    r = open_batch(seg)
    seg.publish(0)
    seg.publish(1)
    lvc = seg.geo["lvc_offset"]
    seg.set(lvc, 7)  # odd: a writer that died mid-write

    with pytest.raises(q.Contended):
        r.snapshot()
    seg.set(lvc, 8)
    assert list(r.snapshot().ticks["sequence"]) == [1, 2]
    r.close()


def test_as_pandas(seg):
    r = open_batch(seg)
    seg.publish(0, last_price=3100.5, bid=float("nan"))
    seg.publish(1)
    seg.publish(2)
    ticks = r.read_batch(10)
    df = batch.as_pandas(ticks)
    assert list(df["instrument_id"]) == ["rb2605", "m2605", "IF2606"]
    assert list(df["exchange"]) == ["SHFE"] * 3 and list(df["source"]) == ["sim"] * 3
    assert df["last_price"].iloc[0] == 3100.5
    assert math.isnan(df["bid_price1"].iloc[0]) and math.isnan(df["close_price"].iloc[0])
    assert df["ask_volume5"].iloc[0] == -1 and df["volume"].iloc[2] == -5
    t = df["exchange_time_ns"].iloc[0]
    assert str(t.tz) == "Asia/Shanghai" and t.value == 1_780_000_000_000_000_001
    assert str(df["trading_day"].iloc[0].date()) == "2026-06-04"
    assert "reserved0" not in df.columns and "bid_price" not in df.columns
    assert len(df.columns) == len([n for n in TICK_DTYPE.names if not n.startswith("reserved")]) + 4 * 4
    snap = r.as_pandas()
    assert list(snap["sequence"]) == [1, 2, 3]
    days = batch._days(np.array([20260604, 0, 20260231, 20241301, 20240229], dtype="<u4"))
    assert [str(d)[:10] for d in days] == ["2026-06-04", "NaT", "NaT", "NaT", "2024-02-29"]
    empty = batch.as_pandas(np.empty(0, TICK_DTYPE))
    assert len(empty) == 0 and "bid_price1" in empty.columns
    r.close()


def test_close_releases_the_mapping(seg):
    r = open_batch(seg)
    seg.publish()
    ticks = r.read_batch(4)
    r.close()
    assert ticks["sequence"][0] == 1, "a batch is a copy: it outlives the reader"

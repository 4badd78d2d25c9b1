"""qilin_shm.batch: numpy batch reads of the qilin-feed segment (``pip install "./python[numpy]"``).

numpy is imported here only; ``import qilin_shm`` works without it.

    from qilin_shm import batch
    with batch.Reader("/dev/shm/qilin") as r:       # lap_headroom=None: ring_slots // 8, as Rust
        r.seek_oldest()
        while True:
            ticks = r.read_batch(65536)              # TICK_DTYPE array, whole records, in order
            for event in r.events:                   # Gap / NewEpoch met in this batch (rare)
                print(event)
            if len(ticks):
                mid = (ticks["bid_price"][:, 0] + ticks["ask_price"][:, 0]) / 2
        last = r.snapshot().ticks                    # every instrument's last value, an array
        df = r.as_pandas(ticks)                      # ids as str, NaN prices, times as datetimes

Dtypes
------
``TICK_DTYPE`` is the structured dtype of one ``TickRecord`` (376 bytes), with the field names,
offsets and sizes of ``qilin_shm.LAYOUT["TickRecord"]``. It is generated from that table, not
written by hand, so it follows the table the package checks itself against at import (and which
the test suite compares with ``qilinctl layout --json``). Integer fields keep their width and
signedness (``volume`` is ``<i8``, ``sequence`` ``<u8``), doubles are ``<f8`` (NaN = absent), the
five-level arrays are subarrays (``bid_price`` has shape ``(5,)``) and the fixed text fields are
``S<n>`` (numpy drops the trailing NULs when it hands one out; the bytes in the array are the
segment's). ``SLOT_DTYPE`` (stamp + record), ``LVC_DTYPE`` (version + record) and
``DIRECTORY_DTYPE`` come from the same tables.

A raw NATS body (the 376 bytes of a record) decodes with ``np.frombuffer(body, TICK_DTYPE)``.

Reading a batch: the stdlib protocol, a run at a time
------------------------------------------------------
The reader maps the ring read-only (the stdlib reader's ``PROT_READ`` mapping) and views it as a
``(ring_slots, 48)`` array of little-endian 64-bit words: column 0 is each slot's stamp, columns
1..47 its record. ``read_batch`` takes the run of sequences ``want .. want + k - 1`` that the write
cursor says are published, within one pass of the ring (a run that would wrap is cut at the ring's
end and the next run starts at slot 0), and does in three numpy operations what ``try_next`` does
for one slot (see ``qilin_shm``'s docstring):

1. ``before = stamps[i:i+k] == 2 * (want + arange(k))`` — every stamp of the run loaded once;
2. ``out[n:n+k] = words[i:i+k]`` — one copy of the k records into the caller's array;
3. ``whole = before & (stamps[i:i+k] == done)`` — every stamp loaded again.

If ``whole`` is all true the k records are whole and in sequence order. Otherwise the records
before the first slot that is not whole are kept, and that slot is *read again* alone with the
scalar protocol (stamp, copy, stamp): a slot the writer finished during the copy is then read
whole; one it overwrote is a lap, reported as ``Gap(first, last)`` exactly as the Rust reader
reports it (resuming at ``lap_resume(want, oldest, cursor, lap_headroom)``), and reading goes on
from there in the same batch. A new epoch in the header (the core restarted) ends the batch and is
reported once as ``NewEpoch``; sequences continue. The events of the last batch are in
``reader.events``, in order (a Gap's first/last tell where it sits among the batch's sequences).

Why the vectorised copy is sound (x86-64 only, as the stdlib reader)
--------------------------------------------------------------------
The stdlib reader's argument, per slot, with "load" meaning every load of a whole numpy operation:

* **Each stamp is one aligned 8-byte load.** Every stamp sits at ``ring_offset + 384 * slot``, a
  multiple of 8 in a page-aligned mapping. numpy reads an ``<u8`` element of a strided view with
  one 64-bit integer load (its strided comparison and copy loops move ``npy_uint64`` values; a compiler
  may turn such a loop into vector loads or gathers, whose aligned 8-byte elements x86-64 does not
  split either). A stamp is never seen half-updated.
* **The three operations run one after the other, in program order.** Each is a separate C call
  made by the interpreter in statement order on this thread; numpy does not thread them and
  nothing else touches the mapping. Every load of step 1 precedes every load of step 2 in program
  order, and those precede every load of step 3.
* **x86-64 is TSO: loads are not reordered with older loads.** So every stamp load of step 1 is
  satisfied before every record load of step 2, and those before every stamp load of step 3,
  however each numpy operation orders or widens its loads inside (vector loads, ``memcpy``; the
  records of a run are not contiguous in the ring, so the copy moves at most 376 contiguous bytes
  at a time, below glibc's ``rep movsb`` threshold, as in the stdlib reader). For one slot of sequence s: step 1
  saw ``2s``, so the writer's record stores of s (made before its done store) are visible to every
  later load; if any byte copied in step 2 came from a later write of the slot (s + ring_slots …),
  that write's busy-stamp store precedes its record stores, so step 3's load of that stamp — later
  in program order than the byte — cannot read ``2s``: the slot is not whole and is read again or
  reported lapped. A slot whose two loads both read ``2s`` holds exactly record s.
* Slots are judged one by one, and a run is accepted only up to its first slot that is not whole,
  so a batch is always consecutive sequences, the Rust reader's stream with its gaps.

Evidence, not proof: core/tests/reader_python.rs runs this reader against a real qilin-core lapping
a 1024-slot ring, by construction, and compares every record it returns with the Rust reader's
copy of the same sequence, byte for byte; test_batch.py overwrites a slot in the middle of a copy.

On a weakly ordered machine (AArch64, POWER) the three steps would need load fences numpy cannot
issue; the stdlib ``Reader`` constructor refuses to open a segment there, and so does this one.

Snapshots use the same three steps over the last-value entries (version, copy, version again); an
entry that changed, or was being written (odd version), is read again alone, up to the stdlib
reader's attempts, then ``Contended``.
"""

from __future__ import annotations

import os
import struct
import time

import numpy as np

from . import (
    EXCHANGES, LAYOUT, OFF_EPOCH, OFF_WRITE_CURSOR, RECORD_SIZE, SLOT_SIZE, LVC_ENTRY_SIZE, SNAPSHOT_ATTEMPTS,
    SOURCES, VERSIONED_ATTEMPTS, Contended, Empty, Gap, NewEpoch, Snapshot,
)
from . import Reader as _StdlibReader

__all__ = ["TICK_DTYPE", "SLOT_DTYPE", "LVC_DTYPE", "DIRECTORY_DTYPE", "BAR_DTYPE", "BAR_SLOT_DTYPE", "dtype_of",
           "Reader", "read_bars", "as_pandas"]

# struct format letter → numpy scalar type (little-endian, as the segment).
_NUMPY = {"B": "u1", "I": "<u4", "i": "<i4", "Q": "<u8", "q": "<i8", "d": "<f8"}


def _field_format(fmt, nested):
    """numpy format of one LAYOUT field: `nested` (a dtype) if given, `S<n>` for bytes, a
    scalar type, or a subarray of one for a repeated format ("5d" → ("<f8", (5,)))."""
    if nested is not None:
        return nested
    count, letter = fmt[:-1], fmt[-1]
    if letter == "s":
        return f"S{int(count)}"
    if letter not in _NUMPY:
        raise AssertionError(f"qilin_shm.batch: no numpy type for struct format {fmt!r}")
    return (_NUMPY[letter], (int(count),)) if count else _NUMPY[letter]


def dtype_of(struct_name, nested=None, layout=None):
    """The numpy dtype of a LAYOUT struct (or of `layout`'s: ``qilin_shm.bars.BAR_LAYOUT``): every
    field at its offset, itemsize = the struct's size. `nested` maps a field name to a dtype to use
    in place of its bytes (a record in a slot)."""
    size, fields = (layout or LAYOUT)[struct_name]
    nested = nested or {}
    dtype = np.dtype({
        "names": [f[0] for f in fields],
        "formats": [_field_format(f[3], nested.get(f[0])) for f in fields],
        "offsets": [f[1] for f in fields],
        "itemsize": size,
    })
    for name, offset, fsize, _fmt in fields:
        got_type, got_offset = dtype.fields[name][:2]
        if got_offset != offset or got_type.itemsize != fsize:
            raise AssertionError(f"qilin_shm.batch: {struct_name}.{name} is {got_type} at {got_offset}, "
                                 f"LAYOUT says {fsize} bytes at {offset}")
    return dtype


TICK_DTYPE = dtype_of("TickRecord")
SLOT_DTYPE = dtype_of("Slot", {"record": TICK_DTYPE})
LVC_DTYPE = dtype_of("LvcEntry", {"record": TICK_DTYPE})
DIRECTORY_DTYPE = dtype_of("DirectoryEntry")
assert TICK_DTYPE.itemsize == 376 and SLOT_DTYPE.itemsize == 384 and LVC_DTYPE.itemsize == 384

# A bar segment's record (qilin_shm.bars.BAR_LAYOUT, checked against `qilinctl layout --json` too).
from . import bars as _bars  # noqa: E402  (after the tick dtypes: bars imports the package's tables)

BAR_DTYPE = dtype_of("BarRecord", layout=_bars.BAR_LAYOUT)
BAR_SLOT_DTYPE = dtype_of("BarSlot", {"record": BAR_DTYPE}, layout=_bars.BAR_LAYOUT)
assert BAR_DTYPE.itemsize == 184 and BAR_SLOT_DTYPE.itemsize == 192


def read_bars(reader, max_n=4096):
    """Up to `max_n` bars from a ``qilin_shm.bars.BarReader`` as a ``BAR_DTYPE`` array, in order: each
    read with the stdlib protocol (stamp, copy, stamp; bars come at most a few thousand a minute, so
    there is nothing to vectorise), then one ``np.frombuffer`` of them all. Stops at the first event
    that is not a bar (Empty, Gap, NewEpoch); that event is in ``reader.events`` (a list, as
    ``Reader.read_batch``'s)."""
    raws = []
    reader.events = []
    while len(raws) < max_n:
        event = reader.try_next_raw()
        if isinstance(event, bytes):
            raws.append(event)
            continue
        if event is not Empty:
            reader.events.append(event)
        break
    return np.frombuffer(b"".join(raws), BAR_DTYPE).copy() if raws else np.empty(0, BAR_DTYPE)

_WORD = 8
_SLOT_WORDS = SLOT_SIZE // _WORD          # 48: the stamp, then the record's 47 words
_RECORD_WORDS = RECORD_SIZE // _WORD      # 47
assert _SLOT_WORDS * _WORD == SLOT_SIZE and _RECORD_WORDS * _WORD == RECORD_SIZE
assert LVC_ENTRY_SIZE == SLOT_SIZE and _RECORD_WORDS == _SLOT_WORDS - 1

DEFAULT_BATCH = 65536
_u64 = struct.Struct("<Q").unpack_from


class Reader(_StdlibReader):
    """The stdlib reader (every method of ``qilin_shm.Reader``: seek, liveness, counters, latest,
    ``try_next`` …) plus vectorised reads: ``read_batch`` (ring) and ``snapshot`` (last values),
    both returning ``TICK_DTYPE`` arrays, and ``as_pandas``.

    ``read_batch`` and ``try_next`` share one cursor and may be mixed.
    """

    def __init__(self, path="/dev/shm/qilin", lap_headroom=None):
        super().__init__(path, lap_headroom=lap_headroom)
        ring = np.frombuffer(self._mm, dtype="<u8", count=self.ring_slots * _SLOT_WORDS, offset=self._ring)
        ring = ring.reshape(self.ring_slots, _SLOT_WORDS)
        self._stamps = ring[:, 0]                # the slots' stamps (a strided view, read-only)
        self._words = ring[:, 1:]                # the slots' records, as 47 words each
        cap = self.instrument_capacity
        lvc = np.frombuffer(self._mm, dtype="<u8", count=cap * _SLOT_WORDS, offset=self._lvc).reshape(cap, _SLOT_WORDS)
        self._lvc_versions = lvc[:, 0]
        self._lvc_words = lvc[:, 1:]
        # 2 * (0, 1, 2, …): the done stamps of a run are 2 * want + _twice[:k].
        self._twice = np.arange(0, 2 * self.ring_slots, 2, dtype="<u8")
        self.events = []

    def close(self):
        # The views export the mapping's buffer; mmap.close() refuses while they live.
        self._stamps = self._words = self._lvc_versions = self._lvc_words = None
        super().close()

    # -- the ring, in batches ---------------------------------------------------------------
    def read_batch(self, max_n=DEFAULT_BATCH, out=None):
        """Up to ``max_n`` ticks, in sequence order, as a ``TICK_DTYPE`` array (length 0: nothing
        new). Never blocks, never returns a torn record. ``out``: a ``TICK_DTYPE`` array of at
        least ``max_n`` to fill (the result is then a view of its start) instead of a new one.

        ``self.events`` is set to the list of the Gap and NewEpoch events met while reading this
        batch, in order (empty almost always). A Gap(first, last) sits between the ticks with
        sequences first - 1 and last + 1, exactly as the Rust reader reports it; a NewEpoch ends
        the batch (the ticks returned were read before it was seen)."""
        events = self.events = []
        if max_n < 1:
            raise ValueError(f"max_n = {max_n}: must be >= 1")
        mm = self._mm
        available = _u64(mm, OFF_WRITE_CURSOR)[0] + 1 - self._next
        size = max(1, min(int(max_n), available))
        if out is None:
            out = np.empty(size, TICK_DTYPE)
        elif out.dtype != TICK_DTYPE or out.ndim != 1 or len(out) < max_n or not out.flags.c_contiguous:
            raise ValueError(f"out must be a contiguous 1-d TICK_DTYPE array of at least max_n = {max_n}")
        dst = out.view("<u8").reshape(len(out), _RECORD_WORDS)
        stamps, words, twice, mask, ring = self._stamps, self._words, self._twice, self._mask, self.ring_slots
        n = 0
        while n < size:
            epoch = _u64(mm, OFF_EPOCH)[0]
            if epoch != self.epoch:
                events.append(NewEpoch(self.epoch, epoch))
                self.epoch = epoch
                break
            want = self._next
            cursor = _u64(mm, OFF_WRITE_CURSOR)[0]
            i = want & mask
            k = min(size - n, ring - i, cursor + 1 - want)
            if k > 0:
                done = twice[:k] + (want << 1)
                # 1. the run's stamps, 2. one copy of its records, 3. its stamps again (module docstring).
                before = stamps[i:i + k] == done
                dst[n:n + k] = words[i:i + k]
                whole = before & (stamps[i:i + k] == done)
                if whole.all():
                    n += k
                    self._next = want + k
                    continue
                b = int(whole.argmin())      # the first slot that was not whole: keep the ones before it
                n += b
                want += b
                self._next = want
            # Re-read that slot alone (or probe the next one when the cursor says nothing is new).
            event = self._read_slot(want, dst[n])
            if event is None:
                n += 1
            elif event is Empty:
                break
            else:
                events.append(event)
        return out[:n]

    def _read_slot(self, want, row):
        """The scalar protocol of ``try_next`` on one slot, copying into ``row``: None (a tick),
        Empty, or the Gap of a lap."""
        mm = self._mm
        off = self._ring + (want & self._mask) * SLOT_SIZE
        done = want << 1
        seen = _u64(mm, off)[0]
        if seen == done:
            row[:] = self._words[want & self._mask]
            if _u64(mm, off)[0] == done:
                self._next = want + 1
                return None
            return self._lapped(want)
        if seen < done:
            return Empty
        return self._lapped(want)

    # -- last values ------------------------------------------------------------------------
    def snapshot(self):
        """Every instrument's last value (each whole), in directory order, as
        ``Snapshot(as_of, ticks)`` with ``ticks`` a ``TICK_DTYPE`` array; ``as_of`` is the write
        cursor read before the first of them (ring reading continues at ``as_of + 1``).
        Vectorised: versions, one copy, versions again; the entries that changed (or were being
        written) are read again, up to the stdlib reader's attempts, then Contended."""
        as_of = self.write_cursor()
        n = self.directory_len()
        versions, words = self._lvc_versions[:n], self._lvc_words[:n]
        ticks = np.empty(n, TICK_DTYPE)
        dst = ticks.view("<u8").reshape(n, _RECORD_WORDS)
        before = versions.copy()
        dst[:] = words
        seen = before.copy()
        pending = np.flatnonzero((before != versions) | (before & 1 == 1))
        for index in pending:
            for attempt in range(SNAPSHOT_ATTEMPTS + 1):
                version = self._read_lvc(int(index), dst[index])
                if version is not None:
                    seen[index] = version
                    break
                if attempt == SNAPSHOT_ATTEMPTS:
                    raise Contended(f"{self.path}: last value of instrument {index} kept changing while being read")
                time.sleep(0)
        return Snapshot(as_of, ticks[seen != 0])

    def _read_lvc(self, index, row):
        """One seqlock read of a last value into ``row``: its version (0: never written), or None
        if every attempt raced with the writer."""
        mm = self._mm
        off = self._lvc + index * LVC_ENTRY_SIZE
        for _ in range(VERSIONED_ATTEMPTS):
            seen = _u64(mm, off)[0]
            if seen == 0:
                return 0
            if not seen & 1:
                row[:] = self._lvc_words[index]
                if _u64(mm, off)[0] == seen:
                    return seen
        return None

    def as_pandas(self, ticks=None):
        """``as_pandas(ticks)`` of a batch, or of ``snapshot().ticks`` when none is given."""
        return as_pandas(self.snapshot().ticks if ticks is None else ticks)


_TIMES = ("exchange_time_ns", "receive_ns", "publish_ns")
_DAYS = ("trading_day", "action_day")
_TZ = "Asia/Shanghai"


def _days(col):
    """YYYYMMDD integers as datetime64[D] (0 or an impossible date → NaT), vectorised."""
    col = col.astype(np.int64)
    year, month, day = col // 10000, col // 100 % 100, col % 100
    valid = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    year, month, day = np.where(valid, year, 1970), np.where(valid, month, 1), np.where(valid, day, 1)
    days = ((year - 1970).astype("M8[Y]").astype("M8[M]") + (month - 1).astype("m8[M]")).astype("M8[D]")
    days = days + (day - 1).astype("m8[D]")
    # A day past its month's end (20260231) rolls into the next month: not a date, NaT.
    valid &= (days.astype("M8[M]") - (year - 1970).astype("M8[Y]").astype("M8[M]")).astype(np.int64) == month - 1
    return np.where(valid, days, np.datetime64("NaT", "D")).astype("M8[ns]")


def as_pandas(ticks):
    """A pandas DataFrame of a ``TICK_DTYPE`` array, one row a tick, columns in record order:
    ``instrument_id`` as str; ``exchange`` and ``source`` as their names (``EXCHANGES``,
    ``SOURCES``; unknown codes as their number); the three times as ``datetime64[ns, Asia/Shanghai]``
    (0 → NaT); ``trading_day``/``action_day`` (YYYYMMDD) as ``datetime64`` dates (0 → NaT);
    ``update_time_ms`` stays milliseconds since midnight; prices float64 with NaN where absent; the
    five levels as ``bid_price1`` … ``ask_volume5`` (CTP's names); ``reserved*`` dropped."""
    import pandas as pd

    ticks = np.asarray(ticks)
    if ticks.dtype != TICK_DTYPE:
        raise TypeError(f"as_pandas wants a TICK_DTYPE array, not {ticks.dtype}")
    columns = {}
    for name, _offset, _size, _fmt in LAYOUT["TickRecord"][1]:
        if name.startswith("reserved"):
            continue
        col = ticks[name]
        if name == "instrument_id":
            # Decode each distinct id once (a few hundred instruments, millions of rows).
            unique, inverse = np.unique(col, return_inverse=True)
            text = np.array([b.decode("ascii", "replace") for b in unique.tolist()], dtype=object)
            columns[name] = text[inverse.reshape(-1)]
        elif name in ("exchange", "source"):
            codes = EXCHANGES if name == "exchange" else SOURCES
            names = np.array([codes.get(c, str(c)) for c in range(256)], dtype=object)
            columns[name] = names[col]
        elif name in _TIMES:
            columns[name] = pd.to_datetime(np.where(col == 0, np.iinfo("i8").min, col), utc=True).tz_convert(_TZ)
        elif name in _DAYS:
            columns[name] = _days(col)
        elif col.ndim == 2:
            for level in range(col.shape[1]):
                columns[f"{name}{level + 1}"] = col[:, level]
        else:
            columns[name] = col
    return pd.DataFrame(columns)


def _keepup(path, seconds, max_n=DEFAULT_BATCH, idle_s=0.0):
    """``python -m qilin_shm keepup PATH SECONDS --batch [N]``: read_batch(N) from the newest tick for
    ``seconds``, checking that every batch follows the previous one (no sequence lost or repeated);
    prints what the stdlib keep-up prints, plus the time spent in calls that returned ticks ("busy":
    the rest was polling an empty ring) and ticks ÷ busy time, the rate this reader could sustain
    with this batch size if the writer went faster (an estimate, not a measurement). ``idle_s`` > 0:
    sleep that long after a call that found nothing (instead of spinning), leaving the CPU to the
    writer's threads on a small machine. Exit 1 on any gap, 2 on a sequence error."""
    reader = Reader(path)
    buf = np.empty(max_n, TICK_DTYPE)
    ticks = gaps = lost = max_lag = batches = 0
    busy = 0.0
    start = expected = reader.next_sequence
    clock = time.perf_counter
    began = clock()
    end = began + seconds
    broken = None
    read_batch = reader.read_batch
    while True:
        t0 = clock()
        batch = read_batch(max_n, buf)
        count = len(batch)
        events = reader.events
        skipped = 0
        for event in events:
            if event.__class__ is Gap:
                gaps += 1
                skipped += event.last - event.first + 1
        lost += skipped
        if count:
            batches += 1
            ticks += count
            seq = batch["sequence"]
            # Every sequence accounted for: the batch's ticks and gaps follow the previous batch.
            if broken is None and not skipped and (seq[0] != expected or seq[-1] != expected + count - 1):
                broken = (expected, int(seq[0]), int(seq[-1]), count)
            max_lag = max(max_lag, reader.write_cursor() - reader.next_sequence + 1)
            t1 = clock()
            busy += t1 - t0
            if t1 > end:
                break
        elif t0 > end:
            break
        elif idle_s:
            time.sleep(idle_s)
        expected = reader.next_sequence
    elapsed = clock() - began
    published = reader.write_cursor() - start + 1
    print(f"{elapsed:.1f} s: published {published} ({published / elapsed:,.0f}/s), read {ticks} in {batches} "
          f"batches (mean {ticks / max(batches, 1):,.0f}), gaps {gaps} ({lost} lost), max lag {max_lag} of "
          f"{reader.ring_slots} slots; busy {busy:.1f} s ({100 * busy / elapsed:.0f} %): "
          f"{ticks / busy if busy else 0:,.0f} ticks per busy second")
    if broken is not None:
        print(f"sequence error: expected {broken[0]}, batch of {broken[3]} ran {broken[1]}..{broken[2]}")
        return 2
    return 1 if gaps else 0

"""Unit tests of python/qilin_shm (stdlib unittest only):

    python3 -m unittest discover python/tests

Bad files of every kind must be refused with a SegmentError naming the path and the mismatch, in
mapping.rs `validate` order. A small segment written by this test itself (same bytes the Rust writer
produces, built from the module's own tables) exercises the read protocol: empty, ticks, a lap
reported as an exact gap, a restart, last values. The full happy path against a real qilin-core is
driven from Rust (core/tests/reader_python.rs).
"""

import glob
import json
import math
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import qilin_shm as q  # noqa: E402
from conftest import qilin_bin  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def identity_bytes(ring_slots=8, instrument_capacity=2, **override):
    """The identity line a writer of these capacities stores (layout.rs `Geometry::identity`)."""
    geo = q.geometry(ring_slots if ring_slots in (8, 1024) else 8, instrument_capacity)
    values = dict(
        magic=q.MAGIC, layout_version=q.LAYOUT_VERSION, header_size=q.HEADER_SIZE, fingerprint=q.FINGERPRINT,
        total_size=geo["total_size"], created_ns=1, ring_slots=ring_slots, slot_size=q.SLOT_SIZE,
        record_size=q.RECORD_SIZE, instrument_capacity=instrument_capacity,
        directory_entry_size=q.DIRECTORY_ENTRY_SIZE, lvc_entry_size=q.LVC_ENTRY_SIZE, reserved0=0,
        directory_offset=geo["directory_offset"], lvc_offset=geo["lvc_offset"], ring_offset=geo["ring_offset"],
        feed_name=b"test")
    values.update(override)
    names = [f[0] for f in q.LAYOUT["Identity"][1]]
    return q._IDENTITY.pack(*[values[n] for n in names]), geo


def record_bytes(sequence, instrument_index=0, instrument_id=b"rb2605", last_price=3100.0, bid=3099.0, ask=3101.0):
    """A TickRecord's bytes, packed with the module's whole-record format."""
    values = []
    for name, _off, _size, fmt in q.LAYOUT["TickRecord"][1]:
        count = int(fmt[:-1]) if fmt[:-1] and fmt[-1] != "s" else 1
        if fmt.endswith("s"):
            values.append(b"")
        elif fmt.endswith("d"):
            values.extend([float("nan")] * count)
        else:
            values.extend([0] * count)
    rec = list(values)
    index = {}
    i = 0
    for name, _off, _size, fmt in q.LAYOUT["TickRecord"][1]:
        index[name] = i
        i += int(fmt[:-1]) if fmt[:-1] and fmt[-1] != "s" else 1
    rec[index["sequence"]] = sequence
    rec[index["instrument_index"]] = instrument_index
    rec[index["instrument_id"]] = instrument_id
    rec[index["last_price"]] = last_price
    rec[index["volume"]] = 10 * sequence
    rec[index["bid_price"]] = bid
    rec[index["ask_price"]] = ask
    rec[index["bid_volume"]] = 7
    rec[index["exchange"]] = 1
    return q._RECORD.pack(*rec)


class TempDir(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="qilin-py-")
        self.addCleanup(self.dir.cleanup)

    def write(self, name, data):
        path = os.path.join(self.dir.name, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def refused(self, path, kind, *fragments):
        with self.assertRaises(q.SegmentError) as cm:
            q.Reader(path)
        err = cm.exception
        self.assertEqual(err.kind, kind, str(err))
        self.assertEqual(err.path, path)
        self.assertIn(path, str(err), "the message names the file")
        for fragment in fragments:
            self.assertIn(fragment, str(err))
        return err


class BadFiles(TempDir):
    def test_missing_file(self):
        path = os.path.join(self.dir.name, "nope")
        self.refused(path, "io", "opening", "No such file")

    def test_empty_file_is_not_initialised(self):
        self.refused(self.write("empty", b""), "not_initialised", "is not initialised (no magic yet)")

    def test_shorter_than_a_header_is_truncated(self):
        self.refused(self.write("short", b"QILINSHM" + bytes(92)), "truncated", "is truncated: 100 bytes, needs 1152")

    def test_zero_magic_is_not_initialised(self):
        self.refused(self.write("zero", bytes(q.HEADER_SIZE)), "not_initialised", "no magic yet")

    def test_not_a_segment(self):
        err = self.refused(self.write("text", b"hello world\n" * 200), "bad_magic", "is not a qilin segment")
        self.assertIn("magic [68, 65, 6c, 6c, 6f, 20, 77, 6f]", str(err))
        self.assertIn('expected [51, 49, 4c, 49, 4e, 53, 48, 4d] ("QILINSHM")', str(err))

    def test_other_layout_version(self):
        ident, geo = identity_bytes(layout_version=2)
        path = self.write("v2", ident.ljust(geo["total_size"], b"\0"))
        self.refused(path, "version", "has layout version 2, this build reads version 1")

    def test_other_fingerprint(self):
        ident, geo = identity_bytes(fingerprint=0x1234)
        path = self.write("fp", ident.ljust(geo["total_size"], b"\0"))
        self.refused(path, "fingerprint", "layout fingerprint 0x0000000000001234", f"this build has {q.FINGERPRINT:#018x}")

    def test_impossible_capacities_are_corrupt(self):
        ident, geo = identity_bytes(ring_slots=1000)
        path = self.write("cap", ident.ljust(1 << 20, b"\0"))
        self.refused(path, "corrupt", "corrupt header", "ring_slots = 1000: must be a power of two")

    def test_identity_not_matching_its_capacities_is_corrupt(self):
        ident, geo = identity_bytes(ring_offset=8192 * 4)
        path = self.write("geo", ident.ljust(geo["total_size"], b"\0"))
        self.refused(path, "corrupt", "identity line does not match its own capacities", "ring_offset")

    def test_file_shorter_than_its_geometry_is_truncated(self):
        ident, geo = identity_bytes()
        path = self.write("cut", ident.ljust(geo["total_size"] - 4096, b"\0"))
        self.refused(path, "truncated", f"needs {geo['total_size']}")

    def test_checks_run_in_mapping_rs_order(self):
        # Bad version *and* bad fingerprint: the version is reported (checked first).
        ident, geo = identity_bytes(layout_version=9, fingerprint=1)
        self.refused(self.write("both", ident.ljust(geo["total_size"], b"\0")), "version")
        # Bad fingerprint *and* short file: the fingerprint is reported.
        ident, geo = identity_bytes(fingerprint=1)
        self.refused(self.write("both2", ident.ljust(2048, b"\0")), "fingerprint")

    def test_the_mapping_is_read_only(self):
        ident, geo = identity_bytes()
        path = self.write("ro", ident.ljust(geo["total_size"], b"\0"))
        with q.Reader(path) as r:
            with self.assertRaises(TypeError):
                r._mm[0] = 0


class Layout(unittest.TestCase):
    def test_tables_are_self_consistent(self):
        q._check_layout()
        self.assertEqual(q._RECORD.size, 376)
        self.assertEqual(q.Tick._fields, tuple(f[0] for f in q.LAYOUT["TickRecord"][1]))
        self.assertEqual(q.Reader.LAYOUT, q.LAYOUT)
        self.assertEqual(q.FIELDS["TickRecord.bid_price"], (240, "5d"))
        self.assertEqual(q.FIELDS["Slot.record"], (8, "376s"))
        self.assertEqual((q.OFF_EPOCH, q.OFF_HEARTBEAT, q.OFF_WRITE_CURSOR, q.OFF_COUNTERS), (128, 256, 384, 640))

    def test_matches_qilinctl_layout_json(self):
        qilinctl = qilin_bin("qilinctl")  # $QILIN_BIN_DIR/qilinctl; fails (never skips) without it
        rust = json.loads(subprocess.run([qilinctl, "layout", "--json"], check=True, capture_output=True).stdout)
        ours = q.layout_json()
        self.assertEqual(rust["layout_version"], ours["layout_version"])
        self.assertEqual(rust["fingerprint"], ours["fingerprint"], qilinctl)
        self.assertEqual(rust["counters"], ours["counters"])
        self.assertEqual(rust["quality"], ours["quality"])
        if "reader" in rust:
            self.assertEqual(rust["reader"]["lap_headroom_divisor"], q.LAP_HEADROOM_DIVISOR)
        self.assertEqual([s["name"] for s in rust["structs"]], [s["name"] for s in ours["structs"]])
        for r, o in zip(rust["structs"], ours["structs"]):
            self.assertEqual(r["size"], o["size"], r["name"])
            self.assertEqual([(f["name"], f["offset"], f["size"]) for f in r["fields"]],
                             [(f["name"], f["offset"], f["size"]) for f in o["fields"]], r["name"])


class Protocol(TempDir):
    """A writer in this test, slot by slot, with the stamp protocol of the Rust writer."""

    def setUp(self):
        super().setUp()
        self.ring = 8
        ident, self.geo = identity_bytes(ring_slots=self.ring, instrument_capacity=2)
        self.path = self.write("seg", ident.ljust(self.geo["total_size"], b"\0"))
        self.f = open(self.path, "r+b")
        self.addCleanup(self.f.close)
        self.mm = mmap.mmap(self.f.fileno(), 0)
        self.addCleanup(self.mm.close)
        self.set(q.OFF_EPOCH, 1)
        self.set(q.OFF_RUN_STATE, 2)
        for i, iid in enumerate([b"rb2605", b"m2605"]):
            off = self.geo["directory_offset"] + i * q.DIRECTORY_ENTRY_SIZE
            self.mm[off:off + 64] = q._DIRECTORY_ENTRY.pack(iid, b"SHFE", 1, b"", 10, 1.0, 0)
        self.set(q.OFF_DIRECTORY_LEN, 2)
        self.seq = 0

    def set(self, off, value):
        struct.pack_into("<Q", self.mm, off, value)

    def publish(self, instrument_index=0, **kw):
        self.seq += 1
        s = self.seq
        rec = record_bytes(s, instrument_index, instrument_id=[b"rb2605", b"m2605"][instrument_index], **kw)
        slot = self.geo["ring_offset"] + (s & (self.ring - 1)) * q.SLOT_SIZE
        self.set(slot, 2 * s - 1)
        self.mm[slot + 8:slot + 384] = rec
        self.set(slot, 2 * s)
        lvc = self.geo["lvc_offset"] + instrument_index * q.LVC_ENTRY_SIZE
        version = struct.unpack_from("<Q", self.mm, lvc)[0]
        self.set(lvc, version + 1)
        self.mm[lvc + 8:lvc + 384] = rec
        self.set(lvc, version + 2)
        self.set(q.OFF_WRITE_CURSOR, s)

    def test_empty_then_ticks_in_order(self):
        r = q.Reader(self.path)
        self.addCleanup(r.close)
        self.assertIs(r.try_next(), q.Empty)
        self.publish(last_price=3100.5)
        self.publish(1, bid=float("nan"))
        t = r.try_next()
        self.assertIsInstance(t, q.Tick)
        self.assertEqual((t.sequence, t.instrument_id, t.last_price, t.volume), (1, "rb2605", 3100.5, 10))
        self.assertEqual(t.bid_volume, (7, 0, 0, 0, 0))
        self.assertTrue(math.isnan(t.close_price), "absent prices are NaN")
        t = r.try_next()
        self.assertEqual((t.sequence, t.instrument_id, t.instrument_index), (2, "m2605", 1))
        self.assertTrue(math.isnan(t.bid_price[0]))
        self.assertIs(r.try_next(), q.Empty)
        self.assertEqual(r.next_sequence, 3)

    def test_lapped_reader_gets_the_exact_gap_and_resumes_at_the_oldest(self):
        r = q.Reader(self.path, lap_headroom=0)
        self.addCleanup(r.close)
        r.seek(1)
        for _ in range(20):  # ring of 8: sequences 1..12 are gone, 13..20 remain
            self.publish()
        self.assertEqual(r.try_next(), q.Gap(1, 12))
        self.assertEqual([r.try_next().sequence for _ in range(8)], list(range(13, 21)))
        self.assertIs(r.try_next(), q.Empty)
        r.seek_oldest()
        self.assertEqual(r.next_sequence, 13)
        r.seek_newest()
        self.assertEqual(r.next_sequence, 21)

    def test_lap_headroom_default_and_clamp(self):
        r = q.Reader(self.path)  # default: ring_slots // 8 = 1
        self.addCleanup(r.close)
        self.assertEqual(r.lap_headroom, 1)
        r.seek(1)
        for _ in range(20):
            self.publish()
        self.assertEqual(r.try_next(), q.Gap(1, 13), "resumes one past the oldest (13)")
        self.assertEqual(r.try_next().sequence, 14)
        r.set_lap_headroom(100)
        self.assertEqual(r.lap_headroom, 7, "clamped to ring_slots - 1")
        r.seek(2)
        self.assertEqual(r.try_next(), q.Gap(2, 19), "13 + 7 = 20 is the newest: resume there")
        self.assertEqual(r.try_next().sequence, 20)
        r.seek(1)
        for _ in range(3):
            self.publish()  # 21..23: oldest 16
        r.set_lap_headroom(100)
        self.assertEqual(r.try_next(), q.Gap(1, 22), "never past the newest (23)")
        self.assertEqual(q.lap_resume(5, 1, 3, 0), 6, "never before want + 1")

    def test_a_copy_overwritten_mid_read_is_a_gap_not_a_tick(self):
        r = q.Reader(self.path)
        self.addCleanup(r.close)
        r.seek(1)
        self.publish()
        # Simulate the writer lapping the reader between its two stamp loads: stamp reads 2·1 first,
        # then 2·9 − 1 (busy with sequence 9). We interpose on the stamp loader.
        slot = self.geo["ring_offset"] + 1 * q.SLOT_SIZE
        loads = []
        real = struct.Struct("<Q").unpack_from

        def racing(buf, off):
            value = real(buf, off)
            if off == slot:
                loads.append(value[0])
                if len(loads) == 1:
                    self.seq = 8
                    self.set(slot, 2 * 9 - 1)
                    self.set(q.OFF_WRITE_CURSOR, 8)
            return value

        event = r.try_next_raw(_u=racing)  # try_next decodes what this returns
        self.assertEqual(loads, [2, 17])
        self.assertIsInstance(event, q.Gap)
        self.assertEqual(event.first, 1)

    def test_restart_is_reported_once_and_sequences_continue(self):
        r = q.Reader(self.path)
        self.addCleanup(r.close)
        r.seek(1)
        self.publish()
        self.assertEqual(r.try_next().sequence, 1)
        self.set(q.OFF_EPOCH, 2)
        self.publish()
        self.assertEqual(r.try_next(), q.NewEpoch(1, 2))
        self.assertEqual(r.try_next().sequence, 2)

    def test_directory_last_values_snapshot_liveness_counters(self):
        r = q.Reader(self.path)
        self.addCleanup(r.close)
        self.assertEqual([i.instrument_id for i in r.instruments()], ["rb2605", "m2605"])
        self.assertEqual(r.find_instrument("m2605"), 1)
        self.assertIsNone(r.find_instrument("zz9999"))
        self.assertIsNone(r.latest("m2605"), "no tick yet")
        self.publish(last_price=1.0)
        self.publish(1, last_price=2.0)
        self.publish(last_price=3.0)
        self.assertEqual(r.latest(0).last_price, 3.0)
        self.assertEqual(r.latest("m2605").sequence, 2)
        with self.assertRaises(q.UnknownInstrument):
            r.latest(2)
        with self.assertRaises(q.UnknownInstrument):
            r.latest("zz9999")
        snap = r.snapshot()
        self.assertEqual(snap.as_of, 3)
        self.assertEqual([t.sequence for t in snap.ticks], [3, 2])
        lvc = self.geo["lvc_offset"]
        self.set(lvc, 7)  # a writer that died mid-write leaves an odd version
        with self.assertRaises(q.Contended):
            r.latest(0)
        self.set(q.OFF_HEARTBEAT, 1_000)
        self.assertEqual(r.liveness(1_500, 1_000), q.Liveness("live", 500, None))
        self.assertEqual(r.liveness(5_000, 1_000).state, "stale")
        self.set(q.OFF_HEARTBEAT, 1_000_000_000)
        self.assertEqual(r.liveness(999_500_000, 10**6), q.Liveness("live", -500_000, None))
        self.assertEqual(r.liveness(990_000_000, 10**6), q.Liveness("stale", -10_000_000, None), "from the future")
        self.set(q.OFF_RUN_STATE, 3)
        self.set(q.OFF_STOPPED_NS, 4_000)
        self.assertEqual(r.liveness(9_000, 1_000), q.Liveness("stopped", None, 4_000))
        self.set(q.OFF_COUNTERS + 8 * q.COUNTERS.index("reject_id"), 5)
        self.assertEqual(r.counter("reject_id"), 5)
        with self.assertRaises(KeyError):
            r.counter("no_such_counter")
        self.assertEqual(r.write_cursor(), 3)


if __name__ == "__main__":
    unittest.main()

"""The Python readers pre-fault their mapping at open (MAP_POPULATE, or one read per page where the
mmap module lacks it), as the Rust and C readers do: touching every page of the ring right after
``Reader(path)`` takes no page fault. The same walk over a mapping opened without the pre-fault is
the control: it shows the thread's minor-fault counter (``getrusage(RUSAGE_THREAD).ru_minflt``)
does see the faults, so a regression to a plain mapping fails here. Counts, not times.

The segment is written by this test (identity line, then zeros): the pages exist in the page cache
as they do behind a real writer, which backs every page before it publishes the magic.
"""

import os
import resource
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import qilin_shm as q  # noqa: E402
from qilin_shm import batch  # noqa: E402  (numpy: python/requirements-test.txt)

RING = 16384  # 6 MiB of ring: 1536 pages
PAGE = 4096
POPULATED_MAX_FAULTS = 8  # 0 in practice; a few for the interpreter's own bookkeeping


def identity_bytes(ring_slots, instrument_capacity):
    """The identity line a writer of these capacities stores (layout.rs `Geometry::identity`)."""
    geo = q.geometry(ring_slots, instrument_capacity)
    values = dict(
        magic=q.MAGIC, layout_version=q.LAYOUT_VERSION, header_size=q.HEADER_SIZE, fingerprint=q.FINGERPRINT,
        total_size=geo["total_size"], created_ns=1, ring_slots=ring_slots, slot_size=q.SLOT_SIZE,
        record_size=q.RECORD_SIZE, instrument_capacity=instrument_capacity,
        directory_entry_size=q.DIRECTORY_ENTRY_SIZE, lvc_entry_size=q.LVC_ENTRY_SIZE, reserved0=0,
        directory_offset=geo["directory_offset"], lvc_offset=geo["lvc_offset"], ring_offset=geo["ring_offset"],
        feed_name=b"prefault")
    names = [f[0] for f in q.LAYOUT["Identity"][1]]
    return q._IDENTITY.pack(*[values[n] for n in names]), geo


def minor_faults():
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def faults_walking_the_ring(mm, geo):
    """Minor faults taken while reading one byte of every page of the ring."""
    start, end = geo["ring_offset"], geo["total_size"]
    offsets = range(start, end, PAGE)
    minor_faults()  # warm the call path
    before = minor_faults()
    for offset in offsets:
        mm[offset]
    return minor_faults() - before


class Prefault(unittest.TestCase):
    def setUp(self):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.TemporaryDirectory(prefix="qilin-py-prefault-", dir=shm)
        self.addCleanup(self.dir.cleanup)
        ident, self.geo = identity_bytes(RING, 2)
        self.path = os.path.join(self.dir.name, "seg")
        with open(self.path, "wb") as f:
            f.write(ident.ljust(self.geo["total_size"], b"\0"))
        self.pages = (self.geo["total_size"] - self.geo["ring_offset"]) // PAGE

    def test_a_fresh_reader_touches_its_ring_without_page_faults(self):
        r = q.Reader(self.path)
        self.addCleanup(r.close)
        faults = faults_walking_the_ring(r._mm, self.geo)
        self.assertLessEqual(faults, POPULATED_MAX_FAULTS, f"{faults} faults over {self.pages} pages: not pre-faulted")

    def test_without_madv_populate_read_every_page_is_touched_at_open(self):
        saved = q._MADV_POPULATE_READ
        q._MADV_POPULATE_READ = None  # as on a platform without it
        self.addCleanup(setattr, q, "_MADV_POPULATE_READ", saved)
        r = q.Reader(self.path)
        self.addCleanup(r.close)
        faults = faults_walking_the_ring(r._mm, self.geo)
        self.assertLessEqual(faults, POPULATED_MAX_FAULTS, f"{faults} faults over {self.pages} pages: not pre-faulted")

    def test_the_batch_reader_is_pre_faulted_too(self):
        r = batch.Reader(self.path)
        self.addCleanup(r.close)
        faults = faults_walking_the_ring(r._mm, self.geo)
        self.assertLessEqual(faults, POPULATED_MAX_FAULTS, f"{faults} faults over {self.pages} pages: not pre-faulted")

    def test_a_file_that_is_not_a_segment_is_refused_before_its_pages_are_faulted(self):
        bogus = os.path.join(self.dir.name, "bogus")
        with open(bogus, "wb") as f:
            f.truncate(256 << 20)  # sparse: 65 536 pages of zeros
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        with self.assertRaises(q.SegmentError):
            q.Reader(bogus)
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
        self.assertLessEqual(faults, 64, f"{faults} faults refusing a 256 MiB non-segment: pre-faulted before validating")

    def test_control_an_unpopulated_mapping_faults(self):
        mm, geo = q._open_validated(self.path, populate=False)
        self.addCleanup(mm.close)
        faults = faults_walking_the_ring(mm, geo)
        # One per page, or one per 16 with the kernel's default fault-around; /32 leaves a margin.
        self.assertGreaterEqual(faults, self.pages // 32, f"only {faults} faults over {self.pages} unmapped pages")
        self.assertGreater(self.pages // 32, POPULATED_MAX_FAULTS)


if __name__ == "__main__":
    unittest.main()

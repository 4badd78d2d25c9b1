//! A reader's mapping is pre-faulted at open, once validated (`MADV_POPULATE_READ`), so its first lap of a full ring takes
//! no page fault: counted with the thread's minor-fault counter (`minflt` in
//! `/proc/thread-self/stat`) around a lap read by a freshly opened reader. The same lap read through
//! [`Reader::open_unpopulated`] is the control: it shows the counter does see the reader's faults,
//! so a regression to a plain mapping fails here. Without the pre-fault the kernel maps a page on
//! the first touch of it, or (fault-around, `fault_around_bytes`, 64 KiB by default) up to 16
//! neighbouring pages already in the page cache per fault: one fault every 11 to 170 slots.
//!
//! Counts, not times: the assertion holds on a loaded machine.

use std::path::PathBuf;

use qilin_shm::{Exchange, Next, Reader, SegmentOptions, Start, TickRecord, Writer};

/// 16 384 slots × 384 bytes = 6 MiB of ring, 1536 pages.
const RING: u64 = 16_384;
/// What the pre-faulted reader may take over its first lap: 0 in practice, a few for a stray fault
/// of the test's own bookkeeping. Well under the control's count (≥ 1536 pages / 32).
const POPULATED_MAX_FAULTS: u64 = 8;
const SLOT_BYTES: u64 = 384;
const PAGE: u64 = 4096;

/// A segment path unique to this process and label, removed (with its lock file) on drop.
struct TempSegment(PathBuf);

impl TempSegment {
    fn new(label: &str) -> TempSegment {
        let dir =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let path = dir.join(format!("qilin-test-prefault-{}-{label}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempSegment(path)
    }
}

impl Drop for TempSegment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(qilin_shm::lock_path(&self.0));
    }
}

/// Minor page faults of the calling thread so far (field 10 of `/proc/thread-self/stat`).
fn thread_minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("reading /proc/thread-self/stat");
    // The command name (field 2) is in parentheses and may contain spaces: count after the last ')'.
    let after = &stat[stat.rfind(')').expect("a stat line has the comm in parentheses") + 1..];
    // After ')': field 3 (state) is index 0, so field 10 (minflt) is index 7.
    after.split_whitespace().nth(7).expect("stat has minflt").parse().expect("minflt is a number")
}

/// A writer with a full ring: `RING` ticks published, sequences 1..=RING.
fn full_ring(segment: &TempSegment) -> Writer {
    let options = SegmentOptions { feed_name: "prefault".into(), ring_slots: RING, instrument_capacity: 4 };
    let mut writer = Writer::open(&segment.0, &options).expect("creating the segment");
    let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).expect("adding an instrument");
    let mut tick = TickRecord::ZERO;
    tick.instrument_index = index;
    for i in 0..RING {
        tick.last_price = 3000.0 + i as f64;
        writer.publish(&mut tick).expect("publishing");
    }
    writer
}

/// Reads one lap (sequences 1..=RING) with `reader` from the oldest and returns the minor faults the
/// thread took meanwhile. Every read must be a whole tick of the expected sequence.
fn faults_over_first_lap(mut reader: Reader) -> u64 {
    reader.seek(Start::Oldest);
    assert_eq!(reader.next_sequence(), 1, "the ring holds exactly one lap");
    let mut tick = TickRecord::ZERO;
    let _ = thread_minor_faults(); // warm the allocator and the /proc path before the first count
    let before = thread_minor_faults();
    for seq in 1..=RING {
        assert_eq!(reader.try_next(&mut tick), Next::Tick, "sequence {seq}");
        assert_eq!(tick.sequence, seq);
        assert_eq!(tick.last_price, 3000.0 + (seq - 1) as f64);
    }
    let after = thread_minor_faults();
    assert_eq!(reader.try_next(&mut tick), Next::Empty, "one lap, then nothing");
    after - before
}

#[test]
fn a_fresh_reader_reads_its_first_lap_without_page_faults() {
    let segment = TempSegment::new("populated");
    let _writer = full_ring(&segment);
    let pages = RING * SLOT_BYTES / PAGE;
    let faults = faults_over_first_lap(Reader::open(&segment.0).expect("opening the reader"));
    println!("populated reader: {faults} minor faults over a first lap of {pages} pages");
    assert!(
        faults <= POPULATED_MAX_FAULTS,
        "{faults} minor faults over the first lap of {pages} pages: the map is not pre-faulted"
    );
}

#[test]
fn control_an_unpopulated_reader_faults_on_its_first_lap() {
    let segment = TempSegment::new("unpopulated");
    let _writer = full_ring(&segment);
    let pages = RING * SLOT_BYTES / PAGE;
    let faults = faults_over_first_lap(Reader::open_unpopulated(&segment.0).expect("opening the reader"));
    println!("unpopulated reader: {faults} minor faults over a first lap of {pages} pages");
    // The counter sees the reader's faults: one per page, or one per 16 pages with the default
    // fault-around (measured: 96 for 1536 pages on Linux 6.18); /32 leaves a margin.
    assert!(
        faults >= pages / 32 && pages / 32 > POPULATED_MAX_FAULTS,
        "only {faults} minor faults over {pages} unmapped pages: is minflt counted?"
    );
}

/// The pre-fault comes after the header is validated: a large file that is not a segment (here a
/// sparse 256 MiB file of zeros where a segment was expected; a hostile peer could leave one) is
/// refused having touched its header only. Pre-faulting before validating maps (on tmpfs:
/// allocates) every one of its 65 536 pages first.
#[test]
fn a_file_that_is_not_a_segment_is_refused_before_its_pages_are_faulted() {
    const BOGUS_BYTES: u64 = 256 << 20;
    let segment = TempSegment::new("bogus");
    std::fs::File::create(&segment.0).and_then(|f| f.set_len(BOGUS_BYTES)).expect("creating a sparse file");
    let _ = thread_minor_faults(); // warm the /proc path before the first count
    let before = thread_minor_faults();
    let opened = Reader::open(&segment.0);
    let faults = thread_minor_faults() - before;
    assert!(opened.is_err(), "a file of zeros is not a segment");
    println!("refused a {BOGUS_BYTES}-byte non-segment with {faults} minor faults");
    assert!(
        faults <= POPULATED_MAX_FAULTS,
        "{faults} minor faults while refusing a {} MiB file that is not a segment: pre-faulted before validating",
        BOGUS_BYTES >> 20
    );
}

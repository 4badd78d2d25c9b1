//! Unit tests: round trips, reopening, torn tails, damage in the middle, foreign layouts, empty and
//! header-only files, a full disk (a small tmpfs mounted by the test), fsync policies.

use std::{fs, os::unix::fs::FileExt, path::Path, process::Command, time::Duration};

use qilin_shm::TickRecord;
use zerocopy::IntoBytes;

use crate::{
    format::{BLOCK_HEADER_SIZE, FILE_HEADER_SIZE, RECORD_SIZE},
    *,
};

const DAY: u32 = 20260302;

/// The full-disk test spawns `mount` and `umount`. A spawned child holds a copy of every open file
/// description of this process until it execs, journal files included, and a journal's lock
/// (`flock`) is released only when the last copy closes: a test that closed its writer and reopens
/// the file at that moment would find it "locked by another writer". So every test holds this
/// lock shared for its whole run, and the spawns take it exclusively (seen once in CI under load).
static NO_SPAWN: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn no_spawn() -> std::sync::RwLockReadGuard<'static, ()> {
    NO_SPAWN.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spawning() -> std::sync::RwLockWriteGuard<'static, ()> {
    NO_SPAWN.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A tick whose every field depends on `sequence`, so a misplaced byte shows.
fn tick(sequence: u64) -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = sequence;
    t.exchange_time_ns = 1_772_413_200_000_000_000 + sequence as i64 * 1_000;
    t.publish_ns = t.exchange_time_ns + 7;
    t.instrument_index = (sequence % 7) as u32;
    t.trading_day = DAY;
    t.instrument_id[..6].copy_from_slice(b"rb2605");
    t.last_price = 3100.0 + sequence as f64;
    t.bid_price = [3099.0, 3098.0, 3097.0, f64::NAN, 3095.0];
    t.ask_volume = [1, 2, 3, 4, sequence as i32];
    t
}

fn options(block_records: u32, fsync: FsyncPolicy) -> WriterOptions {
    WriterOptions { block_records, max_block_age: Duration::from_secs(3600), fsync }
}

fn open(dir: &Path, base: u64, opts: WriterOptions) -> (JournalWriter, OpenReport) {
    JournalWriter::open(dir, "feed-a", DAY, base, opts).unwrap()
}

fn path(dir: &Path) -> std::path::PathBuf {
    file_path(dir, "feed-a", DAY)
}

fn read_all(path: &Path) -> Vec<Entry> {
    JournalReader::open(path).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Every sequence from `from` to `to` once, in order, as a tick equal to `tick(seq)` or in a gap.
fn assert_complete(entries: &[Entry], from: u64, to: u64) {
    let mut next = from;
    for e in entries {
        assert_eq!(e.first_sequence(), next, "{e:?}");
        if let Entry::Tick(t) = e {
            assert_eq!(t.as_bytes(), tick(t.sequence).as_bytes(), "record {} differs", t.sequence);
        }
        next = e.last_sequence() + 1;
    }
    assert_eq!(next, to + 1, "ends at {}", next - 1);
}

#[test]
fn ticks_and_gaps_round_trip_byte_for_byte() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, report) = open(dir.path(), 100, options(4, FsyncPolicy::Never));
    assert!(report.created);
    assert_eq!(w.next_sequence(), 101);
    for s in 101..=110 {
        w.append_tick(&tick(s)).unwrap();
    }
    assert_eq!(w.written_sequence(), 108, "two full blocks of 4 written, 2 buffered");
    assert_eq!(w.buffered(), 2);
    w.append_gap(111, 150, GapReason::Lapped).unwrap();
    for s in 151..=153 {
        w.append_tick(&tick(s)).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!((stats.ticks, stats.gaps, stats.gap_sequences, stats.blocks), (13, 1, 40, 5));

    let entries = read_all(&path(dir.path()));
    assert_eq!(entries.len(), 14);
    assert_complete(&entries, 101, 153);
    let Entry::Gap(gap) = entries[10] else { panic!("{:?}", entries[10]) };
    assert_eq!((gap.first, gap.last, gap.reason, gap.count()), (111, 150, GapReason::Lapped, 40));
    let summary = verify(path(dir.path())).unwrap();
    assert_eq!((summary.ticks, summary.gaps, summary.last_sequence), (13, 1, 153));
    assert_eq!(summary.bytes, fs::metadata(path(dir.path())).unwrap().len());
    assert_eq!(summary.header.feed, "feed-a");
    assert_eq!(summary.header.base_sequence, 100);
}

#[test]
fn gaps_that_follow_each_other_become_one_record() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    w.append_tick(&tick(1)).unwrap();
    w.append_gap(2, 5, GapReason::Restart).unwrap();
    assert_eq!((w.written_sequence(), w.next_sequence()), (1, 6), "the tick was written, the gap is held");
    assert!(!w.is_flushed());
    w.append_gap(6, 9, GapReason::Lapped).unwrap();
    w.append_tick(&tick(10)).unwrap();
    assert_eq!(w.written_sequence(), 9, "the next tick writes the held gap first");
    w.append_gap(11, 11, GapReason::DiskFull).unwrap();
    w.flush().unwrap();
    assert!(w.is_flushed());
    assert_eq!(w.stats().gaps, 2);
    w.finish().unwrap();
    let entries = read_all(&path(dir.path()));
    assert_complete(&entries, 1, 11);
    let gaps: Vec<_> = entries.iter().filter_map(|e| if let Entry::Gap(g) = e { Some(*g) } else { None }).collect();
    assert_eq!(
        gaps.iter().map(|g| (g.first, g.last, g.reason)).collect::<Vec<_>>(),
        [(2, 9, GapReason::Restart), (11, 11, GapReason::DiskFull)]
    );
}

#[test]
fn reopening_continues_after_the_last_sequence() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(3, FsyncPolicy::Never));
    for s in 1..=7 {
        w.append_tick(&tick(s)).unwrap();
    }
    drop(w); // the drop writes the partial block
    let (mut w, report) = open(dir.path(), 999, options(3, FsyncPolicy::Never));
    assert!(!report.created);
    assert_eq!((report.last_sequence, report.blocks, report.truncated_bytes), (7, 3, 0));
    assert_eq!(w.next_sequence(), 8, "the file's own last sequence wins over the base given");
    let err = w.append_tick(&tick(9)).unwrap_err();
    assert!(matches!(err, JournalError::OutOfOrder { expected: 8, found: 9, .. }), "{err}");
    let err = w.append_gap(7, 9, GapReason::Restart).unwrap_err();
    assert!(matches!(err, JournalError::OutOfOrder { expected: 8, found: 7, .. }), "{err}");
    w.append_gap(8, 9, GapReason::Restart).unwrap();
    w.append_tick(&tick(10)).unwrap();
    w.finish().unwrap();
    assert_complete(&read_all(&path(dir.path())), 1, 10);
}

/// The bytes of the block a writer would append after `base` with ticks `base+1..=base+n`.
fn block_bytes(base: u64, n: u64) -> Vec<u8> {
    let other = tempfile::tempdir().unwrap();
    let (mut o, _) =
        JournalWriter::open(other.path(), "feed-a", DAY, base, options(n as u32, FsyncPolicy::Never)).unwrap();
    for s in base + 1..=base + n {
        o.append_tick(&tick(s)).unwrap();
    }
    o.finish().unwrap();
    fs::read(file_path(other.path(), "feed-a", DAY)).unwrap()[FILE_HEADER_SIZE..].to_vec()
}

#[test]
fn a_torn_tail_is_reported_by_readers_and_cut_by_the_writer() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    for s in 1..=8 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();
    let file = path(dir.path());
    let whole = fs::metadata(&file).unwrap().len();
    // A crash in the middle of the third block's write: its header and 1.5 of its 4 records.
    let torn = &block_bytes(8, 4)[..BLOCK_HEADER_SIZE + RECORD_SIZE * 3 / 2];
    fs::OpenOptions::new().write(true).open(&file).unwrap().write_all_at(torn, whole).unwrap();

    let mut reader = JournalReader::open(&file).unwrap();
    let good: Vec<_> = reader.by_ref().take(8).map(Result::unwrap).collect();
    assert_complete(&good, 1, 8);
    let err = reader.next().unwrap().unwrap_err();
    let JournalError::TornTail { offset, bytes, .. } = &err else { panic!("{err}") };
    assert_eq!((*offset, *bytes), (whole, torn.len() as u64));
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()) && text.contains(&format!("byte {whole}")), "{text}");
    assert!(reader.next().is_none(), "the stream ends after an error");
    assert!(matches!(verify(&file), Err(JournalError::TornTail { .. })));

    let (mut w, report) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    assert_eq!(report.truncated_bytes, torn.len() as u64);
    assert!(report.truncated_at.as_ref().unwrap().1.contains("payload cut short"), "{report:?}");
    assert_eq!(fs::metadata(&file).unwrap().len(), whole, "cut back to the last whole block");
    assert_eq!(w.next_sequence(), 9);
    for s in 9..=10 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();
    assert_complete(&read_all(&file), 1, 10);
}

#[test]
fn the_writer_reports_how_much_it_cut() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(2, FsyncPolicy::Never));
    for s in 1..=4 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();
    let file = path(dir.path());
    let whole = fs::metadata(&file).unwrap().len();
    // A power cut can leave a tail of zeros (the size reached the disk, the data did not).
    fs::OpenOptions::new().append(true).open(&file).unwrap().write_all_at(&[0u8; 1000], whole).unwrap();
    let (w, report) = open(dir.path(), 0, options(2, FsyncPolicy::Never));
    assert_eq!(report.truncated_bytes, 1000);
    let (at, reason) = report.truncated_at.clone().unwrap();
    assert_eq!(at, whole);
    assert!(reason.contains("no block magic"), "{reason}");
    assert_eq!((report.last_sequence, w.next_sequence()), (4, 5));
    assert_eq!(fs::metadata(&file).unwrap().len(), whole);
}

#[test]
fn a_damaged_last_block_is_a_tail_and_is_cut() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(2, FsyncPolicy::Never));
    for s in 1..=6 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();
    let file = path(dir.path());
    let len = fs::metadata(&file).unwrap().len();
    let last_block = len - (BLOCK_HEADER_SIZE + 2 * RECORD_SIZE) as u64;
    flip_byte(&file, len - 10);
    let (w, report) = open(dir.path(), 0, options(2, FsyncPolicy::Never));
    assert_eq!(report.truncated_at.as_ref().map(|t| (t.0, t.1.as_str())), Some((last_block, "checksum mismatch")));
    assert_eq!(w.next_sequence(), 5);
}

fn flip_byte(file: &Path, at: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
}

#[test]
fn a_flipped_byte_in_the_middle_is_named_and_nothing_is_cut() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    for s in 1..=40 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();
    let file = path(dir.path());
    // A byte inside the third block's second record (its last_price).
    let block = (BLOCK_HEADER_SIZE + 4 * RECORD_SIZE) as u64;
    let third = FILE_HEADER_SIZE as u64 + 2 * block;
    flip_byte(&file, third + (BLOCK_HEADER_SIZE + RECORD_SIZE + 88) as u64);
    let before = fs::read(&file).unwrap();

    let mut reader = JournalReader::open(&file).unwrap();
    let good: Vec<_> = reader.by_ref().take(8).map(Result::unwrap).collect();
    assert_complete(&good, 1, 8);
    let err = reader.next().unwrap().unwrap_err();
    let JournalError::Corrupt { offset, reason, .. } = &err else { panic!("{err}") };
    assert_eq!(*offset, third);
    assert!(reason.contains("checksum mismatch") && reason.contains("a whole block follows"), "{reason}");
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()) && text.contains(&format!("byte {third}")), "{text}");
    assert!(matches!(verify(&file), Err(JournalError::Corrupt { offset, .. }) if offset == third));

    let err = JournalWriter::open(dir.path(), "feed-a", DAY, 0, options(4, FsyncPolicy::Never)).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { offset, .. } if offset == third), "{err}");
    assert_eq!(fs::read(&file).unwrap(), before, "the writer changed nothing");
}

/// Rewrites the header with one field changed (and a valid checksum, as another build would write it).
fn rewrite_header(file: &Path, edit: impl FnOnce(&mut FileHeader)) {
    let f = fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    let header = JournalReader::open(file).unwrap().header().clone();
    let mut changed = header;
    edit(&mut changed);
    f.write_all_at(&changed.encode(), 0).unwrap();
}

#[test]
fn a_journal_of_another_layout_is_refused_before_reading() {
    let _no_spawn = no_spawn();
    for (what, edit) in [
        ("qilin_shm layout version", Box::new(|h: &mut FileHeader| h.layout_version += 1) as Box<dyn FnOnce(&mut _)>),
        ("qilin_shm layout fingerprint", Box::new(|h: &mut FileHeader| h.fingerprint ^= 1)),
        ("journal format version", Box::new(|h: &mut FileHeader| h.format_version = 3)),
        // Format 2 (encrypted) without its cipher code.
        ("journal cipher", Box::new(|h: &mut FileHeader| h.format_version = 2)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
        w.append_tick(&tick(1)).unwrap();
        w.finish().unwrap();
        let file = path(dir.path());
        rewrite_header(&file, edit);
        let before = fs::read(&file).unwrap();
        let err = JournalReader::open(&file).unwrap_err();
        assert!(matches!(&err, JournalError::Incompatible { what: w, .. } if *w == what), "{err}");
        assert!(err.to_string().contains(&file.display().to_string()), "{err}");
        let err = JournalWriter::open(dir.path(), "feed-a", DAY, 0, options(4, FsyncPolicy::Never)).unwrap_err();
        assert!(matches!(&err, JournalError::Incompatible { what: w, .. } if *w == what), "{err}");
        assert_eq!(fs::read(&file).unwrap(), before);
    }
}

#[test]
fn damaged_or_foreign_headers_are_refused() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    drop(w);
    let file = path(dir.path());
    flip_byte(&file, 40);
    assert!(matches!(JournalReader::open(&file), Err(JournalError::HeaderChecksum { .. })));
    fs::write(&file, [&b"QILINSHM"[..], &[7u8; 200]].concat()).unwrap();
    let err = JournalReader::open(&file).unwrap_err();
    assert!(matches!(&err, JournalError::NotAJournal { reason, .. } if reason.contains("magic")), "{err}");
    fs::write(&file, b"QILINJNL").unwrap();
    let err = JournalReader::open(&file).unwrap_err();
    assert!(matches!(&err, JournalError::NotAJournal { reason, .. } if reason.contains("8 bytes")), "{err}");
}

#[test]
fn an_empty_file_is_not_a_journal_to_readers_and_is_recreated_by_the_writer() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path());
    fs::write(&file, b"").unwrap();
    let err = JournalReader::open(&file).unwrap_err();
    assert!(matches!(&err, JournalError::NotAJournal { reason, .. } if reason.contains("empty")), "{err}");
    assert!(matches!(verify(&file), Err(JournalError::NotAJournal { .. })));
    let (mut w, report) = open(dir.path(), 41, options(4, FsyncPolicy::Never));
    assert!(report.created);
    w.append_tick(&tick(42)).unwrap();
    w.finish().unwrap();
    assert_complete(&read_all(&file), 42, 42);
}

#[test]
fn a_header_only_file_says_where_its_writer_stood() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = open(dir.path(), 5000, options(4, FsyncPolicy::EveryBlock));
    assert!(w.is_empty());
    drop(w);
    let file = path(dir.path());
    assert_eq!(fs::metadata(&file).unwrap().len(), FILE_HEADER_SIZE as u64);
    assert!(read_all(&file).is_empty());
    let summary = verify(&file).unwrap();
    assert_eq!((summary.blocks, summary.last_sequence), (0, 5000));
    let (w, report) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    assert!(!report.created);
    assert_eq!((report.last_sequence, w.next_sequence()), (5000, 5001));
}

#[test]
fn one_writer_per_file() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = open(dir.path(), 0, options(4, FsyncPolicy::Never));
    let err = JournalWriter::open(dir.path(), "feed-a", DAY, 0, options(4, FsyncPolicy::Never)).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    drop(w);
    assert!(JournalWriter::open(dir.path(), "feed-a", DAY, 0, options(4, FsyncPolicy::Never)).is_ok());
}

#[test]
fn a_file_of_another_feed_or_day_is_not_appended_to() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), 0, options(4, FsyncPolicy::Never)).0);
    let other = file_path(dir.path(), "feed-b", DAY);
    fs::copy(path(dir.path()), &other).unwrap();
    let err = JournalWriter::open(dir.path(), "feed-b", DAY, 0, options(4, FsyncPolicy::Never)).unwrap_err();
    assert!(matches!(&err, JournalError::WrongFile { found_feed, .. } if found_feed == "feed-a"), "{err}");
    let err = DirReader::open(dir.path(), "feed-b", 0..=u32::MAX).unwrap().next().unwrap().unwrap_err();
    assert!(matches!(err, JournalError::WrongFile { .. }), "{err}");
    for (feed, day) in [("bad name", DAY), ("feed-a", 20261301)] {
        let err = JournalWriter::open(dir.path(), feed, day, 0, options(4, FsyncPolicy::Never)).unwrap_err();
        assert!(matches!(err, JournalError::Invalid { .. }), "{err}");
    }
}

#[test]
fn a_directory_reads_as_one_stream_over_days() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let days = [20260302, 20260303, 20260304];
    let mut next = 1;
    for (i, day) in days.into_iter().enumerate() {
        let (mut w, _) =
            JournalWriter::open(dir.path(), "feed-a", day, next - 1, options(8, FsyncPolicy::Never)).unwrap();
        for _ in 0..10 + i as u64 {
            w.append_tick(&tick(next)).unwrap();
            next += 1;
        }
        w.finish().unwrap();
    }
    // Noise the listing must ignore: another feed, a temporary file, a bad day.
    fs::write(dir.path().join("feed-b-20260302.qj"), b"x").unwrap();
    fs::write(dir.path().join("feed-a-20260305.qj.tmp"), b"x").unwrap();
    fs::write(dir.path().join("feed-a-2026030.qj"), b"x").unwrap();
    let files = journal_files(dir.path(), "feed-a").unwrap();
    assert_eq!(files.iter().map(|f| f.trading_day).collect::<Vec<_>>(), days);
    let names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "no temporary file is left behind: {names:?}");

    let all: Vec<Entry> = DirReader::open(dir.path(), "feed-a", 0..=u32::MAX).unwrap().map(Result::unwrap).collect();
    assert_complete(&all, 1, next - 1);
    let mut reader = DirReader::open(dir.path(), "feed-a", 20260303..=20260304).unwrap();
    let first = reader.next().unwrap().unwrap();
    assert_eq!(first.first_sequence(), 11);
    assert_eq!(reader.current().unwrap().header().trading_day, 20260303);
    assert_eq!(reader.count(), 11 + 12 - 1);
    assert!(journal_files(&dir.path().join("missing"), "feed-a").unwrap().is_empty());
}

#[test]
fn fsync_policies_sync_when_they_say() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(2, FsyncPolicy::EveryBlock));
    for s in 1..=6 {
        w.append_tick(&tick(s)).unwrap();
    }
    assert_eq!((w.stats().blocks, w.stats().fsyncs, w.synced_sequence()), (3, 3, 6));
    drop(w);

    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(2, FsyncPolicy::Never));
    for s in 1..=6 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.maintain().unwrap();
    assert_eq!((w.stats().fsyncs, w.synced_sequence(), w.written_sequence()), (0, 0, 6));
    w.sync().unwrap();
    assert_eq!((w.stats().fsyncs, w.synced_sequence()), (1, 6));
    drop(w);

    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = open(dir.path(), 0, options(2, FsyncPolicy::Interval(Duration::ZERO)));
    w.append_tick(&tick(1)).unwrap();
    assert_eq!(w.stats().fsyncs, 0, "nothing written yet");
    w.append_tick(&tick(2)).unwrap();
    assert_eq!(w.stats().fsyncs, 1, "a zero interval syncs after the write");
    w.set_fsync_policy(FsyncPolicy::Interval(Duration::from_secs(3600)));
    w.append_tick(&tick(3)).unwrap();
    w.append_tick(&tick(4)).unwrap();
    w.maintain().unwrap();
    assert_eq!((w.stats().fsyncs, w.synced_sequence()), (1, 2), "not due for an hour");
}

#[test]
fn maintain_writes_a_partial_block_once_it_is_old() {
    let _no_spawn = no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions { block_records: 64, max_block_age: Duration::ZERO, fsync: FsyncPolicy::Never };
    let (mut w, _) = open(dir.path(), 0, opts);
    w.append_tick(&tick(1)).unwrap();
    assert_eq!(w.written_sequence(), 0);
    w.maintain().unwrap();
    assert_eq!((w.written_sequence(), w.buffered()), (1, 0));
    assert_complete(&read_all(&path(dir.path())), 1, 1);
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let _spawning = spawning();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _spawning = spawning();
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_leaves_the_file_whole_and_the_writer_resumable() {
    let tmpfs = Tmpfs::mount("256k");
    let filler = tmpfs.dir.path().join("filler");
    fs::write(&filler, vec![1u8; 128 << 10]).unwrap();
    let dir = tmpfs.dir.path().join("journal");
    let (mut w, _) = JournalWriter::open(&dir, "feed-a", DAY, 0, options(16, FsyncPolicy::Never)).unwrap();
    let mut next = 1;
    let err = loop {
        match w.append_tick(&tick(next)) {
            Ok(()) => next += 1,
            Err(e) => break e,
        }
        assert!(next < 100_000, "a 256 KiB tmpfs never filled");
    };
    let JournalError::DiskFull { offset, resume_from, source, .. } = &err else { panic!("{err}") };
    assert_eq!(source.raw_os_error(), Some(28), "{source}");
    assert!(err.to_string().contains("ENOSPC") && err.to_string().contains("feed-a-20260302.qj"), "{err}");
    let file = path(&dir);
    assert_eq!(fs::metadata(&file).unwrap().len(), *offset, "cut back to the last whole block");
    assert!(w.written_sequence() >= 16, "some blocks were written");
    assert_eq!(*resume_from, w.written_sequence() + 1);
    assert_eq!(w.next_sequence(), *resume_from, "the unwritten block was dropped");
    assert_eq!(verify(&file).unwrap().last_sequence, w.written_sequence());

    // Still full: a retry fails the same way and changes nothing.
    let resume = w.next_sequence();
    let err = (resume..resume + 16).find_map(|s| w.append_tick(&tick(s)).err()).expect("still full");
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(w.next_sequence(), resume);
    assert_eq!(verify(&file).unwrap().last_sequence, resume - 1);

    // Space comes back: the writer continues where the file ends.
    fs::remove_file(&filler).unwrap();
    for s in resume..resume + 100 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();
    assert_complete(&read_all(&file), 1, resume + 99);
}

//! qilin-recorder against a real qilin-core on the simulator: SIGKILLed under load, a torn tail
//! written on purpose, down longer than the ring holds, and a full disk (a 2 MiB tmpfs mounted by
//! the test; root is needed, as in CI).

mod common;

use std::{
    fs,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::*;
use nix::sys::signal::Signal;
use qilin_journal::{GapReason, journal_files, verify};
use qilin_shm::{Next, Reader, Start, TickRecord, now_ns};
use zerocopy::IntoBytes;

/// The tests of this file run one at a time: each runs a core at up to 15 000 ticks/s plus a
/// recorder, and four of those at once on a 2-core machine would lap their recorders for reasons
/// that have nothing to do with what each test checks.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn recorder_status(segment: &Path) -> Option<serde_json::Value> {
    status(segment, "recorder")
}

fn wait_position(segment: &Path, n: u64) -> serde_json::Value {
    wait_for(&format!("the recorder to journal sequence {n}"), || {
        recorder_status(segment).filter(|s| s["position"].as_u64().is_some_and(|p| p >= n))
    })
}

/// Every record of the ring from sequence 1 (the ring must not have wrapped).
fn ring_records(segment: &Path, last: u64) -> Vec<TickRecord> {
    let mut reader = Reader::open(segment).unwrap();
    reader.seek(Start::Sequence(1));
    let mut out = Vec::new();
    let mut tick = TickRecord::ZERO;
    while (out.len() as u64) < last {
        match reader.try_next(&mut tick) {
            Next::Tick => out.push(tick),
            Next::NewEpoch { .. } => {}
            other => panic!("reading the ring back: {other:?} after {} records", out.len()),
        }
    }
    out
}

fn assert_identical(journal: &[TickRecord], seen: &[TickRecord]) {
    let by_seq: std::collections::HashMap<u64, &TickRecord> = seen.iter().map(|t| (t.sequence, t)).collect();
    let mut compared = 0;
    for t in journal {
        if let Some(s) = by_seq.get(&t.sequence) {
            assert_eq!(t.as_bytes(), s.as_bytes(), "journal record {} differs from what the reader saw", t.sequence);
            compared += 1;
        }
    }
    assert!(compared > 0, "nothing to compare");
    println!("{compared} journal records compared byte for byte");
}

#[test]
fn the_journal_holds_every_sequence_once_across_sigkills() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("rec-kill");
    const TICKS: u64 = 60_000;
    // A ring larger than the run: the journal is compared with the ring byte for byte at the end.
    let core = Core::start(dir.path(), &feed, 1 << 17, 15_000, TICKS);
    let journal = dir.path().join("journal");
    let config = recorder_config(dir.path(), &core.segment, &journal, "");
    let log = dir.path().join("recorder.log");
    let mut recorder = Recorder::start(&config, &log);

    let mut seed = std::process::id() as u64 ^ now_ns() as u64;
    println!("kill schedule seed {seed}");
    let mut kills = 0;
    while core.reader().write_cursor() < TICKS * 4 / 5 {
        std::thread::sleep(Duration::from_millis(150 + lcg(&mut seed) % 300));
        assert_eq!(recorder.signal(Signal::SIGKILL).code(), None, "killed by a signal");
        kills += 1;
        recorder.restart();
    }
    assert!(kills >= 3, "only {kills} kills happened mid-stream");
    let status = wait_position(&core.segment, TICKS);
    assert_eq!(recorder.signal(Signal::SIGTERM).code(), Some(0), "clean stop on SIGTERM:\n{}", recorder.log());

    assert_eq!(status["sidecar"], "qilin-recorder");
    assert_eq!(status["feed"], feed.as_str());
    assert_eq!(status["lag_sequences"], 0);
    assert_eq!(status["disk_full"], false);
    assert_eq!(status["fsync"], "interval");
    let (ticks, gaps) = read_journal(&journal, &feed, TICKS);
    assert!(gaps.is_empty(), "the ring held everything, yet gap records {gaps:?}");
    assert_eq!(ticks.len() as u64, TICKS);
    assert_identical(&ticks, &ring_records(&core.segment, TICKS));
    let log = recorder.log();
    let resumed = log.matches("opened: ").count();
    println!("{kills} kills, {resumed} restarts resumed from the journal");
    assert!(resumed >= 3, "restarts resume from the journal file:\n{log}");
    // After SIGTERM the file is synced: the last status says so.
    let last = recorder_status(&core.segment).unwrap();
    assert_eq!(last["synced"], TICKS, "{last}");
}

#[test]
fn a_torn_tail_written_on_purpose_is_repaired_on_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("rec-torn");
    const TICKS: u64 = 20_000;
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    let journal = dir.path().join("journal");
    let config = recorder_config(dir.path(), &core.segment, &journal, "");
    let log = dir.path().join("recorder.log");
    let mut recorder = Recorder::start(&config, &log);
    wait_position(&core.segment, 2_000);
    assert_eq!(recorder.signal(Signal::SIGKILL).code(), None);

    // A write cut short: the first block's header and part of its payload again at the end, then
    // a few zeros, as a crash in the middle of a block write (or a power cut) leaves them.
    let file = journal_files(&journal, &feed).unwrap().pop().unwrap().path;
    let bytes = fs::read(&file).unwrap();
    let mut torn = bytes[128..128 + 32 + 1000].to_vec();
    torn.extend_from_slice(&[0u8; 77]);
    fs::OpenOptions::new().append(true).open(&file).unwrap().write_all_at_end(&torn);
    assert!(verify(&file).is_err(), "the tail is torn");

    recorder.restart();
    let status = wait_position(&core.segment, TICKS);
    assert_eq!(recorder.signal(Signal::SIGTERM).code(), Some(0), "{}", recorder.log());
    assert_eq!(status["counters"]["repaired_bytes"], torn.len() as u64, "{status}");
    let log = recorder.log();
    assert!(log.contains(&format!("cut a torn tail of {} bytes at byte {}", torn.len(), bytes.len())), "{log}");
    let (ticks, gaps) = read_journal(&journal, &feed, TICKS);
    assert!(gaps.is_empty(), "{gaps:?}");
    assert_identical(&ticks, &ring_records(&core.segment, TICKS));
}

trait AppendAll {
    fn write_all_at_end(self, bytes: &[u8]);
}

impl AppendAll for fs::File {
    fn write_all_at_end(mut self, bytes: &[u8]) {
        use std::io::Write;
        self.write_all(bytes).unwrap();
        self.sync_all().unwrap();
    }
}

/// Reads every tick of the segment from sequence 1 in a thread, as any reader would.
struct Collector {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<TickRecord>>>,
}

impl Collector {
    fn start(segment: &Path) -> Collector {
        let mut reader = Reader::open(segment).unwrap();
        reader.seek(Start::Sequence(1));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut tick = TickRecord::ZERO;
            while !flag.load(Ordering::Relaxed) {
                match reader.try_next(&mut tick) {
                    Next::Tick => out.push(tick),
                    Next::Empty => std::thread::sleep(Duration::from_micros(200)),
                    _ => {}
                }
            }
            out
        });
        Collector { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<TickRecord> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_recorder_down_longer_than_the_ring_writes_gap_records() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("rec-gap");
    const TICKS: u64 = 40_000;
    const RING: u64 = 4096;
    let core = Core::start(dir.path(), &feed, RING, 15_000, TICKS);
    let collector = Collector::start(&core.segment);
    let reader = core.reader();
    wait_for("the core to lap its ring twice", || (reader.write_cursor() > 2 * RING).then_some(()));
    let journal = dir.path().join("journal");
    let config = recorder_config(dir.path(), &core.segment, &journal, "");
    let log = dir.path().join("recorder.log");
    let mut recorder = Recorder::start(&config, &log);
    wait_position(&core.segment, 3 * RING);
    assert_eq!(recorder.signal(Signal::SIGKILL).code(), None);
    let file = journal_files(&journal, &feed).unwrap().pop().unwrap().path;
    let killed_at = verify(&file).unwrap().last_sequence;
    wait_for("the core to lap the stopped recorder", || (reader.write_cursor() > killed_at + 2 * RING).then_some(()));
    recorder.restart();
    wait_position(&core.segment, TICKS);
    assert_eq!(recorder.signal(Signal::SIGTERM).code(), Some(0), "{}", recorder.log());

    let (ticks, gaps) = read_journal(&journal, &feed, TICKS);
    println!("gap records: {gaps:?}");
    // Starting (and restarting) at the oldest slot of a busy ring, the recorder may be lapped once
    // more while it catches up: such a gap follows directly and says `lapped`.
    assert_eq!((gaps[0].first, gaps[0].reason), (1, GapReason::Restart), "the journal starts at sequence 1");
    let restart = gaps.iter().find(|g| g.first == killed_at + 1).unwrap_or_else(|| panic!("no gap after {killed_at}"));
    assert_eq!(restart.reason, GapReason::Restart);
    assert!(restart.count() >= RING, "{restart:?}");
    assert!(gaps.iter().all(|g| g.reason != GapReason::DiskFull), "{gaps:?}");
    assert_identical(&ticks, &collector.finish());
    assert!(recorder.log().contains("are gone from the ring; gap record (restart)"), "{}", recorder.log());
}

#[test]
fn a_full_disk_pauses_recording_reports_it_and_resumes_without_corruption() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = qilin_testkit::Tmpfs::mount(dir.path().join("disk"), "2m");
    let feed = unique("rec-full");
    const TICKS: u64 = 5_000;
    const RING: u64 = 2048;
    let core = Core::start(dir.path(), &feed, RING, 1_000, TICKS);
    let collector = Collector::start(&core.segment);
    let reader = core.reader();
    let journal = tmpfs.dir.join("journal");
    let filler = tmpfs.fill("filler-1", 200 << 10);
    let config = recorder_config(dir.path(), &core.segment, &journal, "");
    let log = dir.path().join("recorder.log");
    let mut recorder = Recorder::start(&config, &log);

    // Episode 1: the disk fills; the recorder says so, the file stays whole; space comes back
    // quickly, and recording resumes from the ring (nothing lost).
    let full = wait_for("the recorder to report a full disk", || {
        recorder_status(&core.segment).filter(|s| s["disk_full"] == true)
    });
    let file = journal_files(&journal, &feed).unwrap().pop().unwrap().path;
    assert_eq!(full["file"], file.display().to_string());
    assert!(full["last_error"].as_str().unwrap().contains("ENOSPC"), "{full}");
    assert_eq!(full["counters"]["disk_full"], 1);
    let log_text = recorder.log();
    let line = log_text.lines().find(|l| l.contains("DISK FULL")).unwrap_or_else(|| panic!("no log line:\n{log_text}"));
    assert!(line.contains("ENOSPC") && line.contains(&file.display().to_string()), "{line}");
    let summary = verify(&file).unwrap_or_else(|e| panic!("corrupt while the disk is full: {e}"));
    assert!(summary.last_sequence <= full["position"].as_u64().unwrap() + 64);
    fs::remove_file(&filler).unwrap();
    let resumed = wait_for("recording to resume", || {
        recorder_status(&core.segment)
            .filter(|s| s["disk_full"] == false && s["position"].as_u64() > full["position"].as_u64())
    });
    assert_eq!(resumed["last_error"], serde_json::Value::Null);
    assert!(recorder.log().contains("disk space is back"), "{}", recorder.log());

    // Episode 2: full again, this time until the core laps the ring: a gap record (disk-full).
    let filler = tmpfs.fill("filler-2", 150 << 10);
    let full = wait_for("the second full disk", || {
        recorder_status(&core.segment).filter(|s| s["disk_full"] == true && s["counters"]["disk_full"] == 2)
    });
    let stalled = full["position"].as_u64().unwrap();
    wait_for("the core to lap the paused recorder", || (reader.write_cursor() > stalled + RING + 64).then_some(()));
    verify(&file).unwrap_or_else(|e| panic!("corrupt while the disk is full: {e}"));
    fs::remove_file(&filler).unwrap();
    let done = wait_position(&core.segment, TICKS);
    assert_eq!(done["disk_full"], false);
    assert!(done["counters"]["disk_full_retries"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(recorder.signal(Signal::SIGTERM).code(), Some(0), "{}", recorder.log());

    let (ticks, gaps) = read_journal(&journal, &feed, TICKS);
    // Only the second episode outlasted the ring. Its loss may be split over a few records that
    // follow each other directly (a gap record fits in the file's last page while the ticks after
    // it do not; the next retry finds more overwritten), all `disk-full`, starting right after the
    // position kept while the disk was full, together at least the lap the test waited for.
    println!("gap records: {gaps:?}");
    assert!(!gaps.is_empty() && gaps.iter().all(|g| g.reason == GapReason::DiskFull), "{gaps:?}");
    assert_eq!(gaps[0].first, stalled + 1, "{gaps:?}");
    assert!(gaps.windows(2).all(|w| w[1].first == w[0].last + 1), "one run of lost sequences: {gaps:?}");
    let lost: u64 = gaps.iter().map(|g| g.count()).sum();
    assert!(lost >= 64, "{gaps:?}");
    assert_eq!(ticks.len() as u64, TICKS - lost, "every other sequence is a tick");
    assert_identical(&ticks, &collector.finish());
    assert_eq!(recorder.log().matches("DISK FULL").count(), 2, "loud once per episode, not per retry");
}

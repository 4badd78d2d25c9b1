//! Journal throughput (qilin-journal): writing ticks per fsync policy, and reading them back.
//!
//! Run: `cargo bench -p qilin-benches --bench journal` (prints one table; BENCHMARKS.md records it).
//! Files go to `QILIN_BENCH_DIR` (default: the system temp directory, which must be on the disk you
//! want to measure, not a tmpfs). Knobs: `QILIN_BENCH_TICKS` (default 2 000 000 per run),
//! `QILIN_BENCH_RUNS` (default 3).
//!
//! - **write**: `JournalWriter::append_tick` of prepared records (sequence set per tick), 64 records
//!   per block (the recorder's default), then `finish()` (the last block written and fdatasynced):
//!   the figure is what the recorder's writing costs, from the first append to data on stable
//!   storage. `every_block` runs a tenth of the ticks (it is bound by the device's flush latency);
//!   `every_block_1024` shows the same policy with 1024-record blocks (fewer, larger flushes).
//! - **baseline/raw_write**: the same bytes with plain `write_all` and one `fdatasync`, in the same
//!   run: the ceiling the disk and page cache set (journal ÷ baseline is the journal's overhead).
//! - **read**: `JournalReader` over the file just written (in the page cache), as `Entry` values
//!   (what replay and export iterate) and with `next_into` (no `Entry` built), and `verify` (every
//!   checksum, what opening a file for appending costs).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use qilin_benches::sample_record;
use qilin_journal::{Entry, FsyncPolicy, JournalReader, JournalWriter, WriterOptions, file_path, verify};
use qilin_shm::TickRecord;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figure {
    name: String,
    runs: Vec<f64>,
    extra: String,
}

impl Figure {
    fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

/// Writes `ticks` records to a fresh journal in `dir`; returns (seconds to stable storage,
/// seconds until the last append returned, stats line).
fn write_run(dir: &Path, ticks: u64, fsync: FsyncPolicy, block_records: u32) -> (Duration, Duration, String) {
    let _ = std::fs::remove_dir_all(dir);
    let records: Vec<TickRecord> = (0..64).map(|i| sample_record(i % 4)).collect();
    let options = WriterOptions { block_records, max_block_age: Duration::from_millis(20), fsync };
    let started = Instant::now();
    let (mut writer, _) = JournalWriter::open(dir, "bench", 20261123, 0, options).unwrap();
    for sequence in 1..=ticks {
        let mut tick = records[(sequence % 64) as usize];
        tick.sequence = sequence;
        writer.append_tick(&tick).unwrap();
    }
    let appended = started.elapsed();
    let stats = writer.finish().unwrap();
    let took = started.elapsed();
    let extra = format!(
        "{} fsyncs, last {:.0} µs, max {:.0} µs",
        stats.fsyncs,
        stats.last_fsync_ns as f64 / 1e3,
        stats.max_fsync_ns as f64 / 1e3
    );
    (took, appended, extra)
}

/// Same-run baseline: the same number of bytes written with plain `write_all` of block-sized
/// buffers (no records, no checksums) and one `fdatasync`: what the disk and page cache allow.
fn raw_write_run(dir: &Path, ticks: u64) -> Duration {
    use std::io::Write;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let block = vec![0x5au8; 32 + 64 * 376];
    let blocks = ticks / 64;
    let started = Instant::now();
    let mut file = std::fs::File::create(dir.join("raw")).unwrap();
    for _ in 0..blocks {
        file.write_all(&block).unwrap();
    }
    file.sync_data().unwrap();
    started.elapsed()
}

fn read_entries(file: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let mut n = 0u64;
    let mut checksum = 0u64;
    for entry in JournalReader::open(file).unwrap() {
        if let Entry::Tick(t) = entry.unwrap() {
            checksum = checksum.wrapping_add(t.sequence);
            n += 1;
        }
    }
    std::hint::black_box(checksum);
    (started.elapsed(), n)
}

fn read_into(file: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let mut reader = JournalReader::open(file).unwrap();
    let mut tick = TickRecord::ZERO;
    let mut n = 0u64;
    while let Some(gap) = reader.next_into(&mut tick).unwrap() {
        if gap.is_none() {
            n += 1;
        }
    }
    std::hint::black_box(tick.sequence);
    (started.elapsed(), n)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let base: PathBuf = std::env::var_os("QILIN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("qilin-bench-journal-{}", std::process::id()));
    let ticks = env_u64("QILIN_BENCH_TICKS", 2_000_000);
    let runs = env_u64("QILIN_BENCH_RUNS", 3).max(1);
    println!(
        "journal bench: {ticks} ticks per run ({} MB of records), {runs} runs, in {}",
        ticks * 376 / 1_000_000,
        dir.display()
    );

    let policies = [
        ("write/never", FsyncPolicy::Never, ticks, 64),
        ("write/interval_200ms", FsyncPolicy::Interval(Duration::from_millis(200)), ticks, 64),
        ("write/every_block", FsyncPolicy::EveryBlock, (ticks / 10).max(64), 64),
        ("write/every_block_1024", FsyncPolicy::EveryBlock, (ticks / 4).max(1024), 1024),
    ];
    let mut figures = Vec::new();
    let mut raw = Figure { name: "baseline/raw_write".into(), runs: Vec::new(), extra: String::new() };
    for _ in 0..runs {
        let took = raw_write_run(&dir, ticks);
        raw.runs.push((ticks / 64 * 64) as f64 / took.as_secs_f64());
    }
    raw.extra = "plain write_all of 24 KB buffers + one fdatasync, same bytes (ticks/s equivalent)".into();
    figures.push(raw);
    for (name, policy, n, block_records) in policies {
        let mut figure = Figure { name: name.into(), runs: Vec::new(), extra: String::new() };
        let mut appends = Vec::new();
        for _ in 0..runs {
            let (took, appended, extra) = write_run(&dir, n, policy, block_records);
            figure.runs.push(n as f64 / took.as_secs_f64());
            appends.push(format!("{:.2}", n as f64 / appended.as_secs_f64() / 1e6));
            figure.extra = format!("{n} ticks; {extra}");
        }
        figure.extra = format!("{}; appends alone {} M/s", figure.extra, appends.join(" / "));
        figures.push(figure);
    }

    // Reading: the file of the last `never` run, rewritten once more and left in the page cache.
    let _ = write_run(&dir, ticks, FsyncPolicy::Never, 64);
    let file = file_path(&dir, "bench", 20261123);
    let bytes = std::fs::metadata(&file).unwrap().len();
    let mut entries = Figure { name: "read/entries".into(), runs: Vec::new(), extra: String::new() };
    let mut into = Figure { name: "read/next_into".into(), runs: Vec::new(), extra: String::new() };
    let mut scan = Figure { name: "verify".into(), runs: Vec::new(), extra: String::new() };
    for _ in 0..runs {
        let (took, n) = read_entries(&file);
        assert_eq!(n, ticks);
        entries.runs.push(n as f64 / took.as_secs_f64());
        let (took, n) = read_into(&file);
        assert_eq!(n, ticks);
        into.runs.push(n as f64 / took.as_secs_f64());
        let started = Instant::now();
        let summary = verify(&file).unwrap();
        assert_eq!(summary.ticks, ticks);
        scan.runs.push(ticks as f64 / started.elapsed().as_secs_f64());
    }
    let note = format!("{ticks} ticks, {:.0} MB file in the page cache", bytes as f64 / 1e6);
    for f in [&mut entries, &mut into, &mut scan] {
        f.extra = note.clone();
    }
    figures.extend([entries, into, scan]);
    let _ = std::fs::remove_dir_all(&dir);

    println!("{:<24} {:>10} {:>7} {:>20}  notes", "figure", "median M/s", "MB/s", "runs (M ticks/s)");
    for f in &figures {
        let runs: Vec<String> = f.runs.iter().map(|r| format!("{:.2}", r / 1e6)).collect();
        println!(
            "{:<24} {:>10.2} {:>7.0} {:>20}  {}",
            f.name,
            f.median() / 1e6,
            f.median() * 376.0 / 1e6,
            runs.join(" / "),
            f.extra
        );
    }
}

//! The cost of journal encryption at rest, measured in one run: the recorder's write path
//! (`JournalWriter::append_tick` with the recorder's default options, 64 records per block and
//! `fsync = interval` 200 ms, until `finish()` has the last block on stable storage) without and
//! with a `journal-encryption` key, and reading the file back (`JournalReader::next_into`, what
//! replay and export iterate) without and with its key. Runs alternate plain / encrypted, so both
//! see the same machine load; the ratio is taken per pair.
//!
//! Run: `cargo bench -p qilin-journal --bench encryption` (BENCHMARKS.md, "Journal encryption").
//! Files go to `QILIN_BENCH_DIR` (default: the system temp directory; it must be on the disk to
//! measure, not a tmpfs). Knobs: `QILIN_BENCH_TICKS` (default 1 000 000 per run),
//! `QILIN_BENCH_RUNS` (default 5 pairs).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use qilin_journal::{FsyncPolicy, JournalKey, JournalReader, JournalWriter, Keyring, WriterOptions, file_path};
use qilin_shm::TickRecord;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A record with realistic contents (every field set, four instruments).
fn record(i: u64) -> TickRecord {
    let mut r = TickRecord::ZERO;
    r.exchange_time_ns = 1_795_000_000_000_000_000 + i as i64 * 1_000;
    r.receive_ns = r.exchange_time_ns + 1_500_000;
    r.publish_ns = r.receive_ns + 2_000;
    r.instrument_index = (i % 4) as u32;
    r.trading_day = 20261123;
    r.action_day = 20261123;
    r.instrument_id[..6].copy_from_slice(format!("rb26{:02}", i % 4 + 1).as_bytes());
    r.last_price = 3_512.0 + (i % 7) as f64;
    r.volume = 412_345 + i as i64;
    r.turnover = 14_480_000_000.0;
    r.open_interest = 1_861_002.0;
    r.bid_price = [3_511.0, 3_510.0, 3_509.0, 3_508.0, 3_507.0];
    r.ask_price = [3_512.0, 3_513.0, 3_514.0, 3_515.0, 3_516.0];
    r.bid_volume = [12, 40, 7, 90, 3];
    r.ask_volume = [5, 18, 60, 2, 11];
    r
}

/// Writes `ticks` records; seconds from the first append to `finish()` returning.
fn write(dir: &Path, ticks: u64, key: Option<&JournalKey>) -> Duration {
    let _ = std::fs::remove_dir_all(dir);
    let records: Vec<TickRecord> = (0..64).map(record).collect();
    let options = WriterOptions {
        block_records: 64,
        max_block_age: Duration::from_millis(20),
        fsync: FsyncPolicy::Interval(Duration::from_millis(200)),
    };
    let started = Instant::now();
    let (mut writer, _) = JournalWriter::open_keyed(dir, "bench", 20261123, 0, options, key).unwrap();
    for sequence in 1..=ticks {
        let mut tick = records[(sequence % 64) as usize];
        tick.sequence = sequence;
        writer.append_tick(&tick).unwrap();
    }
    writer.finish().unwrap();
    started.elapsed()
}

/// Reads the file back; seconds.
fn read(dir: &Path, ticks: u64, keys: Option<Arc<Keyring>>) -> Duration {
    let started = Instant::now();
    let mut reader = JournalReader::open_keyed(file_path(dir, "bench", 20261123), keys).unwrap();
    let mut tick = TickRecord::ZERO;
    let mut n = 0;
    while reader.next_into(&mut tick).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, ticks);
    started.elapsed()
}

fn spread(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    format!("median {:.3}, min {:.3}, max {:.3}", s[s.len() / 2], s[0], s[s.len() - 1])
}

fn main() {
    let ticks = env_u64("QILIN_BENCH_TICKS", 1_000_000);
    let runs = env_u64("QILIN_BENCH_RUNS", 5);
    let base = std::env::var_os("QILIN_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::Builder::new().prefix("qilin-bench-enc-").tempdir_in(base).unwrap();
    let (plain_dir, sealed_dir) = (dir.path().join("plain"), dir.path().join("sealed"));
    let key = JournalKey::new(1, &[0x5a; 32]).unwrap();
    let mut ring = Keyring::new("bench");
    ring.insert(key.clone());
    let keys = Arc::new(ring);
    let m = |d: Duration| ticks as f64 / d.as_secs_f64() / 1e6;
    let (mut wp, mut we, mut wr, mut rp, mut re, mut rr) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    println!("{ticks} ticks per run, {runs} pairs (plain then encrypted), M ticks/s");
    println!(
        "{:>4} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
        "run", "write plain", "write enc", "ratio", "read plain", "read enc", "ratio"
    );
    for run in 1..=runs {
        let (a, b) = (m(write(&plain_dir, ticks, None)), m(write(&sealed_dir, ticks, Some(&key))));
        let (c, d) = (m(read(&plain_dir, ticks, None)), m(read(&sealed_dir, ticks, Some(keys.clone()))));
        println!("{run:>4} {a:>12.3} {b:>12.3} {:>7.3} {c:>12.3} {d:>12.3} {:>7.3}", b / a, d / c);
        wp.push(a);
        we.push(b);
        wr.push(b / a);
        rp.push(c);
        re.push(d);
        rr.push(d / c);
    }
    println!("write plain     {}", spread(&wp));
    println!("write encrypted {}", spread(&we));
    println!("write ratio     {}", spread(&wr));
    println!("read plain      {}", spread(&rp));
    println!("read encrypted  {}", spread(&re));
    println!("read ratio      {}", spread(&rr));
}

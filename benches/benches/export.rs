//! Export throughput: `qilinctl export --parquet` against `qilinctl export --csv` of the same
//! journal, in the same run (BENCHMARKS.md, "Parquet export"; format in docs/PARQUET.md).
//!
//! Run (release qilinctl first: nothing links qilin-tools, so the bench runs the binary):
//!
//! ```sh
//! cargo build --release -p qilin-tools --bin qilinctl
//! cargo bench -p qilin-benches --bench export
//! ```
//!
//! The journal (one trading day, `QILIN_BENCH_TICKS` ticks, default 2 000 000, of 400 instruments
//! with random-walk prices, cumulative volumes, absent prices now and then and times advancing at
//! a whole-market rate) is written once to `QILIN_BENCH_DIR` (default: the system temp directory).
//! Then, `QILIN_BENCH_RUNS` times (default 5), back to back: `export --parquet` to a file,
//! `export --csv` to a file, and the read floor, `export --csv --instrument <none>` (every entry of
//! the journal read and decoded, nothing written). Each figure is the wall time of the whole
//! process (start-up, reading, encoding, fsync of the output, rename) ÷ ticks; "per CPU second"
//! divides by the process's user + system time instead (both of its threads; robust to a busy
//! machine, coarse: 1/100 s). The ratio is
//! per run (Parquet ticks/s ÷ CSV ticks/s of the same run). The binary is `QILINCTL`, else the
//! `qilinctl` beside this bench's target directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use qilin_journal::{FsyncPolicy, JournalWriter, WriterOptions, file_path};
use qilin_shm::{Exchange, Source, TickRecord, layout::fixed_id};

const DAY: u32 = 20261123;
const INSTRUMENTS: u32 = 400;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn qilinctl() -> PathBuf {
    if let Some(p) = std::env::var_os("QILINCTL") {
        return p.into();
    }
    // target/release/deps/export-… → target/release/qilinctl
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("qilinctl")).unwrap();
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build --release -p qilin-tools --bin qilinctl` (same target dir), or set QILINCTL",
        bin.display()
    );
    bin
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Writes the bench journal; returns its path.
fn make_journal(dir: &Path, ticks: u64) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    let options = WriterOptions { block_records: 64, max_block_age: Duration::MAX, fsync: FsyncPolicy::Never };
    let (mut w, _) = JournalWriter::open(dir, "bench", DAY, 0, options).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = INSTRUMENTS as usize;
    let mut last = vec![0f64; n];
    let mut volume = vec![0i64; n];
    let exchanges = [Exchange::Shfe, Exchange::Dce, Exchange::Czce, Exchange::Cffex, Exchange::Ine, Exchange::Gfex];
    for (i, l) in last.iter_mut().enumerate() {
        *l = 1000.0 + (i as f64) * 37.0;
    }
    // 09:00 China time, one tick every 50 µs on average (20 k ticks/s, the whole market).
    let start_ns = qilin_market::date::utc_ns(qilin_market::Date::from_ymd(DAY).unwrap(), 9 * 3600, 0);
    let mut now_ns = start_ns;
    for seq in 1..=ticks {
        let r = rng.next();
        let k = (r % u64::from(INSTRUMENTS)) as usize;
        now_ns += 25_000 + (r >> 40) as i64 % 50_000;
        last[k] += ((r >> 20) % 5) as f64 - 2.0;
        volume[k] += ((r >> 24) % 20) as i64;
        let mut t = TickRecord::ZERO;
        t.sequence = seq;
        t.instrument_index = k as u32;
        t.instrument_id = fixed_id(&format!("x{:03}{:04}", k, 2600 + k % 12)).unwrap();
        t.exchange = exchanges[k % exchanges.len()] as u8;
        t.source = Source::Primary as u8;
        t.trading_day = DAY;
        t.action_day = DAY;
        // The exchange stamps whole half-seconds (most exchanges' UpdateMillisec is 0 or 500).
        let exch_ns = now_ns - now_ns.rem_euclid(500_000_000);
        t.exchange_time_ns = exch_ns;
        t.update_time_ms = ((exch_ns - start_ns) / 1_000_000) as u32 + 9 * 3_600_000;
        t.receive_ns = now_ns;
        t.publish_ns = now_ns + 700 + (r % 300) as i64;
        let p = last[k];
        t.last_price = if r.is_multiple_of(1000) { f64::NAN } else { p };
        t.pre_settlement_price = 1000.0 + (k as f64) * 37.0;
        t.pre_close_price = t.pre_settlement_price + 1.0;
        t.pre_open_interest = 100_000.0 + k as f64;
        t.open_price = t.pre_settlement_price + 2.0;
        t.highest_price = p + 10.0;
        t.lowest_price = p - 10.0;
        t.volume = volume[k];
        t.turnover = volume[k] as f64 * p * 10.0;
        t.open_interest = 100_000.0 + (r % 5000) as f64;
        t.close_price = f64::NAN;
        t.settlement_price = f64::NAN;
        t.upper_limit_price = t.pre_settlement_price * 1.08;
        t.lower_limit_price = t.pre_settlement_price * 0.92;
        t.pre_delta = f64::NAN;
        t.curr_delta = f64::NAN;
        t.average_price = p - 0.5;
        t.banding_upper_price = f64::NAN;
        t.banding_lower_price = f64::NAN;
        for level in 0..5 {
            t.bid_price[level] = p - 1.0 - level as f64;
            t.ask_price[level] = p + 1.0 + level as f64;
            t.bid_volume[level] = ((r >> (8 + level * 4)) % 50) as i32 + 1;
            t.ask_volume[level] = ((r >> (28 + level * 4)) % 50) as i32 + 1;
        }
        w.append_tick(&t).unwrap();
    }
    w.finish().unwrap();
    file_path(dir, "bench", DAY)
}

/// CPU seconds (user + system) of this process's waited-for children so far, from
/// /proc/self/stat (`cutime`, `cstime`, in clock ticks of 1/100 s).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the whole line: 14 and 15 after the name.
    (f[13].parse::<f64>().unwrap() + f[14].parse::<f64>().unwrap()) / 100.0
}

/// Runs qilinctl; returns the wall time and the CPU time (user + system) it used.
fn timed(bin: &Path, args: &[&str]) -> (Duration, f64) {
    let cpu = children_cpu();
    let started = Instant::now();
    let out = Command::new(bin).args(args).env_remove("QILIN_AUDIT_LOG").output().unwrap();
    let elapsed = started.elapsed();
    assert!(out.status.success(), "qilinctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (elapsed, children_cpu() - cpu)
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let ticks = if quick { 20_000 } else { env_u64("QILIN_BENCH_TICKS", 2_000_000) };
    let runs = if quick { 1 } else { env_u64("QILIN_BENCH_RUNS", 5) as usize };
    let bin = qilinctl();
    let root = std::env::var_os("QILIN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("qilin-bench-export-{}", std::process::id()));
    let journal = make_journal(&root.join("journal"), ticks);
    let (pq, csv) = (root.join("out.parquet"), root.join("out.csv"));
    let (j, pq_s, csv_s) = (journal.to_str().unwrap(), pq.to_str().unwrap(), csv.to_str().unwrap());

    let (mut parquet_rate, mut csv_rate, mut floor_rate, mut ratio) = (vec![], vec![], vec![], vec![]);
    let (mut parquet_cpu, mut csv_cpu) = (vec![], vec![]);
    let rate = |(wall, cpu): (Duration, f64)| (ticks as f64 / wall.as_secs_f64(), ticks as f64 / cpu.max(0.01));
    for _ in 0..runs {
        let (p, p_cpu) = rate(timed(&bin, &["export", "--parquet", "--file", j, "-o", pq_s]));
        let (c, c_cpu) = rate(timed(&bin, &["export", "--csv", "--file", j, "-o", csv_s]));
        let (f, _) = rate(timed(&bin, &["export", "--csv", "--file", j, "--instrument", "none-such", "-o", csv_s]));
        parquet_rate.push(p);
        csv_rate.push(c);
        floor_rate.push(f);
        ratio.push(p / c);
        parquet_cpu.push(p_cpu);
        csv_cpu.push(c_cpu);
    }
    // The last CSV run wrote nothing (the floor): write it once more for its size.
    timed(&bin, &["export", "--csv", "--file", j, "-o", csv_s]);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let journal_bytes = size(&journal);

    println!(
        "export of one journal day: {ticks} ticks, {INSTRUMENTS} instruments, {runs} run(s), qilinctl {}",
        bin.display()
    );
    println!("{:<44} {:>12} {:>12} {:>12} {:>12}", "figure", "median", "min", "max", "bytes/tick");
    let row = |name: &str, v: &[f64], unit: f64, bytes: Option<f64>| {
        let (m, lo, hi) = stats(v);
        let b = bytes.map_or("—".to_string(), |b| format!("{:.1}", b / ticks as f64));
        println!("{name:<44} {:>12.3} {:>12.3} {:>12.3} {b:>12}", m / unit, lo / unit, hi / unit);
    };
    row("export --parquet (M ticks/s)", &parquet_rate, 1e6, Some(size(&pq)));
    row("export --csv (M ticks/s)", &csv_rate, 1e6, Some(size(&csv)));
    row("read floor: export --csv, no row (M ticks/s)", &floor_rate, 1e6, Some(journal_bytes));
    row("ratio parquet / csv, per run", &ratio, 1.0, None);
    row("export --parquet, per CPU second (M ticks/s)", &parquet_cpu, 1e6, None);
    row("export --csv, per CPU second (M ticks/s)", &csv_cpu, 1e6, None);
    let _ = std::fs::remove_dir_all(&root);
}

//! `qilin-budget`: the instruction budget of the core's hot path, which CI holds (issue 20).
//!
//! `qilin-budget loop <path> <n>` runs one path of `qilin_core::engine::Engine` `n` times and does
//! nothing else worth counting. The engine is set up as `benches/benches/ingest.rs` sets it up
//! (instruments from config/instruments.toml, calendar from config/calendar, `Admit::AnyKnownProduct`,
//! a 65 536-slot segment in /dev/shm), its inputs are 64 rounds of raw 6.7.x structs of every listed
//! instrument (`RawTicks`, 11 840 structs in all for its 185 instruments), one warm pass admits every instrument, then the
//! path runs `n` times round robin over the prepared inputs:
//!
//! - `udp`: `Engine::process(struct, receive_ns, Source::Udp)`, the UDP struct path (the SDK
//!   hand-off path calls the same function). One call = one struct, published.
//! - `session`: `Engine::process_deduplicated(struct, receive_ns, source, window)` as the
//!   two-session input delivers: both sessions carry every struct, and the hot loop takes up to
//!   `SESSION_BATCH` (16) from the primary's hand-off, then as many from the backup's; so the inputs
//!   are 16 structs from `Source::Primary`, the same 16 from `Source::Backup`, the next 16, …. One
//!   call = one delivery: half the calls publish, half are duplicates, and the figure is their mean
//!   (per published tick it is twice that). The window is 2 048 ticks (the core sizes it at twice a
//!   hand-off, 131 072 by default): small enough that a struct is forgotten before the round robin
//!   brings it back, so each first copy is new. A full set's table is half full at any capacity, so
//!   its probes, and the instructions, are those of the default size (its cache misses are not).
//! - `replay`: `Engine::replay(&record)` on the records the `udp` path publishes for the same
//!   structs (a first engine normalizes them once; a second one replays them).
//!
//! Each run checks that the path published what it should (every call, or every first copy), so a
//! change that turns the loop into a reject path fails rather than looking cheap.
//!
//! `qilin-budget check [--budget FILE] [--update]` runs itself under `valgrind --tool=callgrind` for
//! each path, counting only the measured loop: the calls run inside one never-inlined function,
//! `counted_loop`, and callgrind starts with collection off (`--collect-atstart=no`) and toggles it
//! on entering and leaving that function (`--toggle-collect`). Start-up, set-up, the warm pass and
//! the exit are not counted, in particular the TSC calibration in `Engine::new` (quanta's), which
//! runs until its error settles and so runs longer on a busy machine: with two runs and Δtotal ÷ Δn,
//! as before, it did not always cancel (udp 1 157.0 and 1 137.4 from two checks of one binary under
//! load). So one run a path is exact: the loop runs `CYCLES` (28) × the 11 840 structs, every
//! prepared input the same number of times (the `session` path's 23 680 deliveries 14 times), and
//! instructions per call = the loop's total `Ir` ÷ its calls. That figure holds what the loop adds
//! to each call too: the walk over the inputs, the `black_box` of the input and the call (the index
//! modulo the inputs' number used until 2026-12-05 added 15 more: udp 835.0 → 820.0); its entry and
//! exit are < 0.001 a call. It prints
//! path / measured / budget / ratio and fails, naming the path, when a path measures more than its
//! budget in `benches/budget.toml` + 10 %. `--update` writes the measured figures (rounded) into the
//! file instead, keeping its comments. Only the release build is measured (debug counts mean
//! nothing): `cargo run --release -p qilin-benches --bin qilin-budget -- check`.

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use qilin_benches::{
    TempSegment,
    budget::{self, Row},
    harness::core_paths::{RawTicks, calendar, instruments},
};
use qilin_core::{
    config::Admit,
    engine::{Command as EngineCommand, Engine, EngineOptions, SESSION_BATCH},
};
use qilin_shm::{Next, Reader, SegmentOptions, Source, Start, TickRecord, Writer};

/// The set-up's rounds of structs per instrument (as `benches/benches/ingest.rs`).
const ROUNDS: usize = 64;
/// The `session` path's deduplication window (see the module doc).
const WINDOW: usize = 2048;
/// The callgrind pattern naming [`counted_loop`] (its demangled path ends in it; no other function does).
const COUNTED: &str = "*::counted_loop*";
/// How many times `check` runs each path's round robin over its inputs: calls = `CYCLES` × the
/// structs (even, so that the `session` path, whose deliveries are twice the structs, also runs
/// whole rounds).
const CYCLES: usize = 28;

/// qilin-budget: instructions per call of the core's hot paths, against benches/budget.toml.
#[derive(Debug, Parser)]
#[command(after_help = "CI: cargo run --release -p qilin-benches --bin qilin-budget -- check")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one path n times after the set-up and a warm pass (what `check` counts under callgrind).
    Loop {
        /// The path.
        path: PathKind,
        /// Calls after the warm pass.
        n: u64,
    },
    /// Measure every path under callgrind and compare it with its budget (+10 % allowed).
    Check {
        /// The budget file.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/budget.toml"))]
        budget: PathBuf,
        /// Write the measured figures into the budget file (comments kept) instead of failing.
        #[arg(long)]
        update: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PathKind {
    Udp,
    Session,
    Replay,
}

impl PathKind {
    const ALL: [PathKind; 3] = [PathKind::Udp, PathKind::Session, PathKind::Replay];

    fn name(self) -> &'static str {
        match self {
            PathKind::Udp => "udp",
            PathKind::Session => "session",
            PathKind::Replay => "replay",
        }
    }
}

fn main() -> ExitCode {
    let result = match Args::parse().command {
        Cmd::Loop { path, n } => on_own_stack(move || run_loop(path, n)).map(|()| ExitCode::SUCCESS),
        Cmd::Check { budget, update } => check(&budget, update),
    };
    result.unwrap_or_else(|e| {
        eprintln!("qilin-budget: {e:#}");
        ExitCode::FAILURE
    })
}

/// Runs `f` on a thread of its own. The main thread's stack starts below the environment and the
/// arguments, so its alignment, and with it what `memcpy`/`memcmp` of a stack value cost, changes
/// with their length (a longer `PATH`, another target directory): a spawned thread's stack is a
/// fresh mapping whose layout does not depend on them.
fn on_own_stack(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("loop".into())
        .stack_size(8 << 20)
        .spawn(f)
        .context("starting the loop thread")?
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The source tree (config/ is read from it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The engine of `benches/benches/ingest.rs` (its `engine()`), on a fresh segment.
fn new_engine(label: &str) -> anyhow::Result<(TempSegment, Engine, crossbeam_channel::Sender<EngineCommand>)> {
    let segment = TempSegment::new(label);
    let options = SegmentOptions { feed_name: "bench".into(), ring_slots: 1 << 16, instrument_capacity: 256 };
    let writer = Writer::open(segment.path(), &options).context("opening the segment in /dev/shm")?;
    let (command_tx, command_rx) = crossbeam_channel::bounded(8);
    let (events, _events_rx) = rtrb::RingBuffer::new(1024);
    let engine = Engine::new(
        writer,
        instruments(&repo())?,
        256,
        EngineOptions { admit: Admit::AnyKnownProduct, heartbeat_interval_ns: 1_000_000, batch: 256 },
        command_rx,
        events,
        Arc::new(AtomicBool::new(false)),
    )
    .with_calendar(calendar(&repo())?);
    Ok((segment, engine, command_tx))
}

/// Ticks the engine has published so far.
fn published(engine: &Engine) -> u64 {
    engine.writer().next_sequence() - 1
}

/// Fails unless the warm pass published each of its `expected` inputs once.
fn warm_pass_published(engine: &Engine, expected: usize) -> anyhow::Result<()> {
    ensure!(published(engine) == expected as u64, "the warm pass published {} of {expected}", published(engine));
    Ok(())
}

/// The measured loop: `call` on `n` inputs, round robin over `inputs` by walking them (an index
/// modulo their number had its division and bounds checks counted with every call). `check` runs
/// callgrind with `--toggle-collect` on this function ([`COUNTED`]), so only what runs inside it is
/// counted: the set-up (the TSC calibration in `Engine::new`, whose length depends on the load), the
/// warm pass and the exit are not. Never inlined, so that it exists under its own name.
#[inline(never)]
fn counted_loop<T>(n: usize, inputs: &[T], mut call: impl FnMut(&T)) {
    let mut left = n;
    while left > 0 {
        let take = left.min(inputs.len());
        for input in &inputs[..take] {
            call(input);
        }
        left -= take;
    }
}

/// The `loop` subcommand.
fn run_loop(path: PathKind, n: u64) -> anyhow::Result<()> {
    let raws: Vec<[u8; 584]> = {
        let mut ticks = RawTicks::new(&instruments(&repo())?);
        (0..ROUNDS * ticks.instruments()).map(|_| ticks.next_struct()).collect()
    };
    let n = usize::try_from(n)?;
    let (_segment, mut engine, _commands) = new_engine(path.name())?;
    match path {
        PathKind::Udp => {
            for raw in &raws {
                engine.process(raw, 1, Source::Udp);
            }
            warm_pass_published(&engine, raws.len())?;
            counted_loop(n, &raws, |raw| engine.process(black_box(&raw[..]), 1, Source::Udp));
            ensure!(published(&engine) == (raws.len() + n) as u64, "udp: not every call published");
        }
        PathKind::Session => {
            let deliveries: Vec<(&[u8; 584], Source)> = raws
                .chunks(SESSION_BATCH)
                .flat_map(|batch| {
                    let primary = batch.iter().map(|raw| (raw, Source::Primary));
                    primary.chain(batch.iter().map(|raw| (raw, Source::Backup)))
                })
                .collect();
            for (raw, source) in &deliveries {
                engine.process_deduplicated(*raw, 1, *source, WINDOW);
            }
            warm_pass_published(&engine, raws.len())?;
            counted_loop(n, &deliveries, |(raw, source)| {
                engine.process_deduplicated(black_box(&raw[..]), 1, *source, WINDOW);
            });
            // (Counted without a pass over n, which would add to the per-call figure.)
            let is_first = |d: &(&[u8; 584], Source)| d.1 == Source::Primary;
            let (cycles, rest) = (n / deliveries.len(), n % deliveries.len());
            let firsts = cycles * raws.len() + deliveries[..rest].iter().filter(|d| is_first(d)).count();
            ensure!(published(&engine) == (raws.len() + firsts) as u64, "session: not every first copy published");
        }
        PathKind::Replay => {
            let records = {
                let (segment, mut first, _c) = new_engine("replay-source")?;
                for raw in &raws {
                    first.process(raw, 1, Source::Udp);
                }
                let mut reader = Reader::open(segment.path()).context("reading the normalized records")?;
                reader.seek(Start::Sequence(1));
                let mut records = Vec::with_capacity(raws.len());
                let mut out = TickRecord::ZERO;
                while let Next::Tick = reader.try_next(&mut out) {
                    records.push(out);
                }
                ensure!(records.len() == raws.len(), "normalized {} records of {}", records.len(), raws.len());
                records
            };
            for record in &records {
                engine.replay(record);
            }
            warm_pass_published(&engine, records.len())?;
            counted_loop(n, &records, |record| engine.replay(black_box(record)));
            ensure!(published(&engine) == (records.len() + n) as u64, "replay: not every call published");
        }
    }
    Ok(())
}

/// The `check` subcommand.
fn check(budget_file: &Path, update: bool) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        bail!(
            "this is a debug build, whose instruction counts mean nothing: run the release build, \
             `cargo run --release -p qilin-benches --bin qilin-budget -- check`"
        );
    }
    let text = std::fs::read_to_string(budget_file)
        .with_context(|| format!("reading the budget file {}", budget_file.display()))?;
    let budgets = budget::parse_budget(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("reading {}", budget_file.display()))?;
    match Command::new("valgrind").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => bail!("`valgrind --version` failed ({}): reinstall it (apt-get install valgrind)", out.status),
        Err(e) => {
            bail!("cannot run valgrind ({e}): install it (apt-get install valgrind; scripts/test --install-only does)")
        }
    }
    let exe = std::env::current_exe().context("finding my own binary")?;
    let dir = tempfile::tempdir().context("a temporary directory for callgrind's out files")?;
    let calls = (CYCLES * ROUNDS * RawTicks::new(&instruments(&repo())?).instruments()) as u64;
    let totals = run_all(&PathKind::ALL, |&path| callgrind(&exe, dir.path(), path, calls))?;

    let mut rows = Vec::new();
    for (path, total) in PathKind::ALL.iter().zip(totals) {
        println!("{:<8} callgrind Ir of the measured loop: {total} in {calls} calls", path.name());
        let measured = budget::per_call(calls, total).map_err(anyhow::Error::msg).context(path.name())?;
        let budget = budgets.iter().find(|(p, _)| p == path.name()).map(|(_, b)| *b);
        rows.push(Row { path: path.name().into(), measured, budget });
    }
    print!("{}", budget::table(&rows));

    let file = budget_file.display().to_string();
    if update {
        let measured: Vec<(&str, f64)> = rows.iter().map(|r| (r.path.as_str(), r.measured)).collect();
        let new = budget::update_budget(&text, &measured).map_err(anyhow::Error::msg).context(file.clone())?;
        std::fs::write(budget_file, new).with_context(|| format!("writing {file}"))?;
        println!("updated {file} with the measured figures");
        return Ok(ExitCode::SUCCESS);
    }
    let failures = budget::failures(&rows, &file);
    if failures.is_empty() {
        println!("instruction budget: every path within its budget + {:.0} % ({file})", budget::TOLERANCE * 100.0);
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        eprintln!("qilin-budget: OVER BUDGET: {f}");
    }
    eprintln!(
        "qilin-budget: if the cost is deliberate, re-measure and commit the budget: \
         cargo run --release -p qilin-benches --bin qilin-budget -- check --update"
    );
    Ok(ExitCode::FAILURE)
}

/// `job` on each of `jobs`, as many at a time as there are CPUs (counts do not depend on the
/// load), results in the jobs' order.
fn run_all<J: Sync>(jobs: &[J], job: impl Fn(&J) -> anyhow::Result<u64> + Sync) -> anyhow::Result<Vec<u64>> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(jobs.len());
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<anyhow::Result<u64>>> = (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(j) = jobs.get(i) else { break done };
                        done.push((i, job(j)));
                    }
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("a callgrind worker panicked") {
                results[i] = Some(r);
            }
        }
    });
    results.into_iter().map(|r| r.expect("every job ran")).collect()
}

/// Total instructions of `qilin-budget loop <path> <n>` under callgrind.
fn callgrind(exe: &Path, dir: &Path, path: PathKind, n: u64) -> anyhow::Result<u64> {
    let out_file = dir.join(format!("callgrind.{}.{n}", path.name()));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={COUNTED}"))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .args(["loop", path.name(), &n.to_string()])
        .output()
        .context("running valgrind")?;
    if !out.status.success() {
        bail!(
            "valgrind --tool=callgrind {} loop {} {n} failed ({}):\n{}",
            exe.display(),
            path.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&out_file).with_context(|| format!("reading {}", out_file.display()))?;
    budget::callgrind_ir(&text).map_err(anyhow::Error::msg).with_context(|| out_file.display().to_string())
}

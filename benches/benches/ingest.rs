//! Core ingest figures.
//!
//! - criterion `handoff_to_slot`: one raw 6.7.x struct through the SDK callback's hand-off push,
//!   the hot thread's drain, normalization and the slot write (single thread, so it is the sum of
//!   the work, not a latency).
//! - `sustained ingest` (printed, not criterion): the hand-off is pre-filled with N raw structs of
//!   68 instruments across the six exchanges, then the engine runs on a pinned hot thread while a
//!   reader on the other core follows the segment. Reported: ticks/s from engine start to the
//!   reader holding tick N, and the loss (gaps, hand-off drops), which must be zero. After each
//!   round, the same-run baseline: the same N structs only copied into a ring of 584-byte slots on
//!   the hot thread's CPU; reported as ingest ÷ copy. `QILIN_INGEST_ROUNDS` sets the rounds (5).
//!
//! - criterion `engine_process`: `Engine::process` alone (parse, id lookup, normalize, publish) on
//!   the same structs, without the hand-off.
//! - `QILIN_LOOP=N`: only `Engine::process` N times round-robin over those structs (after one pass
//!   that admits every instrument), no criterion, no timing: for instruction counts that do not
//!   depend on the machine's load (`valgrind --tool=callgrind` or `perf stat -e instructions` at two
//!   N, difference ÷ ΔN).
//!
//! Run: `cargo bench -p qilin-benches --bench ingest` (`QILIN_INGEST_ONLY=1`: the sustained rounds only).

use std::{
    hint::black_box,
    path::Path,
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use criterion::{Criterion, criterion_group};
use qilin_benches::{TempSegment, harness::core_paths::RawTicks, pin_current};
use qilin_core::{
    config::Admit,
    engine::{Command, Engine, EngineOptions, Input},
    handoff::handoff,
};
use qilin_market::{Calendar, Instruments};
use qilin_shm::{Counter, Next, Reader, SegmentOptions, Source, Start, TickRecord, Writer};

fn instruments() -> Instruments {
    Instruments::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml"))
        .expect("config/instruments.toml")
}

/// `per_instrument` raw 6.7.x structs for every listed instrument, in day-session time order (the
/// harness's generator, so both measure the same structs).
fn raw_structs(products: &Instruments, per_instrument: usize) -> Vec<[u8; 584]> {
    let mut ticks = RawTicks::new(products);
    (0..per_instrument * ticks.instruments()).map(|_| ticks.next_struct()).collect()
}

fn engine(label: &str, ring_slots: u64) -> (TempSegment, Engine, crossbeam_channel::Sender<Command>) {
    let segment = TempSegment::new(label);
    let options = SegmentOptions { feed_name: "bench".into(), ring_slots, instrument_capacity: 256 };
    let writer = Writer::open(segment.path(), &options).expect("bench segment");
    let (command_tx, command_rx) = crossbeam_channel::bounded(8);
    let (events, _events_rx) = rtrb::RingBuffer::new(1024);
    let engine = Engine::new(
        writer,
        instruments(),
        256,
        EngineOptions { admit: Admit::AnyKnownProduct, heartbeat_interval_ns: 1_000_000, batch: 256 },
        command_rx,
        events,
        Arc::new(AtomicBool::new(false)),
    )
    .with_calendar(
        Calendar::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/calendar")).expect("config/calendar"),
    );
    (segment, engine, command_tx)
}

fn handoff_to_slot(c: &mut Criterion) {
    let products = instruments();
    let raws = raw_structs(&products, 64);
    let (_segment, mut engine, _commands) = engine("handoff", 1 << 16);
    let (mut tx, mut rx) = handoff(1024);
    let mut i = 0usize;
    c.bench_function("handoff_to_slot", |b| {
        b.iter(|| {
            let raw = &raws[i % raws.len()];
            i += 1;
            tx.push(black_box(raw), 1, Source::Sim);
            rx.drain(1, |m| engine.process(m.payload().expect("584 bytes"), m.receive_ns, m.source));
        })
    });
    assert_eq!(rx.dropped(), 0);
}

fn engine_process(c: &mut Criterion) {
    let products = instruments();
    let raws = raw_structs(&products, 64);
    let (_segment, mut engine, _commands) = engine("process", 1 << 16);
    let mut i = 0usize;
    c.bench_function("engine_process", |b| {
        b.iter(|| {
            let raw = &raws[i % raws.len()];
            i += 1;
            engine.process(black_box(&raw[..]), 1, Source::Sim);
        })
    });
}

/// The `QILIN_LOOP` mode.
fn count_loop(n: usize) {
    let products = instruments();
    let raws = raw_structs(&products, 64);
    let (_segment, mut engine, _commands) = engine("loop", 1 << 16);
    for raw in &raws {
        engine.process(raw, 1, Source::Sim);
    }
    for i in 0..n {
        engine.process(black_box(&raws[i % raws.len()][..]), 1, Source::Sim);
    }
}

fn sustained_ingest() {
    const N: usize = 200_000;
    let products = instruments();
    let raws = raw_structs(&products, N.div_ceil(68));
    let raws = Arc::new(raws);
    let (mut rates, mut ratios) = (Vec::new(), Vec::new());
    let rounds = std::env::var("QILIN_INGEST_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    for round in 0..rounds {
        let raws_for_copy = Arc::clone(&raws);
        let (segment, engine, commands) = engine("ingest", 1 << 20);
        let (mut tx, rx) = handoff(N);
        for raw in raws.iter().take(N) {
            assert!(tx.push(raw, 1, Source::Sim));
        }
        let mut reader = Reader::open(segment.path()).expect("reader");
        reader.seek(Start::Sequence(1));
        let hot = std::thread::spawn(move || {
            pin_current(1);
            engine.run(Input::Handoff(rx), || {})
        });
        pin_current(0);
        let started = Instant::now();
        let (mut ticks, mut lost) = (0usize, 0u64);
        let mut out = TickRecord::ZERO;
        while ticks < N {
            match reader.try_next(&mut out) {
                Next::Tick => ticks += 1,
                Next::Gap { first, last } => lost += last - first + 1,
                Next::NewEpoch { .. } | Next::Empty => {}
            }
            if lost > 0 || started.elapsed().as_secs() > 120 {
                break;
            }
        }
        let elapsed = started.elapsed();
        commands.send(Command::Shutdown).expect("engine running");
        let report = hot.join().expect("hot thread");
        let drops = reader.counter(Counter::HandoffFull);
        let rate = ticks as f64 / elapsed.as_secs_f64();
        println!(
            "sustained ingest round {round}: {ticks} ticks in {:.1} ms = {:.2} M ticks/s; lost {lost}, hand-off drops {drops}, rejected {}",
            elapsed.as_secs_f64() * 1e3,
            rate / 1e6,
            report.rejected
        );
        assert_eq!((lost, drops, report.rejected), (0, 0, 0), "zero loss is part of the figure");
        rates.push(rate);
        // The same-run baseline: the same N raw structs only copied, on the hot thread's CPU, into a
        // ring of 584-byte slots as large as the segment's ring (what the feed does at the least:
        // read each struct once and write its bytes once).
        let copy_rate = std::thread::spawn(move || {
            pin_current(1);
            let mut ring = vec![[0u8; 584]; 1 << 16];
            // Every page written before the clock starts, as the segment's are (the writer
            // pre-loads them): a zeroed allocation may be mapped lazily, and then the copy took a
            // page fault every seven structs, or not, as the build chose calloc or memset (with
            // fat LTO it did: 10.5 against 28 M structs/s, the same copy).
            for slot in ring.iter_mut() {
                slot[0] = 1;
            }
            black_box(&mut ring);
            let started = Instant::now();
            for (i, raw) in raws_for_copy.iter().take(N).enumerate() {
                ring[i & ((1 << 16) - 1)].copy_from_slice(black_box(raw));
                black_box(&ring[i & ((1 << 16) - 1)]);
            }
            N as f64 / started.elapsed().as_secs_f64()
        })
        .join()
        .expect("copy thread");
        println!(
            "  copy baseline round {round}: {:.2} M structs/s; ingest ÷ copy = {:.3}",
            copy_rate / 1e6,
            rate / copy_rate
        );
        ratios.push(rate / copy_rate);
    }
    rates.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    println!(
        "sustained ingest: median {:.2} M ticks/s (min {:.2}, max {:.2}) over {} rounds of {N}; ingest ÷ copy median {:.3} (min {:.3}, max {:.3})",
        rates[rates.len() / 2] / 1e6,
        rates[0] / 1e6,
        rates[rates.len() - 1] / 1e6,
        rates.len(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

criterion_group!(benches, handoff_to_slot, engine_process);

fn main() {
    if let Some(n) = std::env::var("QILIN_LOOP").ok().and_then(|v| v.parse().ok()) {
        return count_loop(n);
    }
    if std::env::var_os("QILIN_INGEST_ONLY").is_some() {
        return sustained_ingest(); // the sustained rounds alone, without the criterion benches
    }
    benches();
    sustained_ingest();
    Criterion::default().configure_from_args().final_summary();
}

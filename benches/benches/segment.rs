//! Criterion benchmarks of the shared-memory segment (qilin_shm), with their same-run baselines.
//!
//! Run: `cargo bench -p qilin-benches --bench segment -- --warm-up-time 1 --measurement-time 3`.
//! The main thread (writer, initiator) is pinned to the first available core; helper threads
//! (responders, spinning readers) to the others. After the criterion figures, the bench prints
//! hdrhistogram percentiles of the two ping-pongs (cache line, and writer → reader through
//! segments); set `QILIN_BENCH_PERCENTILES=0` to skip them. BENCHMARKS.md records the results.

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group};
use qilin_benches::{
    CacheLinePingPong, INSTRUMENTS, RING_SLOTS, SegmentPingPong, cores, one_way_histogram, open_writer,
    percentiles_line, pin_current, sample_record,
};
use qilin_shm::{Next, Reader, Start, TickRecord, now_ns};

/// Helper threads go to the cores after the first; with one core there is nothing to ping-pong with.
fn helper_core(n: usize) -> Option<usize> {
    let count = cores().len();
    (count >= 2).then(|| 1 + n % (count - 1))
}

/// Floor: one-way latency of a cache line between the two pinned cores (round trip / 2).
fn core_to_core_cacheline(c: &mut Criterion) {
    let Some(core) = helper_core(0) else {
        eprintln!("core_to_core_cacheline: skipped, fewer than 2 cores");
        return;
    };
    let mut ping_pong = CacheLinePingPong::start(core);
    c.bench_function("core_to_core_cacheline", |b| b.iter_custom(|iters| ping_pong.round_trips(iters) / 2));
}

/// Floor of every timestamp the feed takes, and of each histogram sample below.
fn clock_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock_read");
    group.bench_function("instant_now", |b| b.iter(Instant::now));
    group.bench_function("now_ns_realtime", |b| b.iter(now_ns));
    group.finish();
}

/// A ring slot as plain memory: what a 384-byte copy costs without the protocol's atomics.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct PlainSlot {
    stamp: u64,
    record: TickRecord,
}

/// `Writer::publish` of one prepared record, cycling over the instruments. The 65 536-slot ring
/// (24 MiB) is the design's case; the 256-slot ring (96 KiB, stays in L2) isolates the protocol from
/// the memory traffic. `plain_copy` is the same-size store stream with plain (vectorizable) copies.
fn write_one_slot(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_one_slot");
    for slots in [RING_SLOTS, 256] {
        let (_segment, mut writer) = open_writer("write", slots);
        let mut records: Vec<TickRecord> = (0..INSTRUMENTS).map(sample_record).collect();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("publish", format!("{slots}_slots")), |b| {
            b.iter(|| {
                i = (i + 1) % INSTRUMENTS as usize;
                writer.publish(&mut records[i])
            })
        });
    }
    for slots in [RING_SLOTS as usize, 256] {
        let template = PlainSlot { stamp: 0, record: sample_record(0) };
        let mut ring = vec![template; slots];
        let mut lvc = vec![template; INSTRUMENTS as usize];
        let mut seq = 0usize;
        group.bench_function(BenchmarkId::new("plain_copy_slot_and_lvc", format!("{slots}_slots")), |b| {
            b.iter(|| {
                seq += 1;
                let record = black_box(&template.record);
                let slot = &mut ring[seq & (slots - 1)];
                slot.record = *record;
                slot.stamp = 2 * seq as u64;
                let entry = &mut lvc[seq % INSTRUMENTS as usize];
                entry.record = *record;
                entry.stamp = 2 * seq as u64;
            })
        });
        black_box((&ring, &lvc));
    }
    group.finish();
}

/// Fills a ring twice over, so every slot holds a whole record; returns the writer (kept alive).
fn filled(label: &str) -> (qilin_benches::TempSegment, qilin_shm::Writer) {
    let (segment, mut writer) = open_writer(label, RING_SLOTS);
    let mut records: Vec<TickRecord> = (0..INSTRUMENTS).map(sample_record).collect();
    for n in 0..2 * RING_SLOTS as usize {
        writer.publish(&mut records[n % INSTRUMENTS as usize]).expect("pre-filling the ring");
    }
    (segment, writer)
}

/// `Reader::try_next` of a record already in the ring. `sequential` walks the whole 24 MiB ring from
/// the oldest slot (re-seeking, untimed, each lap); `same_slot` re-reads one cached slot (the seek,
/// one Acquire load of the cursor, is inside the timing). Every timed call must return `Next::Tick`.
fn read_one_slot(c: &mut Criterion) {
    let (segment, _writer) = filled("read");
    let mut reader = Reader::open(segment.path()).expect("opening the reader");
    let mut out = TickRecord::ZERO;
    let mut group = c.benchmark_group("read_one_slot");
    group.bench_function("sequential_65536_slots", |b| {
        b.iter_custom(|iters| {
            let (mut left, mut ticks, mut total) = (iters, 0u64, Duration::ZERO);
            while left > 0 {
                let lap = left.min(RING_SLOTS);
                reader.seek(Start::Oldest);
                let start = Instant::now();
                for _ in 0..lap {
                    ticks += u64::from(reader.try_next(black_box(&mut out)) == Next::Tick);
                }
                total += start.elapsed();
                left -= lap;
            }
            assert_eq!(ticks, iters, "every measured try_next returns Next::Tick");
            total
        })
    });
    let sequence = reader.write_cursor() - 7;
    group.bench_function("same_slot", |b| {
        b.iter_custom(|iters| {
            let mut ticks = 0u64;
            let start = Instant::now();
            for _ in 0..iters {
                reader.seek(Start::Sequence(sequence));
                ticks += u64::from(reader.try_next(black_box(&mut out)) == Next::Tick);
            }
            let total = start.elapsed();
            assert_eq!(ticks, iters, "every measured try_next returns Next::Tick");
            total
        })
    });
    group.finish();
}

/// `Reader::latest`: the last value of one instrument, under its seqlock, with no writer running.
fn latest_one_instrument(c: &mut Criterion) {
    let (segment, _writer) = filled("latest");
    let reader = Reader::open(segment.path()).expect("opening the reader");
    let mut out = TickRecord::ZERO;
    c.bench_function("latest_one_instrument", |b| b.iter(|| reader.latest(black_box(1), black_box(&mut out))));
    assert_eq!(reader.latest(1, &mut out), Ok(true));
    assert_eq!(out.instrument_index, 1);
}

/// What the spinning readers of `writer_cost_vs_readers` saw.
#[derive(Debug, Default)]
struct ReaderTally {
    ticks: AtomicUsize,
    gaps: AtomicUsize,
}

/// Publish cost while 0, 1 or 4 reader threads spin on `try_next` of the same segment. Readers are
/// pinned to the cores other than the writer's: on a 2-core machine all of them share core 1, so
/// "4 readers" is one reader's cache traffic at a time plus scheduler switches, not four cores.
fn writer_cost_vs_readers(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer_cost_vs_readers");
    for n_readers in [0usize, 1, 4] {
        let (segment, mut writer) = open_writer("readers", RING_SLOTS);
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(ReaderTally::default());
        let threads: Vec<_> = (0..n_readers)
            .map(|n| {
                let (stop, tally) = (stop.clone(), tally.clone());
                // Opened before publishing starts, so every reader starts at the first sequence.
                let mut reader = Reader::open(segment.path()).expect("opening a spinning reader");
                std::thread::spawn(move || {
                    if let Some(core) = helper_core(n) {
                        pin_current(core);
                    }
                    let mut out = TickRecord::ZERO;
                    let (mut ticks, mut gaps) = (0usize, 0usize);
                    while !stop.load(Ordering::Relaxed) {
                        match reader.try_next(&mut out) {
                            Next::Tick => ticks += 1,
                            Next::Gap { first, last } => gaps += (last - first + 1) as usize,
                            Next::Empty => core::hint::spin_loop(),
                            Next::NewEpoch { .. } => {}
                        }
                    }
                    tally.ticks.fetch_add(ticks, Ordering::Relaxed);
                    tally.gaps.fetch_add(gaps, Ordering::Relaxed);
                })
            })
            .collect();
        let mut records: Vec<TickRecord> = (0..INSTRUMENTS).map(sample_record).collect();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(format!("{n_readers}_readers")), |b| {
            b.iter(|| {
                i = (i + 1) % INSTRUMENTS as usize;
                writer.publish(&mut records[i])
            })
        });
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().expect("a spinning reader panicked");
        }
        let published = writer.next_sequence() - 1;
        if n_readers > 0 {
            println!(
                "writer_cost_vs_readers/{n_readers}_readers: published {published}, per reader read {:.1} %, lapped {:.1} %",
                100.0 * tally.ticks.load(Ordering::Relaxed) as f64 / (n_readers as f64 * published as f64),
                100.0 * tally.gaps.load(Ordering::Relaxed) as f64 / (n_readers as f64 * published as f64),
            );
        }
    }
    group.finish();
}

/// Writer → reader one-way latency between the two pinned cores: a tick ping-ponged through two
/// segments (round trip / 2), so no clock is compared across cores.
fn writer_reader_one_way(c: &mut Criterion) {
    let Some(core) = helper_core(0) else {
        eprintln!("writer_reader_one_way: skipped, fewer than 2 cores");
        return;
    };
    let mut ping_pong = SegmentPingPong::start(core);
    c.bench_function("writer_reader_one_way", |b| b.iter_custom(|iters| ping_pong.round_trips(iters) / 2));
}

/// hdrhistogram percentiles of both ping-pongs, back to back in this run.
fn percentile_report(samples: u64) {
    let Some(core) = helper_core(0) else { return };
    println!("\none-way latency percentiles, {samples} round trips each, responder on core index {core}:");
    let mut line = CacheLinePingPong::start(core);
    let floor = one_way_histogram(samples, || line.round_trip());
    println!("{}", percentiles_line("core_to_core_cacheline", &floor));
    drop(line);
    let mut segments = SegmentPingPong::start(core);
    let h = one_way_histogram(samples, || segments.round_trip());
    println!("{}", percentiles_line("writer_reader_one_way", &h));
    println!(
        "writer_reader_one_way p50 / core_to_core_cacheline p50 = {:.2} (design target <= 2); p99.9 = {} ns (target <= 2000)",
        h.value_at_quantile(0.5) as f64 / floor.value_at_quantile(0.5).max(1) as f64,
        h.value_at_quantile(0.999)
    );
}

criterion_group!(
    benches,
    core_to_core_cacheline,
    clock_read,
    write_one_slot,
    read_one_slot,
    latest_one_instrument,
    writer_cost_vs_readers,
    writer_reader_one_way
);

fn main() {
    let pinned = pin_current(0);
    println!("segment benches: {} cores available, main thread pinned: {pinned}", cores().len());
    benches();
    Criterion::default().configure_from_args().final_summary();
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let skip = args.iter().any(|a| a == "--list") || std::env::var("QILIN_BENCH_PERCENTILES").is_ok_and(|v| v == "0");
    if !skip {
        // `cargo test --benches` runs this without `--bench`: keep it short there.
        percentile_report(if full { 1_000_000 } else { 1_000 });
    }
}

//! A freshly opened reader's first lap of the ring, with and without the pre-faulted mapping
//! (`Reader::open`, MAP_POPULATE, against `Reader::open_unpopulated`), and the lap after it.
//!
//! Run: `cargo bench -p qilin-benches --bench first_lap` (env: `QILIN_FIRST_LAP_ROUNDS`, default 3;
//! `QILIN_FIRST_LAP_SLOTS`, ring slots, default 65 536 = 24 MiB, the design's ring).
//!
//! Method: ping-pong between two pinned threads of one process. The main thread (first core) owns
//! the `Writer`; it publishes a tick and spins until the responder (second core) has read it with a
//! reader opened just before the lap and has answered by storing the sequence into a cache line of
//! its own. One-way = round trip / 2, each sample independent (no backlog is charged to later
//! samples). Lap 1 is the reader's first `ring_slots` ticks after `open`, lap 2 the next
//! `ring_slots`. The reader's mapping is its own (a second mapping of the file, with its own page
//! tables), so being in the writer's process changes nothing about its faults. The responder counts
//! its thread's minor page faults (`/proc/thread-self/stat`) over each lap; `slow` counts the samples
//! of 1.5 to 100 µs (a fault's cost, not a lost time slice). Rounds interleave the two modes, each
//! with a new reader on the same segment; the figures are per round and merged.

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use hdrhistogram::Histogram;
use qilin_benches::{
    CachePadded, RING_SLOTS, cores, one_way_histogram, open_writer, percentiles_line, pin_current, sample_record,
};
use qilin_shm::{Next, Reader, Start, TickRecord};

/// Minor page faults of the calling thread so far (field 10 of `/proc/thread-self/stat`).
fn thread_minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("reading /proc/thread-self/stat");
    let after = &stat[stat.rfind(')').expect("comm in parentheses") + 1..];
    after.split_whitespace().nth(7).and_then(|f| f.parse().ok()).expect("minflt")
}

/// Samples of 1.5 to 100 µs one-way: slower than any fault-free sample here, faster than a lost
/// time slice (a preemption by another task costs ms on a loaded machine and hits every series).
fn slow(h: &Histogram<u64>) -> u64 {
    h.count_between(1_500, 100_000)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Populated,
    Unpopulated,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Populated => "populated",
            Mode::Unpopulated => "unpopulated",
        }
    }
}

/// What one round of one mode measured.
struct Round {
    /// Time `Reader::open` / `open_unpopulated` took, ns.
    open_ns: u64,
    laps: [Histogram<u64>; 2],
    faults: [u64; 2],
}

/// One mode's rounds, merged.
struct Merged {
    mode: Mode,
    laps: [Histogram<u64>; 2],
    faults: [u64; 2],
    opens: Vec<u64>,
}

/// The answer line and the lap hand-shake, each on its own line pair.
struct Shared {
    answer: CachePadded<AtomicUsize>,
    laps_done: CachePadded<AtomicUsize>,
    stop: AtomicBool,
}

fn round(writer: &mut qilin_shm::Writer, path: &std::path::Path, mode: Mode, slots: u64) -> Round {
    let started = Instant::now();
    let mut reader = match mode {
        Mode::Populated => Reader::open(path),
        Mode::Unpopulated => Reader::open_unpopulated(path),
    }
    .expect("opening the reader");
    let open_ns = started.elapsed().as_nanos() as u64;
    reader.seek(Start::Newest);
    let shared = Arc::new(Shared {
        answer: CachePadded(AtomicUsize::new(0)),
        laps_done: CachePadded(AtomicUsize::new(0)),
        stop: AtomicBool::new(false),
    });
    let s = shared.clone();
    let responder = std::thread::spawn(move || {
        pin_current(1);
        let mut tick = TickRecord::ZERO;
        let mut faults = [0u64; 2];
        for (lap, lap_faults) in faults.iter_mut().enumerate() {
            let before = thread_minor_faults();
            for _ in 0..slots {
                loop {
                    match reader.try_next(&mut tick) {
                        Next::Tick => break,
                        Next::Empty if s.stop.load(Ordering::Relaxed) => return faults,
                        Next::Empty => core::hint::spin_loop(),
                        other => panic!("first-lap reader: unexpected {other:?}"),
                    }
                }
                s.answer.0.store(tick.sequence as usize, Ordering::Release);
            }
            *lap_faults = thread_minor_faults() - before;
            s.laps_done.0.store(lap + 1, Ordering::Release);
        }
        faults
    });
    let mut record = sample_record(0);
    let mut lap = |n: usize| {
        let h = one_way_histogram(slots, || {
            let seq = writer.publish(&mut record).expect("publishing");
            while shared.answer.0.load(Ordering::Acquire) != seq as usize {
                core::hint::spin_loop();
            }
        });
        // The responder reads its fault counter between laps; wait so that read is in no sample.
        while shared.laps_done.0.load(Ordering::Acquire) != n {
            core::hint::spin_loop();
        }
        h
    };
    let laps = [lap(1), lap(2)];
    shared.stop.store(true, Ordering::Relaxed);
    let faults = responder.join().expect("responder");
    Round { open_ns, laps, faults }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing of ours: run a token lap.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { env_u64("QILIN_FIRST_LAP_ROUNDS", 3) };
    let slots = if quick { 1024 } else { env_u64("QILIN_FIRST_LAP_SLOTS", RING_SLOTS) };
    if cores().len() < 2 {
        eprintln!("first_lap: skipped, fewer than 2 cores");
        return;
    }
    let pinned = pin_current(0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "first_lap: ring {slots} slots ({} KiB), {rounds} rounds, writer core 0 / reader core 1 (pinned: {pinned}); \
         loadavg {}",
        slots * 384 / 1024,
        loadavg.trim()
    );
    let (segment, mut writer) = open_writer("first-lap", slots);
    // Fill the ring once so every slot has been written (as on a running feed).
    let mut record = sample_record(0);
    for _ in 0..slots {
        writer.publish(&mut record).expect("filling the ring");
    }
    let new_h = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut merged: Vec<Merged> = [Mode::Populated, Mode::Unpopulated]
        .into_iter()
        .map(|mode| Merged { mode, laps: [new_h(), new_h()], faults: [0, 0], opens: Vec::new() })
        .collect();
    for r in 0..rounds {
        // Alternate which mode goes first, so a load change does not always favour the same one.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let mode = merged[i].mode;
            let result = round(&mut writer, segment.path(), mode, slots);
            for lap in 0..2 {
                let label = format!("r{r} {}/lap{}", mode.name(), lap + 1);
                println!(
                    "{}  faults={} slow={}",
                    percentiles_line(&label, &result.laps[lap]),
                    result.faults[lap],
                    slow(&result.laps[lap])
                );
                merged[i].laps[lap].add(&result.laps[lap]).expect("same bounds");
                merged[i].faults[lap] += result.faults[lap];
            }
            merged[i].opens.push(result.open_ns);
        }
    }
    println!(
        "-- merged over {rounds} rounds (faults: the reader thread's minor faults per lap; slow: samples of \
         1.5-100 µs per lap; both means per round) --"
    );
    for Merged { mode, laps, faults, opens } in &merged {
        for lap in 0..2 {
            let label = format!("{}/lap{}", mode.name(), lap + 1);
            println!(
                "{}  faults={} slow={}",
                percentiles_line(&label, &laps[lap]),
                faults[lap] / rounds.max(1),
                slow(&laps[lap]) / rounds.max(1)
            );
        }
        let mut opens = opens.clone();
        opens.sort_unstable();
        println!("{}/open: median {} µs over {} opens", mode.name(), opens[opens.len() / 2] / 1000, opens.len());
    }
    black_box(&writer);
}

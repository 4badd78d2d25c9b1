//! The floor under `Writer::publish` and under the writer → reader latency, for this record size,
//! measured in one run (issue 20 item 7).
//!
//! Run: `cargo bench -p qilin-benches --bench publish_floor` (env: `QILIN_FLOOR_ROUNDS`, ring laps
//! of part 1, default 21; `QILIN_FLOOR_PING_ROUNDS`, rounds of part 2, default 11;
//! `QILIN_FLOOR_PINGS`, round trips per series and round, default 20 000; `QILIN_FLOOR_SLOTS`, the
//! ring size of every series, default 65 536).
//!
//! Part 1, publish cost (one thread, no reader), ns per publish: the median of batches of 4096
//! publishes, interleaved across the variants, through the ring (65 536 slots, the design's ring;
//! 4 last-value entries, cycled):
//! - `writer_publish`: the real `Writer::publish` of a `TickRecord` (376 bytes; slot 384 = 6 lines).
//! - `seqlock_6line_slot_lvc`: the same protocol written out here (ring slot and last-value entry,
//!   each busy stamp / Release fence / 47 Relaxed word stores / done stamp, then the cursor).
//! - `seqlock_6line`: only the ring slot and the cursor; `seqlock_1line`: the same for a one-line
//!   record (stamp + 7 words = 64 bytes).
//! - `plain_*`: the same bytes with plain stores (no atomics, no ordering; the compiler vectorises).
//!
//! Part 2, one-way latency between the two pinned threads (round trip / 2, each sample its own):
//! - `c2c`: one cache line bounced (the floor, as benches/src/harness/floor.rs measures it);
//! - `seqlock_1line` / `seqlock_6line`: each side publishes into its own ring (1-line or 6-line
//!   slots, seqlock as above) what it read from the other's, the reader spinning on the stamp;
//!   `seqlock_6line_lvc` writes the last-value entry after the slot (what `Writer::publish` does),
//!   `seqlock_6line_one_pass` both in one pass (what 0b3705e made `publish` do, reverted in 2b5c76d: it doubled one-way);
//! - `segment`: the real thing both ways, `Writer::publish` → `Reader::try_next` (as
//!   `SegmentPingPong` of the segment bench, with the same ring size as the others).
//!
//! Series are interleaved in rounds (a load change hits all of them), and each prints the median
//! over rounds of its per-round p50 next to the merged percentiles. The machine has other users:
//! the header line prints `/proc/loadavg`.

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering, fence},
    },
    time::Instant,
};

use hdrhistogram::Histogram;
use qilin_benches::{
    CacheLinePingPong, CachePadded, INSTRUMENTS, RING_SLOTS, cores, one_way_histogram, open_writer, pin_current,
    sample_record,
};
use qilin_shm::{TickRecord, layout::RECORD_WORDS};

/// Publishes per timed batch of part 1.
const BATCH: usize = 4096;

/// Data words of a one-line record: 64 bytes = stamp + 7 words.
const W1: usize = 7;
/// Data words of a 6-line record: a `TickRecord` (376 bytes = 47 words) + stamp = 384 bytes.
const W6: usize = RECORD_WORDS;
const _: () = assert!(size_of::<TickRecord>() == 376 && W6 == 47);
const _: () = assert!(size_of::<Stamped<W1>>() == 64 && size_of::<Stamped<W6>>() == 384);

/// A stamped record under the segment's seqlock protocol (shm-layout/src/seqlock.rs), written out
/// with `AtomicUsize` (64-bit here; the workspace keeps `AtomicU64` inside qilin-shm).
#[repr(C, align(64))]
struct Stamped<const W: usize> {
    stamp: AtomicUsize,
    words: [AtomicUsize; W],
}

impl<const W: usize> Stamped<W> {
    fn new() -> Stamped<W> {
        Stamped { stamp: AtomicUsize::new(0), words: std::array::from_fn(|_| AtomicUsize::new(0)) }
    }

    /// seqlock::write: busy, Release fence, Relaxed words, done (Release). Single writer per ring.
    #[inline(always)]
    fn write(&self, busy: usize, data: &[usize; W], done: usize) {
        self.stamp.store(busy, Ordering::Relaxed);
        fence(Ordering::Release); // SYNC F-rel (writer side), as seqlock::write
        for (word, value) in self.words.iter().zip(data) {
            word.store(*value, Ordering::Relaxed);
        }
        self.stamp.store(done, Ordering::Release); // SYNC S-done (writer side)
    }

    /// seqlock::write_versioned (the last-value entry).
    #[inline(always)]
    fn write_versioned(&self, data: &[usize; W]) {
        let current = self.stamp.load(Ordering::Relaxed);
        let even = current + (current & 1);
        self.write(even + 1, data, even + 2);
    }

    /// load_stamp + copy_validated for the wanted stamp: `true` with `out` whole.
    #[inline(always)]
    fn read(&self, want: usize, out: &mut [usize; W]) -> bool {
        if self.stamp.load(Ordering::Acquire) != want {
            return false; // SYNC S-done (reader side)
        }
        for (value, word) in out.iter_mut().zip(&self.words) {
            *value = word.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire); // SYNC F-rel (reader side)
        self.stamp.load(Ordering::Relaxed) == want
    }
}

/// A ring of stamped records with a last-value entry per instrument and a cursor, like a segment's.
struct SeqRing<const W: usize> {
    slots: Box<[Stamped<W>]>,
    lvc: Box<[Stamped<W>]>,
    cursor: CachePadded<AtomicUsize>,
    mask: usize,
}

impl<const W: usize> SeqRing<W> {
    fn new(slots: usize) -> SeqRing<W> {
        SeqRing {
            slots: (0..slots).map(|_| Stamped::new()).collect(),
            lvc: (0..INSTRUMENTS).map(|_| Stamped::new()).collect(),
            cursor: CachePadded(AtomicUsize::new(0)),
            mask: slots - 1,
        }
    }

    /// The ring slot of `seq` and the cursor.
    #[inline(always)]
    fn publish_slot(&self, seq: usize, data: &[usize; W]) {
        self.slots[seq & self.mask].write(2 * seq - 1, data, 2 * seq);
        self.cursor.0.store(seq, Ordering::Release); // SYNC C-cursor
    }

    /// What `Writer::publish` does: ring slot, last-value entry, cursor.
    #[inline(always)]
    fn publish_slot_lvc(&self, seq: usize, instrument: usize, data: &[usize; W]) {
        self.slots[seq & self.mask].write(2 * seq - 1, data, 2 * seq);
        self.lvc[instrument].write_versioned(data);
        self.cursor.0.store(seq, Ordering::Release); // SYNC C-cursor
    }

    /// What `Writer::publish` did in 0b3705e (reverted: one-way doubled): slot and
    /// last-value entry in one pass — both busy stamps, the fence, each word stored to both, then
    /// both done stamps — and the cursor.
    #[inline(always)]
    fn publish_one_pass(&self, seq: usize, instrument: usize, data: &[usize; W]) {
        let (slot, entry) = (&self.slots[seq & self.mask], &self.lvc[instrument]);
        let current = entry.stamp.load(Ordering::Relaxed);
        let even = current + (current & 1);
        slot.stamp.store(2 * seq - 1, Ordering::Relaxed);
        entry.stamp.store(even + 1, Ordering::Relaxed);
        fence(Ordering::Release); // SYNC F-rel (writer side, both records)
        for ((slot_word, entry_word), value) in slot.words.iter().zip(&entry.words).zip(data) {
            slot_word.store(*value, Ordering::Relaxed);
            entry_word.store(*value, Ordering::Relaxed);
        }
        slot.stamp.store(2 * seq, Ordering::Release); // SYNC S-done (writer side)
        entry.stamp.store(even + 2, Ordering::Release);
        self.cursor.0.store(seq, Ordering::Release); // SYNC C-cursor
    }

    /// Spins until `seq` is in its slot, whole; `false` if `stop` was raised first.
    #[inline(always)]
    fn wait(&self, seq: usize, out: &mut [usize; W], stop: &AtomicBool) -> bool {
        let slot = &self.slots[seq & self.mask];
        let mut spins = 0u32;
        while !slot.read(2 * seq, out) {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) && stop.load(Ordering::Relaxed) {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

/// The same bytes as a plain struct: copies the compiler may vectorise, no ordering.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Plain<const W: usize> {
    stamp: usize,
    words: [usize; W],
}

/// A ring of plain records, its last-value entries and cursor.
struct PlainRing<const W: usize> {
    slots: Vec<Plain<W>>,
    lvc: Vec<Plain<W>>,
    cursor: usize,
    mask: usize,
}

impl<const W: usize> PlainRing<W> {
    fn new(slots: usize) -> PlainRing<W> {
        let zero = Plain { stamp: 0, words: [0; W] };
        PlainRing { slots: vec![zero; slots], lvc: vec![zero; INSTRUMENTS as usize], cursor: 0, mask: slots - 1 }
    }

    #[inline(always)]
    fn publish_slot(&mut self, seq: usize, data: &[usize; W]) {
        self.slots[seq & self.mask] = Plain { stamp: 2 * seq, words: *data };
        self.cursor = seq;
    }

    #[inline(always)]
    fn publish_slot_lvc(&mut self, seq: usize, instrument: usize, data: &[usize; W]) {
        self.slots[seq & self.mask] = Plain { stamp: 2 * seq, words: *data };
        self.lvc[instrument] = Plain { stamp: 2 * seq, words: *data };
        self.cursor = seq;
    }
}

/// The sample tick's words (sequence in word 0 is rewritten per publish, as `publish` does).
fn record_words<const W: usize>() -> [usize; W] {
    let record = sample_record(0);
    let words: &[u64; RECORD_WORDS] = zerocopy::transmute_ref!(&record);
    std::array::from_fn(|i| words[i] as usize)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One publish variant of part 1: a name and a lap of `n` publishes starting at sequence `first`.
type Lap<'a> = Box<dyn FnMut(usize, usize) + 'a>;

/// Times `n` publishes, ns each.
fn time_lap(lap: &mut Lap<'_>, first: usize, n: usize) -> f64 {
    let start = Instant::now();
    lap(first, n);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn publish_cost(rounds: u64, slots: usize) {
    let (_segment, mut writer) = open_writer("floor", slots as u64);
    let mut records: Vec<TickRecord> = (0..INSTRUMENTS).map(sample_record).collect();
    let seq6 = SeqRing::<W6>::new(slots);
    let seq6_lvc = SeqRing::<W6>::new(slots);
    let seq6_one_pass = SeqRing::<W6>::new(slots);
    let seq1 = SeqRing::<W1>::new(slots);
    let mut plain6 = PlainRing::<W6>::new(slots);
    let mut plain6_lvc = PlainRing::<W6>::new(slots);
    let mut plain1 = PlainRing::<W1>::new(slots);
    let data6: [usize; W6] = record_words();
    let data1: [usize; W1] = record_words();
    let instruments = INSTRUMENTS as usize;
    let mut variants: Vec<(&str, Lap<'_>)> = vec![
        (
            "writer_publish",
            Box::new(|_, n| {
                for i in 0..n {
                    black_box(writer.publish(&mut records[i % instruments]).expect("publishing"));
                }
            }),
        ),
        (
            "seqlock_6line_slot_lvc",
            Box::new(|first, n| {
                let mut data = data6;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    seq6_lvc.publish_slot_lvc(seq, seq % instruments, &data);
                }
            }),
        ),
        (
            "seqlock_6line_one_pass",
            Box::new(|first, n| {
                let mut data = data6;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    seq6_one_pass.publish_one_pass(seq, seq % instruments, &data);
                }
            }),
        ),
        (
            "plain_6line_slot_lvc",
            Box::new(|first, n| {
                let mut data = data6;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    plain6_lvc.publish_slot_lvc(seq, seq % instruments, &data);
                }
                black_box(&plain6_lvc.slots);
            }),
        ),
        (
            "seqlock_6line",
            Box::new(|first, n| {
                let mut data = data6;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    seq6.publish_slot(seq, &data);
                }
            }),
        ),
        (
            "plain_6line",
            Box::new(|first, n| {
                let mut data = data6;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    plain6.publish_slot(seq, &data);
                }
                black_box(&plain6.slots);
            }),
        ),
        (
            "seqlock_1line",
            Box::new(|first, n| {
                let mut data = data1;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    seq1.publish_slot(seq, &data);
                }
            }),
        ),
        (
            "plain_1line",
            Box::new(|first, n| {
                let mut data = data1;
                for seq in first..first + n {
                    data[0] = black_box(seq);
                    plain1.publish_slot(seq, &data);
                }
                black_box(&plain1.slots);
            }),
        ),
    ];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    // A warm lap each, then the rounds: every variant one ring lap per round, in batches of
    // BATCH publishes (≈ 0.1 ms) interleaved across the variants (order rotated), so a preemption
    // spoils a batch, not a lap, and a load change hits every variant alike.
    let mut next = 1usize;
    for (_, lap) in &mut variants {
        time_lap(lap, next, slots);
    }
    next += slots;
    let batch = BATCH.min(slots);
    for r in 0..rounds as usize * (slots / batch) {
        for k in 0..variants.len() {
            let v = (k + r) % variants.len();
            figures[v].push(time_lap(&mut variants[v].1, next, batch));
        }
        next += batch;
    }
    println!(
        "-- publish cost, ns per publish: median, lower quartile and [min, max] of {} batches of {batch} \
         ({rounds} ring laps) --",
        figures[0].len()
    );
    let order = figures.clone(); // in batch order, for the same-batch ratios
    let medians: Vec<f64> = figures.iter_mut().map(|f| median(f)).collect();
    for (v, (name, _)) in variants.iter().enumerate() {
        let f = &figures[v]; // sorted by `median`
        println!(
            "publish/{name:<24} {:>6.1} ns  p25 {:>6.1}  [{:.1}, {:.1}]",
            medians[v],
            f[f.len() / 4],
            f[0],
            f[f.len() - 1]
        );
    }
    // Same-round ratios, their median: what the protocol adds to the plain stores of the same bytes.
    let ratio = |a: usize, b: usize| {
        let mut r: Vec<f64> = order[a].iter().zip(&order[b]).map(|(x, y)| x / y).collect();
        median(&mut r)
    };
    let name = |v: usize| variants[v].0;
    let pairs = [(0, 3), (1, 3), (2, 3), (0, 1), (0, 2), (4, 5), (6, 7)];
    let ratios: Vec<String> =
        pairs.iter().map(|&(a, b)| format!("{} / {} = {:.2}", name(a), name(b), ratio(a, b))).collect();
    println!("ratios (median of same-batch-index ratios): {}", ratios.join(", "));
}

/// Writer → reader both ways through two seqlock rings of `W`-word records (see the module doc).
struct SeqPingPong<const W: usize> {
    ping: Arc<SeqRing<W>>,
    pong: Arc<SeqRing<W>>,
    stop: Arc<AtomicBool>,
    responder: Option<std::thread::JoinHandle<()>>,
    data: [usize; W],
    out: [usize; W],
    seq: usize,
    mode: Mode,
}

/// What a publish of the ping-pong writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The ring slot and the cursor.
    Slot,
    /// The slot, then the last-value entry, then the cursor (what `Writer::publish` does).
    SlotThenLvc,
    /// Slot and last-value entry in one pass (`Writer::publish` of 0b3705e, reverted).
    OnePass,
}

impl<const W: usize> SeqRing<W> {
    #[inline(always)]
    fn publish_mode(&self, mode: Mode, seq: usize, data: &[usize; W]) {
        match mode {
            Mode::Slot => self.publish_slot(seq, data),
            Mode::SlotThenLvc => self.publish_slot_lvc(seq, 0, data),
            Mode::OnePass => self.publish_one_pass(seq, 0, data),
        }
    }
}

impl<const W: usize> SeqPingPong<W> {
    fn start(slots: usize, mode: Mode) -> SeqPingPong<W> {
        let ping = Arc::new(SeqRing::<W>::new(slots));
        let pong = Arc::new(SeqRing::<W>::new(slots));
        let stop = Arc::new(AtomicBool::new(false));
        let (pi, po, s) = (ping.clone(), pong.clone(), stop.clone());
        let responder = std::thread::spawn(move || {
            pin_current(1);
            let mut buf = [0usize; W];
            let mut seq = 1usize;
            while pi.wait(seq, &mut buf, &s) {
                po.publish_mode(mode, seq, &buf);
                seq += 1;
            }
        });
        SeqPingPong { ping, pong, stop, responder: Some(responder), data: record_words(), out: [0; W], seq: 1, mode }
    }

    #[inline]
    fn round_trip(&mut self) {
        let seq = self.seq;
        self.data[0] = seq;
        self.ping.publish_mode(self.mode, seq, &self.data);
        let never = AtomicBool::new(false);
        self.pong.wait(seq, &mut self.out, &never);
        debug_assert_eq!(self.out[0], seq);
        self.seq += 1;
    }
}

impl<const W: usize> Drop for SeqPingPong<W> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(responder) = self.responder.take() {
            let _ = responder.join();
        }
    }
}

const SERIES: [&str; 6] =
    ["c2c", "seqlock_1line", "seqlock_6line", "seqlock_6line_lvc", "seqlock_6line_one_pass", "segment"];

/// One ping-pong round of series `s`: `warmup` unrecorded round trips, then `n` recorded.
fn ping_round(s: usize, warmup: u64, n: u64, slots: usize) -> Histogram<u64> {
    fn run(warmup: u64, n: u64, mut rt: impl FnMut()) -> Histogram<u64> {
        let _ = one_way_histogram(warmup, &mut rt);
        one_way_histogram(n, rt)
    }
    match s {
        0 => {
            let mut p = CacheLinePingPong::start(1);
            run(warmup, n, || p.round_trip())
        }
        1 => {
            let mut p = SeqPingPong::<W1>::start(slots, Mode::Slot);
            run(warmup, n, || p.round_trip())
        }
        2 => {
            let mut p = SeqPingPong::<W6>::start(slots, Mode::Slot);
            run(warmup, n, || p.round_trip())
        }
        3 => {
            let mut p = SeqPingPong::<W6>::start(slots, Mode::SlotThenLvc);
            run(warmup, n, || p.round_trip())
        }
        4 => {
            let mut p = SeqPingPong::<W6>::start(slots, Mode::OnePass);
            run(warmup, n, || p.round_trip())
        }
        _ => {
            let mut p = qilin_benches::SegmentPingPong::start_with_slots(1, slots as u64);
            run(warmup, n, || p.round_trip())
        }
    }
}

fn one_way(rounds: u64, pings: u64, slots: usize) {
    let new_h = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut merged: Vec<Histogram<u64>> = SERIES.iter().map(|_| new_h()).collect();
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); SERIES.len()];
    for r in 0..rounds as usize {
        for k in 0..SERIES.len() {
            let s = (k + r) % SERIES.len();
            let h = ping_round(s, pings / 10, pings, slots);
            p50s[s].push(h.value_at_quantile(0.5) as f64);
            merged[s].add(&h).expect("same bounds");
        }
    }
    println!(
        "-- one-way latency, ns (round trip / 2): median [min, max] of {rounds} per-round p50s, merged \
         percentiles of {rounds} x {pings} round trips, and the median of same-round p50 / c2c p50 --"
    );
    for (s, name) in SERIES.iter().enumerate() {
        let mut ratios: Vec<f64> = p50s[s].iter().zip(&p50s[0]).map(|(x, c)| x / c.max(1.0)).collect();
        let ratio = median(&mut ratios);
        let (min, max) = p50s[s].iter().fold((f64::MAX, 0f64), |(a, b), x| (a.min(*x), b.max(*x)));
        let mid = median(&mut p50s[s]);
        let h = &merged[s];
        println!(
            "one_way/{name:<14} p50 {mid:>5.0} [{min:.0}, {max:.0}]  merged p50={} p99={} p99.9={}  x c2c {ratio:.2}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999)
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: a token run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { env_u64("QILIN_FLOOR_ROUNDS", 21) };
    let ping_rounds = if quick { 1 } else { env_u64("QILIN_FLOOR_PING_ROUNDS", 11) };
    let pings = if quick { 200 } else { env_u64("QILIN_FLOOR_PINGS", 20_000) };
    let slots = if quick { 1024 } else { env_u64("QILIN_FLOOR_SLOTS", RING_SLOTS) as usize };
    if cores().len() < 2 {
        eprintln!("publish_floor: skipped, fewer than 2 cores");
        return;
    }
    let pinned = pin_current(0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "publish_floor: ring {slots} slots, TickRecord {} bytes (slot {} = {} lines of 64), main thread core 0, \
         responders core 1 (pinned: {pinned}); loadavg {}",
        size_of::<TickRecord>(),
        size_of::<Stamped<W6>>(),
        size_of::<Stamped<W6>>() / 64,
        loadavg.trim()
    );
    publish_cost(rounds, slots);
    one_way(ping_rounds, pings, slots);
}

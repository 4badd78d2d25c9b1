//! Shared helpers for the benchmarks: throw-away segments in `/dev/shm`, a realistic tick, CPU
//! pinning, and the two ping-pongs every latency figure is judged against — a bare cache line
//! between two cores (the floor) and a tick through two segments (writer → reader, both ways).
//!
//! Only `qilin_shm` may name `AtomicU64`/`AtomicU32` (clippy.toml); the baseline uses `AtomicUsize`
//! and `AtomicBool`, which are not on that list, so nothing here needs an exception.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use qilin_shm::{Exchange, Next, Reader, SegmentOptions, Source, Start, TickRecord, Writer};

pub mod budget;
pub mod harness;

/// Ring capacity the design's figures are stated for.
pub const RING_SLOTS: u64 = 65_536;
/// Instruments in a benchmark segment ("a few").
pub const INSTRUMENTS: u32 = 4;

/// A segment file in `/dev/shm` with a name unique to this process, removed on drop.
#[derive(Debug)]
pub struct TempSegment {
    path: PathBuf,
}

impl TempSegment {
    /// A fresh unique path (the file is created by [`Writer::open`]).
    pub fn new(label: &str) -> TempSegment {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/dev/shm/qilin-bench-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempSegment { path }
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempSegment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(qilin_shm::lock_path(&self.path));
    }
}

/// Creates a segment with `ring_slots` slots and [`INSTRUMENTS`] instruments in the directory.
pub fn open_writer(label: &str, ring_slots: u64) -> (TempSegment, Writer) {
    let segment = TempSegment::new(label);
    let options = SegmentOptions { feed_name: "bench".into(), ring_slots, instrument_capacity: INSTRUMENTS };
    let mut writer = Writer::open(segment.path(), &options).expect("creating a benchmark segment in /dev/shm");
    for i in 0..INSTRUMENTS {
        writer.add_instrument(&format!("rb26{:02}", i + 1), Exchange::Shfe, 10, 1.0).expect("adding an instrument");
    }
    (segment, writer)
}

/// A fully populated tick for instrument `index` (every word non-zero where CTP sends something).
pub fn sample_record(index: u32) -> TickRecord {
    let mut r = TickRecord::ZERO;
    r.exchange_time_ns = 1_795_000_000_000_000_000;
    r.receive_ns = r.exchange_time_ns + 1_500_000;
    r.instrument_index = index;
    r.trading_day = 20261123;
    r.action_day = 20261123;
    r.update_time_ms = 10 * 3_600_000 + 15 * 60_000 + 3_500;
    r.exchange = Exchange::Shfe as u8;
    r.source = Source::Sim as u8;
    r.instrument_id[..6].copy_from_slice(format!("rb26{:02}", index + 1).as_bytes());
    r.last_price = 3_512.0;
    r.pre_settlement_price = 3_498.0;
    r.pre_close_price = 3_501.0;
    r.pre_open_interest = 1_850_000.0;
    r.open_price = 3_500.0;
    r.highest_price = 3_530.0;
    r.lowest_price = 3_488.0;
    r.volume = 412_345;
    r.turnover = 14_480_000_000.0;
    r.open_interest = 1_861_002.0;
    r.close_price = f64::NAN;
    r.settlement_price = f64::NAN;
    r.upper_limit_price = 3_778.0;
    r.lower_limit_price = 3_218.0;
    r.pre_delta = f64::NAN;
    r.curr_delta = f64::NAN;
    r.average_price = 3_511.6;
    r.banding_upper_price = f64::NAN;
    r.banding_lower_price = f64::NAN;
    for level in 0..5 {
        r.bid_price[level] = 3_511.0 - level as f64;
        r.ask_price[level] = 3_512.0 + level as f64;
        r.bid_volume[level] = 100 + level as i32;
        r.ask_volume[level] = 200 + level as i32;
    }
    r
}

/// The CPUs this process may run on, as `core_affinity` numbers them (empty if unknown). Snapshot
/// taken on the first call (by [`pin_current`] at the latest): the OS reports only the calling
/// thread's affinity, which shrinks to one core once the thread is pinned.
pub fn cores() -> &'static [core_affinity::CoreId] {
    static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// Pins the calling thread to the `n`-th available core; `false` if there is no such core or the
/// OS refused (the benchmark then runs unpinned, which its report says).
pub fn pin_current(n: usize) -> bool {
    cores().get(n).is_some_and(|id| core_affinity::set_for_current(*id))
}

/// A value alone on its own 128-byte line pair (adjacent-line prefetch pairs 64-byte lines; see
/// crossbeam's `CachePadded`).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

/// Spins until `f` is true, or `stop` is raised (then returns `false`).
#[inline]
fn spin_until(stop: &AtomicBool, mut f: impl FnMut() -> bool) -> bool {
    let mut spins = 0u32;
    loop {
        if f() {
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) && stop.load(Ordering::Relaxed) {
            return false;
        }
        core::hint::spin_loop();
    }
}

/// Baseline: two threads bounce one cache line. The initiator stores an odd number, the responder
/// (pinned to another core) answers with the next even one, and so on; a round trip is two
/// cache-line transfers, so one-way latency is half of it.
#[derive(Debug)]
pub struct CacheLinePingPong {
    ball: Arc<CachePadded<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    responder: Option<JoinHandle<()>>,
    next: usize,
}

impl CacheLinePingPong {
    /// Starts the responder, pinned to available core `responder_core` when there is one.
    pub fn start(responder_core: usize) -> CacheLinePingPong {
        CacheLinePingPong::start_with(move || {
            pin_current(responder_core);
        })
    }

    /// Starts the responder pinned to CPU `cpu` (the OS's number, as `--cores` names them).
    pub fn start_on_cpu(cpu: usize) -> CacheLinePingPong {
        CacheLinePingPong::start_with(move || {
            harness::pin_cpu(cpu);
        })
    }

    fn start_with(pin: impl FnOnce() + Send + 'static) -> CacheLinePingPong {
        let ball = Arc::new(CachePadded(AtomicUsize::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (ball.clone(), stop.clone());
        let responder = std::thread::spawn(move || {
            pin();
            let mut expect = 1usize;
            while spin_until(&s, || b.0.load(Ordering::Acquire) == expect) {
                b.0.store(expect + 1, Ordering::Release);
                expect += 2;
            }
        });
        CacheLinePingPong { ball, stop, responder: Some(responder), next: 1 }
    }

    /// One round trip.
    #[inline]
    pub fn round_trip(&mut self) {
        let ball = &self.ball.0;
        ball.store(self.next, Ordering::Release);
        let answer = self.next + 1;
        while ball.load(Ordering::Acquire) != answer {
            core::hint::spin_loop();
        }
        self.next += 2;
    }

    /// Total time of `n` round trips.
    pub fn round_trips(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.round_trip();
        }
        start.elapsed()
    }
}

impl Drop for CacheLinePingPong {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(responder) = self.responder.take() {
            let _ = responder.join();
        }
    }
}

/// Writer → reader through real segments, both ways: the initiator publishes on segment A and
/// spins on `try_next` of segment B; the responder (another thread, pinned) spins on A and publishes
/// what it read on B. One round trip = two publishes + two cross-core reads, with no clock shared
/// between the threads; half of it is the one-way writer → reader latency.
#[derive(Debug)]
pub struct SegmentPingPong {
    writer: Writer,
    reader: Reader,
    record: TickRecord,
    out: TickRecord,
    stop: Arc<AtomicBool>,
    responder: Option<JoinHandle<()>>,
    _segments: [TempSegment; 2],
}

impl SegmentPingPong {
    /// Creates both segments and starts the responder, pinned to available core `responder_core`.
    pub fn start(responder_core: usize) -> SegmentPingPong {
        SegmentPingPong::start_with_slots(responder_core, RING_SLOTS)
    }

    /// [`start`](Self::start) with rings of `slots` slots (a power of two).
    pub fn start_with_slots(responder_core: usize, slots: u64) -> SegmentPingPong {
        let (seg_a, writer) = open_writer("ping", slots);
        let (seg_b, back_writer) = open_writer("pong", slots);
        let mut reader = Reader::open(seg_b.path()).expect("opening the pong segment");
        reader.seek(Start::Newest);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        // Opened here, before the first ping can be published, so the responder cannot miss it.
        let mut ping_reader = Reader::open(seg_a.path()).expect("opening the ping segment");
        ping_reader.seek(Start::Newest);
        let responder = std::thread::spawn(move || {
            pin_current(responder_core);
            let (mut back_writer, mut reader) = (back_writer, ping_reader);
            let mut tick = TickRecord::ZERO;
            loop {
                let mut next = Next::Empty;
                if !spin_until(&s, || {
                    next = reader.try_next(&mut tick);
                    next != Next::Empty
                }) {
                    return;
                }
                assert_eq!(next, Next::Tick, "the ping reader must never be lapped or see a new epoch");
                back_writer.publish(&mut tick).expect("publishing the pong");
            }
        });
        SegmentPingPong {
            writer,
            reader,
            record: sample_record(0),
            out: TickRecord::ZERO,
            stop,
            responder: Some(responder),
            _segments: [seg_a, seg_b],
        }
    }

    /// One round trip.
    #[inline]
    pub fn round_trip(&mut self) {
        self.writer.publish(&mut self.record).expect("publishing the ping");
        loop {
            match self.reader.try_next(&mut self.out) {
                Next::Tick => break,
                Next::Empty => core::hint::spin_loop(),
                other => panic!("pong reader: unexpected {other:?}"),
            }
        }
    }

    /// Total time of `n` round trips.
    pub fn round_trips(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.round_trip();
        }
        start.elapsed()
    }
}

impl Drop for SegmentPingPong {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(responder) = self.responder.take() {
            let _ = responder.join();
        }
    }
}

/// Records `n` round trips of `round_trip`, each halved (one-way), in nanoseconds. Each sample
/// includes one `Instant::now()` (timestamps are chained: one clock read per round trip).
pub fn one_way_histogram(n: u64, mut round_trip: impl FnMut()) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut before = Instant::now();
    for _ in 0..n {
        round_trip();
        let after = Instant::now();
        histogram.saturating_record(((after - before).as_nanos() as u64 / 2).max(1));
        before = after;
    }
    histogram
}

/// One line of percentiles (p50 … p99.99, max) in nanoseconds.
pub fn percentiles_line(label: &str, h: &Histogram<u64>) -> String {
    let q = |p: f64| h.value_at_quantile(p);
    format!(
        "{label:<34} n={:<8} p50={:>6} p90={:>6} p99={:>6} p99.9={:>7} p99.99={:>8} max={:>9} (ns, one-way = RTT/2)",
        h.len(),
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        q(0.9999),
        h.max()
    )
}

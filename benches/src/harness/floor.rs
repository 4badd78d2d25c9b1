//! The floor every other series is divided by, measured in the same run on the same two cores: one
//! cache line bounced between them (one-way = round trip / 2) and the cost of the clock read each
//! timestamped sample pays (`qilin_shm::now_ns`, CLOCK_REALTIME through the vDSO).

use super::{Plan, Series, new_histogram, pin_cpu, record};
use crate::{CacheLinePingPong, one_way_histogram};

/// The floor, in ns: what the ratios are computed against.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    /// Core-to-core cache-line one-way latency, median.
    pub c2c_p50: u64,
    /// One `now_ns()` call, median.
    pub clock_p50: u64,
}

impl Floor {
    /// The divisor of every ratio: one cache-line transfer plus one clock read, the least a one-way
    /// sample timestamped with this clock can show.
    pub fn ns(&self) -> u64 {
        (self.c2c_p50 + self.clock_p50).max(1)
    }
}

/// Measures both floor series; the caller's thread is pinned to the writer CPU.
pub fn measure(plan: &Plan) -> (Floor, Vec<Series>) {
    pin_cpu(plan.writer_cpu());
    let mut pingpong = CacheLinePingPong::start_on_cpu(plan.reader_cpu());
    let _ = one_way_histogram(plan.warmup, || pingpong.round_trip());
    let c2c = one_way_histogram(plan.samples, || pingpong.round_trip());
    drop(pingpong);

    let mut clock = new_histogram();
    for i in 0..plan.warmup + plan.samples {
        let a = qilin_shm::now_ns();
        let b = qilin_shm::now_ns();
        if i >= plan.warmup {
            record(&mut clock, b - a);
        }
    }
    let floor = Floor { c2c_p50: c2c.value_at_quantile(0.5), clock_p50: clock.value_at_quantile(0.5) };
    let series = vec![
        Series::new(
            "floor/c2c_one_way",
            format!(
                "one 128-byte-aligned cache line bounced between CPU {} and CPU {}; one-way = round trip / 2 \
                 (each sample includes half of one Instant::now)",
                plan.writer_cpu(),
                plan.reader_cpu()
            ),
            c2c,
        ),
        Series::new(
            "floor/clock_read",
            "qilin_shm::now_ns() (CLOCK_REALTIME): difference of two back-to-back reads",
            clock,
        ),
    ];
    (floor, series)
}

/// How much of a CPU a busy-spinning thread pinned there actually got: it reads the clock for
/// `duration_ns` and counts every jump of more than 20 µs between two reads as time it was not
/// running (preempted by another task or the hypervisor). On an isolated core this is ≈ 0.
#[derive(Clone, Copy, Debug)]
pub struct Availability {
    /// The CPU.
    pub cpu: usize,
    /// Share of the time the thread was off the CPU, 0..=1.
    pub off_cpu: f64,
    /// Number of such gaps.
    pub gaps: u64,
    /// Longest gap, ns.
    pub longest_ns: i64,
}

/// Measures [`Availability`] on `cpu` for `duration_ns` (on a thread of its own).
pub fn availability(cpu: usize, duration_ns: i64) -> Availability {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_cpu(cpu);
            let start = qilin_shm::now_ns();
            let (mut prev, mut off, mut gaps, mut longest) = (start, 0i64, 0u64, 0i64);
            while prev - start < duration_ns {
                let now = qilin_shm::now_ns();
                let gap = now - prev;
                if gap > 20_000 {
                    off += gap;
                    gaps += 1;
                    longest = longest.max(gap);
                }
                prev = now;
            }
            Availability { cpu, off_cpu: off as f64 / (prev - start).max(1) as f64, gaps, longest_ns: longest }
        })
        .join()
        .expect("availability thread")
    })
}

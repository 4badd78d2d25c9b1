//! The latency harness behind `qilin-bench`: every series it measures, the same-run floor they are
//! divided by, and the three outputs (terminal table, JSON, percentile plot).
//!
//! Honesty rules built in (see `BENCHMARKS.md`):
//! - **warm-up excluded**: the first [`Plan::warmup`] samples of every series are taken and thrown
//!   away;
//! - **no coordinated omission**: every paced path is driven by a schedule ([`Schedule`]) and
//!   measured from the moment each tick was *due*, not from when it was sent, so a stall delays the
//!   following sends and is charged to every tick it delayed;
//! - **and a mode a stolen CPU cannot turn into a backlog**: the segment and every baseline also
//!   run as a ping-pong ([`pingpong`]), one-way = round trip / 2, each sample independent;
//! - **interleaved rounds**: with `--rounds R` every series runs R times for 1/R of its samples,
//!   round robin, and the rounds are merged per series, so a change in load hits every series alike;
//! - **the floor is measured in the same run**: core-to-core cache-line ping-pong between the two
//!   cores used and the cost of the clock read every sample pays ([`floor`]).

use std::{path::PathBuf, time::Duration};

use hdrhistogram::Histogram;

pub mod baselines;
pub mod blast;
pub mod child;
pub mod core_ctp;
pub mod core_paths;
pub mod e2e;
pub mod floor;
#[cfg(feature = "iceoryx2")]
pub mod iceoryx2;
pub mod machine;
pub mod pingpong;
pub mod report;
pub mod segment;
pub mod series;
pub mod svg;
pub mod throughput;

pub use series::Series;

/// How long a child or a wait may take before the harness gives up on it (a hang, never a figure).
pub const WATCHDOG: Duration = Duration::from_secs(180);

/// What one run measures and how much.
#[derive(Clone, Debug)]
pub struct Plan {
    /// CPUs as the OS numbers them; `cores[0]` runs writers and senders, `cores[1]` the readers
    /// (and the core's hot thread), further cores share the readers.
    pub cores: Vec<usize>,
    /// Samples recorded per series (after the warm-up).
    pub samples: u64,
    /// Samples taken and discarded first in every series.
    pub warmup: u64,
    /// Paced rate of the in-harness writers and senders, ticks per second.
    pub rate: u64,
    /// Rate of the paced UDP sender of the end-to-end runs (and of the core/ctp front), ticks per
    /// second.
    pub e2e_rate: u64,
    /// Samples recorded per end-to-end reader (the rate is fixed, so this sets the time).
    pub e2e_samples: u64,
    /// Rounds the latency series are split into, round robin (1 = each series once, in one go).
    pub rounds: u64,
    /// Reader counts of the segment series.
    pub reader_counts: Vec<usize>,
    /// Ticks per throughput round, and rounds.
    pub throughput_ticks: usize,
    /// Throughput rounds.
    pub throughput_rounds: usize,
    /// Groups to run (`baseline`, `segment`, `core`, `e2e`, `throughput`; empty = all). The floor
    /// always runs.
    pub only: Vec<String>,
    /// The source tree (config/instruments.toml, shm-layout/include, python/, benches/c, benches/python).
    pub repo: PathBuf,
    /// The `qilin-core` binary the end-to-end series start.
    pub core_bin: PathBuf,
    /// This binary (started again for the child roles).
    pub self_bin: PathBuf,
}

impl Plan {
    /// The writer/sender CPU.
    pub fn writer_cpu(&self) -> usize {
        self.cores[0]
    }

    /// The reader CPU (and the core's hot thread).
    pub fn reader_cpu(&self) -> usize {
        self.cores[1]
    }

    /// The CPU reader number `i` of a multi-reader series is pinned to: round robin over every core
    /// but the writer's.
    pub fn reader_cpu_of(&self, i: usize) -> usize {
        let readers = &self.cores[1..];
        readers[i % readers.len()]
    }

    /// Whether group `group` runs.
    pub fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    /// Interval of the paced schedule, ns.
    pub fn interval_ns(&self) -> i64 {
        (1_000_000_000 / self.rate.max(1)) as i64
    }

    /// The plan of one of [`Plan::rounds`] rounds: `samples` and `e2e_samples` divided by the rounds
    /// (rounded up), the warm-up divided too but at least 1 000 (or all of it when smaller): every
    /// round starts its processes and segments afresh, and the first sight of each of the 185
    /// instruments must fall in the warm-up.
    pub fn round(&self) -> Plan {
        let rounds = self.rounds.max(1);
        Plan {
            samples: self.samples.div_ceil(rounds),
            e2e_samples: self.e2e_samples.div_ceil(rounds),
            warmup: self.warmup.div_ceil(rounds).max(self.warmup.min(1_000)),
            ..self.clone()
        }
    }
}

/// Pins the calling thread to CPU `cpu` (the OS's number); `false` if the OS refused.
pub fn pin_cpu(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// A paced schedule: tick `i` is due at `start_ns + i × interval_ns` (CLOCK_REALTIME, the clock the
/// records carry and every reader, in every language, can read).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// When tick 0 is due.
    pub start_ns: i64,
    /// Spacing, ns.
    pub interval_ns: i64,
}

impl Schedule {
    /// Starts 2 ms from now (time for the first waits to settle).
    pub fn starting_soon(interval_ns: i64) -> Schedule {
        Schedule { start_ns: qilin_shm::now_ns() + 2_000_000, interval_ns }
    }

    /// When tick `i` is due.
    pub fn due(&self, i: u64) -> i64 {
        self.start_ns + i as i64 * self.interval_ns
    }

    /// Spins until tick `i` is due (returns at once if it is late); returns `(due, now)`.
    #[inline]
    pub fn wait(&self, i: u64) -> (i64, i64) {
        let due = self.due(i);
        let mut now = qilin_shm::now_ns();
        while now < due {
            core::hint::spin_loop();
            now = qilin_shm::now_ns();
        }
        (due, now)
    }
}

/// A histogram for latencies in ns: 1 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Records one latency (clamped to the histogram's range; 0 and negatives count as 1 ns).
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: i64) {
    h.saturating_record(ns.max(1) as u64);
}

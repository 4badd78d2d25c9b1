//! The hot thread's wall-clock stamps (`publish_ns`) without a system call or a vDSO read per tick.
//!
//! A `SystemTime::now()` per published tick was ≈ 127 of the ≈ 1 245 instructions per tick of
//! `Engine::process` (BENCHMARKS.md, "Budget"). [`StampClock`] reads the CPU's time-stamp counter
//! instead (`quanta` checks that the TSC is invariant, calibrates it against CLOCK_MONOTONIC once
//! per process, and falls back to the OS clock where the TSC is not usable; the stamps read the
//! counter themselves with quanta's calibration, or through quanta when it fell back)
//! and adds the TSC time elapsed since an *anchor*: a pair (TSC, CLOCK_REALTIME) taken at every
//! housekeeping, about every millisecond. So a stamp is CLOCK_REALTIME as of the last anchor plus
//! at most about a millisecond of TSC time; a step of the wall clock (an administrator, NTP, a
//! test's faketime) shows in the stamps from the next anchor on, as it does in the heartbeat.

/// A CLOCK_REALTIME reading from the TSC, re-anchored by [`anchor`](StampClock::anchor).
#[derive(Debug)]
pub struct StampClock {
    clock: quanta::Clock,
    /// Nanoseconds per 2^32 TSC ticks, as quanta calibrated them, when quanta reads the TSC: then
    /// the stamps read it here (one `rdtsc`, a multiply and a shift, all inlined: quanta's own read
    /// is a call that matches on its clock kind; qilin-budget udp −20 instructions a tick). `None`:
    /// quanta fell back to the OS clock, and the stamps go through quanta.
    tsc_scale: Option<u64>,
    /// TSC value (quanta's raw units) at the anchor.
    anchor_raw: u64,
    /// CLOCK_REALTIME, ns since the epoch, at the anchor.
    anchor_ns: i64,
}

/// The time-stamp counter.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)] // one instruction with no precondition
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the counter; every x86-64 CPU has it (an OS that forbids it at
    // user level faults the process, which is no undefined behaviour).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether `clock` reads the TSC: its raw reading falls between two TSC readings taken around it
/// (its OS-clock fallback counts nanoseconds, a different number), three times in a row.
#[cfg(target_arch = "x86_64")]
fn reads_the_tsc(clock: &quanta::Clock) -> bool {
    (0..3).all(|_| {
        let before = rdtsc();
        let raw = clock.raw();
        let after = rdtsc();
        before <= raw && raw <= after
    })
}

/// `ticks` TSC ticks in nanoseconds, at `scale` ns per 2^32 ticks.
#[inline(always)]
fn scaled(ticks: u64, scale: u64) -> i64 {
    ((u128::from(ticks) * u128::from(scale)) >> 32) as i64
}

impl StampClock {
    /// Calibrates the TSC (once per process: the first call takes up to a few hundred
    /// milliseconds) and anchors. Call it at start-up, not on the hot thread's loop.
    pub fn new() -> StampClock {
        let clock = quanta::Clock::new();
        #[cfg(target_arch = "x86_64")]
        let tsc_scale = reads_the_tsc(&clock).then(|| clock.delta_as_nanos(0, 1 << 32));
        #[cfg(not(target_arch = "x86_64"))]
        let tsc_scale = None;
        let mut clock = StampClock { clock, tsc_scale, anchor_raw: 0, anchor_ns: 0 };
        clock.anchor();
        clock
    }

    /// The raw reading stamps are taken from: the TSC, or quanta's.
    #[inline(always)]
    fn raw(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if self.tsc_scale.is_some() {
            return rdtsc();
        }
        self.clock.raw()
    }

    /// Takes a new anchor and returns its CLOCK_REALTIME (ns since the epoch): the housekeeping
    /// calls this instead of its own `qilin_shm::now_ns()`.
    #[inline]
    pub fn anchor(&mut self) -> i64 {
        self.anchor_raw = self.raw();
        self.anchor_ns = qilin_shm::now_ns();
        self.anchor_ns
    }

    /// CLOCK_REALTIME now, ns since the epoch: the anchor's plus the TSC time since it (no system
    /// call, no vDSO read, no allocation). A TSC reading below the anchor's (another core's counter
    /// a little behind) counts as no time, as quanta counts it.
    #[inline(always)]
    pub fn now_ns(&self) -> i64 {
        let raw = self.raw();
        let since = match self.tsc_scale {
            Some(scale) => scaled(raw.saturating_sub(self.anchor_raw), scale),
            None => self.clock.delta_as_nanos(self.anchor_raw, raw) as i64,
        };
        self.anchor_ns + since
    }
}

impl Default for StampClock {
    fn default() -> Self {
        StampClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::{StampClock, scaled};

    /// The stamps' own scaling of TSC ticks agrees with quanta's (whose calibration it takes) to
    /// within a nanosecond, from a tick to a minute of ticks. (On a clock that is not the TSC the
    /// scale is 2^32, the identity, as quanta's.)
    #[test]
    fn ticks_scale_as_quanta_scales_them() {
        let clock = quanta::Clock::new();
        let scale = clock.delta_as_nanos(0, 1 << 32);
        for ticks in [1, 1_000, 3_000_000, 1 << 32, 200_000_000_000] {
            let quanta = clock.delta_as_nanos(0, ticks) as i64;
            let ours = scaled(ticks, scale);
            assert!(
                (quanta - ours).abs() <= 1 + quanta / 1_000_000_000,
                "{ticks} ticks: quanta {quanta} ns, ours {ours} ns"
            );
        }
    }

    /// A stamp lies between the wall-clock readings taken around it, up to the TSC's drift from
    /// the wall clock since the anchor (calibration error plus any slewing: allowed 0.1 % of the
    /// time since the anchor, two orders above what NTP slews, plus 2 µs for the reads' order).
    #[test]
    fn stamps_follow_the_wall_clock() {
        let mut clock = StampClock::new();
        for round in 0..200 {
            let anchored = clock.anchor();
            // Let some time pass since the anchor (more each round), as between housekeepings.
            let until = anchored + round * 5_000;
            while qilin_shm::now_ns() < until {
                std::hint::spin_loop();
            }
            let before = qilin_shm::now_ns();
            let stamp = clock.now_ns();
            let after = qilin_shm::now_ns();
            let slack = (after - anchored) / 1000 + 2_000;
            assert!(
                before - slack <= stamp && stamp <= after + slack,
                "round {round}: stamp {stamp} outside [{before}, {after}] ± {slack} (anchored at {anchored})"
            );
        }
    }

    /// The anchor is a CLOCK_REALTIME reading: a stamp right after it is no earlier than it.
    #[test]
    fn a_stamp_is_never_before_its_anchor() {
        let mut clock = StampClock::new();
        for _ in 0..10_000 {
            let anchored = clock.anchor();
            assert!(clock.now_ns() >= anchored);
        }
    }
}

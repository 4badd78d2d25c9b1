//! The hot thread's wall-clock stamps (`publish_ns`) without a system call or a vDSO read per tick.
//!
//! A `SystemTime::now()` per published tick was ≈ 127 of the ≈ 1 245 instructions per tick of
//! `Engine::process` (BENCHMARKS.md, "Budget"). [`StampClock`] reads the CPU's time-stamp counter
//! instead (through `quanta`, which checks that the TSC is invariant, calibrates it against
//! CLOCK_MONOTONIC once per process, and falls back to the OS clock where the TSC is not usable)
//! and adds the TSC time elapsed since an *anchor*: a pair (TSC, CLOCK_REALTIME) taken at every
//! housekeeping, about every millisecond. So a stamp is CLOCK_REALTIME as of the last anchor plus
//! at most about a millisecond of TSC time; a step of the wall clock (an administrator, NTP, a
//! test's faketime) shows in the stamps from the next anchor on, as it does in the heartbeat.

/// A CLOCK_REALTIME reading from the TSC, re-anchored by [`anchor`](StampClock::anchor).
#[derive(Debug)]
pub struct StampClock {
    clock: quanta::Clock,
    /// TSC value (quanta's raw units) at the anchor.
    anchor_raw: u64,
    /// CLOCK_REALTIME, ns since the epoch, at the anchor.
    anchor_ns: i64,
}

impl StampClock {
    /// Calibrates the TSC (once per process: the first call takes up to a few hundred
    /// milliseconds) and anchors. Call it at start-up, not on the hot thread's loop.
    pub fn new() -> StampClock {
        let mut clock = StampClock { clock: quanta::Clock::new(), anchor_raw: 0, anchor_ns: 0 };
        clock.anchor();
        clock
    }

    /// Takes a new anchor and returns its CLOCK_REALTIME (ns since the epoch): the housekeeping
    /// calls this instead of its own `qilin_shm::now_ns()`.
    #[inline]
    pub fn anchor(&mut self) -> i64 {
        self.anchor_raw = self.clock.raw();
        self.anchor_ns = qilin_shm::now_ns();
        self.anchor_ns
    }

    /// CLOCK_REALTIME now, ns since the epoch: the anchor's plus the TSC time since it (no system
    /// call, no vDSO read, no allocation).
    #[inline(always)]
    pub fn now_ns(&self) -> i64 {
        self.anchor_ns + self.clock.delta_as_nanos(self.anchor_raw, self.clock.raw()) as i64
    }
}

impl Default for StampClock {
    fn default() -> Self {
        StampClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::StampClock;

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

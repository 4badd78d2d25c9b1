//! The feed clock: the time that closes bars, taken from the ticks themselves so that a replay of
//! the same ticks closes the same bars at the same points.
//!
//! - Every in-session tick moves the clock to its exchange time, if later, and becomes the
//!   *anchor* if its exchange time is the latest seen: (exchange time, publish time).
//! - Before a tick is used, the clock moves to `anchor.exchange + (tick.publish − anchor.publish)`:
//!   the exchange time the anchor's latency predicts for the moment the tick was published. This is
//!   what lets a quiet instrument's bar close when only other instruments trade slowly.
//! - When the ring is idle, the sidecar's timer moves the clock to
//!   `anchor.exchange + (wall − margin − anchor.publish)`, so a bar closes at its section end even
//!   when no tick follows it (CZCE's missing closing tick, the last bar of the day).
//!
//! The timer's move is always overtaken by the next tick's own move (its publish time is at least
//! `wall − margin`: the core stamps a tick and writes it within far less than `margin`), and the
//! clock only moves forward, so live (ticks + timer) and replay (ticks only) close the same bars in
//! the same order. Times are UTC nanoseconds; a replayed feed running faster than real time moves
//! the predicted clock more slowly than its exchange times, never ahead of them.

/// The clock and its anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedClock {
    now: i64,
    anchor: Option<(i64, i64)>,
}

impl Default for FeedClock {
    fn default() -> FeedClock {
        FeedClock { now: i64::MIN, anchor: None }
    }
}

impl FeedClock {
    /// The clock (UTC ns); `i64::MIN` before the first tick.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Moves to `to` if later.
    pub fn advance_to(&mut self, to: i64) {
        self.now = self.now.max(to);
    }

    /// The move before a tick published at `publish_ns` is used.
    pub fn before_tick(&mut self, publish_ns: i64) {
        if let Some((exchange, published)) = self.anchor {
            self.advance_to(exchange.saturating_add(publish_ns.saturating_sub(published)));
        }
    }

    /// The move of an in-session tick.
    pub fn in_session_tick(&mut self, exchange_ns: i64, publish_ns: i64) {
        self.advance_to(exchange_ns);
        if self.anchor.is_none_or(|(latest, _)| exchange_ns >= latest) {
            self.anchor = Some((exchange_ns, publish_ns));
        }
    }

    /// The timer's move while the ring is idle, at wall time `wall_ns` (UTC ns) less `margin_ns`.
    pub fn idle(&mut self, wall_ns: i64, margin_ns: i64) {
        if let Some((exchange, published)) = self.anchor {
            self.advance_to(exchange.saturating_add(wall_ns.saturating_sub(margin_ns).saturating_sub(published)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_overtaken_by_the_next_tick() {
        let mut live = FeedClock::default();
        live.before_tick(1_000);
        assert_eq!(live.now(), i64::MIN, "no anchor yet");
        live.in_session_tick(500, 1_000); // latency 500
        assert_eq!(live.now(), 500);
        live.idle(5_000, 100);
        assert_eq!(live.now(), 500 + 3_900);
        let mut replay = FeedClock::default();
        replay.in_session_tick(500, 1_000);
        // The next tick was published after the timer's wall time less the margin.
        for clock in [&mut live, &mut replay] {
            clock.before_tick(4_950);
        }
        assert_eq!(live, replay);
        live.in_session_tick(300, 4_960); // an earlier exchange time: not the anchor, no move back
        assert_eq!(live.now(), 4_450);
    }
}

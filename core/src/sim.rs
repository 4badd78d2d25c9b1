//! The `sim` source: a deterministic (seeded) generator of realistic CTP depth-market-data structs
//! for the instruments listed in the instruments file, delivered from its own thread through the
//! same callback the vendor SDK calls ([`MdCallback::on_rtn_depth_market_data`]).
//!
//! What it imitates: random-walk prices on each product's tick grid inside its price limits, five
//! levels a side, cumulative volume/turnover/open interest, one snapshot per instrument every
//! `snapshot_interval_ms` of simulated time, day and night sessions per product (instruments only
//! tick inside their sessions; the clock jumps across breaks and weekends), and each exchange's own
//! TradingDay/ActionDay/UpdateMillisec conventions (DCE night ticks carry the trading day in both
//! fields, CZCE the calendar day with UpdateMillisec always 0, DCE arbitrary milliseconds, SHFE
//! 0/500). Settlement and close prices are DBL_MAX (absent) while trading, as CTP sends them.
//! `[source.sim.inject]` adds each kind of bad record and quirk at a chosen probability.
//!
//! Simulated time advances by one snapshot interval per round of instruments, whatever the
//! wall-clock rate, so a load test at millions of ticks per second runs through sessions and
//! trading days quickly and exercises day rollovers.

use std::time::{Duration, Instant};

use qilin_shm::{Exchange, Source};

use qilin_market::{Calendar, Date, Instruments, ProductSpec, date::parse_local_datetime};

use crate::{
    config::{InjectConfig, SimConfig},
    ctp::RawFields,
    handoff::HandoffTx,
    session::{Links, Which},
};

/// The SPI side of the hand-off: what the vendor SDK's `OnRtnDepthMarketData` (and the simulator)
/// call with a raw struct. Stamps the receive time and copies the bytes; never blocks.
#[derive(Debug)]
pub struct MdCallback {
    tx: HandoffTx,
    source: Source,
}

impl MdCallback {
    /// A callback feeding `tx`, tagging ticks with `source`.
    pub fn new(tx: HandoffTx, source: Source) -> MdCallback {
        MdCallback { tx, source }
    }

    /// `OnRtnDepthMarketData`: copy and return. `false` if the hand-off was full (counted there).
    #[inline]
    pub fn on_rtn_depth_market_data(&mut self, raw: &[u8]) -> bool {
        self.tx.push(raw, qilin_shm::now_ns(), self.source)
    }

    /// Whether the core stopped consuming.
    pub fn is_abandoned(&self) -> bool {
        self.tx.is_abandoned()
    }
}

/// Where the simulated market's ticks go.
trait Sink {
    /// Whether anyone takes ticks now.
    fn is_open(&self) -> bool;
    /// Whether the core stopped consuming.
    fn is_abandoned(&self) -> bool;
    /// Hands one raw struct to every listener.
    fn deliver(&mut self, raw: &[u8]);
}

/// The single anonymous session (`source = sim`).
struct OneSession(MdCallback);

impl Sink for OneSession {
    fn is_open(&self) -> bool {
        true
    }
    fn is_abandoned(&self) -> bool {
        self.0.is_abandoned()
    }
    fn deliver(&mut self, raw: &[u8]) {
        self.0.on_rtn_depth_market_data(raw);
    }
}

/// The primary and backup sessions: each gets the tick while it is logged in.
struct TwoSessions {
    callbacks: [MdCallback; 2],
    links: Links,
}

impl Sink for TwoSessions {
    fn is_open(&self) -> bool {
        Which::BOTH.iter().any(|w| self.links.is_up(*w))
    }
    fn is_abandoned(&self) -> bool {
        self.callbacks.iter().all(MdCallback::is_abandoned)
    }
    fn deliver(&mut self, raw: &[u8]) {
        for which in Which::BOTH {
            if self.links.is_up(which) {
                self.callbacks[which.index()].on_rtn_depth_market_data(raw);
            }
        }
    }
}

/// Any consumer of raw structs (`run_into`): `false` stops the simulator.
struct Consumer<F>(F, bool);

impl<F: FnMut(&[u8]) -> bool> Sink for Consumer<F> {
    fn is_open(&self) -> bool {
        true
    }
    fn is_abandoned(&self) -> bool {
        self.1
    }
    fn deliver(&mut self, raw: &[u8]) {
        self.1 = !(self.0)(raw);
    }
}

/// SplitMix64: small, seedable, good enough for prices.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Clone, Debug)]
struct SimInstrument {
    id: String,
    spec: ProductSpec,
    pre_settlement_ticks: i64,
    price_ticks: i64,
    open_ticks: i64,
    high_ticks: i64,
    low_ticks: i64,
    volume: i64,
    turnover: f64,
    open_interest: f64,
}

/// The simulator: instruments, clock and PRNG. Build it on the main thread, run it on its own.
#[derive(Debug)]
pub struct Simulator {
    instruments: Vec<SimInstrument>,
    config: SimConfig,
    rng: Rng,
    /// Which days trade and which evenings hold a night session.
    calendar: Calendar,
    /// Calendar day (China) and ms since midnight of the simulated clock.
    day: Date,
    clock_ms: u32,
}

const DAY_MS: u32 = 86_400_000;

impl Simulator {
    /// Picks the configured instruments (or every listed one) from the instruments file.
    pub fn new(config: &SimConfig, products: &Instruments) -> anyhow::Result<Simulator> {
        let (day, clock_ms) = parse_local_datetime(&config.start)
            .ok_or_else(|| anyhow::anyhow!("source.sim.start: {:?} is not YYYY-MM-DD HH:MM:SS", config.start))?;
        let mut instruments = Vec::new();
        let listed = products.products().iter().flat_map(|spec| spec.instruments.iter().map(move |id| (id, spec)));
        for (id, spec) in listed {
            if !config.instruments.is_empty() && !config.instruments.iter().any(|w| w == id) {
                continue;
            }
            let ticks = (spec.reference_price / spec.price_tick).round() as i64;
            instruments.push(SimInstrument {
                id: id.to_string(),
                spec: spec.clone(),
                pre_settlement_ticks: ticks,
                price_ticks: ticks,
                open_ticks: ticks,
                high_ticks: ticks,
                low_ticks: ticks,
                volume: 0,
                turnover: 0.0,
                open_interest: 10_000.0,
            });
        }
        for wanted in &config.instruments {
            if !instruments.iter().any(|i| &i.id == wanted) {
                anyhow::bail!("source.sim.instruments: {wanted:?} is not listed in the instruments file");
            }
        }
        if instruments.is_empty() {
            anyhow::bail!("the simulator has no instruments: list some in the instruments file");
        }
        Ok(Simulator {
            instruments,
            config: config.clone(),
            rng: Rng(config.seed),
            calendar: Calendar::weekdays_only(),
            day,
            clock_ms,
        })
    }

    /// Trades on `calendar`'s trading days and night sessions (by default every weekday does).
    pub fn with_calendar(mut self, calendar: Calendar) -> Simulator {
        self.calendar = calendar;
        self
    }

    /// Number of simulated instruments.
    pub fn instrument_count(&self) -> usize {
        self.instruments.len()
    }

    /// Produces ticks into `tx` until `max_ticks` (if set) or until the core goes away.
    pub fn run(self, tx: HandoffTx) {
        let mut sink = OneSession(MdCallback::new(tx, Source::Sim));
        self.generate(&mut sink);
    }

    /// Produces ticks (raw 6.7.x structs) into `consume`, paced as configured, until `max_ticks` or
    /// until `consume` returns `false`. For drivers outside the core (the CTP stand-in's front).
    pub fn run_into(self, consume: impl FnMut(&[u8]) -> bool) {
        self.generate(&mut Consumer(consume, false));
    }

    /// Produces each tick once and delivers it to every session that is up (logged in), as two
    /// CTP sessions of one market both receive it, each through its own hand-off. While neither
    /// session is up the simulated market waits (so a test can count every tick it made); a tick
    /// made in the instant both go down is delivered to neither, as in the real world.
    pub fn run_sessions(self, primary: HandoffTx, backup: HandoffTx, links: Links) {
        let mut sink = TwoSessions {
            callbacks: [MdCallback::new(primary, Source::Primary), MdCallback::new(backup, Source::Backup)],
            links,
        };
        self.generate(&mut sink);
    }

    /// The trading day of the simulated clock now, YYYYMMDD (what a simulated login reports).
    pub fn trading_day_now(&self) -> u32 {
        self.trading_day().ymd
    }

    fn generate(mut self, sink: &mut impl Sink) {
        let rate = self.config.ticks_per_second;
        let interval = Duration::from_millis(self.config.snapshot_interval_ms);
        let mut started = Instant::now();
        let mut produced = 0u64;
        let mut paced_from = 0u64;
        let mut buf = [0u8; 584];
        let mut next_round = Instant::now();
        while !sink.is_abandoned() && (self.config.max_ticks == 0 || produced < self.config.max_ticks) {
            if rate == 0 {
                let now = Instant::now();
                if now < next_round {
                    std::thread::sleep(next_round - now);
                }
                next_round += interval;
            }
            for i in 0..self.instruments.len() {
                if self.config.max_ticks != 0 && produced >= self.config.max_ticks {
                    break;
                }
                if !sink.is_open() {
                    // Nobody listens: hold the market, then pace from here rather than catch up.
                    while !sink.is_open() && !sink.is_abandoned() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    (started, paced_from, next_round) = (Instant::now(), produced, Instant::now());
                }
                let Some(len) = self.tick(i, &mut buf) else { continue };
                sink.deliver(&buf[..len]);
                produced += 1;
                if rate > 0 && produced.is_multiple_of(64) {
                    pace(started, produced - paced_from, rate);
                }
            }
            self.advance();
        }
    }

    /// Advances the simulated clock by one snapshot interval, jumping over breaks and weekends.
    fn advance(&mut self) {
        self.clock_ms += self.config.snapshot_interval_ms as u32;
        if self.clock_ms >= DAY_MS {
            self.clock_ms -= DAY_MS;
            self.day = Date::from_days(self.day.days + 1);
        }
        if self.instruments.iter().any(|i| self.in_session(&i.spec)) {
            return;
        }
        // Nothing trades now: jump minute by minute (bounded: three weeks, longer than any
        // holiday) to the next open session.
        for _ in 0..21 * 24 * 60 {
            self.clock_ms = (self.clock_ms / 60_000 + 1) * 60_000;
            if self.clock_ms >= DAY_MS {
                self.clock_ms -= DAY_MS;
                self.day = Date::from_days(self.day.days + 1);
            }
            if self.instruments.iter().any(|i| self.in_session(&i.spec)) {
                return;
            }
        }
    }

    /// Whether the product trades at the simulated time: in one of its sessions, on a day (or
    /// evening, or after the midnight of an evening) the calendar holds that session.
    fn in_session(&self, spec: &ProductSpec) -> bool {
        self.calendar.in_session(spec, self.day, self.clock_ms)
    }

    /// The trading day a tick at the simulated time belongs to.
    fn trading_day(&self) -> Date {
        if self.clock_ms >= 18 * 3_600_000 {
            self.calendar.next_trading_day(self.day)
        } else if self.clock_ms < 6 * 3_600_000 {
            // After midnight of a night session: the trading day is the next trading day after
            // the evening's calendar day (Saturday 01:00 belongs to Monday).
            self.calendar.next_trading_day(self.day.add_days(-1))
        } else {
            self.day
        }
    }

    /// Builds instrument `i`'s next snapshot into `buf`; returns its length, or `None` when the
    /// instrument is out of session.
    fn tick(&mut self, i: usize, buf: &mut [u8; 584]) -> Option<usize> {
        if !self.in_session(&self.instruments[i].spec) {
            return None;
        }
        let trading_day = self.trading_day();
        let (day, clock_ms) = (self.day, self.clock_ms);
        let inject = self.config.inject.clone();
        let rng = &mut self.rng;
        let inst = &mut self.instruments[i];
        let spec = &inst.spec;
        let tick = spec.price_tick;
        let limit = (inst.pre_settlement_ticks / 14).max(5);
        inst.price_ticks = (inst.price_ticks + rng.below(3) as i64 - 1)
            .clamp(inst.pre_settlement_ticks - limit + 5, inst.pre_settlement_ticks + limit - 5);
        inst.high_ticks = inst.high_ticks.max(inst.price_ticks);
        inst.low_ticks = inst.low_ticks.min(inst.price_ticks);
        let traded = rng.below(40) as i64;
        inst.volume += traded;
        let price = inst.price_ticks as f64 * tick;
        inst.turnover += traded as f64 * price * f64::from(spec.volume_multiple);
        inst.open_interest += rng.below(21) as f64 - 10.0;

        let mut f = RawFields {
            instrument_id: inst.id.clone(),
            exchange_id: spec.exchange.as_str().to_string(),
            ..RawFields::default()
        };
        let (trading_field, action_field) = match spec.exchange {
            Exchange::Dce => (trading_day, trading_day),
            Exchange::Czce => (day, day),
            _ => (trading_day, day),
        };
        f.trading_day = trading_field.ymd.to_string();
        f.action_day = action_field.ymd.to_string();
        let seconds = clock_ms / 1000;
        f.update_time = format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
        f.update_millisec = match spec.exchange {
            Exchange::Czce => 0,
            Exchange::Dce => rng.below(1000) as i32,
            _ => (clock_ms % 1000) as i32,
        };
        let pre = inst.pre_settlement_ticks as f64 * tick;
        f.last_price = price;
        f.pre_settlement_price = pre;
        f.pre_close_price = pre;
        f.pre_open_interest = 10_000.0;
        f.open_price = inst.open_ticks as f64 * tick;
        f.highest_price = inst.high_ticks as f64 * tick;
        f.lowest_price = inst.low_ticks as f64 * tick;
        f.volume = inst.volume as i32;
        f.turnover = inst.turnover;
        f.open_interest = inst.open_interest;
        f.close_price = f64::MAX;
        f.settlement_price = f64::MAX;
        f.upper_limit_price = (inst.pre_settlement_ticks + limit) as f64 * tick;
        f.lower_limit_price = (inst.pre_settlement_ticks - limit) as f64 * tick;
        f.pre_delta = 0.0;
        f.curr_delta = f64::MAX;
        let bid = if rng.below(2) == 0 { inst.price_ticks } else { inst.price_ticks - 1 };
        for level in 0..5 {
            f.bid_price[level] = (bid - level as i64) as f64 * tick;
            f.ask_price[level] = (bid + 1 + level as i64) as f64 * tick;
            f.bid_volume[level] = 1 + rng.below(200) as i32;
            f.ask_volume[level] = 1 + rng.below(200) as i32;
        }
        f.average_price = if inst.volume == 0 {
            0.0
        } else if spec.exchange == Exchange::Czce {
            inst.turnover / inst.volume as f64 / f64::from(spec.volume_multiple)
        } else {
            inst.turnover / inst.volume as f64
        };
        f.banding_upper_price = 0.0;
        f.banding_lower_price = 0.0;
        Some(inject_faults(&mut f, &inject, rng, buf))
    }
}

/// Applies `[source.sim.inject]` and encodes; returns the length to send.
fn inject_faults(f: &mut RawFields, inject: &InjectConfig, rng: &mut Rng, buf: &mut [u8; 584]) -> usize {
    if rng.chance(inject.absent_prices) {
        f.bid_price[4] = f64::MAX;
        f.ask_price[4] = f64::MAX;
        f.bid_volume[4] = 0;
        f.ask_volume[4] = 0;
    }
    if rng.chance(inject.volume_regression) {
        f.volume = (f.volume - 10).max(0);
    }
    if rng.chance(inject.unknown_exchange) {
        f.exchange_id = "NYMEX".into();
    }
    if rng.chance(inject.nan_price) {
        f.last_price = f64::NAN;
    }
    if rng.chance(inject.bad_time) {
        f.update_time = "25:61:00".into();
    }
    let len = if rng.chance(inject.old_versions) {
        if rng.below(2) == 0 {
            buf[..568].copy_from_slice(&f.to_v65_bytes());
            568
        } else {
            buf[..408].copy_from_slice(&f.to_v63_bytes());
            408
        }
    } else {
        *buf = f.to_v67_bytes();
        584
    };
    if rng.chance(inject.bad_id) {
        // InstrumentID without its NUL terminator.
        let (offset, size) = if len == crate::ctp::V63_SIZE { (9, 31) } else { (401, 81) };
        buf[offset..offset + size].fill(b'X');
    }
    if rng.chance(inject.bad_size) { len - 1 } else { len }
}

/// Sleeps until `produced` ticks are due at `rate` per second.
fn pace(started: Instant, produced: u64, rate: u64) {
    let due = Duration::from_nanos(produced.saturating_mul(1_000_000_000) / rate);
    let elapsed = started.elapsed();
    if due > elapsed {
        let ahead = due - elapsed;
        if ahead > Duration::from_micros(200) {
            std::thread::sleep(ahead);
        } else {
            while started.elapsed() < due {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_per_seed() {
        let (mut a, mut b, mut c) = (Rng(7), Rng(7), Rng(8));
        let xs: Vec<_> = (0..4).map(|_| a.next()).collect();
        assert_eq!(xs, (0..4).map(|_| b.next()).collect::<Vec<_>>());
        assert_ne!(xs, (0..4).map(|_| c.next()).collect::<Vec<_>>());
    }
}

//! The hot loop. One pinned thread owns the segment [`Writer`] and busy-polls its input (the SDK
//! hand-off, or the UDP socket directly), normalizes each raw struct and publishes it. About every
//! millisecond it stores the heartbeat, flushes its counters into the header and drains the bounded
//! command channel.
//!
//! After start-up this thread allocates nothing (the registry, the per-instrument state and the
//! queues are sized from the configuration at start; `tests/hot_path.rs` proves it with a counting
//! allocator), takes no lock, makes no blocking call and formats no log line: what it has to say
//! goes into header counters or the bounded [`Event`] queue, which another thread logs.

use std::{
    collections::HashMap,
    hash::BuildHasherDefault,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use qilin_market::{Calendar, Instruments, ProductSpec};
use qilin_shm::{
    Counter, Exchange, RunState, Source, TickRecord, Writer,
    layout::{INSTRUMENT_ID_LEN, StatusRecord},
};
use rustc_hash::FxHasher;

use crate::{
    clock::StampClock,
    config::{Admit, UnknownProducts},
    ctp::{RawTick, V67_SIZE},
    dedup::{RecentSet, TickKey},
    handoff::{HandoffRx, RAW_MAX},
    normalize::{Avx2, InstrumentState, Portable, PriceSection, Reject, exchange_from_word, exchange_word, normalize},
    session::Links,
    udp::{UdpBound, UdpSource},
};

/// Most structs taken from one session's hand-off per iteration with two sessions.
pub const SESSION_BATCH: usize = 16;

/// A fixed-size InstrumentID key (no allocation to build or hash).
pub type IdKey = [u8; INSTRUMENT_ID_LEN];

/// Builds the key of an InstrumentID; `None` if it does not fit.
pub fn id_key(id: &str) -> Option<IdKey> {
    qilin_shm::layout::fixed_id(id)
}

/// Entries of the engine's id cache (a power of two): 4 096 × 40 bytes. An id is looked for in its
/// entry and the one beside it (index with the last bit flipped), so two ids of one entry both stay
/// (a miss fills the entry if empty, else the neighbour); a third takes turns with the second and
/// goes to the map when it misses. (One entry only: 10 % of the budget's ticks missed, ≈ 4
/// instructions a tick.)
const ID_CACHE_ENTRIES: usize = 4096;

/// The id cache entry of an id's key words (`RawTick::id_words`): a multiplicative hash of the
/// first two (every listed id fits in them), its top bits.
#[inline(always)]
fn id_cache_index(words: [u64; 4]) -> usize {
    let mixed = (words[0] ^ words[1].rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - ID_CACHE_ENTRIES.trailing_zeros())) as usize
}

/// The quality bits with a header counter of their own, and their counters.
const FLAG_COUNTERS: [(u32, Counter); 4] = [
    (qilin_shm::quality::STALE_SNAPSHOT, Counter::FlagStaleSnapshot),
    (qilin_shm::quality::VOLUME_REGRESSION, Counter::FlagVolumeRegression),
    (qilin_shm::quality::REPEATED_SECOND, Counter::FlagRepeatedSecond),
    (qilin_shm::quality::UNKNOWN_PRODUCT, Counter::FlagUnknownProduct),
];

/// The bits of [`FLAG_COUNTERS`] together.
const COUNTED_FLAGS: u32 = {
    let mut mask = 0;
    let mut i = 0;
    while i < FLAG_COUNTERS.len() {
        mask |= FLAG_COUNTERS[i].0;
        i += 1;
    }
    mask
};

/// Commands from the control thread and the session manager.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    /// Admit an instrument (and, with `admit = "subscribed-only"`, let its ticks in).
    Subscribe(IdKey),
    /// Drop an instrument's ticks from now on (its directory entry stays: indexes are permanent).
    Unsubscribe(IdKey),
    /// Finish the current batch, mark the segment stopped, return.
    Shutdown,
    /// Take ticks from this session from now on; until `overlap_until_ns` ([`mono_ns`]) take
    /// both sessions' ticks, deduplicated.
    Switch {
        /// The session now active.
        active: Source,
        /// End of the overlap.
        overlap_until_ns: i64,
    },
    /// Replace the header's status line.
    Status(StatusRecord),
    /// Add to a header counter (front disconnects, failovers).
    Count(Counter, u32),
}

/// What the hot thread reports to the logger thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An instrument entered the directory.
    Admitted {
        /// InstrumentID.
        id: IdKey,
        /// Directory index.
        index: u32,
    },
    /// An instrument could not enter: the directory is full.
    DirectoryFull {
        /// InstrumentID.
        id: IdKey,
    },
    /// An instrument's product is not in the instruments file.
    UnknownProduct {
        /// InstrumentID.
        id: IdKey,
    },
    /// A subscribe/unsubscribe command took effect.
    Subscription {
        /// InstrumentID.
        id: IdKey,
        /// New state.
        subscribed: bool,
    },
}

/// The raw inputs the hot thread polls.
#[derive(Debug)]
pub enum Input {
    /// Structs pushed by a callback thread (simulator, vendor SDK).
    Handoff(HandoffRx),
    /// A UDP socket, polled directly by the hot thread; ticks tagged with the given source.
    Udp(UdpBound, Source),
    /// Already-normalized records from the replay thread (see [`crate::replay`]).
    Replay(rtrb::Consumer<TickRecord>),
    /// The primary and the backup session's hand-offs (see [`crate::session`]).
    Sessions {
        /// The primary account's session.
        primary: HandoffRx,
        /// The backup account's session.
        backup: HandoffRx,
        /// Which sessions are up.
        links: Links,
    },
}

/// CLOCK_MONOTONIC in ns since the first call in this process: what the hot loop and the session
/// manager schedule with (housekeeping, the failover overlap). Wall time (`qilin_shm::now_ns`) is
/// only for stamps. No allocation, no lock after the first call (one atomic load).
pub fn mono_ns() -> i64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now).elapsed().as_nanos() as i64
}

/// An input as polled (built on the hot thread).
enum Polled {
    Handoff(HandoffRx),
    Udp(UdpSource, Source),
    Replay(rtrb::Consumer<TickRecord>),
    Sessions([HandoffRx; 2], Links),
}

/// What [`Engine::process_from`] does about duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dedup {
    /// One source: nothing.
    Off,
    /// Two sessions: drop a tick whose key is among the recently published ones (exactly equal), remember
    /// each published one. Always on with sessions, not only during a switch: a session that was
    /// behind when the overlap ended may still hold copies of ticks the other one delivered.
    On,
}

struct Registered {
    index: u32,
    /// Index into `Engine::specs`.
    product: usize,
    state: InstrumentState,
    subscribed: bool,
}

/// Settings of the hot loop.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Admission policy.
    pub admit: Admit,
    /// Heartbeat and housekeeping period.
    pub heartbeat_interval_ns: i64,
    /// Most structs taken from the input per iteration.
    pub batch: usize,
}

/// What the loop did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineReport {
    /// Raw structs taken.
    pub received: u64,
    /// Ticks published.
    pub published: u64,
    /// Raw structs rejected or dropped.
    pub rejected: u64,
}

/// The hot loop's state. Build it on any thread, then [`run`](Engine::run) it on the pinned one.
pub struct Engine {
    writer: Writer,
    products: Instruments,
    /// `products.products()` followed by one stand-in per exchange (`Exchange::ALL` order) for
    /// products the table lacks.
    specs: Vec<ProductSpec>,
    unknown_products: UnknownProducts,
    calendar: Calendar,
    /// Days since 1970-01-01 of the China date the calendar's coverage was last checked for.
    calendar_checked_day: i64,
    by_id: HashMap<IdKey, usize, BuildHasherDefault<FxHasher>>,
    /// `by_id` answers of the hot path, by [`id_cache_index`] (two ways: the entry and its
    /// neighbour): (the id's key words, its registry slot). The registry only grows, so an entry
    /// never goes stale; an all-zero key (the empty entry) is never a valid id's.
    id_cache: Box<[([u64; 4], usize)]>,
    registered: Vec<Registered>,
    capacity: usize,
    options: EngineOptions,
    commands: crossbeam_channel::Receiver<Command>,
    events: rtrb::Producer<Event>,
    stop: Arc<AtomicBool>,
    pending: [u64; qilin_shm::codes::COUNTER_SLOTS],
    /// Ticks published since the last flush, by their quality bits that have a counter
    /// (`quality & COUNTED_FLAGS`): one increment a tick, which the flush turns into
    /// `ticks_published` and the flag counters (a test and a branch per flag on every tick before).
    published_by_flags: [u64; COUNTED_FLAGS as usize + 1],
    handoff_drops_seen: [u64; 2],
    command_drops: Option<(Arc<AtomicUsize>, u64)>,
    /// The session whose ticks are taken (sessions only; `Sim` = none yet).
    active: Source,
    overlap_until_ns: i64,
    /// Fingerprints of the last published ticks (sessions only; sized when the loop starts).
    recent: RecentSet,
    out: TickRecord,
    /// `publish_ns` stamps: the TSC, anchored to CLOCK_REALTIME at every housekeeping.
    clock: StampClock,
    /// The CPU has AVX2 (found at start): ticks go through [`Engine::process_from_avx2`] and the
    /// AVX2 price section.
    avx2: Option<Avx2>,
    report: EngineReport,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("instruments", &self.registered.len()).field("report", &self.report).finish()
    }
}

impl Engine {
    /// Prepares the loop: sizes every table for the segment's instrument capacity. Instruments already
    /// in the directory of a reopened segment get their old index back when first seen again
    /// (`Writer::add_instrument` is idempotent), so indexes survive core restarts.
    pub fn new(
        writer: Writer,
        products: Instruments,
        capacity: u32,
        options: EngineOptions,
        commands: crossbeam_channel::Receiver<Command>,
        events: rtrb::Producer<Event>,
        stop: Arc<AtomicBool>,
    ) -> Engine {
        let capacity = capacity as usize;
        let mut engine = Engine {
            writer,
            specs: products.products().iter().cloned().chain(Exchange::ALL.map(ProductSpec::stand_in)).collect(),
            products,
            unknown_products: UnknownProducts::Admit,
            calendar: Calendar::weekdays_only(),
            calendar_checked_day: i64::MIN,
            by_id: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            id_cache: vec![([0; 4], 0); ID_CACHE_ENTRIES].into_boxed_slice(),
            registered: Vec::with_capacity(capacity),
            capacity,
            options,
            commands,
            events,
            stop,
            pending: [0; qilin_shm::codes::COUNTER_SLOTS],
            published_by_flags: [0; COUNTED_FLAGS as usize + 1],
            handoff_drops_seen: [0; 2],
            command_drops: None,
            active: Source::Sim,
            overlap_until_ns: 0,
            recent: RecentSet::new(1),
            out: TickRecord::ZERO,
            clock: StampClock::new(),
            avx2: Avx2::detect(),
            report: EngineReport::default(),
        };
        engine.writer.set_run_state(RunState::Starting);
        engine
    }

    /// Ticks of products the table lacks: admitted and flagged (the default) or rejected.
    pub fn with_unknown_products(mut self, policy: UnknownProducts) -> Engine {
        self.unknown_products = policy;
        self
    }

    /// Uses `calendar` for the trading days (by default the weekday rule: every weekday trades).
    pub fn with_calendar(mut self, calendar: Calendar) -> Engine {
        self.calendar = calendar;
        self
    }

    /// Publishes the control thread's count of refused commands as `command_queue_full`.
    pub fn count_command_drops(&mut self, dropped: Arc<AtomicUsize>) {
        self.command_drops = Some((dropped, 0));
    }

    /// The segment writer (for start-up reporting).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Admits an instrument by id at start-up (same path as a subscribe command).
    pub fn subscribe(&mut self, id: &str) -> Option<u32> {
        let key = id_key(id)?;
        self.apply(Command::Subscribe(key));
        self.by_id.get(&key).map(|slot| self.registered[*slot].index)
    }

    /// Runs until stopped (the stop flag, set by SIGTERM/SIGINT, or a `Shutdown` command). A source
    /// that ends (the simulator reaching `max_ticks`) does not stop it: the feed stays live and
    /// heartbeating, as between sessions. Calls `on_started` on this thread once start-up is over,
    /// before the first poll.
    pub fn run(mut self, input: Input, on_started: impl FnOnce()) -> EngineReport {
        let mut input = match input {
            Input::Handoff(rx) => Polled::Handoff(rx),
            Input::Udp(bound, source) => Polled::Udp(bound.into_source(), source),
            Input::Replay(queue) => Polled::Replay(queue),
            Input::Sessions { primary, backup, links } => {
                // One session can be a whole hand-off behind the other: remember twice that many.
                self.recent = RecentSet::new(2 * primary.capacity().max(backup.capacity()));
                Polled::Sessions([primary, backup], links)
            }
        };
        self.writer.set_run_state(RunState::Running);
        // Scheduled on the monotonic clock: a step of the wall clock (an administrator, NTP) must not
        // freeze the heartbeat, commands and shutdown for the size of a backward step.
        let mut next_housekeeping = 0i64;
        let mut now = mono_ns();
        on_started();
        loop {
            let taken = match &mut input {
                Polled::Handoff(rx) => {
                    let batch = self.options.batch;
                    let n = rx.drain(batch, |msg| match msg.payload() {
                        Some(bytes) => self.process(bytes, msg.receive_ns, msg.source),
                        None => self.reject(Reject::Size),
                    });
                    self.count_handoff_drops(0, rx.dropped());
                    n
                }
                Polled::Sessions(rxs, links) => {
                    // Both sessions' ticks are taken while switching and while the active one is
                    // down (before the manager has switched): whichever delivers a tick first wins.
                    let both = now < self.overlap_until_ns || !links.source_up(self.active);
                    let mut n = 0;
                    for (i, rx) in rxs.iter_mut().enumerate() {
                        n += rx.drain(SESSION_BATCH, |msg| self.take_session(msg, both, links));
                        self.count_handoff_drops(i, rx.dropped());
                    }
                    n
                }
                Polled::Udp(socket, source) => {
                    let source = *source;
                    let n = socket.poll(|bytes, receive_ns| self.process(bytes, receive_ns, source));
                    self.pending[Counter::UdpDatagrams as usize] += n as u64;
                    self.pending[Counter::UdpReceiveErrors as usize] += socket.take_errors();
                    self.pending[Counter::UdpRefused as usize] += socket.take_refused();
                    n
                }
                Polled::Replay(queue) => {
                    let mut n = 0;
                    while n < self.options.batch {
                        let Ok(record) = queue.pop() else { break };
                        self.replay(&record);
                        n += 1;
                    }
                    n
                }
            };
            if taken == 0 {
                core::hint::spin_loop();
            }
            now = mono_ns();
            if now >= next_housekeeping {
                next_housekeeping = now + self.options.heartbeat_interval_ns;
                let wall = self.clock.anchor();
                if self.housekeeping(wall) {
                    break;
                }
            }
        }
        self.flush_counters();
        self.writer.set_run_state(RunState::Stopped);
        self.report
    }

    #[inline]
    fn count_handoff_drops(&mut self, i: usize, drops: u64) {
        if drops != self.handoff_drops_seen[i] {
            self.pending[Counter::HandoffFull as usize] += drops - self.handoff_drops_seen[i];
            self.handoff_drops_seen[i] = drops;
        }
    }

    /// One struct from a session's hand-off: the active session's, or either while `both`. A
    /// standby tick is looked at once more against the active session's link flag, loaded after the
    /// tick was taken from its queue: if the simulated market (or the SDK) skipped the active
    /// session because it had just gone down, that flag is already down here, so the tick the
    /// active session never got is not thrown away as a standby copy.
    #[inline]
    fn take_session(&mut self, msg: &crate::handoff::RawMsg, both: bool, links: &Links) {
        if msg.source as u8 != self.active as u8 && !both && links.source_up(self.active) {
            self.pending[Counter::StandbyTicks as usize] += 1;
            return;
        }
        match msg.payload() {
            Some(bytes) => self.process_from(bytes, msg.receive_ns, msg.source, Dedup::On),
            None => {
                self.report.received += 1;
                self.pending[Counter::TicksReceived as usize] += 1;
                self.reject(Reject::Size)
            }
        }
    }

    /// Heartbeat, counters, commands. Returns true when the loop must stop.
    /// `now`: CLOCK_REALTIME (the heartbeat is wall time, as readers compare it).
    fn housekeeping(&mut self, now: i64) -> bool {
        self.writer.heartbeat(now);
        // Once per China day: does the calendar know today? (One division a millisecond.)
        let day = qilin_market::date::china_days(now);
        if day != self.calendar_checked_day {
            self.calendar_checked_day = day;
            if !self.calendar.covers(qilin_market::Date::from_days(day)) {
                self.pending[Counter::CalendarMissing as usize] += 1;
            }
        }
        if let Some((dropped, seen)) = &mut self.command_drops {
            let total = dropped.load(Ordering::Relaxed) as u64;
            self.pending[Counter::CommandQueueFull as usize] += total - *seen;
            *seen = total;
        }
        self.flush_counters();
        while let Ok(command) = self.commands.try_recv() {
            if command == Command::Shutdown {
                return true;
            }
            self.apply(command);
        }
        self.stop.load(Ordering::Relaxed)
    }

    fn flush_counters(&mut self) {
        for (flags, n) in self.published_by_flags.iter_mut().enumerate() {
            if *n != 0 {
                self.pending[Counter::TicksPublished as usize] += *n;
                for (bit, counter) in FLAG_COUNTERS {
                    if flags as u32 & bit != 0 {
                        self.pending[counter as usize] += *n;
                    }
                }
                *n = 0;
            }
        }
        for (i, delta) in self.pending.iter_mut().enumerate() {
            if *delta != 0 {
                self.writer.add_counter(Counter::ALL[i], *delta);
                *delta = 0;
            }
        }
    }

    fn emit(&mut self, event: Event) {
        if self.events.push(event).is_err() {
            self.pending[Counter::EventQueueFull as usize] += 1;
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Subscribe(key) => {
                if let Some(slot) = self.admit(key, 0) {
                    self.registered[slot].subscribed = true;
                    self.emit(Event::Subscription { id: key, subscribed: true });
                }
            }
            Command::Unsubscribe(key) => {
                if let Some(slot) = self.by_id.get(&key).copied() {
                    self.registered[slot].subscribed = false;
                    self.emit(Event::Subscription { id: key, subscribed: false });
                }
            }
            Command::Shutdown => self.stop.store(true, Ordering::Relaxed),
            Command::Switch { active, overlap_until_ns } => {
                self.active = active;
                self.overlap_until_ns = overlap_until_ns;
            }
            Command::Status(status) => self.writer.set_status(&status),
            Command::Count(counter, n) => self.pending[counter as usize] += u64::from(n),
        }
    }

    /// The registry slot of an id already in it (`None`: not in the registry), through the id cache:
    /// on a hit, four words compared instead of the id hashed and the map probed.
    #[inline(always)]
    fn find(&mut self, words: [u64; 4], key: &IdKey) -> Option<usize> {
        let index = id_cache_index(words);
        let first = &self.id_cache[index];
        if first.0 == words {
            return Some(first.1);
        }
        // Two ids of one entry: the second sits beside it (at the index with its last bit flipped).
        let second = &self.id_cache[index ^ 1];
        if second.0 == words {
            return Some(second.1);
        }
        let slot = *self.by_id.get(key)?;
        let way = if self.id_cache[index].0 == [0; 4] { index } else { index ^ 1 };
        self.id_cache[way] = (words, slot);
        Some(slot)
    }

    /// Finds or creates the registry slot of an instrument. No allocation: the map and the vector
    /// were sized for the segment's capacity, and admission stops at that capacity. A product the
    /// table lacks is admitted with its exchange's stand-in when the policy admits them and the
    /// exchange is known (`exchange_word`: ExchangeID as a NUL-padded word, 0 if none) and the id
    /// has a contract's form.
    fn admit(&mut self, key: IdKey, exchange_word: u64) -> Option<usize> {
        if let Some(slot) = self.by_id.get(&key) {
            return Some(*slot);
        }
        let product = self.product_for(key, exchange_word)?;
        self.register(key, product, InstrumentState::default())
    }

    /// The product an instrument not yet in the directory would be admitted under (`None`, after
    /// reporting it, if none: unknown product, or unknown products refused).
    fn product_for(&mut self, key: IdKey, exchange_word: u64) -> Option<usize> {
        let id = qilin_shm::layout::id_str(&key)?;
        let known = self.products.index_of(id);
        let product = match (known, self.unknown_products) {
            (Some(product), _) => Some(product),
            (None, UnknownProducts::Admit) if qilin_market::products::contract_form(id).is_some() => {
                exchange_from_word(exchange_word)
                    .and_then(|e| Exchange::ALL.iter().position(|x| *x == e))
                    .map(|i| self.products.products().len() + i)
            }
            (None, _) => None,
        };
        if product.is_none() {
            self.emit(Event::UnknownProduct { id: key });
        }
        product
    }

    /// Adds an instrument to the directory (for good: indexes are permanent) with `state`.
    fn register(&mut self, key: IdKey, product: usize, state: InstrumentState) -> Option<usize> {
        let id = qilin_shm::layout::id_str(&key)?;
        let spec = &self.specs[product];
        if self.registered.len() >= self.capacity {
            self.pending[Counter::DirectoryFull as usize] += 1;
            self.emit(Event::DirectoryFull { id: key });
            return None;
        }
        let index = match self.writer.add_instrument(id, spec.exchange, spec.volume_multiple, spec.price_tick) {
            Ok(index) => index,
            Err(_) => {
                self.pending[Counter::DirectoryFull as usize] += 1;
                self.emit(Event::DirectoryFull { id: key });
                return None;
            }
        };
        let slot = self.registered.len();
        self.registered.push(Registered { index, product, state, subscribed: false });
        self.by_id.insert(key, slot);
        self.emit(Event::Admitted { id: key, index });
        Some(slot)
    }

    #[inline]
    fn reject(&mut self, reason: Reject) {
        self.report.rejected += 1;
        self.pending[reason.counter() as usize] += 1;
    }

    /// The registry slot of a subscribed instrument: known ones, or (with `any-known-product`)
    /// admitted on first sight. `None` for an instrument the feed does not take.
    #[inline]
    fn subscribed_slot(&mut self, key: IdKey, exchange_word: u64) -> Option<usize> {
        let slot = match self.by_id.get(&key) {
            Some(slot) => *slot,
            None if self.options.admit == Admit::AnyKnownProduct => {
                let slot = self.admit(key, exchange_word)?;
                self.registered[slot].subscribed = true;
                slot
            }
            None => return None,
        };
        self.registered[slot].subscribed.then_some(slot)
    }

    /// Publishes one already-normalized record from a journal: same market fields, timestamps and
    /// quality flags; this segment's sequence and instrument index; source `replay`.
    #[inline]
    pub fn replay(&mut self, record: &TickRecord) {
        self.report.received += 1;
        self.pending[Counter::TicksReceived as usize] += 1;
        let key: IdKey = record.instrument_id;
        if qilin_shm::layout::id_str(&key).is_none_or(str::is_empty) {
            return self.reject(Reject::Id);
        }
        let exchange_word = Exchange::from_code(record.exchange).map_or(0, exchange_word);
        let Some(slot) = self.subscribed_slot(key, exchange_word) else {
            return self.reject(Reject::UnknownInstrument);
        };
        let entry = &self.registered[slot];
        self.out = *record;
        self.out.instrument_index = entry.index;
        self.out.source = Source::Replay as u8;
        self.publish_out();
    }

    /// Normalizes and publishes one raw struct; counts it either way.
    #[inline]
    pub fn process(&mut self, bytes: &[u8], receive_ns: i64, source: Source) {
        self.process_from(bytes, receive_ns, source, Dedup::Off)
    }

    /// [`process`](Engine::process) as the two-session input runs it: deduplicated against the
    /// last `window` published ticks (the window is sized on the first call; the loop sizes it from
    /// the hand-offs). For the instruction budget (`qilin-budget`), which measures this path
    /// without the hand-offs and the session links around it.
    pub fn process_deduplicated(&mut self, bytes: &[u8], receive_ns: i64, source: Source, window: usize) {
        if self.recent.capacity() < window {
            self.recent = RecentSet::new(window);
        }
        self.process_from(bytes, receive_ns, source, Dedup::On)
    }

    /// One raw struct, parsed, normalized and published: compiled for AVX2 as well as for the
    /// baseline x86-64 (SSE2), and run as the CPU allows. AVX2's three-operand forms (no register
    /// copies) and wider vectors make the same code shorter (`qilin-budget` udp 1 083 → 1 011
    /// instructions a tick); the results are the same: the same IEEE operations in another
    /// encoding, nothing fused or reordered.
    #[inline]
    #[allow(unsafe_code)] // the engine's only unsafe: the call into the AVX2 build of the hot path
    fn process_from(&mut self, bytes: &[u8], receive_ns: i64, source: Source, dedup: Dedup) {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = self.avx2 {
            // SAFETY: an `Avx2` exists only where the CPU running this has AVX2 (`Avx2::detect`, at
            // `Engine::new`), which is what calling a `#[target_feature(enable = "avx2")]` fn needs.
            return unsafe { self.process_from_avx2(avx2, bytes, receive_ns, source, dedup) };
        }
        self.process_from_baseline(bytes, receive_ns, source, dedup)
    }

    /// [`Engine::process_body`] compiled for the baseline x86-64 (or whatever the target is), a
    /// function of its own as the AVX2 build is: inlined into its callers (the hot loop), it was
    /// a second copy of the hot path there, whose constants the AVX2 one reloaded on every tick
    /// (qilin-budget udp −8).
    #[inline(never)]
    fn process_from_baseline(&mut self, bytes: &[u8], receive_ns: i64, source: Source, dedup: Dedup) {
        self.process_body(Portable, bytes, receive_ns, source, dedup)
    }

    /// [`Engine::process_body`] compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn process_from_avx2(&mut self, avx2: Avx2, bytes: &[u8], receive_ns: i64, source: Source, dedup: Dedup) {
        self.process_body(avx2, bytes, receive_ns, source, dedup)
    }

    #[inline(always)]
    fn process_body(&mut self, prices: impl PriceSection, bytes: &[u8], receive_ns: i64, source: Source, dedup: Dedup) {
        self.report.received += 1;
        self.pending[Counter::TicksReceived as usize] += 1;
        // The usual 6.7.x struct straight on; any other (another version, text fields of an
        // unusual shape, a bad size) through `parse` in a cold copy of the rest, so that the usual
        // struct's view stays in registers instead of meeting the exact path's in memory.
        match <&[u8; V67_SIZE]>::try_from(bytes).ok().and_then(RawTick::parse_usual_v67) {
            Some(raw) => self.process_raw(prices, &raw, receive_ns, source, dedup),
            None => self.process_unusual(bytes, receive_ns, source, dedup),
        }
    }

    /// [`Engine::process_body`] for a struct that is not a usual 6.7.x one: parsed by the exact
    /// path when it has to, then the same steps (with the portable price section: the same results).
    #[cold]
    #[inline(never)]
    fn process_unusual(&mut self, bytes: &[u8], receive_ns: i64, source: Source, dedup: Dedup) {
        if bytes.len() > RAW_MAX {
            return self.reject(Reject::Size);
        }
        match RawTick::parse(bytes) {
            Ok(raw) => self.process_raw(Portable, &raw, receive_ns, source, dedup),
            Err(reason) => self.reject(reason),
        }
    }

    /// The steps after the parse: registry, deduplication, normalization, publication.
    #[inline(always)]
    fn process_raw(
        &mut self,
        prices: impl PriceSection,
        raw: &RawTick<'_>,
        receive_ns: i64,
        source: Source,
        dedup: Dedup,
    ) {
        // The scan in `parse` already built the NUL-padded key (ASCII, no NUL inside, checked there).
        let Some(key) = raw.id_key() else { return self.reject(Reject::Id) };
        let slot = match self.find(raw.id_words(), &key) {
            Some(slot) if self.registered[slot].subscribed => Some(slot),
            Some(_) => return self.reject(Reject::UnknownInstrument),
            None if self.options.admit == Admit::AnyKnownProduct => None,
            None => return self.reject(Reject::UnknownInstrument),
        };
        // Deduplicate on the struct as the exchange sent it, before normalizing: what normalize
        // derives (an adjusted millisecond, flags) depends on the instrument's previous tick, which
        // can differ between the two sessions' copies.
        let print = (dedup == Dedup::On).then(|| TickKey::of(raw));
        if let Some(print) = &print
            && self.recent.contains(print)
        {
            self.report.rejected += 1;
            self.pending[Counter::Duplicates as usize] += 1;
            return;
        }
        match slot {
            Some(slot) => {
                let entry = &mut self.registered[slot];
                let spec = &self.specs[entry.product];
                let (calendar, out) = (&self.calendar, &mut self.out);
                if let Err(reason) =
                    normalize(prices, raw, spec, calendar, &mut entry.state, receive_ns, source, entry.index, out)
                {
                    return self.reject(reason);
                }
            }
            None => {
                // A new instrument enters the directory only with a tick that normalizes: the
                // directory lives as long as the segment, so an invalid or forged struct must not
                // take a place in it. Its state starts fresh, as a registered one's does.
                if self.registered.len() >= self.capacity {
                    // No place for it whatever the tick: say so without normalizing it.
                    self.pending[Counter::DirectoryFull as usize] += 1;
                    self.emit(Event::DirectoryFull { id: key });
                    return self.reject(Reject::UnknownInstrument);
                }
                let Some(product) = self.product_for(key, raw.exchange_word()) else {
                    return self.reject(Reject::UnknownInstrument);
                };
                let mut state = InstrumentState::default();
                let spec = &self.specs[product];
                if let Err(reason) =
                    normalize(prices, raw, spec, &self.calendar, &mut state, receive_ns, source, 0, &mut self.out)
                {
                    return self.reject(reason);
                }
                let Some(slot) = self.register(key, product, state) else {
                    return self.reject(Reject::UnknownInstrument);
                };
                self.registered[slot].subscribed = true;
                self.out.instrument_index = self.registered[slot].index;
            }
        }
        if let Some(print) = &print {
            self.recent.insert(print);
        }
        self.publish_out();
    }

    /// Writes `self.out` to the ring and counts it.
    #[inline(always)]
    fn publish_out(&mut self) {
        // Never before the tick's receive stamp (taken by another clock read, on another thread for
        // the hand-off): one compare, so `publish_ns ≥ receive_ns` holds for every live tick.
        self.out.publish_ns = self.clock.now_ns().max(self.out.receive_ns);
        match self.writer.publish(&mut self.out) {
            Ok(_) => {
                self.report.published += 1;
                self.published_by_flags[(self.out.quality & COUNTED_FLAGS) as usize] += 1;
            }
            Err(_) => self.reject(Reject::UnknownInstrument),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use qilin_shm::SegmentOptions;

    use super::*;
    use zerocopy::IntoBytes;

    use crate::ctp::RawFields;

    /// A tick of `id` (SHFE, a day-session second), valid for any listed SHFE product.
    fn tick(id: &str, round: usize) -> [u8; crate::ctp::V67_SIZE] {
        RawFields {
            trading_day: "20260302".into(),
            action_day: "20260302".into(),
            instrument_id: id.into(),
            exchange_id: "SHFE".into(),
            update_time: format!("10:00:{:02}", round % 60),
            last_price: 100.0,
            volume: round as i32,
            ..RawFields::default()
        }
        .to_v67_bytes()
    }

    /// Removes a test's segment when dropped.
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            qilin_testkit::remove_segment(&self.0);
        }
    }

    /// An engine on a fresh segment (16 instruments, admitting any listed product, the shipped
    /// instruments file), the segment's path, and its remover.
    fn test_engine(tag: &str) -> (Engine, PathBuf, Remove) {
        let path = PathBuf::from("/dev/shm").join(qilin_testkit::unique(tag));
        let remove = Remove(path.clone());
        let options = SegmentOptions { feed_name: tag.into(), ring_slots: 1 << 10, instrument_capacity: 16 };
        let writer = Writer::open(&path, &options).unwrap();
        let instruments =
            Instruments::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml")).unwrap();
        let (_commands, command_rx) = crossbeam_channel::bounded(1);
        let (event_tx, _events) = rtrb::RingBuffer::new(64);
        let engine_options =
            EngineOptions { admit: Admit::AnyKnownProduct, heartbeat_interval_ns: 1_000_000, batch: 64 };
        let engine = Engine::new(
            writer,
            instruments,
            16,
            engine_options,
            command_rx,
            event_tx,
            Arc::new(AtomicBool::new(false)),
        );
        (engine, path, remove)
    }

    #[test]
    fn structs_off_the_usual_shape_publish_what_usual_ones_do() {
        // The same ticks as usual 6.7.x structs (the hot path's own parse), as 6.7.x structs with a
        // 40-character ExchangeInstID (valid, but off the usual shape: the exact parse, then the
        // cold copy of the steps after it) and as 6.5.x structs (the cold copy too).
        let fields = |round: usize| RawFields {
            trading_day: "20260302".into(),
            action_day: "20260302".into(),
            instrument_id: ["rb2605", "cu2606", "au2606"][round % 3].into(),
            exchange_id: "SHFE".into(),
            update_time: format!("10:00:{:02}", round),
            last_price: 100.0 + round as f64,
            volume: round as i32,
            bid_price: [99.0, f64::MAX, 97.0, 96.0, 95.0],
            bid_volume: [3, 0, 1, 1, 1],
            ask_price: [101.0, 102.0, 103.0, 104.0, f64::MAX],
            ask_volume: [1, 2, 3, 4, 5],
            banding_upper_price: 130.0,
            banding_lower_price: 70.0,
            ..RawFields::default()
        };
        let usual: Vec<Vec<u8>> = (0..9).map(|round| fields(round).to_v67_bytes().to_vec()).collect();
        let long: Vec<Vec<u8>> = (0..9)
            .map(|round| RawFields { exchange_inst_id: "x".repeat(40), ..fields(round) }.to_v67_bytes().to_vec())
            .collect();
        let older: Vec<Vec<u8>> = (0..9).map(|round| fields(round).to_v65_bytes().to_vec()).collect();
        assert!(usual.iter().all(|b| RawTick::parse_usual_v67(b[..].try_into().unwrap()).is_some()));
        assert!(long.iter().all(|b| RawTick::parse_usual_v67(b[..].try_into().unwrap()).is_none()));

        let publish = |tag: &str, structs: &[Vec<u8>]| -> Vec<TickRecord> {
            let (mut engine, path, _remove) = test_engine(tag);
            for bytes in structs {
                engine.process(bytes, 1_772_416_800_000_000_000, Source::Udp);
            }
            assert_eq!(engine.report.published, structs.len() as u64, "{tag}: {:?}", engine.report);
            let mut records = qilin_testkit::read_ring(&path, structs.len() as u64);
            for record in &mut records {
                record.publish_ns = 0; // the clock's
            }
            records
        };
        // Compared as bytes: absent prices are NaN.
        let bytes = |records: &[TickRecord]| records.iter().map(|r| r.as_bytes().to_vec()).collect::<Vec<_>>();
        let usual = publish("usual", &usual);
        assert_ne!(usual[0].quality & qilin_shm::quality::ABSENT_PRICE, 0, "a book price absent with volume");
        assert_eq!(bytes(&publish("long-inst-id", &long)), bytes(&usual));
        let mut expected = usual.clone();
        for record in &mut expected {
            (record.banding_upper_price, record.banding_lower_price) = (f64::NAN, f64::NAN);
        }
        assert_eq!(bytes(&publish("v65", &older)), bytes(&expected), "6.5.x: the same but banding prices");
    }

    #[test]
    fn the_flag_counters_count_the_published_records_with_each_flag() {
        // Ticks with every counted flag alone and together: stale (12:00, the lunch break),
        // volume regressions, CZCE repeated seconds (UpdateMillisec 0 twice in one second) and an
        // unlisted product (admitted, flagged).
        let (mut engine, path, _remove) = test_engine("flag-counters");
        let mut structs = Vec::new();
        for round in 0..40usize {
            let (id, exchange) = [("rb2605", "SHFE"), ("SR605", "CZCE"), ("xx2605", "SHFE")][round % 3];
            let stale = round % 4 == 1;
            structs.push(
                RawFields {
                    trading_day: "20260302".into(),
                    action_day: "20260302".into(),
                    instrument_id: id.into(),
                    exchange_id: exchange.into(),
                    update_time: format!("{}:00:{:02}", if stale { 12 } else { 10 }, round / 6),
                    update_millisec: 0,
                    last_price: 100.0,
                    volume: if round % 5 == 2 { 1 } else { 100 + round as i32 },
                    ..RawFields::default()
                }
                .to_v67_bytes(),
            );
        }
        for bytes in &structs {
            engine.process(bytes, 1, Source::Udp);
        }
        engine.flush_counters();
        let records = qilin_testkit::read_ring(&path, structs.len() as u64);
        let reader = qilin_shm::Reader::open(&path).unwrap();
        assert_eq!(reader.counter(Counter::TicksPublished), structs.len() as u64);
        for (bit, counter) in FLAG_COUNTERS {
            let flagged = records.iter().filter(|r| r.quality & bit != 0).count() as u64;
            assert!(
                flagged > 0 && flagged < records.len() as u64,
                "{}: {flagged} of {}",
                counter.name(),
                records.len()
            );
            assert_eq!(reader.counter(counter), flagged, "{}", counter.name());
        }
        let together = records.iter().filter(|r| (r.quality & COUNTED_FLAGS).count_ones() >= 2).count();
        assert!(together > 0, "no record with two counted flags");
    }

    #[test]
    fn ids_sharing_an_id_cache_entry_each_find_their_own_instrument() {
        // Three SHFE contracts whose ids fall into one entry of the id cache (two ways: the entry
        // and its neighbour), so that one of them always misses, and a fourth whose own entry is
        // that neighbour.
        let words = |id: &str| -> [u64; 4] { zerocopy::transmute!(id_key(id).unwrap()) };
        let products = ["rb", "hc", "cu", "al", "zn", "au", "ag", "ni", "sn", "pb", "ss", "bu", "ru", "fu", "sp"];
        let months = (20..30).flat_map(|y| (1..=12).map(move |m| format!("{y}{m:02}")));
        let ids: Vec<String> = months.flat_map(|m| products.map(|p| format!("{p}{m}"))).collect();
        let mut by_entry: HashMap<usize, Vec<&String>> = HashMap::new();
        for id in &ids {
            by_entry.entry(id_cache_index(words(id))).or_default().push(id);
        }
        let (a, b, c, d) = by_entry
            .iter()
            .filter(|(_, ids)| ids.len() >= 3)
            .find_map(|(index, ids)| by_entry.get(&(index ^ 1)).map(|other| (ids[0], ids[1], ids[2], other[0])))
            .expect("1 800 ids into 4 096 entries: three in one entry, one in its neighbour");

        let (mut engine, path, _remove) = test_engine("id-cache");
        let order = [a, b, a, a, b, b, a, b, c, a, c, b, d, c, d, a, b, c, d, d, c, b, a];
        for (round, id) in order.iter().enumerate() {
            engine.process(&tick(id, round), 1, Source::Udp);
        }
        assert_eq!(engine.report.published, order.len() as u64, "every tick published: {:?}", engine.report);
        let index = |id: &str| engine.writer().find_instrument(id).unwrap();
        let indexes: std::collections::HashSet<u32> = [a, b, c, d].into_iter().map(|id| index(id)).collect();
        assert_eq!(indexes.len(), 4, "four instruments");
        let records = qilin_testkit::read_ring(&path, order.len() as u64);
        for (id, record) in order.iter().zip(&records) {
            assert_eq!(qilin_shm::layout::id_str(&record.instrument_id), Some(id.as_str()));
            assert_eq!(record.instrument_index, index(id), "{id}: the record's index is its directory entry's");
        }
    }
}

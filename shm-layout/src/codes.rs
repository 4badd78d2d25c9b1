//! Small codes stored in the segment as integers: exchanges, tick sources, quality flags, the core's
//! run and link state, and the index of every header counter. They are part of the layout contract
//! (counter names feed the fingerprint), so a reader in any language decodes them the same way.

/// Exchange code stored in `TickRecord::exchange` and `DirectoryEntry::exchange`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Exchange {
    /// Shanghai Futures Exchange.
    Shfe = 1,
    /// Shanghai International Energy Exchange.
    Ine = 2,
    /// Dalian Commodity Exchange.
    Dce = 3,
    /// Zhengzhou Commodity Exchange.
    Czce = 4,
    /// China Financial Futures Exchange.
    Cffex = 5,
    /// Guangzhou Futures Exchange.
    Gfex = 6,
}

impl Exchange {
    /// Every exchange, in code order.
    pub const ALL: [Exchange; 6] =
        [Exchange::Shfe, Exchange::Ine, Exchange::Dce, Exchange::Czce, Exchange::Cffex, Exchange::Gfex];

    /// The CTP `ExchangeID` string ("SHFE", "DCE", …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Exchange::Shfe => "SHFE",
            Exchange::Ine => "INE",
            Exchange::Dce => "DCE",
            Exchange::Czce => "CZCE",
            Exchange::Cffex => "CFFEX",
            Exchange::Gfex => "GFEX",
        }
    }

    /// The exchange's full name ("Shanghai Futures Exchange", …).
    pub const fn full_name(self) -> &'static str {
        match self {
            Exchange::Shfe => "Shanghai Futures Exchange",
            Exchange::Ine => "Shanghai International Energy Exchange",
            Exchange::Dce => "Dalian Commodity Exchange",
            Exchange::Czce => "Zhengzhou Commodity Exchange",
            Exchange::Cffex => "China Financial Futures Exchange",
            Exchange::Gfex => "Guangzhou Futures Exchange",
        }
    }

    /// Parses a CTP `ExchangeID` (exact, upper case).
    pub fn from_id(id: &str) -> Option<Exchange> {
        Exchange::ALL.into_iter().find(|e| e.as_str() == id)
    }

    /// Decodes the code stored in a record.
    pub const fn from_code(code: u8) -> Option<Exchange> {
        match code {
            1 => Some(Exchange::Shfe),
            2 => Some(Exchange::Ine),
            3 => Some(Exchange::Dce),
            4 => Some(Exchange::Czce),
            5 => Some(Exchange::Cffex),
            6 => Some(Exchange::Gfex),
            _ => None,
        }
    }
}

/// Where a tick came from, stored in `TickRecord::source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Source {
    /// CTP session of the primary account.
    Primary = 1,
    /// CTP session of the backup account.
    Backup = 2,
    /// The built-in simulator.
    Sim = 3,
    /// Replay of a journal or CSV file.
    Replay = 4,
    /// Raw CTP structs relayed over UDP.
    Udp = 5,
}

impl Source {
    /// Every source, in code order.
    pub const ALL: [Source; 5] = [Source::Primary, Source::Backup, Source::Sim, Source::Replay, Source::Udp];

    /// What the source is.
    pub const fn description(self) -> &'static str {
        match self {
            Source::Primary => "CTP session of the primary account",
            Source::Backup => "CTP session of the backup account",
            Source::Sim => "the built-in simulator",
            Source::Replay => "replay of a journal or CSV file",
            Source::Udp => "raw CTP structs relayed over UDP",
        }
    }

    /// Decodes the code stored in a record.
    pub const fn from_code(code: u8) -> Option<Source> {
        match code {
            1 => Some(Source::Primary),
            2 => Some(Source::Backup),
            3 => Some(Source::Sim),
            4 => Some(Source::Replay),
            5 => Some(Source::Udp),
            _ => None,
        }
    }

    /// Lower-case name, as printed by tools.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Primary => "primary",
            Source::Backup => "backup",
            Source::Sim => "sim",
            Source::Replay => "replay",
            Source::Udp => "udp",
        }
    }
}

/// Bits of `TickRecord::quality`. A set bit never means the tick was dropped: it qualifies it.
///
/// Two kinds (LAYOUT.md, "Quality flags"): [`ANOMALIES`](quality::ANOMALIES), something about
/// the tick a user should look at, and [`NOTES`](quality::NOTES), what the feed did to normalize
/// it. What CTP does by design (ClosePrice, SettlementPrice and CurrDelta absent until the close,
/// empty book levels, AveragePrice per lot) sets no bit.
pub mod quality {
    /// One defined bit of `TickRecord::quality`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Bit {
        /// The bit's value (a power of two).
        pub bit: u32,
        /// Its name, as tools print it.
        pub name: &'static str,
        /// What a set bit means, for users and for readers in other languages.
        pub meaning: &'static str,
    }

    impl Bit {
        /// `anomaly` (in [`ANOMALIES`]) or `note` (in [`NOTES`]).
        pub const fn kind(&self) -> &'static str {
            if self.bit & ANOMALIES != 0 { "anomaly" } else { "note" }
        }
    }

    /// Every defined bit, lowest first: the one description of each (LAYOUT.md's quality table and
    /// `qilinctl layout --json` are generated from it).
    pub const BITS: [Bit; 8] = [
        Bit {
            bit: STALE_SNAPSHOT,
            name: "stale_snapshot",
            meaning: "UpdateTime is outside the product's sessions, or on a day or evening the trading calendar \
                      holds no session (weekend, holiday, the evening before one): a snapshot, not live trading",
        },
        Bit {
            bit: VOLUME_REGRESSION,
            name: "volume_regression",
            meaning: "cumulative Volume went down within the trading day (kept as sent)",
        },
        Bit {
            bit: TURNOVER_REGRESSION,
            name: "turnover_regression",
            meaning: "cumulative Turnover went down (normal on CZCE)",
        },
        Bit {
            bit: REPEATED_SECOND,
            name: "repeated_second",
            meaning: "CZCE sent the same second again; the feed assigned milliseconds so exchange time increases",
        },
        Bit {
            bit: DERIVED_ACTION_DAY,
            name: "derived_action_day",
            meaning: "the calendar day was derived (DCE night ticks carry the trading day in both fields): the \
                      evening of the previous trading day",
        },
        Bit {
            bit: ABSENT_PRICE,
            name: "absent_price",
            meaning: "a price that should be present is absent: LastPrice of an instrument that has traded \
                      (Volume > 0), or a book level's price whose volume is not 0",
        },
        Bit {
            bit: AVERAGE_PRICE_SCALED,
            name: "average_price_scaled",
            meaning: "retired: feeds before 2026-12 set it on every tick whose AveragePrice they divided by the \
                      multiplier. AveragePrice is always per unit; the bit is no longer set",
        },
        Bit {
            bit: UNKNOWN_PRODUCT,
            name: "unknown_product",
            meaning: "the product is not in the product table (`unknown_products = \"admit\"`): the exchange's \
                      default sessions were used for `stale_snapshot`, tick 0.0001, multiplier 1",
        },
    ];

    /// A snapshot pushed outside trading hours (e.g. on subscribe): values are not live.
    pub const STALE_SNAPSHOT: u32 = 1 << 0;
    /// Cumulative volume went down within the trading day (kept as sent, not turned into a delta).
    pub const VOLUME_REGRESSION: u32 = 1 << 1;
    /// Cumulative turnover went down (normal on CZCE, suspicious elsewhere).
    pub const TURNOVER_REGRESSION: u32 = 1 << 2;
    /// Same UpdateTime second as the previous tick of the instrument (CZCE): milliseconds were
    /// assigned by the feed to keep exchange time increasing.
    pub const REPEATED_SECOND: u32 = 1 << 3;
    /// ActionDay was derived by the feed (DCE night session sends the trading day in both fields).
    pub const DERIVED_ACTION_DAY: u32 = 1 << 4;
    /// A price that should be present is absent (DBL_MAX in CTP, stored as NaN): LastPrice of an
    /// instrument that has traded (Volume > 0), or a book level's price whose volume is not 0.
    /// Prices absent by design (ClosePrice, SettlementPrice, the deltas, empty levels) are NaN
    /// without this bit.
    pub const ABSENT_PRICE: u32 = 1 << 5;
    /// Retired: feeds before 2026-12 set it on every tick whose AveragePrice they divided by the
    /// multiplier. AveragePrice is always per unit; the bit is never set now (old journals keep it).
    pub const AVERAGE_PRICE_SCALED: u32 = 1 << 6;
    /// The instrument's product is not in the feed's product table (`unknown_products = "admit"`):
    /// its exchange's default sessions, tick 0.0001 and multiplier 1 were used.
    pub const UNKNOWN_PRODUCT: u32 = 1 << 7;

    /// Bits that say something about the market data a user should look at.
    pub const ANOMALIES: u32 =
        STALE_SNAPSHOT | VOLUME_REGRESSION | TURNOVER_REGRESSION | ABSENT_PRICE | UNKNOWN_PRODUCT;
    /// Bits that say what the feed did to normalize a tick (nothing is wrong with it).
    pub const NOTES: u32 = REPEATED_SECOND | DERIVED_ACTION_DAY | AVERAGE_PRICE_SCALED;

    /// Name of every defined bit, lowest first (for tools): [`BITS`]' bits and names.
    pub const NAMES: [(u32, &str); 8] = {
        let mut names = [(0, ""); 8];
        let mut i = 0;
        while i < BITS.len() {
            names[i] = (BITS[i].bit, BITS[i].name);
            i += 1;
        }
        names
    };

    const _: () = assert!(ANOMALIES & NOTES == 0);
    const _: () = {
        // Every defined bit is of exactly one kind.
        let mut i = 0;
        let mut all = 0;
        while i < BITS.len() {
            assert!(BITS[i].bit.count_ones() == 1 && all & BITS[i].bit == 0);
            all |= BITS[i].bit;
            i += 1;
        }
        assert!(all == ANOMALIES | NOTES);
    };
}

/// The writer's run state in the header (`Session::run_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum RunState {
    /// Created or reopened, not yet publishing.
    Starting = 1,
    /// Publishing ticks.
    Running = 2,
    /// Shut down cleanly; the heartbeat stops on purpose.
    Stopped = 3,
}

impl RunState {
    /// Every run state, in code order.
    pub const ALL: [RunState; 3] = [RunState::Starting, RunState::Running, RunState::Stopped];

    /// The state as a word (`starting`, `running`, `stopped`).
    pub const fn as_str(self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Stopped => "stopped",
        }
    }

    /// What the state means for a reader.
    pub const fn description(self) -> &'static str {
        match self {
            RunState::Starting => "created or reopened, not yet publishing",
            RunState::Running => "publishing; the heartbeat is refreshed about every millisecond",
            RunState::Stopped => "shut down cleanly (Session.stopped_ns says when); the heartbeat stops on purpose",
        }
    }

    /// Decodes the header word; `None` for 0 (never started) or an unknown value.
    pub const fn from_code(code: u64) -> Option<RunState> {
        match code {
            1 => Some(RunState::Starting),
            2 => Some(RunState::Running),
            3 => Some(RunState::Stopped),
            _ => None,
        }
    }
}

/// Connection state of the active market-data session (`StatusRecord::link_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LinkState {
    /// No session attempted yet.
    Idle = 0,
    /// Connecting to a front.
    Connecting = 1,
    /// Front connected, not logged in.
    Connected = 2,
    /// Logged in and subscribed.
    LoggedIn = 3,
    /// Running on the backup account after a failover.
    FailedOver = 4,
    /// Front disconnected.
    Disconnected = 5,
}

impl LinkState {
    /// Every link state, in code order.
    pub const ALL: [LinkState; 6] = [
        LinkState::Idle,
        LinkState::Connecting,
        LinkState::Connected,
        LinkState::LoggedIn,
        LinkState::FailedOver,
        LinkState::Disconnected,
    ];

    /// What the state means.
    pub const fn description(self) -> &'static str {
        match self {
            LinkState::Idle => "no session attempted yet",
            LinkState::Connecting => "connecting to a front",
            LinkState::Connected => "front connected, not logged in",
            LinkState::LoggedIn => "logged in and subscribed",
            LinkState::FailedOver => "running on the backup account after a failover",
            LinkState::Disconnected => "front disconnected",
        }
    }

    /// The state as a word (`logged_in`, `failed_over`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkState::Idle => "idle",
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::LoggedIn => "logged_in",
            LinkState::FailedOver => "failed_over",
            LinkState::Disconnected => "disconnected",
        }
    }

    /// Decodes the header word.
    pub const fn from_code(code: u32) -> Option<LinkState> {
        match code {
            0 => Some(LinkState::Idle),
            1 => Some(LinkState::Connecting),
            2 => Some(LinkState::Connected),
            3 => Some(LinkState::LoggedIn),
            4 => Some(LinkState::FailedOver),
            5 => Some(LinkState::Disconnected),
            _ => None,
        }
    }
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, )*) => {
        /// Index of each counter in the header's counter block. Only the writer changes counters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Counter {
            $( $(#[doc = $doc])+ $variant, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Every counter's metric-style name, in index order (part of the layout fingerprint).
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            /// Every counter's doc comment, in index order (one line per `///` line; tools print it
            /// as its description).
            pub const DOCS: &'static [&'static str] = &[$(concat!($($doc, "\n"),+),)*];

            /// The counter's metric-style name.
            pub const fn name(self) -> &'static str {
                Counter::NAMES[self as usize]
            }
        }
    };
}

counters! {
    /// Raw structs taken from the hand-off by the core thread.
    TicksReceived = "ticks_received",
    /// Ticks written to the ring.
    TicksPublished = "ticks_published",
    /// Raw structs dropped because the SDK → core hand-off was full.
    HandoffFull = "handoff_full",
    /// Ticks dropped because the instrument directory was full.
    DirectoryFull = "directory_full",
    /// Duplicate ticks dropped during a failover overlap.
    Duplicates = "duplicates",
    /// Rejected: datagram or struct of a size no CTP version uses.
    RejectSize = "reject_size",
    /// Rejected: InstrumentID/ExchangeID not NUL-terminated or not ASCII.
    RejectId = "reject_id",
    /// Rejected: unknown ExchangeID.
    RejectExchange = "reject_exchange",
    /// Rejected: a price that is infinite or NaN (DBL_MAX is "absent", not bad).
    RejectPrice = "reject_price",
    /// Rejected: TradingDay/ActionDay/UpdateTime/UpdateMillisec not parseable.
    RejectTime = "reject_time",
    /// Rejected: instrument not in the subscription set.
    RejectUnknownInstrument = "reject_unknown_instrument",
    /// Ticks flagged `STALE_SNAPSHOT`.
    FlagStaleSnapshot = "flag_stale_snapshot",
    /// Ticks flagged `VOLUME_REGRESSION`.
    FlagVolumeRegression = "flag_volume_regression",
    /// Ticks flagged `REPEATED_SECOND`.
    FlagRepeatedSecond = "flag_repeated_second",
    /// Commands dropped because the control → core channel was full.
    CommandQueueFull = "command_queue_full",
    /// Events dropped because the core → logger event queue was full.
    EventQueueFull = "event_queue_full",
    /// Front disconnects seen.
    FrontDisconnects = "front_disconnects",
    /// Switches between primary and backup sessions.
    Failovers = "failovers",
    /// Datagrams received by the UDP source.
    UdpDatagrams = "udp_datagrams",
    /// `recvmmsg` calls that failed with an error other than "nothing there".
    UdpReceiveErrors = "udp_receive_errors",
    /// Ticks of the standby session left out (not active, no switch under way).
    StandbyTicks = "standby_ticks",
    /// Ticks published with `UNKNOWN_PRODUCT` (their product is not in the product table).
    FlagUnknownProduct = "flag_unknown_product",
    /// China calendar days the core ran on that its trading calendar has no file for (counted at
    /// start and at each day change): non-zero means holidays are not known (docs/CALENDAR.md).
    CalendarMissing = "calendar_missing",
    /// Datagrams the UDP source dropped because their sender is not in `source.udp.allow`.
    UdpRefused = "udp_refused",
}

/// Capacity of the header's counter block; [`Counter`] indexes the first `Counter::ALL.len()` words.
pub const COUNTER_SLOTS: usize = 64;

const _: () = assert!(Counter::NAMES.len() <= COUNTER_SLOTS);
const _: () = assert!(Counter::ALL.len() == Counter::NAMES.len());
const _: () = assert!(Counter::DOCS.len() == Counter::NAMES.len());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for e in Exchange::ALL {
            assert_eq!(Exchange::from_code(e as u8), Some(e));
            assert_eq!(Exchange::from_id(e.as_str()), Some(e));
        }
        assert_eq!(Exchange::from_code(0), None);
        assert_eq!(Exchange::from_id("shfe"), None);
        for s in Source::ALL {
            assert_eq!(Source::from_code(s as u8), Some(s));
        }
        assert_eq!((1..=u8::MAX).filter_map(Source::from_code).count(), Source::ALL.len(), "ALL is complete");
        for s in RunState::ALL {
            assert_eq!(RunState::from_code(s as u64), Some(s));
        }
        assert_eq!((0..=255).filter_map(RunState::from_code).count(), RunState::ALL.len());
        for s in LinkState::ALL {
            assert_eq!(LinkState::from_code(s as u32), Some(s));
        }
        assert_eq!((0..=255).filter_map(LinkState::from_code).count(), LinkState::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(c.name(), Counter::NAMES[i]);
        }
    }

    #[test]
    fn quality_bits_are_distinct() {
        let mut seen = 0u32;
        assert_eq!(quality::NAMES[5], (quality::ABSENT_PRICE, "absent_price"));
        assert_eq!(quality::BITS[0].kind(), "anomaly");
        assert_eq!(quality::BITS[3].kind(), "note");
        for (bit, _) in quality::NAMES {
            assert_eq!(bit.count_ones(), 1);
            assert_eq!(seen & bit, 0);
            seen |= bit;
        }
    }
}

/// The period of a bar in a bar segment (`BarRecord::period`): codes 1 to 6, shortest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BarPeriod {
    /// One minute, aligned to the clock within a section.
    M1 = 1,
    /// Five minutes.
    M5 = 2,
    /// Fifteen minutes.
    M15 = 3,
    /// Thirty minutes.
    M30 = 4,
    /// Sixty minutes.
    M60 = 5,
    /// The trading day.
    Day = 6,
}

impl BarPeriod {
    /// Every period, in code order.
    pub const ALL: [BarPeriod; 6] =
        [BarPeriod::M1, BarPeriod::M5, BarPeriod::M15, BarPeriod::M30, BarPeriod::M60, BarPeriod::Day];

    /// The period's name (subjects, message ids, config): `1m`, `5m`, `15m`, `30m`, `60m`, `1d`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BarPeriod::M1 => "1m",
            BarPeriod::M5 => "5m",
            BarPeriod::M15 => "15m",
            BarPeriod::M30 => "30m",
            BarPeriod::M60 => "60m",
            BarPeriod::Day => "1d",
        }
    }

    /// Decodes the code stored in a record.
    pub const fn from_code(code: u8) -> Option<BarPeriod> {
        match code {
            1 => Some(BarPeriod::M1),
            2 => Some(BarPeriod::M5),
            3 => Some(BarPeriod::M15),
            4 => Some(BarPeriod::M30),
            5 => Some(BarPeriod::M60),
            6 => Some(BarPeriod::Day),
            _ => None,
        }
    }
}

/// Bits of `BarRecord::flags` (and of the `flags` of a bar's NATS body).
pub mod bar_flags {
    /// A tick's cumulative Volume was below the highest seen this trading day: it added 0, never a
    /// negative volume.
    pub const VOLUME_DECREASE: u32 = 1 << 0;
    /// A tick's cumulative Turnover was below the highest seen this trading day (normal on CZCE).
    pub const TURNOVER_DECREASE: u32 = 1 << 1;
    /// The builder joined the trading day after its start: the first tick it saw is the baseline,
    /// so this bar's volume and turnover count only from that tick.
    pub const PARTIAL: u32 = 1 << 2;
    /// Ticks were lost (a ring gap, or a gap in the journal) while the bar was open.
    pub const GAP: u32 = 1 << 3;
    /// A tick of the bar had no LastPrice although the instrument had traded (`absent_price`).
    pub const ABSENT_PRICE: u32 = 1 << 4;
    /// The product is not in the table: its exchange's default sessions were used.
    pub const UNKNOWN_PRODUCT: u32 = 1 << 5;

    /// Every bit with its name and meaning, lowest first (LAYOUT.md's bar-flags table and
    /// `qilinctl layout --json` are generated from it).
    pub const BITS: [(u32, &str, &str); 6] = [
        (VOLUME_DECREASE, "volume_decrease", "a tick's cumulative Volume was below the day's highest: it added 0"),
        (
            TURNOVER_DECREASE,
            "turnover_decrease",
            "a tick's cumulative Turnover was below the day's highest (normal on CZCE)",
        ),
        (PARTIAL, "partial", "the builder joined the trading day late: volume and turnover count from its first tick"),
        (GAP, "gap", "ticks were lost (ring or journal gap) while the bar was open: prices may miss an extreme"),
        (ABSENT_PRICE, "absent_price", "a tick of the bar had no LastPrice"),
        (
            UNKNOWN_PRODUCT,
            "unknown_product",
            "the product is not in the table: its exchange's default sessions were used",
        ),
    ];

    /// Every bit with its name, lowest first.
    pub const NAMES: [(u32, &str); 6] = [
        (VOLUME_DECREASE, "volume_decrease"),
        (TURNOVER_DECREASE, "turnover_decrease"),
        (PARTIAL, "partial"),
        (GAP, "gap"),
        (ABSENT_PRICE, "absent_price"),
        (UNKNOWN_PRODUCT, "unknown_product"),
    ];
}

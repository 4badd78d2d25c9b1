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

    /// Name of every defined bit, lowest first (for tools).
    pub const NAMES: [(u32, &str); 8] = [
        (STALE_SNAPSHOT, "stale_snapshot"),
        (VOLUME_REGRESSION, "volume_regression"),
        (TURNOVER_REGRESSION, "turnover_regression"),
        (REPEATED_SECOND, "repeated_second"),
        (DERIVED_ACTION_DAY, "derived_action_day"),
        (ABSENT_PRICE, "absent_price"),
        (AVERAGE_PRICE_SCALED, "average_price_scaled"),
        (UNKNOWN_PRODUCT, "unknown_product"),
    ];

    const _: () = assert!(ANOMALIES & NOTES == 0);
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
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Index of each counter in the header's counter block. Only the writer changes counters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Counter {
            $( $(#[$doc])* $variant, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Every counter's metric-style name, in index order (part of the layout fingerprint).
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

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
        for s in [Source::Primary, Source::Backup, Source::Sim, Source::Replay, Source::Udp] {
            assert_eq!(Source::from_code(s as u8), Some(s));
        }
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(c.name(), Counter::NAMES[i]);
        }
    }

    #[test]
    fn quality_bits_are_distinct() {
        let mut seen = 0u32;
        for (bit, _) in quality::NAMES {
            assert_eq!(bit.count_ones(), 1);
            assert_eq!(seen & bit, 0);
            seen |= bit;
        }
    }
}

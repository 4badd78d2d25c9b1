//! Why a raw CTP struct was refused: a small `Copy` enum, one variant per reject counter.

use qilin_shm::Counter;

/// Why a raw `CThostFtdcDepthMarketDataField` was not turned into a tick. Each variant is counted in
/// the header under the counter [`Reject::counter`] names; the tick is dropped, never guessed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The struct (datagram) has a size no known CTP version uses (584, 568, 408 bytes).
    Size,
    /// InstrumentID, ExchangeID or ExchangeInstID is not NUL-terminated within its field, is not
    /// ASCII, is empty (InstrumentID) or is too long for the feed's 31-character id.
    Id,
    /// ExchangeID is not one of SHFE, INE, DCE, CZCE, CFFEX, GFEX, or names another exchange than
    /// the instrument's product specification.
    Exchange,
    /// A price (any double field) is infinite or NaN. CTP's DBL_MAX means "absent" and is not a reject.
    Price,
    /// TradingDay, ActionDay, UpdateTime or UpdateMillisec is not a valid date, time or 0..=999.
    Time,
    /// The instrument's product is not in the instruments file (or the spec handed in is another product's).
    UnknownInstrument,
}

impl Reject {
    /// The header counter that counts this reject.
    pub const fn counter(self) -> Counter {
        match self {
            Reject::Size => Counter::RejectSize,
            Reject::Id => Counter::RejectId,
            Reject::Exchange => Counter::RejectExchange,
            Reject::Price => Counter::RejectPrice,
            Reject::Time => Counter::RejectTime,
            Reject::UnknownInstrument => Counter::RejectUnknownInstrument,
        }
    }

    /// Short lower-case name (the counter's name without the `reject_` prefix), for logs and tools.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::Size => "size",
            Reject::Id => "id",
            Reject::Exchange => "exchange",
            Reject::Price => "price",
            Reject::Time => "time",
            Reject::UnknownInstrument => "unknown_instrument",
        }
    }
}

impl core::fmt::Display for Reject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_maps_to_its_own_counter() {
        let all = [
            (Reject::Size, "reject_size"),
            (Reject::Id, "reject_id"),
            (Reject::Exchange, "reject_exchange"),
            (Reject::Price, "reject_price"),
            (Reject::Time, "reject_time"),
            (Reject::UnknownInstrument, "reject_unknown_instrument"),
        ];
        for (reject, name) in all {
            assert_eq!(reject.counter().name(), name);
            assert_eq!(format!("reject_{reject}"), name);
        }
    }
}

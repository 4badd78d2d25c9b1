//! The market-data rules behind the quality flags that more than one normalizer applies (the
//! core's, on CTP structs; qilinctl's CSV import, on vendor exports): what counts as an absent
//! price, and when an absent price is an anomaly (`ABSENT_PRICE`) rather than CTP's design.

use qilin_shm::TickRecord;

/// Magnitude from which a double is CTP's "no value" (it sends DBL_MAX; anything this large is no price).
pub const ABSENT_FROM: f64 = 1e300;

/// Whether a price that should be present is absent (NaN) in a normalized tick: LastPrice of an
/// instrument that has traded (Volume > 0), or a book level's price whose volume is not 0.
/// ClosePrice, SettlementPrice and the deltas (absent until the close), AveragePrice and empty
/// book levels are absent by design and do not count. Branch-free, for the hot path.
#[inline(always)]
pub fn absent_where_expected(t: &TickRecord) -> bool {
    let mut missing = t.last_price.is_nan() & (t.volume > 0);
    for i in 0..5 {
        missing |= t.bid_price[i].is_nan() & (t.bid_volume[i] != 0);
        missing |= t.ask_price[i].is_nan() & (t.ask_volume[i] != 0);
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_prices_that_should_be_there_count() {
        let mut t = TickRecord::ZERO;
        t.close_price = f64::NAN;
        t.settlement_price = f64::NAN;
        t.curr_delta = f64::NAN;
        t.average_price = f64::NAN;
        t.bid_price[3] = f64::NAN; // empty level: volume 0
        assert!(!absent_where_expected(&t));
        t.last_price = f64::NAN;
        assert!(!absent_where_expected(&t), "no trade yet");
        t.volume = 1;
        assert!(absent_where_expected(&t), "traded, no LastPrice");
        t.last_price = 1.0;
        t.bid_volume[3] = 2;
        assert!(absent_where_expected(&t), "a level with volume and no price");
        t.bid_volume[3] = 0;
        t.ask_price[0] = f64::NAN;
        t.ask_volume[0] = -1;
        assert!(absent_where_expected(&t), "any non-zero volume");
    }
}

//! The sections of one trading day of one product, as instants: the night section (held on the
//! evening of the previous trading day, when the calendar holds it) and the day segments, each with
//! its call-auction lead and its closing second. Built from the product's sessions
//! ([`ProductSpec`]) and the trading calendar ([`Calendar`]); this is where a bar builder asks
//! "which section is this instant in, and where does that section end".
//!
//! Instants are China-local milliseconds since 1970-01-01 local midnight ([`local_ms`] of a UTC
//! time, or `date.days * DAY_MS + ms_of_day`), so a night section crossing midnight is one interval.
//!
//! The rules, the same as [`ProductSpec::in_session`]'s:
//! - a section is `[open, close)`; the instants `[close, close + CLOSE_GRACE_MS)` are its closing
//!   second ([`Place::Closing`]): a tick stamped exactly at 10:15:00, 11:30:00, 15:00:00 or the
//!   night close belongs to the section that ends there, not to the next;
//! - the night section and the first day segment have a call auction of [`CALL_AUCTION_MS`] before
//!   their open ([`Place::Auction`]): 20:55–21:00, 08:55–09:00 (09:25–09:30 on CFFEX). An auction
//!   tick belongs to the section it precedes;
//! - the night section of trading day D is held on the evening of the trading day before D, if the
//!   calendar holds a night session that evening: none after a holiday eve, Friday's for Monday.
//!
//! [`local_ms`]: crate::date::local_ms

use crate::{
    calendar::Calendar,
    date::{DAY_MS, Date},
    products::{CALL_AUCTION_MS, CLOSE_GRACE_MS, ProductSpec},
};

/// Whether a section is the night session or a day segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// The night session (held the evening before, crossing midnight for some products).
    Night,
    /// A day segment.
    Day,
}

/// One section of a trading day, as China-local ms since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Section {
    /// Night or day.
    pub kind: SessionKind,
    /// First instant of the call auction before the open (`open` when the section has none).
    pub auction_from: i64,
    /// Open, inclusive.
    pub open: i64,
    /// Close, exclusive; `[close, close + CLOSE_GRACE_MS)` is the closing second, still this section's.
    pub close: i64,
}

/// Where an instant lies in its section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// In the call auction before the open.
    Auction,
    /// Between the open (inclusive) and the close (exclusive).
    Trading,
    /// In the closing second, at or after the close.
    Closing,
}

/// The sections of one trading day of one product, in time order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaySections {
    /// The trading day.
    pub trading_day: Date,
    /// Its sections in time order (empty when `trading_day` is not a trading day).
    pub sections: Vec<Section>,
}

/// The local instant `ms_of_day` of calendar day `date` (ms since 1970-01-01 China local).
pub const fn local_instant(date: Date, ms_of_day: u32) -> i64 {
    date.days * DAY_MS as i64 + ms_of_day as i64
}

impl DaySections {
    /// The sections of `trading_day` for `spec`: the night section on the evening of the previous
    /// trading day if the product has one and the calendar holds it, then the day segments. None
    /// when `trading_day` does not trade.
    pub fn of(spec: &ProductSpec, calendar: &Calendar, trading_day: Date) -> DaySections {
        let mut sections = Vec::with_capacity(spec.day_sessions.len() + 1);
        if calendar.is_trading_day(trading_day) {
            if let Some(night) = spec.night_session {
                let evening = calendar.prev_trading_day(trading_day);
                if calendar.has_night_session(evening) {
                    let open = local_instant(evening, night.start_ms);
                    sections.push(Section {
                        kind: SessionKind::Night,
                        auction_from: open - i64::from(CALL_AUCTION_MS),
                        open,
                        close: open + i64::from(night.len_ms()),
                    });
                }
            }
            for (i, segment) in spec.day_sessions.iter().enumerate() {
                let open = local_instant(trading_day, segment.start_ms);
                let lead = if i == 0 { i64::from(CALL_AUCTION_MS) } else { 0 };
                sections.push(Section {
                    kind: SessionKind::Day,
                    auction_from: open - lead,
                    open,
                    close: open + i64::from(segment.len_ms()),
                });
            }
        }
        DaySections { trading_day, sections }
    }

    /// The section `instant` lies in (auction and closing second included) and where in it, or
    /// `None` outside every section of this trading day.
    pub fn locate(&self, instant: i64) -> Option<(usize, Place)> {
        self.sections.iter().enumerate().find_map(|(i, s)| {
            if instant < s.auction_from || instant >= s.close + i64::from(CLOSE_GRACE_MS) {
                None
            } else if instant < s.open {
                Some((i, Place::Auction))
            } else if instant < s.close {
                Some((i, Place::Trading))
            } else {
                Some((i, Place::Closing))
            }
        })
    }

    /// The close of the section that `instant` lies in, or of the next section after it: the
    /// first section close at or after `instant` (`None` after the last).
    pub fn close_at_or_after(&self, instant: i64) -> Option<i64> {
        self.sections.iter().map(|s| s.close).find(|&close| close >= instant)
    }

    /// The first instant of the trading day (the first section's auction), if it trades.
    pub fn first_instant(&self) -> Option<i64> {
        self.sections.first().map(|s| s.auction_from)
    }

    /// The last section's close, if it trades.
    pub fn last_close(&self) -> Option<i64> {
        self.sections.last().map(|s| s.close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{calendar::tests::shipped, products::Instruments};

    fn d(ymd: u32) -> Date {
        Date::from_ymd(ymd).unwrap()
    }

    fn at(ymd: u32, hh: u32, mm: u32, ss: u32, ms: u32) -> i64 {
        local_instant(d(ymd), ((hh * 60 + mm) * 60 + ss) * 1000 + ms)
    }

    fn table() -> Instruments {
        Instruments::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml")).unwrap()
    }

    #[test]
    fn an_ordinary_day_has_the_night_of_the_evening_before_and_three_day_segments() {
        let (t, c) = (table(), shipped());
        // Wednesday 2026-03-11: the night section is Tuesday evening's, 21:00 to 01:00 for cu.
        let s = DaySections::of(t.product("cu").unwrap(), &c, d(20260311));
        let spans: Vec<_> = s.sections.iter().map(|x| (x.kind, x.auction_from, x.open, x.close)).collect();
        assert_eq!(
            spans,
            [
                (SessionKind::Night, at(20260310, 20, 55, 0, 0), at(20260310, 21, 0, 0, 0), at(20260311, 1, 0, 0, 0)),
                (SessionKind::Day, at(20260311, 8, 55, 0, 0), at(20260311, 9, 0, 0, 0), at(20260311, 10, 15, 0, 0)),
                (SessionKind::Day, at(20260311, 10, 30, 0, 0), at(20260311, 10, 30, 0, 0), at(20260311, 11, 30, 0, 0)),
                (SessionKind::Day, at(20260311, 13, 30, 0, 0), at(20260311, 13, 30, 0, 0), at(20260311, 15, 0, 0, 0)),
            ]
        );
        assert_eq!(s.first_instant(), Some(at(20260310, 20, 55, 0, 0)));
        assert_eq!(s.last_close(), Some(at(20260311, 15, 0, 0, 0)));
    }

    #[test]
    fn locate_puts_auctions_forward_and_closing_seconds_back() {
        let (t, c) = (table(), shipped());
        let s = DaySections::of(t.product("rb").unwrap(), &c, d(20260311));
        assert_eq!(s.locate(at(20260310, 20, 59, 0, 0)), Some((0, Place::Auction)));
        assert_eq!(s.locate(at(20260310, 20, 54, 59, 999)), None);
        assert_eq!(s.locate(at(20260310, 21, 0, 0, 0)), Some((0, Place::Trading)));
        assert_eq!(s.locate(at(20260310, 23, 0, 0, 0)), Some((0, Place::Closing)));
        assert_eq!(s.locate(at(20260310, 23, 0, 0, 999)), Some((0, Place::Closing)));
        assert_eq!(s.locate(at(20260310, 23, 0, 1, 0)), None);
        assert_eq!(s.locate(at(20260311, 8, 59, 0, 0)), Some((1, Place::Auction)));
        assert_eq!(s.locate(at(20260311, 10, 15, 0, 500)), Some((1, Place::Closing)));
        assert_eq!(s.locate(at(20260311, 10, 20, 0, 0)), None, "the morning break");
        assert_eq!(s.locate(at(20260311, 10, 29, 59, 0)), None, "no auction before 10:30");
        assert_eq!(s.locate(at(20260311, 11, 30, 0, 0)), Some((2, Place::Closing)));
        assert_eq!(s.locate(at(20260311, 15, 0, 0, 500)), Some((3, Place::Closing)));
        assert_eq!(s.close_at_or_after(at(20260311, 10, 0, 0, 0)), Some(at(20260311, 10, 15, 0, 0)));
        assert_eq!(s.close_at_or_after(at(20260311, 10, 15, 0, 0)), Some(at(20260311, 10, 15, 0, 0)));
        assert_eq!(s.close_at_or_after(at(20260311, 10, 20, 0, 0)), Some(at(20260311, 11, 30, 0, 0)));
        assert_eq!(s.close_at_or_after(at(20260311, 15, 0, 0, 1)), None);
    }

    #[test]
    fn friday_night_belongs_to_monday_and_a_holiday_eve_has_no_night() {
        let (t, c) = (table(), shipped());
        let au = t.product("au").unwrap();
        // Monday 2026-03-09: the night is Friday 2026-03-06's, 21:00 to Saturday 02:30.
        let monday = DaySections::of(au, &c, d(20260309));
        assert_eq!(monday.sections[0].open, at(20260306, 21, 0, 0, 0));
        assert_eq!(monday.sections[0].close, at(20260307, 2, 30, 0, 0));
        assert_eq!(monday.locate(at(20260307, 2, 0, 0, 0)), Some((0, Place::Trading)));
        // Thursday 2026-10-08 after the National Day holiday: Wednesday 2026-09-30 held no night.
        let after = DaySections::of(au, &c, d(20261008));
        assert_eq!(after.sections.len(), 3);
        assert!(after.sections.iter().all(|s| s.kind == SessionKind::Day));
        assert_eq!(after.locate(at(20260930, 21, 0, 0, 0)), None);
        // A holiday trades nothing; a product without a night session has day segments only.
        assert!(DaySections::of(au, &c, d(20261001)).sections.is_empty());
        let ec = DaySections::of(t.product("ec").unwrap(), &c, d(20260311));
        assert_eq!(ec.sections.len(), 3);
    }

    #[test]
    fn cffex_has_its_auction_before_half_past_nine() {
        let (t, c) = (table(), shipped());
        let s = DaySections::of(t.product("IF").unwrap(), &c, d(20260311));
        assert_eq!(s.sections.len(), 2);
        assert_eq!(s.locate(at(20260311, 9, 25, 0, 0)), Some((0, Place::Auction)));
        assert_eq!(s.locate(at(20260311, 8, 59, 0, 0)), None);
        assert_eq!(s.last_close(), Some(at(20260311, 15, 0, 0, 0)));
        let tbond = DaySections::of(t.product("T").unwrap(), &c, d(20260311));
        assert_eq!(tbond.last_close(), Some(at(20260311, 15, 15, 0, 0)));
    }

    #[test]
    fn locate_agrees_with_in_session_on_every_second_of_a_day() {
        let (t, c) = (table(), shipped());
        for code in ["cu", "au", "rb", "SR", "IF", "T", "si", "ec"] {
            let spec = t.product(code).unwrap();
            let s = DaySections::of(spec, &c, d(20260311));
            for second in 0..2 * 86_400 {
                let instant = local_instant(d(20260310), 0) + second * 1000;
                let ms_of_day = (instant.rem_euclid(i64::from(DAY_MS))) as u32;
                let date = Date::from_days(instant.div_euclid(i64::from(DAY_MS)));
                // in_session is the product's view for any day; restrict it to this trading day's span.
                let spans_day = s.first_instant().is_some_and(|f| instant >= f)
                    && s.last_close().is_some_and(|l| instant < l + i64::from(CLOSE_GRACE_MS));
                let expected = spans_day && c.in_session(spec, date, ms_of_day);
                assert_eq!(s.locate(instant).is_some(), expected, "{code} at {}", date.iso());
            }
        }
    }
}

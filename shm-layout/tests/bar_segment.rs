//! The bar segment: the same writer and reader over `BarRecord` (sequence, slots, last values per
//! instrument and period, restart with a new epoch and continuing sequences), and a reader or
//! writer of one kind refusing a segment of the other with `OpenError::WrongKind`.

mod common;

use common::{TempSegment, options};
use qilin_shm::{
    BAR_FINGERPRINT, BarPeriod, BarReader, BarRecord, BarWriter, Exchange, FINGERPRINT, Next, OpenError, PublishError,
    Reader, Start, TickRecord, Writer, bar_flags, layout::fixed_id,
};

fn bar(index: u32, period: BarPeriod, start_ns: i64, close: f64) -> BarRecord {
    let mut b = BarRecord::ZERO;
    b.instrument_index = index;
    b.instrument_id = fixed_id("rb2605").unwrap();
    b.exchange = Exchange::Shfe as u8;
    b.period = period as u8;
    b.trading_day = 20260311;
    b.start_ns = start_ns;
    b.end_ns = start_ns + 60_000_000_000;
    b.open = close - 1.0;
    b.high = close + 2.0;
    b.low = close - 3.0;
    b.close = close;
    b.volume = 17;
    b.turnover = 1.5e6;
    b.open_interest = 1234.0;
    b.open_interest_change = -3.0;
    b.ticks = 42;
    b.first_sequence = 100;
    b.last_sequence = 141;
    b.flags = bar_flags::GAP | bar_flags::PARTIAL;
    b
}

#[test]
fn bars_round_trip_through_ring_and_last_values_per_period() {
    let segment = TempSegment::new("bars-round-trip");
    let mut writer = BarWriter::open_segment(segment.path(), &options(8, 4)).expect("creating a bar segment");
    let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
    let mut reader = BarReader::open_segment(segment.path()).expect("opening the bar segment");
    reader.seek(Start::Oldest);
    let mut written = Vec::new();
    for (i, period) in [BarPeriod::M1, BarPeriod::M5, BarPeriod::M1, BarPeriod::Day].into_iter().enumerate() {
        let mut b = bar(index, period, 1_000 + i as i64, 3100.0 + i as f64);
        assert_eq!(writer.publish(&mut b), Ok(i as u64 + 1));
        written.push(b);
    }
    let mut out = BarRecord::ZERO;
    for want in &written {
        assert_eq!(reader.try_next(&mut out), Next::Tick);
        assert_eq!(zerocopy::IntoBytes::as_bytes(&out), zerocopy::IntoBytes::as_bytes(want), "field for field");
    }
    assert_eq!(reader.try_next(&mut out), Next::Empty);
    // The last bar per instrument and period: the second 1m bar, the 5m bar, the day; no 15m yet.
    assert_eq!(reader.latest_bar(index, BarPeriod::M1, &mut out), Ok(true));
    assert_eq!((out.sequence, out.close), (3, 3102.0));
    assert_eq!(reader.latest_bar_by_id("rb2605", BarPeriod::M5, &mut out), Ok(true));
    assert_eq!(out.sequence, 2);
    assert_eq!(reader.latest_bar(index, BarPeriod::Day, &mut out), Ok(true));
    assert_eq!(out.sequence, 4);
    assert_eq!(reader.latest_bar(index, BarPeriod::M15, &mut out), Ok(false));
    assert_eq!(reader.identity().fingerprint, BAR_FINGERPRINT);
    assert_eq!(reader.identity().record_size, 184);
    assert_eq!(reader.identity().slot_size, 192);
    // A period code outside the table is refused, nothing written.
    let mut bad = bar(index, BarPeriod::M1, 9, 1.0);
    bad.period = 7;
    assert!(matches!(writer.publish(&mut bad), Err(PublishError::LastValueKey { key: 6, .. })));
    bad.period = 0;
    assert!(matches!(writer.publish(&mut bad), Err(PublishError::LastValueKey { .. })));
    assert_eq!(writer.next_sequence(), 5);
}

#[test]
fn a_restarted_bar_writer_bumps_the_epoch_and_continues_the_sequence() {
    let segment = TempSegment::new("bars-restart");
    let mut writer = BarWriter::open_segment(segment.path(), &options(8, 4)).unwrap();
    let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
    writer.publish(&mut bar(index, BarPeriod::M1, 1, 1.0)).unwrap();
    let epoch = writer.epoch();
    drop(writer);
    let mut writer = BarWriter::open_segment(segment.path(), &options(8, 4)).unwrap();
    assert_eq!((writer.epoch(), writer.next_sequence()), (epoch + 1, 2));
    assert_eq!(writer.find_instrument("rb2605"), Some(index));
    let reader = BarReader::open_segment(segment.path()).unwrap();
    let mut last = BarRecord::ZERO;
    assert_eq!(reader.latest_bar(index, BarPeriod::M1, &mut last), Ok(true), "last values survive a restart");
    assert_eq!(last.start_ns, 1);
    assert_eq!(writer.publish(&mut bar(index, BarPeriod::M1, 2, 1.0)), Ok(2));
}

/// The message the C and Python readers give too (tests/c_header.rs, python/tests/test_bars.py).
fn wrong_kind(path: &str, found: &str, expected: &str) -> String {
    format!("segment {path} is a {found} segment, not a {expected} segment: open it with the {found} reader")
}

#[test]
fn a_tick_reader_refuses_a_bar_segment_and_a_bar_reader_a_tick_segment() {
    let bars = TempSegment::new("bars-kind-bar");
    drop(BarWriter::open_segment(bars.path(), &options(8, 4)).unwrap());
    let ticks = TempSegment::new("bars-kind-tick");
    drop(Writer::open(ticks.path(), &options(8, 4)).unwrap());

    let error = Reader::open(bars.path()).expect_err("a tick reader must refuse a bar segment");
    assert!(matches!(error, OpenError::WrongKind { found: "bar", expected: "tick", .. }), "{error:?}");
    assert_eq!(error.to_string(), wrong_kind(&bars.text(), "bar", "tick"));
    let error = BarReader::open_segment(ticks.path()).expect_err("a bar reader must refuse a tick segment");
    assert_eq!(error.to_string(), wrong_kind(&ticks.text(), "tick", "bar"));
    // Writers too: neither kind overwrites the other's segment.
    let error = Writer::open(bars.path(), &options(8, 4)).expect_err("the core must not take a bar segment");
    assert!(matches!(error, OpenError::WrongKind { .. }), "{error:?}");
    let error =
        BarWriter::open_segment(ticks.path(), &options(8, 4)).expect_err("qilin-bars must not take a tick segment");
    assert!(matches!(error, OpenError::WrongKind { .. }), "{error:?}");
    // Both segments are still readable by their own kind.
    assert_eq!(Reader::open(ticks.path()).unwrap().identity().fingerprint, FINGERPRINT);
    let mut tick = TickRecord::ZERO;
    assert_eq!(Reader::open(ticks.path()).unwrap().try_next(&mut tick), Next::Empty);
    assert_ne!(FINGERPRINT, BAR_FINGERPRINT);
}

use std::path::Path;

use proptest::prelude::*;
use qilin_shm::{Exchange, Source, TickRecord, layout::fixed_id, quality};
use zerocopy::IntoBytes;

use super::*;
use qilin_market::{Date, Market};

fn bytes(t: &TickRecord) -> &[u8] {
    t.as_bytes()
}

fn write_all(ticks: &[TickRecord]) -> Vec<u8> {
    let mut w = TickCsvWriter::new(Vec::new()).unwrap();
    for t in ticks {
        w.write(t).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(csv: &[u8], products: Option<Market>) -> Result<Vec<TickRecord>, CsvError> {
    let mut r = TickCsvReader::new(csv, Path::new("test.csv"), products)?;
    let mut out = Vec::new();
    while let Some(t) = r.next_tick()? {
        out.push(t);
    }
    Ok(out)
}

fn base() -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = 1;
    t.instrument_id = fixed_id("rb2605").unwrap();
    t.exchange = Exchange::Shfe as u8;
    t.trading_day = 20250512;
    t.action_day = 20250509;
    t.update_time_ms = 21 * 3_600_000 + 500;
    t.exchange_time_ns = 1_746_795_600_500_000_000;
    t.receive_ns = t.exchange_time_ns + 1234;
    t.publish_ns = t.receive_ns + 56;
    t.source = Source::Sim as u8;
    t.last_price = 3101.0;
    t
}

#[test]
fn tricky_values_round_trip_byte_for_byte() {
    let values = [
        f64::NAN,
        -0.0,
        0.0,
        0.1 + 0.2,
        1e-300,
        5e-324,
        -1e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        123_456_789.123_456_78,
        1e16,
        9_999_999_999_999_998.0,
        1e-5,
        9.999_999_999_999_999e-6,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut ticks = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut t = base();
        t.sequence = i as u64 + 1;
        t.last_price = *v;
        t.bid_price[4] = *v;
        t.banding_lower_price = if v.is_nan() { f64::NAN } else { -*v }; // the feed's NaN is the canonical one
        t.volume = if i % 2 == 0 { i64::MAX } else { i64::MIN };
        t.ask_volume[2] = i32::MIN;
        t.exchange_time_ns = -1;
        t.quality = if i % 2 == 0 { quality::ABSENT_PRICE | 1 << 20 | 1 << 31 } else { 0 };
        t.exchange = [0, 9, Exchange::Gfex as u8][i % 3];
        t.source = [0, 77, Source::Replay as u8][i % 3];
        t.instrument_id = fixed_id(["a,b\"c", "IF2606", "m2509-C-3000"][i % 3]).unwrap();
        ticks.push(t);
    }
    let csv = write_all(&ticks);
    let back = read_all(&csv, None).unwrap();
    assert_eq!(back.len(), ticks.len());
    for (a, b) in ticks.iter().zip(&back) {
        assert_eq!(bytes(a), bytes(b), "record {} changed:\n{a:?}\n{b:?}", a.sequence);
    }
    assert_eq!(write_all(&back), csv, "written again: the same bytes");
    let text = String::from_utf8(csv).unwrap();
    assert!(text.contains(",-0,"), "negative zero is kept: {text}");
    assert!(text.contains("5e-324") && text.contains("1.7976931348623157e308"), "no 300-digit cells: {text}");
    assert!(text.contains("\"a,b\"\"c\""), "quoted as RFC 4180 says");
    assert!(text.contains("absent_price|0x80100000"), "unnamed bits as hex");
}

#[test]
fn header_is_the_ctp_order_then_the_feed_columns() {
    let csv = String::from_utf8(write_all(&[])).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with(
        "TradingDay,InstrumentID,ExchangeID,LastPrice,PreSettlementPrice,PreClosePrice,PreOpenInterest,\
         OpenPrice,HighestPrice,LowestPrice,Volume,Turnover,OpenInterest,ClosePrice,SettlementPrice,\
         UpperLimitPrice,LowerLimitPrice,PreDelta,CurrDelta,UpdateTime,UpdateMillisec,BidPrice1,BidVolume1,\
         AskPrice1,AskVolume1,BidPrice2,"
    ));
    assert!(header.ends_with(
        "AskVolume5,AveragePrice,ActionDay,BandingUpperPrice,BandingLowerPrice,sequence,instrument_index,\
         exchange_time_ns,receive_ns,publish_ns,source,quality"
    ));
    assert_eq!(header.split(',').count(), COLUMNS.len());
    assert_eq!(COLUMNS[CTP_COLUMNS].0, "sequence");
}

fn f64_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(|b| {
            let x = f64::from_bits(b);
            if x.is_nan() { f64::NAN } else { x }
        }),
        -1e7..1e7f64,
        (0i64..100_000_000).prop_map(|c| c as f64 / 100.0),
        Just(f64::NAN),
        Just(-0.0),
    ]
}

prop_compose! {
    fn record()(
        words in any::<[u64; 4]>(),
        small in any::<[u32; 2]>(),
        days in (7_400i64..40_000, 0i64..3), // 1990-04 .. 2079: the years a CTP date may name
        time in 0u32..86_400_000,
        codes in any::<(u8, u8)>(),
        id in "[A-Za-z0-9_.,\"-]{1,31}",
        prices in proptest::collection::vec(f64_strategy(), 28),
        volume in any::<i64>(),
        levels in any::<[i32; 10]>(),
    ) -> TickRecord {
        let mut t = TickRecord::ZERO;
        t.sequence = words[0];
        t.exchange_time_ns = words[1] as i64;
        t.receive_ns = words[2] as i64;
        t.publish_ns = words[3] as i64;
        t.instrument_index = small[0];
        t.quality = small[1];
        t.trading_day = Date::from_days(days.0).ymd;
        t.action_day = Date::from_days(days.0 - days.1).ymd;
        t.update_time_ms = time;
        (t.exchange, t.source) = codes;
        t.instrument_id = fixed_id(&id).unwrap();
        for ((_, access), p) in F64_FIELDS.iter().zip(prices) {
            *access(&mut t) = p;
        }
        t.volume = volume;
        t.bid_volume.copy_from_slice(&levels[..5]);
        t.ask_volume.copy_from_slice(&levels[5..]);
        t
    }
}

proptest! {
    #[test]
    fn any_record_written_and_read_back_is_the_same_bytes(ticks in proptest::collection::vec(record(), 1..8)) {
        let csv = write_all(&ticks);
        let back = read_all(&csv, None).unwrap();
        prop_assert_eq!(back.len(), ticks.len());
        for (a, b) in ticks.iter().zip(&back) {
            prop_assert_eq!(bytes(a), bytes(b));
        }
        prop_assert_eq!(write_all(&back), csv);
    }
}

fn repo_products() -> Market {
    Market::find(Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml"))).unwrap().unwrap()
}

const VENDOR_HEADER: &str = "TradingDay,InstrumentID,ExchangeID,ExchangeInstID,LastPrice,PreSettlementPrice,\
    Volume,Turnover,UpperLimitPrice,LowerLimitPrice,PreDelta,UpdateTime,UpdateMillisec,BidPrice1,BidVolume1,\
    AskPrice1,AskVolume1,AskPrice2,AveragePrice,ActionDay";

#[test]
fn a_vendor_file_with_only_ctp_columns_is_normalized_as_the_core_would() {
    let csv = format!(
        "{VENDOR_HEADER}\n\
         20250512,rb2605,SHFE,rb2605,3101,3090,100,3101000,3400,2800,1.7976931348623157e+308,21:00:00,500,3100,5,3102,7,,31010,20250509\n\
         20250512,rb2605,,rb2605,,3090,90,3000000,3400,2800,,21:00:01,0,3101,5,3103,7,3104,31020,20250509\n\
         20250512,m2609,DCE,m2609,2900,2890,10,290000,3100,2700,0,21:30:00,250,2899,1,2901,2,2902,29000,20250512\n\
         20250512,m2609,DCE,m2609,2900,2890,11,290000,3100,2700,0,01:30:00,0,2899,1,2901,2,2902,29000,20250512\n\
         20250509,SR609,CZCE,SR609,5800,5790,3,100,6000,5600,0,21:05:00,0,5799,1,5801,1,5802,5800,20250509\n\
         20250512,rb2605,SHFE,rb2605,3102,3090,95,3050000,3400,2800,0,16:00:00,0,3101,5,3103,7,3104,31020,20250512\n"
    );
    let ticks = read_all(csv.as_bytes(), Some(repo_products())).unwrap();
    assert_eq!(ticks.len(), 6);
    let [a, b, dce_evening, dce_morning, czce, after_close] = ticks.try_into().unwrap();

    // DBL_MAX and empty cells are NaN; missing columns too. Only a price that should be there
    // (LastPrice after trades, a level with volume) is an anomaly: absent_price, as in the core.
    assert!(a.pre_delta.is_nan() && a.ask_price[1].is_nan() && a.pre_close_price.is_nan());
    assert_eq!(a.quality & quality::ABSENT_PRICE, 0, "PreDelta and an empty second level: by design");
    assert!(b.pre_delta.is_nan() && b.last_price.is_nan() && b.quality & quality::ABSENT_PRICE != 0);
    assert_eq!(dce_evening.quality & quality::ABSENT_PRICE, 0, "every cell present: {:#x}", dce_evening.quality);
    // AveragePrice per unit (÷ 10 for rb), not flagged; CZCE's is per unit already.
    assert_eq!((a.average_price, a.quality & quality::AVERAGE_PRICE_SCALED), (3101.0, 0));
    assert_eq!((czce.average_price, czce.quality & quality::AVERAGE_PRICE_SCALED), (5800.0, 0));
    // Empty ExchangeID from the product file.
    assert_eq!(b.exchange, Exchange::Shfe as u8);
    // Cumulative volume and turnover going down within the day.
    assert_eq!(
        b.quality & (quality::VOLUME_REGRESSION | quality::TURNOVER_REGRESSION),
        quality::VOLUME_REGRESSION | quality::TURNOVER_REGRESSION
    );
    assert_eq!(a.quality & quality::VOLUME_REGRESSION, 0);
    // Times: SHFE Friday-evening tick of Monday's trading day, in UTC.
    assert_eq!((a.trading_day, a.action_day, a.update_time_ms), (20250512, 20250509, 21 * 3_600_000 + 500));
    assert_eq!(a.exchange_time_ns, 1_746_795_600_500_000_000, "2025-05-09 21:00:00.5 CST");
    assert_eq!(a.receive_ns, a.exchange_time_ns, "no receive time: the exchange time");
    assert_eq!((a.publish_ns, a.source, a.sequence), (0, 0, 0));
    // DCE night: the calendar day derived from the trading day (Friday evening, Saturday morning).
    assert_eq!((dce_evening.trading_day, dce_evening.action_day), (20250512, 20250509));
    assert_eq!(dce_morning.action_day, 20250510);
    assert_ne!(dce_evening.quality & quality::DERIVED_ACTION_DAY, 0);
    // CZCE night: TradingDay carries the calendar day; the trading day is the next weekday.
    assert_eq!((czce.trading_day, czce.action_day), (20250512, 20250509));
    // Outside the sessions: stale snapshot.
    assert_ne!(after_close.quality & quality::STALE_SNAPSHOT, 0);
    assert_eq!(a.quality & quality::STALE_SNAPSHOT, 0);
    // Instrument indexes by first appearance.
    assert_eq!(
        (a.instrument_index, b.instrument_index, dce_evening.instrument_index, czce.instrument_index),
        (0, 0, 1, 2)
    );
}

#[test]
fn a_vendor_file_without_the_product_file_still_reads() {
    let csv = format!(
        "{VENDOR_HEADER}\n20250512,rb2605,,x,3101,3090,100,3101000,3400,2800,0,10:00:00,500,3100,5,3102,7,3103,31010,20250512\n"
    );
    let mut r = TickCsvReader::new(csv.as_bytes(), Path::new("v.csv"), None).unwrap();
    let t = r.next_tick().unwrap().unwrap();
    assert_eq!((t.exchange, t.average_price, t.quality), (0, 31010.0, 0));
    let derived = r.derived();
    assert!(derived.vendor);
    assert_eq!(derived.rows_without_product, 1);
    assert_eq!(derived.ignored, ["ExchangeInstID"]);
    assert!(derived.missing.contains(&"sequence") && derived.missing.contains(&"BidPrice5"));
}

fn error_of(csv: &str) -> CsvError {
    read_all(csv.as_bytes(), None).unwrap_err()
}

#[test]
fn bad_cells_name_the_file_line_and_column() {
    let header = "TradingDay,InstrumentID,UpdateTime,LastPrice,Volume";
    let e = error_of(&format!("{header}\n20250512,rb2605,10:00:00,3100,1\n20250512,rb2605,10:00:01,31O0,2\n"));
    assert_eq!((e.line, e.column.as_deref()), (Some(3), Some("4 (LastPrice)")));
    assert_eq!(e.to_string(), "test.csv: line 3, column 4 (LastPrice): \"31O0\" is not a number");

    let e = error_of(&format!("{header}\n20250231,rb2605,10:00:00,3100,1\n"));
    assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("1 (TradingDay)")), "{e}");
    let e = error_of(&format!("{header}\n20250512,rb2605,25:00:00,3100,1\n"));
    assert_eq!(e.column.as_deref(), Some("3 (UpdateTime)"), "{e}");
    let e = error_of(&format!("{header}\n20250512,rb2605,10:00:00,3100,1.5\n"));
    assert_eq!(e.column.as_deref(), Some("5 (Volume)"), "{e}");
    let e = error_of(&format!("{header}\n20250512,,10:00:00,3100,1\n"));
    assert_eq!(e.column.as_deref(), Some("2 (InstrumentID)"), "{e}");
    let e = error_of(&format!("{header}\n20250512,rb2605,10:00:00,inf,1\n"));
    assert!(e.message.contains("infinite"), "a vendor file may not hold inf: {e}");

    let e = error_of(&format!("{header}\n20250512,rb2605,10:00:00,3100\n"));
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("fields"), "{e}");

    let e = error_of("TradingDay,InstrumentID,UpdateTime,LastPirce\n");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("\"LastPirce\" is not a column"), "{e}");
    let e = error_of("TradingDay,InstrumentID,LastPrice\n");
    assert!(e.message.contains("UpdateTime is missing"), "{e}");
    let e = error_of("TradingDay,InstrumentID,UpdateTime,LastPrice,LastPrice\n");
    assert!(e.message.contains("twice"), "{e}");

    let mut feed = String::from_utf8(write_all(&[base()])).unwrap();
    feed = feed.replace(",sim,", ",simulator,");
    let e = error_of(&feed);
    assert_eq!(e.column.as_deref(), Some("51 (source)"), "{e}");
}

//! `qilinctl export --parquet` (docs/PARQUET.md) with the real binary: journals written with
//! qilin-journal, exported both ways, the Parquet files read back with the `parquet` crate's Arrow
//! reader: schema and types, row counts, values equal to the records (nulls for NaN prices and
//! unknown times), row-group policy (consecutive ticks, sorted by instrument within a group), one
//! file per trading day, and the refusals (several days into one file, a missing journal, an
//! output that cannot be written).

mod common;

use common::{qilinctl, s, text};

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use arrow_array::{
    Array, Date32Array, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    Time32MillisecondArray, TimestampNanosecondArray, UInt16Array, UInt32Array, UInt64Array,
    cast::AsArray,
    types::{Int16Type, Int32Type},
};
use arrow_schema::{DataType, TimeUnit};
use parquet::{
    arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
    file::{metadata::ParquetMetaData, reader::FileReader, serialized_reader::SerializedFileReader},
};
use qilin_journal::{FsyncPolicy, GapReason, JournalWriter, WriterOptions};
use qilin_market::{Date, date::utc_ns};
use qilin_shm::{Exchange, Source, TickRecord, quality};
use qilin_tools::{
    parquet_export::ROW_GROUP_ROWS,
    tick_csv::{COLUMNS, F64_FIELDS, Field},
};

const INSTRUMENTS: [(&str, Exchange); 4] =
    [("rb2605", Exchange::Shfe), ("m2609", Exchange::Dce), ("SR609", Exchange::Czce), ("IF2606", Exchange::Cffex)];

/// Tick `seq` of `day`: the instruments in turn, with absent prices, unknown publish times, an
/// unknown exchange code and source 0 (null) here and there.
fn tick(seq: u64, day: u32, i: u64) -> TickRecord {
    let (id, exchange) = INSTRUMENTS[(i % 4) as usize];
    let mut t = TickRecord::ZERO;
    t.sequence = seq;
    t.instrument_id = qilin_shm::layout::fixed_id(id).unwrap();
    t.instrument_index = (i % 4) as u32;
    t.exchange = if i % 97 == 5 { 77 } else { exchange as u8 };
    t.trading_day = day;
    t.action_day = day;
    t.update_time_ms = (9 * 3600 + (i / 2) as u32 % 7200) * 1000 + (i % 2) as u32 * 500;
    t.exchange_time_ns = utc_ns(Date::from_ymd(day).unwrap(), t.update_time_ms / 1000, t.update_time_ms % 1000);
    t.receive_ns = t.exchange_time_ns + 1_234_567;
    t.publish_ns = if i.is_multiple_of(3) { 0 } else { t.receive_ns + 800 };
    t.source = [0, Source::Primary as u8, Source::Backup as u8, Source::Sim as u8][(i % 4) as usize];
    t.last_price = if i.is_multiple_of(11) { f64::NAN } else { 3000.0 + (i % 50) as f64 * 0.5 };
    t.pre_settlement_price = 2990.0;
    t.open_price = if i.is_multiple_of(7) { f64::NAN } else { 3001.5 };
    t.volume = 10 * i as i64;
    t.turnover = 3.0e4 * i as f64;
    t.open_interest = 100_000.0 - i as f64;
    t.close_price = f64::NAN;
    t.settlement_price = f64::NAN;
    t.upper_limit_price = 3300.0;
    t.lower_limit_price = 2700.0;
    t.pre_delta = -0.0;
    t.curr_delta = f64::NAN;
    t.average_price = 3000.125;
    t.banding_upper_price = f64::NAN;
    t.banding_lower_price = f64::NAN;
    t.bid_price = [2999.0, 2998.0, f64::NAN, f64::NAN, f64::NAN];
    t.ask_price = [if i.is_multiple_of(13) { f64::NAN } else { 3001.0 }, 3002.0, f64::NAN, f64::NAN, f64::NAN];
    t.bid_volume = [(i % 9) as i32 + 1, 3, 0, 0, 0];
    t.ask_volume = [2, (i % 5) as i32, 0, 0, 0];
    t.quality = match i % 13 {
        0 => quality::ABSENT_PRICE,
        1 => quality::STALE_SNAPSHOT | quality::REPEATED_SECOND,
        2 => 1 << 20,
        _ => 0,
    };
    t
}

/// Journals of `feed` in `dir` for `days` (`per_day` ticks each, a gap record in each day).
fn make_journals(dir: &Path, feed: &str, days: &[u32], per_day: u64) -> Vec<TickRecord> {
    let options =
        WriterOptions { block_records: 4096, max_block_age: std::time::Duration::MAX, fsync: FsyncPolicy::Never };
    let mut all = Vec::new();
    let mut seq = 0u64;
    for &day in days {
        let (mut w, _) = JournalWriter::open(dir, feed, day, seq, options).unwrap();
        for i in 0..per_day {
            if i == per_day / 2 {
                w.append_gap(seq + 1, seq + 3, GapReason::Lapped).unwrap();
                seq += 3;
            }
            seq += 1;
            let t = tick(seq, day, i);
            w.append_tick(&t).unwrap();
            all.push(t);
        }
        w.finish().unwrap();
    }
    all
}

fn read_parquet(path: &Path) -> (Vec<RecordBatch>, ParquetMetaData) {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let metadata = builder.metadata().as_ref().clone();
    let batches = builder.build().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (batches, metadata)
}

fn expected_type(field: Field) -> DataType {
    let dict = |k: DataType| DataType::Dictionary(Box::new(k), Box::new(DataType::Utf8));
    match field {
        Field::TradingDay | Field::ActionDay => DataType::Date32,
        Field::InstrumentId => dict(DataType::Int32),
        Field::ExchangeId | Field::Source => dict(DataType::Int16),
        Field::F64(_) => DataType::Float64,
        Field::Volume => DataType::Int64,
        Field::UpdateTime => DataType::Time32(TimeUnit::Millisecond),
        Field::UpdateMillisec => DataType::UInt16,
        Field::BidVolume(_) | Field::AskVolume(_) => DataType::Int32,
        Field::Sequence => DataType::UInt64,
        Field::InstrumentIndex | Field::Quality => DataType::UInt32,
        Field::ExchangeTimeNs | Field::ReceiveNs | Field::PublishNs => {
            DataType::Timestamp(TimeUnit::Nanosecond, Some("Asia/Shanghai".into()))
        }
    }
}

fn dict_text16(a: &dyn Array, row: usize) -> Option<String> {
    let d: &DictionaryArray<Int16Type> = a.as_dictionary();
    d.is_valid(row).then(|| d.values().as_string::<i32>().value(d.keys().value(row) as usize).to_string())
}

fn code_text(code: u8, name: Option<&str>) -> Option<String> {
    match code {
        0 => None,
        _ => Some(name.map_or_else(|| code.to_string(), str::to_string)),
    }
}

/// Checks every cell of `batches` against `ticks` (matched by sequence), and returns the rows in
/// file order as (InstrumentID, sequence).
fn check_values(batches: &[RecordBatch], ticks: &BTreeMap<u64, TickRecord>) -> Vec<(String, u64)> {
    let mut rows = Vec::new();
    for batch in batches {
        let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
        let seqs: &UInt64Array = col("sequence").as_any().downcast_ref().unwrap();
        for row in 0..batch.num_rows() {
            let seq = seqs.value(row);
            let mut t = *ticks.get(&seq).unwrap_or_else(|| panic!("sequence {seq} is not a tick of the journal"));
            for (name, field) in COLUMNS {
                let a = col(name);
                let what = format!("sequence {seq} column {name}");
                match field {
                    Field::TradingDay | Field::ActionDay => {
                        let ymd = if field == Field::TradingDay { t.trading_day } else { t.action_day };
                        let d: &Date32Array = a.as_any().downcast_ref().unwrap();
                        assert_eq!(i64::from(d.value(row)), Date::from_ymd(ymd).unwrap().days, "{what}");
                    }
                    Field::InstrumentId => {
                        let d: &DictionaryArray<Int32Type> = a.as_dictionary();
                        let v: &StringArray = d.values().as_string::<i32>();
                        let id = v.value(d.keys().value(row) as usize).to_string();
                        assert_eq!(Some(id.as_str()), t.instrument_id_str(), "{what}");
                        rows.push((id, seq));
                    }
                    Field::ExchangeId => assert_eq!(
                        dict_text16(a, row),
                        code_text(t.exchange, Exchange::from_code(t.exchange).map(Exchange::as_str)),
                        "{what}"
                    ),
                    Field::Source => assert_eq!(
                        dict_text16(a, row),
                        code_text(t.source, Source::from_code(t.source).map(Source::as_str)),
                        "{what}"
                    ),
                    Field::F64(i) => {
                        let x = *(F64_FIELDS[i].1)(&mut t);
                        let f: &Float64Array = a.as_any().downcast_ref().unwrap();
                        if x.is_nan() {
                            assert!(f.is_null(row), "{what}: NaN must be null, got {}", f.value(row));
                        } else {
                            assert!(f.is_valid(row), "{what}: {x} must not be null");
                            assert_eq!(f.value(row).to_bits(), x.to_bits(), "{what}");
                        }
                    }
                    Field::Volume => {
                        assert_eq!(a.as_any().downcast_ref::<Int64Array>().unwrap().value(row), t.volume, "{what}")
                    }
                    Field::UpdateTime => assert_eq!(
                        a.as_any().downcast_ref::<Time32MillisecondArray>().unwrap().value(row),
                        (t.update_time_ms / 1000 * 1000) as i32,
                        "{what}"
                    ),
                    Field::UpdateMillisec => assert_eq!(
                        u32::from(a.as_any().downcast_ref::<UInt16Array>().unwrap().value(row)),
                        t.update_time_ms % 1000,
                        "{what}"
                    ),
                    Field::BidVolume(i) => assert_eq!(
                        a.as_any().downcast_ref::<Int32Array>().unwrap().value(row),
                        t.bid_volume[i],
                        "{what}"
                    ),
                    Field::AskVolume(i) => assert_eq!(
                        a.as_any().downcast_ref::<Int32Array>().unwrap().value(row),
                        t.ask_volume[i],
                        "{what}"
                    ),
                    Field::Sequence => {}
                    Field::InstrumentIndex => assert_eq!(
                        a.as_any().downcast_ref::<UInt32Array>().unwrap().value(row),
                        t.instrument_index,
                        "{what}"
                    ),
                    Field::Quality => {
                        assert_eq!(a.as_any().downcast_ref::<UInt32Array>().unwrap().value(row), t.quality, "{what}")
                    }
                    Field::ExchangeTimeNs | Field::ReceiveNs | Field::PublishNs => {
                        let ns = match field {
                            Field::ExchangeTimeNs => t.exchange_time_ns,
                            Field::ReceiveNs => t.receive_ns,
                            _ => t.publish_ns,
                        };
                        let ts: &TimestampNanosecondArray = a.as_any().downcast_ref().unwrap();
                        if ns == 0 {
                            assert!(ts.is_null(row), "{what}: 0 (unknown) must be null");
                        } else {
                            assert_eq!(ts.value(row), ns, "{what}");
                        }
                    }
                }
            }
        }
    }
    rows
}

#[test]
fn parquet_export_has_the_csv_columns_with_real_types_and_the_journal_values() {
    let dir = tempfile::tempdir().unwrap();
    let (journals, out) = (dir.path().join("journal"), dir.path().join("out"));
    fs::create_dir(&out).unwrap();
    // Day 1 is longer than a row group, so the file has two; day 2 is short.
    let per_day = [ROW_GROUP_ROWS as u64 + 20_000, 1_000];
    let mut ticks = make_journals(&journals, "pq", &[20250512], per_day[0]);
    let base = ticks.last().unwrap().sequence;
    let options =
        WriterOptions { block_records: 4096, max_block_age: std::time::Duration::MAX, fsync: FsyncPolicy::Never };
    let (mut w, _) = JournalWriter::open(&journals, "pq", 20250513, base, options).unwrap();
    for i in 0..per_day[1] {
        let t = tick(base + 1 + i, 20250513, i);
        w.append_tick(&t).unwrap();
        ticks.push(t);
    }
    w.finish().unwrap();

    let run = qilinctl(&["export", "--parquet", "--journal-dir", s(&journals), "--feed", "pq", "-o", s(&out)]);
    assert!(run.status.success(), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(&format!("exported {} ticks from 2 journal file(s)", ticks.len())), "{stderr}");
    assert!(stderr.contains("1 gap record(s) covering 3 sequences"), "{stderr}");
    let mut names: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["pq-20250512.parquet", "pq-20250513.parquet"], "one file per day, no temporary left");

    let csv = dir.path().join("all.csv");
    let run = qilinctl(&["export", "--csv", "--journal-dir", s(&journals), "--feed", "pq", "-o", s(&csv)]);
    assert!(run.status.success(), "{}", text(&run));
    let csv_rows = fs::read_to_string(&csv).unwrap().lines().count() - 1;
    assert_eq!(csv_rows, ticks.len(), "the CSV export of the same journal has the same ticks");

    let by_seq: BTreeMap<u64, TickRecord> = ticks.iter().map(|t| (t.sequence, *t)).collect();
    let mut seen = 0;
    for (name, rows, groups) in [("pq-20250512.parquet", per_day[0], 2), ("pq-20250513.parquet", per_day[1], 1)] {
        let (batches, meta) = read_parquet(&out.join(name));
        // Schema: the CSV's columns, in order, with their types.
        let schema = batches[0].schema();
        let got: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
        let want: Vec<(&str, DataType)> = COLUMNS.iter().map(|(n, f)| (*n, expected_type(*f))).collect();
        assert_eq!(got.len(), want.len());
        for ((gn, gt), (wn, wt)) in got.iter().zip(&want) {
            assert_eq!((*gn, *gt), (*wn, wt), "{name}: column type");
        }
        assert_eq!(meta.file_metadata().num_rows() as u64, rows, "{name}: rows");
        assert_eq!(batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(), rows, "{name}: rows read");
        assert_eq!(meta.num_row_groups(), groups, "{name}: row groups of {ROW_GROUP_ROWS} ticks");

        // Key-value metadata: the quality bit names, generated from the code table.
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        let bits = kv.iter().find(|k| k.key == "qilin.quality_bits").and_then(|k| k.value.clone()).unwrap();
        for (bit, bit_name) in quality::NAMES {
            assert!(bits.contains(&format!("{{\"bit\":{bit},\"name\":\"{bit_name}\"}}")), "{bits}");
        }
        let day = kv.iter().find(|k| k.key == "qilin.trading_day").and_then(|k| k.value.clone()).unwrap();
        assert_eq!(name, format!("pq-{day}.parquet"));

        // Values, and the order: each row group a run of consecutive sequences, sorted by
        // (InstrumentID, sequence) within.
        let rows_in_order = check_values(&batches, &by_seq);
        seen += rows_in_order.len();
        let mut start = 0;
        let mut prev_max = 0u64;
        for g in 0..meta.num_row_groups() {
            let n = meta.row_group(g).num_rows() as usize;
            let group = &rows_in_order[start..start + n];
            assert!(
                group.windows(2).all(|w| w[0] < w[1]),
                "{name}: row group {g} not sorted by (InstrumentID, sequence)"
            );
            let (min, max) = (group.iter().map(|r| r.1).min().unwrap(), group.iter().map(|r| r.1).max().unwrap());
            assert!(min > prev_max, "{name}: row group {g} overlaps the one before");
            prev_max = max;
            assert_eq!(
                meta.row_group(g).sorting_columns().map(|c| c.len()),
                Some(2),
                "{name}: sorting columns declared"
            );
            start += n;
        }
        // Statistics and the page index are there for time pruning.
        let reader = SerializedFileReader::new(fs::File::open(out.join(name)).unwrap()).unwrap();
        let rg = reader.metadata().row_group(0);
        let ts = rg.columns().iter().find(|c| c.column_path().string() == "exchange_time_ns").unwrap();
        assert!(ts.statistics().is_some_and(|s| s.min_bytes_opt().is_some()), "{name}: exchange_time_ns statistics");
        assert!(matches!(ts.compression(), parquet::basic::Compression::ZSTD(_)), "{name}: {:?}", ts.compression());
        assert!(ts.column_index_offset().is_some(), "{name}: page index written");
    }
    assert_eq!(seen, ticks.len());
}

#[test]
fn one_day_to_a_file_and_the_instrument_selection() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journal");
    let ticks = make_journals(&journals, "one", &[20250512], 500);
    let out = dir.path().join("rb.parquet");
    let run = qilinctl(&[
        "export",
        "--parquet",
        "--file",
        s(&journals.join("one-20250512.qj")),
        "--instrument",
        "rb2605",
        "--instrument",
        "SR609",
        "-o",
        s(&out),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let (batches, _) = read_parquet(&out);
    let want: BTreeMap<u64, TickRecord> = ticks
        .iter()
        .filter(|t| matches!(t.instrument_id_str(), Some("rb2605" | "SR609")))
        .map(|t| (t.sequence, *t))
        .collect();
    let rows = check_values(&batches, &want);
    assert_eq!(rows.len(), want.len());
    assert!(rows.iter().all(|(id, _)| id == "rb2605" || id == "SR609"));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains(&format!("{} of other instruments left out", 500 - want.len()))
    );
}

fn refused(args: &[&str]) -> String {
    let run = qilinctl(args);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn refusals_name_what_is_wrong_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journal");
    make_journals(&journals, "bad", &[20250512, 20250513], 10);
    let j = s(&journals);

    // Several days into one file.
    let file = dir.path().join("both.parquet");
    let err = refused(&["export", "--parquet", "--journal-dir", j, "--feed", "bad", "-o", s(&file)]);
    assert!(err.contains("2 journal files") && err.contains("not a directory") && err.contains(s(&file)), "{err}");
    assert!(!file.exists());

    // No journal.
    let err = refused(&["export", "--parquet", "--journal-dir", j, "--feed", "nosuch", "-o", s(dir.path())]);
    assert!(err.contains("no journal of feed \"nosuch\"") && err.contains(j), "{err}");
    let missing = dir.path().join("missing.qj");
    let err = refused(&["export", "--parquet", "--file", s(&missing), "-o", s(&file)]);
    assert!(err.contains(s(&missing)), "{err}");

    // An output that cannot be created (its directory does not exist).
    let unwritable: PathBuf = dir.path().join("no-such-dir").join("x.parquet");
    let err = refused(&[
        "export",
        "--parquet",
        "--journal-dir",
        j,
        "--feed",
        "bad",
        "--day",
        "20250512",
        "-o",
        s(&unwritable),
    ]);
    assert!(err.contains("creating") && err.contains(s(&unwritable)), "{err}");

    // No output at all: Parquet is not written to stdout.
    let err = refused(&["export", "--parquet", "--journal-dir", j, "--feed", "bad", "--day", "20250512"]);
    assert!(err.contains("needs --output"), "{err}");

    // A damaged journal: the file is named, no Parquet file is left behind.
    let damaged = journals.join("bad-20250513.qj");
    let mut bytes = fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&damaged, bytes).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let err =
        refused(&["export", "--parquet", "--journal-dir", j, "--feed", "bad", "--day", "20250513", "-o", s(&out)]);
    assert!(err.contains(s(&damaged)), "{err}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "no file or temporary left");
}

//! `qilinctl export --parquet`: one trading day of the journal becomes one Parquet file (format in
//! docs/PARQUET.md), written with the apache arrow-rs `parquet` crate.
//!
//! - The columns are the CSV export's ([`COLUMNS`], docs/CSV.md), same names and order, with real
//!   types: doubles `float64` (NaN, an absent price, is null); `Volume` `int64`; book volumes
//!   `int32`; `TradingDay`/`ActionDay` `date32`; `UpdateTime` `time32[ms]` (whole seconds) and `UpdateMillisec`
//!   `uint16`; the three times `timestamp[ns, tz=Asia/Shanghai]` (0, "not known", is null);
//!   `InstrumentID`, `ExchangeID`, `source` dictionary-encoded strings (code 0 null); `sequence`
//!   `uint64`, `instrument_index` and `quality` `uint32` (the quality bitmask as the record has
//!   it; the bit names are in the file's key-value metadata, from `qilin_shm::quality::NAMES`).
//! - Row groups: [`ROW_GROUP_ROWS`] consecutive journal ticks each (so a row group covers a short
//!   stretch of sequence and exchange time, and its statistics prune time ranges), and **within a
//!   row group the rows are sorted by (`InstrumentID`, `sequence`)** (declared as the file's
//!   sorting columns), so an instrument is one contiguous run: with pages of at most
//!   [`PAGE_ROWS`] rows and the page index, a reader skips the pages of other instruments.
//! - zstd (level [`ZSTD_LEVEL`]) compression; sequence, times and Volume delta-encoded, Turnover and
//!   AveragePrice plain (no dictionary: their values are nearly unique).

use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, Time32MillisecondArray,
    TimestampNanosecondArray, UInt16Array, UInt32Array, UInt64Array,
    builder::Date32Builder,
    types::{Int16Type, Int32Type},
};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::{
        metadata::{KeyValue, SortingColumn},
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};
use qilin_journal::{Entry, JournalReader};
use qilin_market::Date;
use qilin_shm::{Exchange, Source, TickRecord, layout::INSTRUMENT_ID_LEN, quality};

use crate::{
    journal_cli::{CliError, ExportReport, JournalSel, for_each_entry},
    tick_csv::{COLUMNS, F64_FIELDS, Field},
};

type Result<T> = std::result::Result<T, CliError>;

/// Rows per row group: 128 Ki consecutive journal ticks (≈ 6 s of a whole-market session at
/// 20 k ticks/s, hours of one instrument), about 48 MiB of records in memory while it is built.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per data page at most, so the page index of `InstrumentID` (sorted within a row group)
/// and of the times is fine-grained enough to skip pages.
pub const PAGE_ROWS: usize = 8 * 1024;
/// zstd level: 1, the fastest, already far smaller than snappy on tick data and fast enough to
/// keep the export above 1 M ticks/s (BENCHMARKS.md, "Parquet export").
pub const ZSTD_LEVEL: i32 = 1;
/// Time zone of the three timestamp columns (China Standard Time, the exchanges' clock).
pub const TIME_ZONE: &str = "Asia/Shanghai";

/// One Parquet file written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetDay {
    /// Trading day of the journal file.
    pub trading_day: u32,
    /// The Parquet file.
    pub path: PathBuf,
    /// Rows.
    pub ticks: u64,
    /// Row groups.
    pub row_groups: usize,
}

/// What `export --parquet` did: the totals (as `export --csv` counts them) and the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParquetReport {
    /// Totals over every journal file.
    pub totals: ExportReport,
    /// One per journal file (trading day), in order.
    pub days: Vec<ParquetDay>,
}

/// The Arrow schema of the files: [`COLUMNS`] with their types (docs/PARQUET.md).
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some(TIME_ZONE.into()));
    let dict16 = DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8));
    let fields: Vec<ArrowField> = COLUMNS
        .iter()
        .map(|(name, field)| {
            let (data_type, nullable) = match field {
                Field::TradingDay | Field::ActionDay => (DataType::Date32, true),
                Field::InstrumentId => {
                    (DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false)
                }
                Field::ExchangeId | Field::Source => (dict16.clone(), true),
                Field::F64(_) => (DataType::Float64, true),
                Field::Volume => (DataType::Int64, false),
                Field::UpdateTime => (DataType::Time32(TimeUnit::Millisecond), false),
                Field::UpdateMillisec => (DataType::UInt16, false),
                Field::BidVolume(_) | Field::AskVolume(_) => (DataType::Int32, false),
                Field::Sequence => (DataType::UInt64, false),
                Field::InstrumentIndex | Field::Quality => (DataType::UInt32, false),
                Field::ExchangeTimeNs | Field::ReceiveNs | Field::PublishNs => (ts.clone(), true),
            };
            ArrowField::new(*name, data_type, nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn column_index(name: &str) -> i32 {
    COLUMNS.iter().position(|(n, _)| *n == name).expect("a column of COLUMNS") as i32
}

/// The writer's properties: zstd, row groups and pages as documented, page statistics (the page
/// index), sorting columns, delta encoding for the sequence and times, and the key-value metadata.
pub fn writer_properties(feed: &str, trading_day: u32, journal: &Path) -> WriterProperties {
    let bits: Vec<serde_json::Value> =
        quality::NAMES.iter().map(|(bit, name)| serde_json::json!({"bit": bit, "name": name})).collect();
    let metadata = vec![
        KeyValue::new("qilin.format".into(), "qilin-ticks-parquet 1 (docs/PARQUET.md)".to_string()),
        KeyValue::new("qilin.feed".into(), feed.to_string()),
        KeyValue::new("qilin.trading_day".into(), trading_day.to_string()),
        KeyValue::new("qilin.journal".into(), journal.display().to_string()),
        KeyValue::new("qilin.quality_bits".into(), serde_json::Value::Array(bits).to_string()),
        KeyValue::new(
            "qilin.row_order".into(),
            format!(
                "row groups of {ROW_GROUP_ROWS} consecutive journal ticks, each sorted by (InstrumentID, sequence)"
            ),
        ),
    ];
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![
            SortingColumn { column_idx: column_index("InstrumentID"), descending: false, nulls_first: false },
            SortingColumn { column_idx: column_index("sequence"), descending: false, nulls_first: false },
        ]))
        .set_created_by(format!("qilinctl {} (parquet-rs)", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(metadata));
    // Unique (or nearly) per tick: a dictionary costs a hash per value and saves nothing.
    // Increasing integers (and cumulative Volume, within an instrument's run) delta-encode well.
    for name in ["sequence", "exchange_time_ns", "receive_ns", "publish_ns", "Volume"] {
        let path = ColumnPath::from(name);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    for name in ["Turnover", "AveragePrice"] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
    }
    props.build()
}

/// The Parquet file name of a trading day of `feed`: `<feed>-<YYYYMMDD>.parquet`, as the journal's.
pub fn file_name(feed: &str, trading_day: u32) -> String {
    format!("{feed}-{trading_day}.parquet")
}

/// Exports the ticks of `sel` (only `instruments`, if any) as Parquet, one file per journal file
/// (trading day). `output` an existing directory: `<output>/<feed>-<YYYYMMDD>.parquet` for each
/// day; otherwise the selection must be one day and `output` is that file. Each file is written
/// under a temporary name and renamed when complete; an error stops the export (files of earlier
/// days stay, complete).
pub fn export_parquet(sel: &JournalSel, instruments: &[String], output: &Path) -> Result<ParquetReport> {
    let files = sel.files()?;
    let to_dir = output.is_dir();
    if !to_dir && files.len() > 1 {
        return Err(CliError(format!(
            "{} journal files (trading days) selected and --output {} is not a directory: a Parquet file holds \
             one trading day; give an existing directory (files <feed>-<YYYYMMDD>.parquet) or one --day",
            files.len(),
            output.display()
        )));
    }
    let mut report = ParquetReport::default();
    for path in &files {
        let mut reader = sel.open(path)?;
        let (feed, day) = (reader.header().feed.clone(), reader.header().trading_day);
        let target = if to_dir { output.join(file_name(&feed, day)) } else { output.to_path_buf() };
        let tmp = tmp_name(&target);
        let written = (|| {
            let file = fs::File::create(&tmp).map_err(|e| CliError(format!("creating {}: {e}", tmp.display())))?;
            let props = writer_properties(&feed, day, path);
            let (r, row_groups) = write_day(&mut reader, path, instruments, &file, props)
                .map_err(|CliError(e)| CliError(format!("writing {}: {e}", tmp.display())))?;
            file.sync_all().map_err(|e| CliError(format!("syncing {}: {e}", tmp.display())))?;
            fs::rename(&tmp, &target)
                .map_err(|e| CliError(format!("renaming {} to {}: {e}", tmp.display(), target.display())))?;
            Ok((r, row_groups))
        })();
        let (r, row_groups) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        report.days.push(ParquetDay { trading_day: day, path: target, ticks: r.ticks, row_groups });
        report.totals.files += 1;
        report.totals.ticks += r.ticks;
        report.totals.filtered += r.filtered;
        report.totals.gaps += r.gaps;
        report.totals.gap_sequences += r.gap_sequences;
        report.totals.notes.extend(r.notes);
    }
    Ok(report)
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes the ticks of one journal file (only `instruments`, if any) as one Parquet file to `out`;
/// returns the counts and the number of row groups. `journal` names the file in errors.
///
/// Two threads: this one reads the journal and builds each row group's batch, a second one
/// encodes and compresses the previous batch meanwhile (a channel of one batch between them).
pub fn write_day<W: Write + Send>(
    reader: &mut JournalReader,
    journal: &Path,
    instruments: &[String],
    out: W,
    props: WriterProperties,
) -> Result<(ExportReport, usize)> {
    let schema = schema();
    let mut report = ExportReport { files: 1, ..ExportReport::default() };
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
    let encoder_schema = schema.clone();
    std::thread::scope(|scope| {
        let encoder = scope.spawn(move || -> Result<usize> {
            let encoding = |e: parquet::errors::ParquetError| CliError(format!("encoding: {e}"));
            let mut writer = ArrowWriter::try_new(out, encoder_schema, Some(props)).map_err(encoding)?;
            let mut row_groups = 0;
            for batch in rx {
                writer.write(&batch).map_err(encoding)?;
                writer.flush().map_err(encoding)?;
                row_groups += 1;
            }
            writer.close().map_err(encoding)?;
            Ok(row_groups)
        });
        let read = (|| -> Result<Option<String>> {
            let mut group = RowGroup::new(schema);
            // A send fails only when the encoder has stopped on an error, which join reports.
            let stopped = || CliError("the encoder stopped".into());
            let note = for_each_entry(reader, |entry| {
                match entry {
                    Entry::Tick(t) => {
                        let wanted = instruments.is_empty()
                            || t.instrument_id_str().is_some_and(|id| instruments.iter().any(|i| i == id));
                        if !wanted {
                            report.filtered += 1;
                            return Ok(());
                        }
                        report.ticks += 1;
                        group.push(&t);
                        if group.len() == ROW_GROUP_ROWS {
                            tx.send(group.take_batch()?).map_err(|_| stopped())?;
                        }
                    }
                    Entry::Gap(g) => {
                        report.gaps += 1;
                        report.gap_sequences += g.count();
                    }
                }
                Ok(())
            })
            .map_err(|CliError(e)| CliError(format!("reading {}: {e}", journal.display())))?;
            if group.len() > 0 {
                tx.send(group.take_batch()?).map_err(|_| stopped())?;
            }
            Ok(note)
        })();
        drop(tx);
        let encoded = encoder.join().unwrap_or_else(|_| Err(CliError("the encoder thread panicked".into())));
        // The encoder's error is the cause when both failed.
        let row_groups = encoded?;
        report.notes.extend(read?);
        Ok((report, row_groups))
    })
}

/// The ticks of one row group being collected, already as columns (in journal order), and what
/// building its batch reuses. Each record is read once, sequentially, as it comes from the journal;
/// the sort then permutes columns of a few hundred KiB each rather than 376-byte records.
struct RowGroup {
    schema: SchemaRef,
    cols: Cols,
    order: Order,
    ids: IdDict,
    days: DayCache,
}

/// The row group's fields, one vector per column, in journal order.
#[derive(Default)]
struct Cols {
    slot: Vec<u32>,
    f64s: [Vec<f64>; F64_COUNT],
    bid_volume: [Vec<i32>; 5],
    ask_volume: [Vec<i32>; 5],
    trading_day: Vec<u32>,
    action_day: Vec<u32>,
    exchange: Vec<u8>,
    source: Vec<u8>,
    volume: Vec<i64>,
    update_time: Vec<i32>,
    millis: Vec<u16>,
    sequence: Vec<u64>,
    index: Vec<u32>,
    quality: Vec<u32>,
    exchange_ns: Vec<i64>,
    receive_ns: Vec<i64>,
    publish_ns: Vec<i64>,
}

const F64_COUNT: usize = F64_FIELDS.len();

/// The record's doubles in [`F64_FIELDS`] order (a unit test holds the two together), read
/// directly rather than through the accessors, which take the record mutably.
fn doubles(t: &TickRecord) -> [f64; F64_COUNT] {
    let (b, a) = (&t.bid_price, &t.ask_price);
    [
        t.last_price,
        t.pre_settlement_price,
        t.pre_close_price,
        t.pre_open_interest,
        t.open_price,
        t.highest_price,
        t.lowest_price,
        t.turnover,
        t.open_interest,
        t.close_price,
        t.settlement_price,
        t.upper_limit_price,
        t.lower_limit_price,
        t.pre_delta,
        t.curr_delta,
        b[0],
        a[0],
        b[1],
        a[1],
        b[2],
        a[2],
        b[3],
        a[3],
        b[4],
        a[4],
        t.average_price,
        t.banding_upper_price,
        t.banding_lower_price,
    ]
}

fn gather<T: Copy>(values: &[T], perm: &[u32]) -> Vec<T> {
    perm.iter().map(|&i| values[i as usize]).collect()
}

impl RowGroup {
    fn new(schema: SchemaRef) -> RowGroup {
        RowGroup {
            schema,
            cols: Cols::default(),
            order: Order::default(),
            ids: IdDict::default(),
            days: DayCache::default(),
        }
    }

    fn len(&self) -> usize {
        self.cols.sequence.len()
    }

    fn push(&mut self, t: &TickRecord) {
        let c = &mut self.cols;
        c.slot.push(self.order.slot(t));
        for (column, x) in c.f64s.iter_mut().zip(doubles(t)) {
            column.push(x);
        }
        for level in 0..5 {
            c.bid_volume[level].push(t.bid_volume[level]);
            c.ask_volume[level].push(t.ask_volume[level]);
        }
        c.trading_day.push(t.trading_day);
        c.action_day.push(t.action_day);
        c.exchange.push(t.exchange);
        c.source.push(t.source);
        c.volume.push(t.volume);
        // Whole seconds, as CTP's UpdateTime (Parquet has no time of seconds).
        c.update_time.push((t.update_time_ms / 1000 * 1000) as i32);
        c.millis.push((t.update_time_ms % 1000) as u16);
        c.sequence.push(t.sequence);
        c.index.push(t.instrument_index);
        c.quality.push(t.quality);
        c.exchange_ns.push(t.exchange_time_ns);
        c.receive_ns.push(t.receive_ns);
        c.publish_ns.push(t.publish_ns);
    }

    /// The collected ticks, sorted by (InstrumentID, sequence), as a batch; empties the group.
    fn take_batch(&mut self) -> Result<RecordBatch> {
        let perm = self.order.finish(&self.cols.slot);
        let key_of_slot: Vec<i32> = self.order.first_seen.iter().map(|id| self.ids.key(id)).collect();
        let c = &self.cols;
        let id_keys: Vec<i32> = perm.iter().map(|&i| key_of_slot[c.slot[i as usize] as usize]).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
        for (_, field) in COLUMNS {
            let array: ArrayRef = match field {
                Field::TradingDay => Arc::new(self.days.column(&gather(&c.trading_day, &perm))),
                Field::ActionDay => Arc::new(self.days.column(&gather(&c.action_day, &perm))),
                Field::InstrumentId => Arc::new(self.ids.column(id_keys.clone())?),
                Field::ExchangeId => Arc::new(code_column(&gather(&c.exchange, &perm), |code| {
                    Exchange::from_code(code).map(Exchange::as_str)
                })?),
                Field::Source => Arc::new(code_column(&gather(&c.source, &perm), |code| {
                    Source::from_code(code).map(Source::as_str)
                })?),
                Field::F64(i) => {
                    let values = gather(&c.f64s[i], &perm);
                    let nulls = values.iter().any(|x| x.is_nan()).then(|| values.iter().map(|x| !x.is_nan()).collect());
                    Arc::new(Float64Array::new(values.into(), nulls))
                }
                Field::Volume => Arc::new(Int64Array::from(gather(&c.volume, &perm))),
                Field::UpdateTime => Arc::new(Time32MillisecondArray::from(gather(&c.update_time, &perm))),
                Field::UpdateMillisec => Arc::new(UInt16Array::from(gather(&c.millis, &perm))),
                Field::BidVolume(i) => Arc::new(Int32Array::from(gather(&c.bid_volume[i], &perm))),
                Field::AskVolume(i) => Arc::new(Int32Array::from(gather(&c.ask_volume[i], &perm))),
                Field::Sequence => Arc::new(UInt64Array::from(gather(&c.sequence, &perm))),
                Field::InstrumentIndex => Arc::new(UInt32Array::from(gather(&c.index, &perm))),
                Field::Quality => Arc::new(UInt32Array::from(gather(&c.quality, &perm))),
                Field::ExchangeTimeNs => Arc::new(timestamps(gather(&c.exchange_ns, &perm))),
                Field::ReceiveNs => Arc::new(timestamps(gather(&c.receive_ns, &perm))),
                Field::PublishNs => Arc::new(timestamps(gather(&c.publish_ns, &perm))),
            };
            columns.push(array);
        }
        self.clear();
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| CliError(format!("building a batch: {e}")))
    }

    fn clear(&mut self) {
        let c = &mut self.cols;
        c.slot.clear();
        c.f64s.iter_mut().for_each(Vec::clear);
        c.bid_volume.iter_mut().chain(c.ask_volume.iter_mut()).for_each(Vec::clear);
        for v in [&mut c.trading_day, &mut c.action_day, &mut c.index, &mut c.quality] {
            v.clear();
        }
        c.exchange.clear();
        c.source.clear();
        c.update_time.clear();
        c.millis.clear();
        c.sequence.clear();
        for v in [&mut c.volume, &mut c.exchange_ns, &mut c.receive_ns, &mut c.publish_ns] {
            v.clear();
        }
        self.order.clear();
    }
}

/// The order of a row group: by InstrumentID, then journal (sequence) order. Each tick gets the
/// slot of its id as it comes ([`Order::slot`]); at the end the distinct ids (a few hundred at
/// most) are ranked in string order and a counting sort by rank, stable, orders the ticks in
/// linear time.
#[derive(Default)]
struct Order {
    /// The row group's distinct ids, by slot (order of first appearance).
    first_seen: Vec<[u8; INSTRUMENT_ID_LEN]>,
    slots: HashMap<[u8; INSTRUMENT_ID_LEN], u32>,
    /// instrument_index → (id, slot) of the last tick seen with it: most ticks skip the hash.
    by_index: Vec<Option<([u8; INSTRUMENT_ID_LEN], u32)>>,
}

impl Order {
    fn slot(&mut self, t: &TickRecord) -> u32 {
        if let Some(Some((id, slot))) = self.by_index.get(t.instrument_index as usize)
            && *id == t.instrument_id
        {
            return *slot;
        }
        let next = self.first_seen.len() as u32;
        let slot = *self.slots.entry(t.instrument_id).or_insert(next);
        if slot == next {
            self.first_seen.push(t.instrument_id);
        }
        let i = t.instrument_index as usize;
        if i < 1 << 16 {
            if self.by_index.len() <= i {
                self.by_index.resize(i + 1, None);
            }
            self.by_index[i] = Some((t.instrument_id, slot));
        }
        slot
    }

    /// The permutation (indices into the journal-order columns) that sorts the row group.
    fn finish(&self, slot_of_tick: &[u32]) -> Vec<u32> {
        // Rank the distinct ids in string order (NUL-padded ASCII: byte order is string order).
        let ids = &self.first_seen;
        let mut by_rank: Vec<u32> = (0..ids.len() as u32).collect();
        by_rank.sort_unstable_by(|&a, &b| ids[a as usize].cmp(&ids[b as usize]));
        let mut rank_of_slot = vec![0u32; ids.len()];
        for (rank, &slot) in by_rank.iter().enumerate() {
            rank_of_slot[slot as usize] = rank as u32;
        }
        // Counting sort by rank, stable.
        let mut next = vec![0u32; ids.len() + 1];
        for &slot in slot_of_tick {
            next[rank_of_slot[slot as usize] as usize + 1] += 1;
        }
        for r in 1..next.len() {
            next[r] += next[r - 1];
        }
        let mut perm = vec![0u32; slot_of_tick.len()];
        for (i, &slot) in slot_of_tick.iter().enumerate() {
            let at = &mut next[rank_of_slot[slot as usize] as usize];
            perm[*at as usize] = i as u32;
            *at += 1;
        }
        perm
    }

    fn clear(&mut self) {
        self.first_seen.clear();
        self.slots.clear();
        self.by_index.clear();
    }
}

/// UTC nanoseconds, 0 (not known: `publish_ns` of an imported file, for one) as null.
fn timestamps(values: Vec<i64>) -> TimestampNanosecondArray {
    let nulls = values.contains(&0).then(|| values.iter().map(|&v| v != 0).collect());
    TimestampNanosecondArray::new(values.into(), nulls).with_timezone(TIME_ZONE)
}

/// A code column (exchange, source) as a dictionary of names: code 0 null, a code without a name
/// in decimal (as the CSV writes them).
fn code_column(codes: &[u8], name: impl Fn(u8) -> Option<&'static str>) -> Result<DictionaryArray<Int16Type>> {
    let mut key_of = [-1i16; 256];
    let mut values: Vec<String> = Vec::new();
    let keys: arrow_array::Int16Array = codes
        .iter()
        .map(|&code| {
            if code == 0 {
                return None;
            }
            if key_of[code as usize] < 0 {
                key_of[code as usize] = values.len() as i16;
                values.push(name(code).map_or_else(|| code.to_string(), str::to_string));
            }
            Some(key_of[code as usize])
        })
        .collect();
    DictionaryArray::try_new(keys, Arc::new(StringArray::from(values)))
        .map_err(|e| CliError(format!("building a code column: {e}")))
}

/// InstrumentID → dictionary key, for the whole file (keys stay the same across row groups).
#[derive(Default)]
struct IdDict {
    keys: HashMap<[u8; INSTRUMENT_ID_LEN], i32>,
    values: Vec<String>,
}

impl IdDict {
    fn key(&mut self, id: &[u8; INSTRUMENT_ID_LEN]) -> i32 {
        let next = self.values.len() as i32;
        let key = *self.keys.entry(*id).or_insert(next);
        if key == next {
            let end = id.iter().position(|&b| b == 0).unwrap_or(INSTRUMENT_ID_LEN);
            self.values.push(String::from_utf8_lossy(&id[..end]).into_owned());
        }
        key
    }

    fn column(&self, keys: Vec<i32>) -> Result<DictionaryArray<Int32Type>> {
        DictionaryArray::try_new(Int32Array::from(keys), Arc::new(StringArray::from(self.values.clone())))
            .map_err(|e| CliError(format!("building the InstrumentID column: {e}")))
    }
}

/// YYYYMMDD → days since 1970-01-01, remembering the last day seen (a column has one or two).
#[derive(Default)]
struct DayCache {
    last: Option<(u32, Option<i32>)>,
}

impl DayCache {
    /// 0 or a number that is not a date: null.
    fn column(&mut self, ymd: &[u32]) -> arrow_array::Date32Array {
        let mut b = Date32Builder::with_capacity(ymd.len());
        for &d in ymd {
            let days = match self.last {
                Some((day, days)) if day == d => days,
                _ => {
                    let days = Date::from_ymd(d).map(|date| date.days as i32);
                    self.last = Some((d, days));
                    days
                }
            };
            b.append_option(days);
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_are_in_the_order_of_the_csv_accessors() {
        for (i, (name, access)) in F64_FIELDS.iter().enumerate() {
            let mut t = TickRecord::ZERO;
            *access(&mut t) = 1.5 + i as f64;
            let d = doubles(&t);
            assert_eq!(d[i], 1.5 + i as f64, "{name}");
            assert_eq!(d.iter().filter(|x| **x != 0.0).count(), 1, "{name}");
        }
    }

    #[test]
    fn the_order_is_by_id_then_arrival() {
        let mut order = Order::default();
        let ids = ["m2609", "rb2605", "IF2606", "m2609", "ag2606", "rb2605", "m2609"];
        let slots: Vec<u32> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut t = TickRecord::ZERO;
                t.instrument_id = qilin_shm::layout::fixed_id(id).unwrap();
                t.instrument_index = (i % 2) as u32; // indices that do not follow the ids
                order.slot(&t)
            })
            .collect();
        let perm = order.finish(&slots);
        let sorted: Vec<(&str, u32)> = perm.iter().map(|&i| (ids[i as usize], i)).collect();
        assert_eq!(
            sorted,
            [("IF2606", 2), ("ag2606", 4), ("m2609", 0), ("m2609", 3), ("m2609", 6), ("rb2605", 1), ("rb2605", 5)]
        );
    }
}

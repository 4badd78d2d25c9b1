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
//! - zstd (level [`ZSTD_LEVEL`]) compression; sequence and times delta-encoded (no dictionary).

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
    for name in ["sequence", "exchange_time_ns", "receive_ns", "publish_ns"] {
        let path = ColumnPath::from(name);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
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
pub fn write_day<W: Write + Send>(
    reader: &mut JournalReader,
    journal: &Path,
    instruments: &[String],
    out: W,
    props: WriterProperties,
) -> Result<(ExportReport, usize)> {
    let schema = schema();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(props))
        .map_err(|e| CliError(format!("starting the Parquet writer: {e}")))?;
    let mut report = ExportReport { files: 1, ..ExportReport::default() };
    let mut group = RowGroup::new(schema);
    let mut row_groups = 0;
    let mut write = |group: &mut RowGroup, writer: &mut ArrowWriter<W>| -> Result<()> {
        let batch = group.take_batch()?;
        writer.write(&batch).map_err(|e| CliError(format!("encoding: {e}")))?;
        writer.flush().map_err(|e| CliError(format!("encoding: {e}")))?;
        row_groups += 1;
        Ok(())
    };
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
                group.ticks.push(t);
                if group.ticks.len() == ROW_GROUP_ROWS {
                    write(&mut group, &mut writer)?;
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
    report.notes.extend(note);
    if !group.ticks.is_empty() {
        write(&mut group, &mut writer)?;
    }
    writer.close().map_err(|e| CliError(format!("finishing: {e}")))?;
    Ok((report, row_groups))
}

/// The ticks of one row group being collected, and what building its batch reuses.
struct RowGroup {
    schema: SchemaRef,
    ticks: Vec<TickRecord>,
    order: Order,
    ids: IdDict,
    days: DayCache,
}

impl RowGroup {
    fn new(schema: SchemaRef) -> RowGroup {
        RowGroup {
            schema,
            ticks: Vec::with_capacity(ROW_GROUP_ROWS),
            order: Order::default(),
            ids: IdDict::default(),
            days: DayCache::default(),
        }
    }

    /// The collected ticks, sorted by (InstrumentID, sequence), as a batch; empties the group.
    /// One pass over the records in that order copies every field into its column (each record's
    /// cache lines are read once), then the columns become Arrow arrays.
    fn take_batch(&mut self) -> Result<RecordBatch> {
        let n = self.ticks.len();
        self.order.sort(&self.ticks);
        let file_keys: Vec<i32> = self.order.distinct.iter().map(|id| self.ids.key(id)).collect();

        let mut f64s: Vec<Vec<f64>> = (0..F64_FIELDS.len()).map(|_| Vec::with_capacity(n)).collect();
        let mut bid_volumes: [Vec<i32>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
        let mut ask_volumes: [Vec<i32>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
        let mut id_keys = Vec::with_capacity(n);
        let (mut trading_day, mut action_day) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut exchange, mut source) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut volume, mut update_time, mut millis) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut sequence, mut index, mut flags) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut exchange_ns, mut receive_ns, mut publish_ns) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for &(rank, i) in &self.order.sorted {
            let t = &mut self.ticks[i as usize];
            id_keys.push(file_keys[rank as usize]);
            for (column, (_, access)) in f64s.iter_mut().zip(F64_FIELDS) {
                column.push(*access(t));
            }
            for level in 0..5 {
                bid_volumes[level].push(t.bid_volume[level]);
                ask_volumes[level].push(t.ask_volume[level]);
            }
            trading_day.push(t.trading_day);
            action_day.push(t.action_day);
            exchange.push(t.exchange);
            source.push(t.source);
            volume.push(t.volume);
            // Whole seconds, as CTP's UpdateTime (Parquet has no time of seconds).
            update_time.push((t.update_time_ms / 1000 * 1000) as i32);
            millis.push((t.update_time_ms % 1000) as u16);
            sequence.push(t.sequence);
            index.push(t.instrument_index);
            flags.push(t.quality);
            exchange_ns.push(t.exchange_time_ns);
            receive_ns.push(t.receive_ns);
            publish_ns.push(t.publish_ns);
        }
        self.ticks.clear();

        let mut f64s = f64s.into_iter().map(Some).collect::<Vec<_>>();
        let (mut bid_volumes, mut ask_volumes) = (bid_volumes.map(Some), ask_volumes.map(Some));
        let mut id_keys = Some(id_keys);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
        for (_, field) in COLUMNS {
            let array: ArrayRef = match field {
                Field::TradingDay => Arc::new(self.days.column(&trading_day)),
                Field::ActionDay => Arc::new(self.days.column(&action_day)),
                Field::InstrumentId => Arc::new(self.ids.column(id_keys.take().expect("one InstrumentID column"))?),
                Field::ExchangeId => {
                    Arc::new(code_column(&exchange, |c| Exchange::from_code(c).map(Exchange::as_str))?)
                }
                Field::Source => Arc::new(code_column(&source, |c| Source::from_code(c).map(Source::as_str))?),
                Field::F64(i) => {
                    let values = f64s[i].take().expect("one column per double");
                    let nulls = values.iter().any(|x| x.is_nan()).then(|| values.iter().map(|x| !x.is_nan()).collect());
                    Arc::new(Float64Array::new(values.into(), nulls))
                }
                Field::Volume => Arc::new(Int64Array::from(std::mem::take(&mut volume))),
                Field::UpdateTime => Arc::new(Time32MillisecondArray::from(std::mem::take(&mut update_time))),
                Field::UpdateMillisec => Arc::new(UInt16Array::from(std::mem::take(&mut millis))),
                Field::BidVolume(i) => Arc::new(Int32Array::from(bid_volumes[i].take().expect("one column per level"))),
                Field::AskVolume(i) => Arc::new(Int32Array::from(ask_volumes[i].take().expect("one column per level"))),
                Field::Sequence => Arc::new(UInt64Array::from(std::mem::take(&mut sequence))),
                Field::InstrumentIndex => Arc::new(UInt32Array::from(std::mem::take(&mut index))),
                Field::Quality => Arc::new(UInt32Array::from(std::mem::take(&mut flags))),
                Field::ExchangeTimeNs => Arc::new(timestamps(std::mem::take(&mut exchange_ns))),
                Field::ReceiveNs => Arc::new(timestamps(std::mem::take(&mut receive_ns))),
                Field::PublishNs => Arc::new(timestamps(std::mem::take(&mut publish_ns))),
            };
            columns.push(array);
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| CliError(format!("building a batch: {e}")))
    }
}

/// The order of a row group: by InstrumentID, then journal (sequence) order. The distinct ids are
/// ranked in string order (a few hundred at most to sort), then a counting sort by rank, stable,
/// orders the ticks in linear time.
#[derive(Default)]
struct Order {
    /// The row group's distinct ids, by rank (string order).
    distinct: Vec<[u8; INSTRUMENT_ID_LEN]>,
    /// (rank, index into the ticks), in output order.
    sorted: Vec<(u32, u32)>,
    slots: HashMap<[u8; INSTRUMENT_ID_LEN], u32>,
    /// instrument_index → (id, slot) of the last tick seen with it: most ticks skip the hash.
    by_index: Vec<Option<([u8; INSTRUMENT_ID_LEN], u32)>>,
    slot_of_tick: Vec<u32>,
    counts: Vec<u32>,
}

impl Order {
    fn sort(&mut self, ticks: &[TickRecord]) {
        self.slots.clear();
        self.by_index.clear();
        self.slot_of_tick.clear();
        let mut first_seen: Vec<[u8; INSTRUMENT_ID_LEN]> = Vec::new();
        for t in ticks {
            let cached = self.by_index.get(t.instrument_index as usize).copied().flatten();
            let slot = match cached {
                Some((id, slot)) if id == t.instrument_id => slot,
                _ => {
                    let next = first_seen.len() as u32;
                    let slot = *self.slots.entry(t.instrument_id).or_insert(next);
                    if slot == next {
                        first_seen.push(t.instrument_id);
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
            };
            self.slot_of_tick.push(slot);
        }
        // Rank the distinct ids in string order (NUL-padded ASCII: byte order is string order).
        let mut by_rank: Vec<u32> = (0..first_seen.len() as u32).collect();
        by_rank.sort_unstable_by(|&a, &b| first_seen[a as usize].cmp(&first_seen[b as usize]));
        let mut rank_of_slot = vec![0u32; first_seen.len()];
        for (rank, &slot) in by_rank.iter().enumerate() {
            rank_of_slot[slot as usize] = rank as u32;
        }
        self.distinct.clear();
        self.distinct.extend(by_rank.iter().map(|&slot| first_seen[slot as usize]));
        // Counting sort by rank, stable.
        self.counts.clear();
        self.counts.resize(first_seen.len() + 1, 0);
        for &slot in &self.slot_of_tick {
            self.counts[rank_of_slot[slot as usize] as usize + 1] += 1;
        }
        for r in 1..self.counts.len() {
            self.counts[r] += self.counts[r - 1];
        }
        self.sorted.clear();
        self.sorted.resize(ticks.len(), (0, 0));
        for (i, &slot) in self.slot_of_tick.iter().enumerate() {
            let rank = rank_of_slot[slot as usize];
            let at = &mut self.counts[rank as usize];
            self.sorted[*at as usize] = (rank, i as u32);
            *at += 1;
        }
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

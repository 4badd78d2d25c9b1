//! `qilinctl quality`: the data-quality report of a feed's journal, per trading day and instrument.
//!
//! Per instrument and trading day:
//! - `ticks`;
//! - `flags`: ticks carrying each quality flag the core set (`stale_snapshot`, `volume_regression`,
//!   `turnover_regression`, `repeated_second`, `derived_action_day`, `absent_price`,
//!   `average_price_scaled`);
//! - `crossed_books`: ticks with BidPrice1 ≥ AskPrice1, both present (not NaN);
//! - `outside_limits`: ticks whose LastPrice is above UpperLimitPrice or below LowerLimitPrice (a
//!   limit counts when present: not NaN and above zero);
//! - `stale_periods`: silences longer than `--stale-after-s` between consecutive ticks of the
//!   instrument, measured on exchange time. With the product file (`config/instruments.toml`) only
//!   trading time counts: session breaks, nights, weekends and exchange holidays (the trading
//!   calendar beside the product file) are not silences. Without it (or for an instrument
//!   whose product is not in it) every silence counts, breaks included. `longest_silence_s` is the
//!   longest such silence;
//! - `timestamp_regressions`: ticks whose exchange time is before the previous tick's.
//!
//! Per trading day, feed-wide (a lost sequence belongs to no known instrument): the journal's gap
//! records (with their reason) and the sequences they cover, and a sequence jump between this
//! day's file and the previous one read (the header's base sequence against the previous file's
//! last sequence).
//!
//! Rejected ticks never reach the segment nor the journal: the core counts them by reason, feed
//! wide, in the segment header (cumulative since the segment was created). With `--segment` the
//! report adds those counters as a feed-wide section; without it they are reported unavailable.

use std::collections::{BTreeMap, HashMap};

use qilin_journal::Entry;
use qilin_shm::{Counter, Reader, TickRecord, quality};
use serde::Serialize;

use qilin_market::{Market, date::local_ms};

use crate::{
    exchange_name,
    journal_cli::{CliError, JournalSel, for_each_entry},
};

/// Settings of a report.
#[derive(Clone, Debug)]
pub struct QualityOptions {
    /// A silence longer than this (trading time when sessions are known) is a stale period.
    pub stale_after_s: u64,
    /// The product file and calendar, for sessions.
    pub products: Option<Market>,
}

/// The counts of one instrument (or of a whole day).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// ExchangeID (empty in a day's totals).
    pub exchange: String,
    /// Ticks.
    pub ticks: u64,
    /// Ticks by quality flag name (every flag, zero included).
    pub flags: BTreeMap<&'static str, u64>,
    /// BidPrice1 ≥ AskPrice1.
    pub crossed_books: u64,
    /// LastPrice outside the limits.
    pub outside_limits: u64,
    /// Silences longer than the threshold.
    pub stale_periods: u64,
    /// Longest silence, seconds.
    pub longest_silence_s: f64,
    /// Exchange time before the previous tick's.
    pub timestamp_regressions: u64,
    /// Sessions were known for this instrument (only trading time counted in silences).
    pub sessions_known: bool,
}

impl Counts {
    fn new(exchange: String, sessions_known: bool) -> Counts {
        Counts {
            exchange,
            flags: quality::NAMES.iter().map(|(_, name)| (*name, 0)).collect(),
            sessions_known,
            ..Counts::default()
        }
    }

    fn add(&mut self, other: &Counts) {
        self.ticks += other.ticks;
        for (name, n) in &other.flags {
            *self.flags.entry(name).or_default() += n;
        }
        self.crossed_books += other.crossed_books;
        self.outside_limits += other.outside_limits;
        self.stale_periods += other.stale_periods;
        self.longest_silence_s = self.longest_silence_s.max(other.longest_silence_s);
        self.timestamp_regressions += other.timestamp_regressions;
    }
}

/// A gap record of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GapRecord {
    /// First missing sequence.
    pub first: u64,
    /// Last missing sequence.
    pub last: u64,
    /// Why (`lapped`, `restart`, `disk-full`, `other`).
    pub reason: &'static str,
}

/// The previous file's last sequence and this file's first do not follow each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SequenceJump {
    /// Last sequence of the previous file read.
    pub previous_last: u64,
    /// First sequence of this file (its base sequence + 1).
    pub first: u64,
    /// Sequences in neither file (0 when the numbering went back).
    pub missing: u64,
}

/// One trading day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayReport {
    /// Trading day.
    pub trading_day: u32,
    /// The journal file.
    pub file: String,
    /// First and last sequence in the file (`None` for an empty file).
    pub sequences: Option<(u64, u64)>,
    /// Gap records.
    pub gap_records: Vec<GapRecord>,
    /// Sequences the gap records cover.
    pub gap_sequences: u64,
    /// Jump from the previous file read, if any.
    pub sequence_jump: Option<SequenceJump>,
    /// Sums over the instruments (the longest silence is the longest of any).
    pub totals: Counts,
    /// Per instrument, by InstrumentID.
    pub instruments: BTreeMap<String, Counts>,
    /// A torn tail or other reason the file was read only in part.
    pub note: Option<String>,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityReport {
    /// The threshold for a stale period, seconds.
    pub stale_after_s: u64,
    /// The product file whose sessions were used, or `None`.
    pub sessions_from: Option<String>,
    /// Per trading day, in order.
    pub days: Vec<DayReport>,
    /// Rejects by reason from the segment header, or why they are not here.
    pub rejects: serde_json::Value,
}

struct InstrumentState {
    id: String,
    counts: Counts,
    last_ns: Option<i64>,
}

/// Computes the report over `sel`.
pub fn report(sel: &JournalSel, options: &QualityOptions) -> Result<QualityReport, CliError> {
    let mut days = Vec::new();
    let mut previous_last: Option<u64> = None;
    for path in sel.files()? {
        let mut reader = sel.open(&path)?;
        let header = reader.header().clone();
        let mut day = DayReport {
            trading_day: header.trading_day,
            file: path.display().to_string(),
            sequences: None,
            gap_records: Vec::new(),
            gap_sequences: 0,
            sequence_jump: None,
            totals: Counts::new(String::new(), false),
            instruments: BTreeMap::new(),
            note: None,
        };
        if let Some(last) = previous_last
            && last != header.base_sequence
        {
            let first = header.base_sequence + 1;
            day.sequence_jump =
                Some(SequenceJump { previous_last: last, first, missing: first.saturating_sub(last + 1) });
        }
        let mut instruments: HashMap<[u8; 32], InstrumentState> = HashMap::new();
        let mut last_sequence = header.base_sequence;
        day.note = for_each_entry(&mut reader, |entry| {
            let (first, last) = (entry.first_sequence(), entry.last_sequence());
            day.sequences = Some((day.sequences.map_or(first, |s| s.0), last));
            last_sequence = last;
            match entry {
                Entry::Gap(g) => {
                    day.gap_records.push(GapRecord { first: g.first, last: g.last, reason: g.reason.name() });
                    day.gap_sequences += g.count();
                }
                Entry::Tick(t) => tick(&t, &mut instruments, options),
            }
            Ok(())
        })?;
        previous_last = Some(last_sequence);
        for (_, state) in instruments {
            day.totals.add(&state.counts);
            day.instruments.insert(state.id, state.counts);
        }
        days.push(day);
    }
    Ok(QualityReport {
        stale_after_s: options.stale_after_s,
        sessions_from: options.products.as_ref().map(|p| p.instruments.path().display().to_string()),
        days,
        rejects: no_rejects(),
    })
}

fn tick(t: &TickRecord, instruments: &mut HashMap<[u8; 32], InstrumentState>, options: &QualityOptions) {
    let id = t.instrument_id_str().unwrap_or("?");
    let product = options.products.as_ref().and_then(|p| p.spec_for(id).map(|spec| (spec, &p.calendar)));
    let state = instruments.entry(t.instrument_id).or_insert_with(|| InstrumentState {
        id: id.to_owned(),
        counts: Counts::new(exchange_name(t.exchange).to_owned(), product.is_some()),
        last_ns: None,
    });
    let c = &mut state.counts;
    c.ticks += 1;
    for (bit, name) in quality::NAMES {
        if t.quality & bit != 0 {
            *c.flags.entry(name).or_default() += 1;
        }
    }
    let (bid, ask) = (t.bid_price[0], t.ask_price[0]);
    if !bid.is_nan() && !ask.is_nan() && bid >= ask {
        c.crossed_books += 1;
    }
    let present = |limit: f64| !limit.is_nan() && limit > 0.0;
    let last = t.last_price;
    if !last.is_nan()
        && ((present(t.upper_limit_price) && last > t.upper_limit_price)
            || (present(t.lower_limit_price) && last < t.lower_limit_price))
    {
        c.outside_limits += 1;
    }
    if let Some(previous) = state.last_ns {
        if t.exchange_time_ns < previous {
            c.timestamp_regressions += 1;
        } else {
            let silence_ms = match product {
                Some((spec, calendar)) => {
                    spec.session_ms_between(local_ms(previous), local_ms(t.exchange_time_ns), calendar)
                }
                None => (t.exchange_time_ns - previous) / 1_000_000,
            };
            let silence_s = silence_ms as f64 / 1000.0;
            if silence_ms > options.stale_after_s as i64 * 1000 {
                c.stale_periods += 1;
            }
            c.longest_silence_s = c.longest_silence_s.max(silence_s);
        }
    }
    state.last_ns = Some(t.exchange_time_ns);
}

fn no_rejects() -> serde_json::Value {
    serde_json::json!({
        "available": false,
        "note": "rejected ticks never reach the journal; the core counts them by reason, feed-wide, in the \
                 segment header: give --segment to add them",
    })
}

/// The segment header's reject and drop counters, feed-wide.
pub fn rejects_from_segment(reader: &Reader) -> serde_json::Value {
    let by_reason: BTreeMap<&str, u64> = Counter::ALL
        .iter()
        .filter(|c| c.name().starts_with("reject_"))
        .map(|c| (c.name().trim_start_matches("reject_"), reader.counter(*c)))
        .collect();
    let dropped: BTreeMap<&str, u64> =
        [Counter::HandoffFull, Counter::DirectoryFull].iter().map(|c| (c.name(), reader.counter(*c))).collect();
    serde_json::json!({
        "available": true,
        "segment": reader.path().display().to_string(),
        "feed": reader.feed_name(),
        "scope": "feed-wide, cumulative since the segment was created (the core's header counters); \
                  not per instrument or trading day",
        "by_reason": by_reason,
        "dropped": dropped,
        "received": reader.counter(Counter::TicksReceived),
        "published": reader.counter(Counter::TicksPublished),
    })
}

fn flag_summary(c: &Counts) -> String {
    let parts: Vec<String> = c.flags.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}={n}")).collect();
    if parts.is_empty() { "-".into() } else { parts.join(" ") }
}

/// The report as text tables.
pub fn render_table(r: &QualityReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let sessions = match &r.sessions_from {
        Some(path) => format!("trading time from the sessions in {path}; holidays not known"),
        None => "wall time: no product file, so session breaks, nights and weekends count".into(),
    };
    let _ = writeln!(out, "stale period: a silence over {} s ({sessions})", r.stale_after_s);
    for day in &r.days {
        let seqs = day.sequences.map_or("none".into(), |(a, b)| format!("{a}..={b}"));
        let _ = writeln!(out, "\ntrading day {}  {}  sequences {seqs}", day.trading_day, day.file);
        let gaps: Vec<String> =
            day.gap_records.iter().map(|g| format!("{}..={} ({})", g.first, g.last, g.reason)).collect();
        let _ = writeln!(
            out,
            "gap records  {} covering {} sequences{}",
            day.gap_records.len(),
            day.gap_sequences,
            if gaps.is_empty() { String::new() } else { format!(": {}", gaps.join(", ")) }
        );
        match &day.sequence_jump {
            Some(j) => {
                let _ = writeln!(
                    out,
                    "sequence jump  previous file ended at {}, this one starts at {} ({} missing)",
                    j.previous_last, j.first, j.missing
                );
            }
            None => out.push_str("sequence jump  none\n"),
        }
        if let Some(note) = &day.note {
            let _ = writeln!(out, "note  {note}");
        }
        let _ = writeln!(
            out,
            "{:<16} {:<5} {:>10} {:>8} {:>10} {:>6} {:>12} {:>10}  flags",
            "instrument", "exch", "ticks", "crossed", "off-limit", "stale", "longest-s", "ts-back"
        );
        let rows = day.instruments.iter().map(|(id, c)| (id.as_str(), c)).chain([("(all)", &day.totals)]);
        for (id, c) in rows {
            let _ = writeln!(
                out,
                "{:<16} {:<5} {:>10} {:>8} {:>10} {:>6} {:>12.1} {:>10}  {}{}",
                id,
                c.exchange,
                c.ticks,
                c.crossed_books,
                c.outside_limits,
                c.stale_periods,
                c.longest_silence_s,
                c.timestamp_regressions,
                flag_summary(c),
                if id != "(all)" && !c.sessions_known && r.sessions_from.is_some() { "  (no sessions)" } else { "" }
            );
        }
    }
    if r.rejects["available"] == true {
        let _ = writeln!(
            out,
            "\nrejects by reason (feed-wide, cumulative, from {} feed {}; not per day or instrument):",
            r.rejects["segment"].as_str().unwrap_or("?"),
            r.rejects["feed"]
        );
        for (section, values) in [("rejected", &r.rejects["by_reason"]), ("dropped", &r.rejects["dropped"])] {
            let parts: Vec<String> =
                values.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "  {section:<9} {}", parts.join(" "));
        }
    } else {
        let _ =
            writeln!(out, "\nrejects: not available from the journal ({})", r.rejects["note"].as_str().unwrap_or(""));
    }
    out
}

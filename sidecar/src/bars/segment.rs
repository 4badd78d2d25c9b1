//! The bar segment: every closed bar, in the order it is published to NATS, written with qilin-shm's
//! writer as a [`BarRecord`] (LAYOUT.md, "Bar segments"), so Rust, C and Python read bars exactly as
//! they read ticks.
//!
//! **Restart.** The segment is reopened, as the core reopens its tick segment: the epoch goes up,
//! sequences continue, the directory keeps every index. After a restart qilin-bars publishes again
//! the bars of its last `cursor_interval_ms` (NATS drops them by message id); the segment drops them
//! by its last values: a bar whose start is not after the last bar of its instrument and period in
//! the segment is already there (bars of one instrument and period are emitted in start order), so
//! no bar is written twice.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, anyhow};
use qilin_shm::{BarPeriod, BarRecord, BarWriter, Exchange, Reader, SegmentOptions, layout::fixed_id};

use super::{Bar, Period};

/// The writer and what it needs to turn a [`Bar`] into a [`BarRecord`].
pub struct BarSegment {
    writer: BarWriter,
    /// The tick segment's directory, for each instrument's multiplier and price tick.
    ticks: Reader,
    /// Bar-segment directory index by InstrumentID.
    index: HashMap<String, u32>,
    /// Bars already in the segment (a restart's republished ones), skipped.
    skipped: u64,
}

impl std::fmt::Debug for BarSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarSegment").field("path", &self.writer.path()).finish()
    }
}

/// The bar-period code of a period.
pub fn period_code(period: Period) -> BarPeriod {
    match period {
        Period::M1 => BarPeriod::M1,
        Period::M5 => BarPeriod::M5,
        Period::M15 => BarPeriod::M15,
        Period::M30 => BarPeriod::M30,
        Period::M60 => BarPeriod::M60,
        Period::Day => BarPeriod::Day,
    }
}

/// The bar as the segment's record (sequence 0 and `publish_ns` 0: the writer's to set).
pub fn record(bar: &Bar, instrument_index: u32) -> anyhow::Result<BarRecord> {
    let mut r = BarRecord::ZERO;
    r.instrument_index = instrument_index;
    r.instrument_id = fixed_id(&bar.instrument_id).ok_or_else(|| anyhow!("instrument id {:?}", bar.instrument_id))?;
    r.exchange = Exchange::from_id(bar.exchange).map_or(0, |e| e as u8);
    r.period = period_code(bar.period) as u8;
    r.trading_day = bar.trading_day;
    r.start_ns = bar.start_ns;
    r.end_ns = bar.end_ns;
    r.open = bar.open;
    r.high = bar.high;
    r.low = bar.low;
    r.close = bar.close;
    r.volume = bar.volume;
    r.turnover = bar.turnover;
    r.open_interest = bar.open_interest;
    r.open_interest_change = bar.open_interest_change;
    r.ticks = bar.ticks;
    r.first_sequence = bar.first_sequence;
    r.last_sequence = bar.last_sequence;
    r.flags = bar.flags;
    Ok(r)
}

impl BarSegment {
    /// Creates or reopens the bar segment at `path` for the feed of the tick segment `ticks`, with
    /// its instrument capacity and `ring_slots` slots.
    pub fn open(path: &Path, ticks: &Reader, ring_slots: u64) -> anyhow::Result<BarSegment> {
        let options = SegmentOptions {
            feed_name: ticks.feed_name(),
            ring_slots,
            instrument_capacity: ticks.identity().instrument_capacity,
        };
        let writer =
            BarWriter::open_segment(path, &options).with_context(|| "bar segment (bar_segment)".to_string())?;
        let report = writer.open_report();
        tracing::info!(
            "bar segment {}: {} epoch {}, next sequence {}",
            path.display(),
            if report.created { "created" } else { "reopened" },
            report.epoch,
            report.next_sequence
        );
        let ticks = Reader::open_unpopulated(ticks.path()).context("the tick segment's directory")?;
        let mut writer = writer;
        writer.set_run_state(qilin_shm::RunState::Running);
        writer.heartbeat(qilin_shm::now_ns());
        Ok(BarSegment { writer, ticks, index: HashMap::new(), skipped: 0 })
    }

    fn instrument(&mut self, bar: &Bar) -> anyhow::Result<u32> {
        if let Some(index) = self.index.get(&bar.instrument_id) {
            return Ok(*index);
        }
        let entry = self.ticks.find_instrument(&bar.instrument_id).and_then(|i| self.ticks.instrument(i));
        let exchange = Exchange::from_id(bar.exchange).ok_or_else(|| anyhow!("exchange {:?}", bar.exchange))?;
        let (multiple, tick) = entry.map_or((0, f64::NAN), |e| (e.volume_multiple, e.price_tick));
        let index = self
            .writer
            .add_instrument(&bar.instrument_id, exchange, multiple, tick)
            .with_context(|| format!("bar segment {}: {}", self.writer.path().display(), bar.instrument_id))?;
        self.index.insert(bar.instrument_id.clone(), index);
        Ok(index)
    }

    /// Writes `bar` unless the segment has it already; returns whether it was written.
    pub fn write(&mut self, bar: &Bar) -> anyhow::Result<bool> {
        let index = self.instrument(bar)?;
        let mut r = record(bar, index)?;
        if let Some(last) = self.writer.latest_bar(index, period_code(bar.period))
            && last.start_ns >= bar.start_ns
        {
            self.skipped += 1;
            return Ok(false);
        }
        r.publish_ns = qilin_shm::now_ns();
        self.writer.publish(&mut r).map_err(|e| anyhow!("bar segment {}: {e}", self.writer.path().display()))?;
        Ok(true)
    }

    /// Refreshes the heartbeat (the read loop calls it every round).
    pub fn heartbeat(&self) {
        self.writer.heartbeat(qilin_shm::now_ns());
    }

    /// Bars a restart published again that the segment already had.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next bar's sequence in the segment.
    pub fn next_sequence(&self) -> u64 {
        self.writer.next_sequence()
    }
}

#[cfg(test)]
mod tests {
    use qilin_shm::{BarReader, Next, Start, Writer};

    use super::*;

    fn bar(period: Period, start_ns: i64) -> Bar {
        Bar {
            instrument_id: "rb2605".into(),
            exchange: "SHFE",
            period,
            trading_day: 20260311,
            start_ns,
            end_ns: start_ns + 60_000_000_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: f64::NAN,
            volume: 7,
            turnover: 70.0,
            open_interest: 100.0,
            open_interest_change: -1.0,
            ticks: 3,
            first_sequence: 1,
            last_sequence: 3,
            flags: 0,
        }
    }

    /// A restart publishes the bars of its last cursor interval again: the reopened segment keeps
    /// the ones it has (by its last bar per instrument and period) and takes the new ones.
    #[test]
    fn a_reopened_bar_segment_writes_no_bar_twice() {
        let dir = tempfile::tempdir().unwrap();
        let tick_path = dir.path().join("ticks");
        let mut ticks = Writer::open(
            &tick_path,
            &SegmentOptions { feed_name: "unit".into(), ring_slots: 16, instrument_capacity: 4 },
        )
        .unwrap();
        ticks.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
        let tick_reader = Reader::open(&tick_path).unwrap();
        let path = dir.path().join("bars");
        let (a, b, c) = (bar(Period::M1, 0), bar(Period::M5, 0), bar(Period::M1, 60_000_000_000));
        {
            let mut segment = BarSegment::open(&path, &tick_reader, 16).unwrap();
            assert!(segment.write(&a).unwrap() && segment.write(&b).unwrap());
        }
        let mut segment = BarSegment::open(&path, &tick_reader, 16).unwrap();
        assert!(!segment.write(&a).unwrap(), "already in the segment");
        assert!(!segment.write(&b).unwrap(), "already in the segment");
        assert!(segment.write(&c).unwrap());
        assert_eq!(segment.skipped(), 2);
        let mut reader = BarReader::open_segment(&path).unwrap();
        reader.seek(Start::Oldest);
        let mut got = Vec::new();
        let mut r = BarRecord::ZERO;
        while reader.try_next(&mut r) == Next::Tick {
            got.push((r.sequence, r.period, r.start_ns, r.volume, r.close.is_nan()));
        }
        assert_eq!(got, [(1, 1, 0, 7, true), (2, 2, 0, 7, true), (3, 1, 60_000_000_000, 7, true)]);
        let entry = reader.instrument(0).unwrap();
        assert_eq!((entry.volume_multiple, entry.price_tick), (10, 1.0), "from the tick segment's directory");
    }
}

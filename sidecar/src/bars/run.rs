//! The `qilin-bars` process around the [`Builder`]: rebuild at start (journal, then ring), the read
//! loop with its idle timer, publishing to JetStream with message ids, and the cursor.
//!
//! **Exactly once.** Every bar has a message id that depends only on the bar
//! ([`Bar::msg_id`]), so a republished bar is dropped by the stream's duplicate window. The cursor
//! (last tick sequence processed, feed clock) is saved only when every bar emitted so far is
//! acknowledged, so after a crash only the bars of the last `cursor_interval_ms` are published again
//! (and dropped as duplicates). At start the ticks up to the cursor are fed to the builder from the
//! journal (then the ring) without publishing, the clock is moved to the saved value (the bars the
//! timer had closed close again, unpublished), and everything after is published: the open bars
//! are rebuilt and no bar is repeated.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use async_nats::{
    HeaderMap,
    header::NATS_MESSAGE_ID,
    jetstream::{self, stream},
};
use bytes::Bytes;
use qilin_journal::{DirReader, Entry};
use qilin_market::{Market, status::StatusFile};
use qilin_shm::{Next, Reader, Start, TickRecord, now_ns};

use super::{Bar, Builder, config::Config, cursor, segment::BarSegment};
use crate::nats::subject_token;

/// Bars published, acknowledged as new or as duplicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// Stored by the stream.
    pub stored: u64,
    /// Dropped by the stream as duplicates of a message id it had.
    pub duplicates: u64,
}

/// The running sidecar.
pub struct Driver {
    config: Config,
    feed: String,
    prefix: String,
    js: jetstream::Context,
    builder: Builder,
    /// Until the first tick after the cursor: its sequence and clock. Bars emitted before are not published.
    restore: Option<(u64, i64)>,
    last_sequence: u64,
    trading_day: u32,
    out: Vec<Bar>,
    pending: Vec<Bar>,
    saved: (u64, i64),
    last_save: Instant,
    published: Published,
    /// Every bar published is written here first, in publish order.
    segment: BarSegment,
    status: StatusFile,
    last_status: Instant,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("feed", &self.feed).field("last_sequence", &self.last_sequence).finish()
    }
}

/// Connects to NATS, retrying until connected or stopped.
async fn connect(config: &Config, stop: &AtomicBool) -> anyhow::Result<async_nats::Client> {
    let nats = config.as_nats();
    let mut delay = Duration::from_millis(100);
    loop {
        let options = crate::nats::connect_options(&nats, Arc::new(AtomicBool::new(false)))?;
        match options.connect(nats.nats.urls.as_slice()).await {
            Ok(client) => return Ok(client),
            Err(e) if crate::nats::is_fatal(e.kind()) || crate::nats::tls_error(&e).is_some() => {
                bail!("cannot connect to NATS (not retried): {e}")
            }
            Err(e) => tracing::warn!("NATS not reachable yet: {e}; retrying in {delay:?}"),
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped while connecting to NATS");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The stream holding `<prefix>.bar.>`: verified, or created from `[jetstream]`.
async fn ensure_stream(config: &Config, js: &jetstream::Context, name: &str, prefix: &str) -> anyhow::Result<()> {
    let want = format!("{prefix}.bar.>");
    if let Ok(mut existing) = js.get_stream(name).await {
        let info = existing.info().await?;
        if !info.config.subjects.iter().any(|s| s == &want || s == ">" || s == &format!("{prefix}.>")) {
            bail!("stream {name} exists with subjects {:?}, which do not include {want}", info.config.subjects);
        }
        return Ok(());
    }
    if !config.jetstream.create {
        bail!("stream {name} does not exist and jetstream.create = false");
    }
    let j = &config.jetstream;
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![want],
        storage: match j.storage {
            crate::nats::config::Storage::File => stream::StorageType::File,
            crate::nats::config::Storage::Memory => stream::StorageType::Memory,
        },
        num_replicas: j.replicas,
        max_age: Duration::from_secs(j.max_age_s),
        max_bytes: if j.max_bytes == 0 { -1 } else { j.max_bytes as i64 },
        duplicate_window: Duration::from_secs(j.duplicate_window_s),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating stream {name}"))?;
    tracing::info!("stream {name} created for {prefix}.bar.>");
    Ok(())
}

/// The trading day of the oldest tick in the ring (where a first start without a cursor rebuilds from).
fn oldest_trading_day(reader: &Reader) -> Option<u32> {
    let mut peek = Reader::open_unpopulated(reader.path()).ok()?;
    peek.seek(Start::Oldest);
    let mut tick = TickRecord::ZERO;
    loop {
        match peek.try_next(&mut tick) {
            Next::Tick => return Some(tick.trading_day),
            Next::Empty => return None,
            Next::Gap { .. } | Next::NewEpoch { .. } => {}
        }
    }
}

impl Driver {
    /// Connects, verifies the stream, loads the cursor and rebuilds from the journal; returns the
    /// driver and where the ring read starts.
    pub async fn start(config: Config, mut reader: Reader, stop: &AtomicBool) -> anyhow::Result<(Driver, Reader)> {
        let feed = reader.feed_name();
        let market = Market::find(Some(&config.instruments_file))
            .map_err(|e| anyhow!(e))?
            .ok_or_else(|| anyhow!("product table {} not found", config.instruments_file.display()))?;
        let prefix = config.prefix(&feed);
        let client = connect(&config, stop).await?;
        let js = jetstream::new(client);
        ensure_stream(&config, &js, &config.stream_name(&feed), &prefix).await?;
        let saved = cursor::load(&config.cursor_path(), &feed)?;
        let builder = Builder::new(market, &config.periods(), config.close_delay_ms);
        let segment = BarSegment::open(&config.bar_segment_path(), &reader, config.bar_ring_slots)?;
        let mut driver = Driver {
            feed: feed.clone(),
            prefix,
            js,
            builder,
            restore: saved.as_ref().map(|c| (c.sequence, c.clock_ns)),
            last_sequence: 0,
            trading_day: 0,
            out: Vec::new(),
            pending: Vec::new(),
            saved: saved.as_ref().map_or((0, i64::MIN), |c| (c.sequence, c.clock_ns)),
            last_save: Instant::now(),
            published: Published::default(),
            segment,
            status: StatusFile::new(reader.path(), &config.name)
                .with_context(|| format!("status directory beside {}", reader.path().display()))?,
            last_status: Instant::now(),
            config,
        };
        let start_day = saved.as_ref().map(|c| c.trading_day).or_else(|| oldest_trading_day(&reader));
        let mut next = None;
        if !driver.config.journal_dir.as_os_str().is_empty()
            && let Some(day) = start_day
        {
            let dir = driver.config.journal_dir.clone();
            let mut journal =
                DirReader::open(&dir, &feed, day..=u32::MAX).with_context(|| format!("journal {}", dir.display()))?;
            let (mut ticks, started) = (0u64, Instant::now());
            loop {
                match journal.next_entry() {
                    Ok(Some(Entry::Tick(t))) => {
                        driver.take(&t)?;
                        ticks += 1;
                        next = Some(t.sequence + 1);
                    }
                    Ok(Some(Entry::Gap(g))) => {
                        driver.builder.gap();
                        next = Some(g.last + 1);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("journal {}: {e}; continuing from the ring", dir.display());
                        break;
                    }
                }
                if driver.pending.len() >= 1024 {
                    driver.flush(stop).await?;
                }
            }
            tracing::info!(
                "rebuilt from the journal: {ticks} ticks from trading day {day} in {:?}, up to sequence {}",
                started.elapsed(),
                next.map_or(0, |n| n - 1)
            );
        }
        reader.seek(match next {
            Some(n) => Start::Sequence(n),
            None => Start::Oldest,
        });
        Ok((driver, reader))
    }

    /// One tick, in feed order.
    fn take(&mut self, tick: &TickRecord) -> anyhow::Result<()> {
        if self.restore.is_some_and(|(s, _)| tick.sequence > s) {
            self.finish_restore();
        }
        self.builder.on_tick(tick, &mut self.out);
        self.last_sequence = tick.sequence;
        self.trading_day = tick.trading_day;
        self.collect()
    }

    fn finish_restore(&mut self) {
        if let Some((_, clock)) = self.restore.take() {
            self.builder.advance_clock(clock, &mut self.out);
            self.out.clear();
            tracing::info!(
                "restored to the cursor: sequence {}, {} bars open",
                self.saved.0,
                self.builder.open_bars().count()
            );
        }
    }

    /// The bars just emitted: dropped while restoring (published before the cursor), else written
    /// to the bar segment and queued for NATS, both in emission order.
    fn collect(&mut self) -> anyhow::Result<()> {
        if self.restore.is_some() {
            self.out.clear();
        } else {
            for bar in &self.out {
                self.segment.write(bar)?;
            }
            self.pending.append(&mut self.out);
        }
        Ok(())
    }

    /// Publishes the pending bars and waits for every ack, retrying (same ids) until the stream has them.
    async fn flush(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        while !self.pending.is_empty() {
            match self.try_flush().await {
                Ok(()) => self.pending.clear(),
                Err(e) => {
                    tracing::warn!("publishing {} bars: {e:#}; retrying in {delay:?}", self.pending.len());
                    if stop.load(Ordering::Relaxed) {
                        return Err(e.context("stopped with bars unpublished (they are published after a restart)"));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        Ok(())
    }

    async fn try_flush(&mut self) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(self.pending.len());
        for bar in &self.pending {
            let subject = format!(
                "{}.bar.{}.{}.{}",
                self.prefix,
                bar.period.name(),
                subject_token(bar.exchange),
                subject_token(&bar.instrument_id)
            );
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, bar.msg_id(&self.feed));
            acks.push(self.js.publish_with_headers(subject, headers, Bytes::from(bar.to_json())).await?);
        }
        for ack in acks {
            let ack = ack.await?;
            if ack.duplicate {
                self.published.duplicates += 1;
            } else {
                self.published.stored += 1;
            }
        }
        Ok(())
    }

    /// Saves the cursor if it moved and nothing is pending (`force`: regardless of the interval).
    fn maybe_save(&mut self, force: bool) -> anyhow::Result<()> {
        let position = (self.last_sequence, self.builder.clock());
        if !self.pending.is_empty() || self.restore.is_some() || position == self.saved {
            return Ok(());
        }
        if !force && self.last_save.elapsed() < Duration::from_millis(self.config.cursor_interval_ms) {
            return Ok(());
        }
        // The journal is replayed from the oldest day with an open bar (an instrument may still
        // have the previous trading day's bars open when another's ticks are on the next day).
        let day = self.builder.oldest_open_day().map_or(self.trading_day, |d| d.min(self.trading_day));
        let c = cursor::BarsCursor {
            feed: self.feed.clone(),
            trading_day: day,
            sequence: position.0,
            clock_ns: position.1,
        };
        cursor::save(&self.config.cursor_path(), &c)?;
        self.saved = position;
        self.last_save = Instant::now();
        Ok(())
    }

    /// Rewrites the status file beside the segment (`<segment>.sidecars/<name>.json`): the fields
    /// every sidecar writes (`position`: the saved cursor's sequence; `lag_sequences` behind the
    /// core) and the builder's counters.
    fn write_status(&mut self, reader: &Reader, state: &str) {
        let write_cursor = reader.write_cursor();
        let value = serde_json::json!({
            "sidecar": "qilin-bars",
            "name": self.config.name,
            "pid": std::process::id(),
            "feed": self.feed,
            "state": state,
            "stream": self.config.stream_name(&self.feed),
            "subject_prefix": self.prefix,
            "updated_ns": now_ns(),
            "position": self.saved.0,
            "read": self.last_sequence,
            "write_cursor": write_cursor,
            "lag_sequences": write_cursor.saturating_sub(self.last_sequence),
            "clock_ns": self.builder.clock(),
            "open_bars": self.builder.open_bars().count(),
            "pending_bars": self.pending.len(),
            "counters": self.builder.counters(),
            "published": self.published,
            "bar_segment": {
                "path": self.config.bar_segment_path(),
                "next_sequence": self.segment.next_sequence(),
                "already_written": self.segment.skipped(),
            },
        });
        if let Err(e) = self.status.write(&value) {
            tracing::error!("status file {}: {e}", self.status.path().display());
        }
        self.last_status = Instant::now();
    }

    /// Reads the ring until `stop`: ticks to the builder, the timer when idle, bars to the stream.
    pub async fn run(&mut self, reader: &mut Reader, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut tick = TickRecord::ZERO;
        let margin_ns = i64::from(self.config.timer_margin_ms) * 1_000_000;
        loop {
            let mut idle = false;
            for _ in 0..4096 {
                match reader.try_next(&mut tick) {
                    Next::Tick => {
                        self.take(&tick)?;
                        if self.pending.len() >= 1024 {
                            break;
                        }
                    }
                    Next::Gap { first, last } => {
                        tracing::warn!("ticks {first}..={last} lost from the ring: open bars flagged gap");
                        self.builder.gap();
                    }
                    Next::NewEpoch { previous, current } => {
                        tracing::info!("the core restarted (epoch {previous} -> {current}); sequences continue")
                    }
                    Next::Empty => {
                        idle = true;
                        break;
                    }
                }
            }
            if idle {
                if self.restore.is_some_and(|(s, _)| self.last_sequence >= s) {
                    self.finish_restore();
                }
                if self.restore.is_none() {
                    self.builder.idle(now_ns(), margin_ns, &mut self.out);
                    self.collect()?;
                }
            }
            self.segment.heartbeat();
            self.flush(stop).await?;
            self.maybe_save(false)?;
            if self.last_status.elapsed() >= Duration::from_millis(250) {
                self.write_status(reader, "running");
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(self.config.idle_sleep_ms)).await;
            }
        }
        self.maybe_save(true)?;
        self.write_status(reader, "stopped");
        let c = self.builder.counters();
        tracing::info!(
            "stopped at sequence {}: {} ticks, {} used, {} stale, {} outside, {} late; bars {} stored, {} duplicates",
            self.last_sequence,
            c.ticks,
            c.used,
            c.stale,
            c.outside,
            c.late,
            self.published.stored,
            self.published.duplicates
        );
        Ok(())
    }

    /// Bars published so far.
    pub fn published(&self) -> Published {
        self.published
    }
}

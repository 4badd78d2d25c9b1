//! The `qilin-bars` process around the [`Builder`]: rebuild at start (journal, then ring), the read
//! loop with its idle timer, publishing to JetStream with message ids, and the cursor.
//!
//! **The bar segment never waits for NATS.** Closed bars go to the bar segment at once and to a
//! publisher task through a queue; the read loop does not wait for acks. While NATS is down the
//! publisher retries the same bars (same message ids) with a backoff and the segment goes on.
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
    collections::VecDeque,
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

/// Bars handed to the publisher and not acknowledged yet, past which reading the ring waits for
/// NATS (hours of a whole market's bars; the ticks then wait in the ring and the journal).
const MAX_PENDING_BARS: u64 = 1 << 20;
/// Bars published before their acks are awaited.
const PUBLISH_BATCH: usize = 1024;
/// The backoff of the NATS connect and of the publisher after a failed batch: from the first
/// delay, doubling to the last.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

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
    builder: Builder,
    /// Until the first tick after the cursor: its sequence and clock. Bars emitted before are not published.
    restore: Option<(u64, i64)>,
    last_sequence: u64,
    trading_day: u32,
    out: Vec<Bar>,
    publisher: Publisher,
    /// A cursor waiting for every bar emitted before it (the first number) to be acknowledged.
    candidate: Option<(u64, cursor::BarsCursor)>,
    saved: (u64, i64),
    last_save: Instant,
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
    let mut delay = FIRST_RETRY_DELAY;
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
        delay = (delay * 2).min(MAX_RETRY_DELAY);
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
        let publisher =
            Publisher::spawn(js, prefix.clone(), feed.clone(), Duration::from_millis(config.nats.request_timeout_ms));
        let saved = cursor::load(&config.cursor_path(), &feed)?;
        let builder = Builder::new(market, &config.periods(), config.close_delay_ms);
        let segment = BarSegment::open(&config.bar_segment_path(), &reader, config.bar_ring_slots)?;
        let mut driver = Driver {
            feed: feed.clone(),
            prefix,
            builder,
            restore: saved.as_ref().map(|c| (c.sequence, c.clock_ns)),
            last_sequence: 0,
            trading_day: 0,
            out: Vec::new(),
            publisher,
            candidate: None,
            saved: saved.as_ref().map_or((0, i64::MIN), |c| (c.sequence, c.clock_ns)),
            last_save: Instant::now(),
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
            let keys = crate::journal_keys(&driver.config.journal_key_files)?;
            let mut journal = DirReader::open_keyed(&dir, &feed, day..=u32::MAX, keys)
                .with_context(|| format!("journal {}", dir.display()))?;
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
                    // Not a torn tail to read past: the ring no longer holds the day's first ticks,
                    // so going on would rebuild the open bars from part of them.
                    Err(e) if crate::journal_key_error(&e) => {
                        bail!("journal {}: {e} (journal_key_files)", dir.display())
                    }
                    Err(e) => {
                        tracing::warn!("journal {}: {e}; continuing from the ring", dir.display());
                        break;
                    }
                }
                if ticks % 4096 == 0 {
                    driver.keep_up(stop).await?;
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
    /// to the bar segment and handed to the publisher, both in emission order.
    fn collect(&mut self) -> anyhow::Result<()> {
        if self.restore.is_some() {
            self.out.clear();
        } else if !self.out.is_empty() {
            for bar in &self.out {
                self.segment.write(bar)?;
            }
            self.publisher.hand(std::mem::take(&mut self.out))?;
        }
        Ok(())
    }

    /// Lets the publisher run, and waits for it only when [`MAX_PENDING_BARS`] are unacknowledged.
    async fn keep_up(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        tokio::task::yield_now().await;
        while self.publisher.pending() >= MAX_PENDING_BARS {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.publisher.check()?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.publisher.check()
    }

    /// Saves the cursor, at most every `cursor_interval_ms` (`force`: now, at a stop), and only at
    /// a position whose bars are all acknowledged: the position is taken as a candidate with the
    /// count of bars handed so far, and saved once the publisher has acknowledged that many.
    fn maybe_save(&mut self, force: bool) -> anyhow::Result<()> {
        if self.restore.is_some() {
            return Ok(());
        }
        self.save_acknowledged()?;
        let position = (self.last_sequence, self.builder.clock());
        let due = force || self.last_save.elapsed() >= Duration::from_millis(self.config.cursor_interval_ms);
        if position != self.saved && due && (force || self.candidate.is_none()) {
            // The journal is replayed from the oldest day with an open bar (an instrument may still
            // have the previous trading day's bars open when another's ticks are on the next day).
            let day = self.builder.oldest_open_day().map_or(self.trading_day, |d| d.min(self.trading_day));
            let c = cursor::BarsCursor {
                feed: self.feed.clone(),
                trading_day: day,
                sequence: position.0,
                clock_ns: position.1,
            };
            self.candidate = Some((self.publisher.handed, c));
            self.save_acknowledged()?;
        }
        Ok(())
    }

    fn save_acknowledged(&mut self) -> anyhow::Result<()> {
        if let Some((handed, c)) = &self.candidate
            && self.publisher.acknowledged() >= *handed
        {
            cursor::save(&self.config.cursor_path(), c)?;
            self.saved = (c.sequence, c.clock_ns);
            self.last_save = Instant::now();
            self.candidate = None;
        }
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
            "pending_bars": self.publisher.pending(),
            "nats_down": self.publisher.nats_down(),
            "counters": self.builder.counters(),
            "published": self.publisher.published(),
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
                    Next::Tick => self.take(&tick)?,
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
            self.keep_up(stop).await?;
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
        let unpublished = self.publisher.finish().await;
        self.maybe_save(true)?;
        self.write_status(reader, "stopped");
        if unpublished > 0 {
            bail!(
                "stopped with {unpublished} bars unpublished (NATS did not take them; they are in the bar segment and \
                 are published after a restart, which rebuilds them from the cursor)"
            );
        }
        let c = self.builder.counters();
        tracing::info!(
            "stopped at sequence {}: {} ticks, {} used, {} stale, {} outside, {} late; bars {} stored, {} duplicates",
            self.last_sequence,
            c.ticks,
            c.used,
            c.stale,
            c.outside,
            c.late,
            self.publisher.published().stored,
            self.publisher.published().duplicates
        );
        Ok(())
    }

    /// Bars published so far.
    pub fn published(&self) -> Published {
        self.publisher.published()
    }
}

/// What the publisher task has done, sent to the driver.
#[derive(Clone, Copy, Debug, Default)]
struct Report {
    /// Bars acknowledged (stored or duplicate), a prefix of the bars handed.
    acknowledged: u64,
    published: Published,
    /// The last batch failed (NATS down or not acknowledging).
    down: bool,
}

/// The publisher task and the queue to it: bars in emission order, published in batches with their
/// message ids; a failed batch is retried whole (a bar the stream already had is dropped as a
/// duplicate) after a backoff, while the driver goes on.
struct Publisher {
    /// Closed at the stop.
    queue: Option<tokio::sync::mpsc::UnboundedSender<Vec<Bar>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    report: tokio::sync::watch::Receiver<Report>,
    /// Raised at the stop: a failed batch is not retried.
    stopping: Arc<AtomicBool>,
    /// Bars handed to the task so far.
    handed: u64,
}

impl Publisher {
    fn spawn(js: jetstream::Context, prefix: String, feed: String, attempt: Duration) -> Publisher {
        let (queue, bars) = tokio::sync::mpsc::unbounded_channel();
        let (sender, report) = tokio::sync::watch::channel(Report::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(publish_loop(js, prefix, feed, attempt, bars, sender, stopping.clone()));
        Publisher { queue: Some(queue), task: Some(task), report, stopping, handed: 0 }
    }

    fn hand(&mut self, bars: Vec<Bar>) -> anyhow::Result<()> {
        let n = bars.len() as u64;
        let ended = || anyhow!("the NATS publisher task has ended");
        self.queue.as_ref().ok_or_else(ended)?.send(bars).map_err(|_| ended())?;
        self.handed += n;
        Ok(())
    }

    fn acknowledged(&self) -> u64 {
        self.report.borrow().acknowledged
    }

    fn pending(&self) -> u64 {
        self.handed - self.acknowledged()
    }

    fn published(&self) -> Published {
        self.report.borrow().published
    }

    fn nats_down(&self) -> bool {
        self.report.borrow().down
    }

    /// An error if the task ended (it only ends when the queue closes, or by a panic).
    fn check(&self) -> anyhow::Result<()> {
        match &self.task {
            Some(task) if task.is_finished() => bail!("the NATS publisher task has ended"),
            _ => Ok(()),
        }
    }

    /// Closes the queue and waits for the task: every bar published, or one failed attempt at the
    /// rest. Returns how many bars stay unpublished.
    async fn finish(&mut self) -> u64 {
        if let Some(task) = self.task.take() {
            self.stopping.store(true, Ordering::Relaxed);
            self.queue = None;
            if let Err(e) = task.await {
                tracing::error!("the NATS publisher task failed: {e}");
            }
        }
        self.pending()
    }
}

/// The publisher task: publishes the queued bars in order, [`PUBLISH_BATCH`] at a time, each batch
/// bounded by `attempt` (`nats.request_timeout_ms`); a failed batch is logged once per outage and
/// retried after the backoff. Ends when the queue is closed and empty, or at the first failure
/// after the driver stops.
async fn publish_loop(
    js: jetstream::Context,
    prefix: String,
    feed: String,
    attempt: Duration,
    mut bars: tokio::sync::mpsc::UnboundedReceiver<Vec<Bar>>,
    report: tokio::sync::watch::Sender<Report>,
    stopping: Arc<AtomicBool>,
) {
    let mut queue = VecDeque::new();
    let mut delay = FIRST_RETRY_DELAY;
    let mut down_since: Option<Instant> = None;
    loop {
        if queue.is_empty() {
            match bars.recv().await {
                Some(more) => queue.extend(more),
                None => return,
            }
        }
        while let Ok(more) = bars.try_recv() {
            queue.extend(more);
        }
        let n = queue.len().min(PUBLISH_BATCH);
        let result = match tokio::time::timeout(attempt, publish_batch(&js, &prefix, &feed, queue.range(..n))).await {
            Ok(result) => result,
            Err(_) => Err(anyhow!("not acknowledged within {attempt:?}")),
        };
        match result {
            Ok((stored, duplicates)) => {
                queue.drain(..n);
                report.send_modify(|r| {
                    r.acknowledged += n as u64;
                    r.published.stored += stored;
                    r.published.duplicates += duplicates;
                    r.down = false;
                });
                if let Some(since) = down_since.take() {
                    tracing::info!(
                        "NATS takes bars again after {:?}; {} bars still queued",
                        since.elapsed(),
                        queue.len()
                    );
                }
                delay = FIRST_RETRY_DELAY;
            }
            Err(e) => {
                if stopping.load(Ordering::Relaxed) {
                    while let Ok(more) = bars.try_recv() {
                        queue.extend(more);
                    }
                    tracing::warn!("publishing {} bars at the stop: {e:#}", queue.len());
                    return;
                }
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                    report.send_modify(|r| r.down = true);
                    tracing::warn!(
                        "publishing {} bars: {e:#}; retrying (same message ids) while the bar segment goes on",
                        queue.len()
                    );
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Publishes `bars` with their message ids and waits for every ack: (stored, duplicates).
async fn publish_batch(
    js: &jetstream::Context,
    prefix: &str,
    feed: &str,
    bars: impl Iterator<Item = &Bar>,
) -> anyhow::Result<(u64, u64)> {
    let mut acks = Vec::with_capacity(PUBLISH_BATCH);
    for bar in bars {
        let subject = format!(
            "{prefix}.bar.{}.{}.{}",
            bar.period.name(),
            subject_token(bar.exchange),
            subject_token(&bar.instrument_id)
        );
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, bar.msg_id(feed));
        acks.push(js.publish_with_headers(subject, headers, Bytes::from(bar.to_json())).await?);
    }
    let (mut stored, mut duplicates) = (0, 0);
    for ack in acks {
        if ack.await?.duplicate {
            duplicates += 1;
        } else {
            stored += 1;
        }
    }
    Ok((stored, duplicates))
}

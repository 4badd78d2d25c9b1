//! Prometheus metrics and health probes for a feed, served over HTTP from inside a sidecar
//! (the recorder): `/metrics`, `/healthz`, `/readyz`.
//!
//! What is exported, read at every scrape: the core's header (counters, heartbeat, run state,
//! epoch, write cursor, ring and directory capacity, link and failover state), the last tick age
//! of each exchange from the last-value cache, every sidecar's status file (position, lag, alive,
//! counters), and what the embedding sidecar reports: its journal ([`JournalMetrics`]) and the
//! latency of every tick it reads ([`LatencyHistograms`]). Every metric carries the `feed` label.
//! The names and their meaning are listed in docs/SIDECARS.md ("Metrics and health").
//!
//! Embedding it in the recorder: the recorder's shared stats are a [`JournalSource`] as they are,
//! so the journal needs nothing from the read loop; the latency histograms need one call per tick.
//!
//! ```no_run
//! use std::sync::Arc;
//! use qilin_sidecar::metrics::{Exporter, LatencyHistograms, MetricsConfig, MetricsServer};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config = qilin_sidecar::recorder::Config::default();
//! # let reader = qilin_shm::Reader::open(&config.segment)?;
//! let metrics = MetricsConfig::default(); // the recorder file's `[metrics]`, validated with it
//! let feed = reader.feed_name();
//! let recorder = qilin_sidecar::recorder::Recorder::start(config.clone(), reader)?;
//! let latency = Arc::new(LatencyHistograms::new());
//! let exporter = Exporter::new(feed, &config.segment, &metrics)
//!     .with_journal(recorder.stats()) // Arc<Mutex<recorder::Stats>>
//!     .with_latency(latency.clone());
//! let server = MetricsServer::start(&metrics, exporter)?; // binds now, serves on its own thread
//! # let tick = qilin_shm::TickRecord::ZERO;
//! // In the read loop, for every tick read from the ring:
//! latency.record(&tick);
//! // At exit (or let it drop):
//! server.stop();
//! # Ok(()) }
//! ```
//!
//! A process without the recorder's stats fills a [`JournalMetrics`] instead (`set_totals`,
//! `set_writable`, `set_disk_full`, and `observe_fsync` after each fdatasync, which also gives a
//! full fsync histogram).

mod calendar;
mod collect;
pub mod config;
mod encode;
mod hist;
pub mod journal;
pub mod latency;
mod ready;
mod report;
mod server;
#[cfg(test)]
mod tests;

use std::{borrow::Cow, fmt, path::PathBuf, sync::Arc};

use prometheus_client::{
    encoding::{prometheus_text, text},
    registry::Registry,
};

use self::collect::Sources;
pub use self::{
    calendar::Schedule,
    config::{ConfigError, MetricsConfig, SessionConfig},
    hist::Hist,
    journal::{JournalMetrics, JournalReading, JournalSnapshot, JournalSource, JournalTotals},
    latency::LatencyHistograms,
    ready::Readiness,
    server::{MetricsServer, ServerError},
};

/// Exposition format of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what `promtool check metrics` and most tools read).
    PrometheusText,
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn negotiate(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") { Format::OpenMetrics } else { Format::PrometheusText }
    }

    /// Its `Content-Type`.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Reads a feed's state at each scrape and encodes it; answers the readiness checks.
pub struct Exporter {
    feed: String,
    registry: Registry,
    sources: Arc<Sources>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter").field("feed", &self.feed).field("sources", &self.sources).finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter for feed `feed` (the `feed` label) whose segment is `segment`, with the
    /// thresholds and sessions of `config`. Without a journal or latency source, those metrics
    /// and the journal readiness check are left out.
    pub fn new(feed: impl Into<String>, segment: impl Into<PathBuf>, config: &MetricsConfig) -> Exporter {
        let ms = |v: u64| (v as i64).saturating_mul(1_000_000);
        let sources = Sources {
            segment: segment.into(),
            heartbeat_stale_ns: ms(config.heartbeat_stale_ms),
            ticks_stale_ns: ms(config.ticks_stale_ms),
            sidecar_stale_ns: ms(config.sidecar_stale_ms),
            schedule: config.schedule(),
            keys_schedule: config.keys_schedule.clone(),
            keys_error: Default::default(),
            journal: None,
            latency: None,
        };
        Exporter::build(feed.into(), sources)
    }

    fn build(feed: String, sources: Sources) -> Exporter {
        let sources = Arc::new(sources);
        let labels = [(Cow::Borrowed("feed"), Cow::Owned(feed.clone()))];
        let mut registry = Registry::with_prefix_and_labels("qilin", labels.into_iter());
        registry.register_collector(Box::new(sources.clone()));
        Exporter { feed, registry, sources }
    }

    fn rebuild(self, change: impl FnOnce(&mut Sources)) -> Exporter {
        let feed = self.feed;
        drop(self.registry);
        let mut sources = Arc::into_inner(self.sources).expect("the registry held the only other reference");
        change(&mut sources);
        Exporter::build(feed, sources)
    }

    /// Adds the journal (its metrics and the `journal` readiness check): the recorder's
    /// `Recorder::stats()` as it is, or a [`JournalMetrics`] the embedding code fills.
    pub fn with_journal(self, journal: Arc<dyn JournalSource>) -> Exporter {
        self.rebuild(|s| s.journal = Some(journal))
    }

    /// Adds the tick latency histograms the embedding sidecar records into.
    pub fn with_latency(self, latency: Arc<LatencyHistograms>) -> Exporter {
        self.rebuild(|s| s.latency = Some(latency))
    }

    /// The `feed` label value.
    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// The whole exposition, read now.
    pub fn encode(&self, format: Format) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        match format {
            Format::PrometheusText => prometheus_text::encode(&mut out, &self.registry)?,
            Format::OpenMetrics => text::encode(&mut out, &self.registry)?,
        }
        Ok(out)
    }

    /// The readiness checks, evaluated now.
    pub fn readiness(&self) -> Readiness {
        self.sources.readiness()
    }
}

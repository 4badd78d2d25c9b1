//! The mirror's counters and its status file (`<segment>.sidecars/<name>.json`, the same place and
//! common keys as every sidecar's, docs/SIDECARS.md), written from the first moment: before NATS
//! answers and before the segment exists.

use std::sync::atomic::Ordering;

use qilin_market::status::StatusFile;
use qilin_shm::now_ns;
use serde_json::{Value, json};

use super::{Config, Mirror};

/// What the mirror is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection to NATS yet (retried).
    Connecting,
    /// The stream does not exist or holds no message yet (a fresh mirror needs one to start).
    WaitingForStream,
    /// Opening or creating the segment (a fresh one's last-value fill included) and finding
    /// where to resume in the stream.
    Resuming,
    /// Following the stream.
    Following,
    /// A NATS request or the consumer failed: backing off, then resuming from the segment.
    Retrying,
    /// Stopped on request.
    Stopped,
    /// Gave up (refused input, a segment it cannot open); `last_error` says why.
    Failed,
}

impl State {
    /// The name in the status file.
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::WaitingForStream => "waiting-for-stream",
            State::Resuming => "resuming",
            State::Following => "following",
            State::Retrying => "retrying",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// The mirror's counters (`counters` in the status file).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Ticks written.
    pub ticks: u64,
    /// Gap events of the stream applied.
    pub gap_events: u64,
    /// Sequences marked lost, whatever the cause (gap events, holes, skipped messages).
    pub lost_sequences: u64,
    /// Ranges missing from the stream without a gap event (purged, retention limits).
    pub holes: u64,
    /// Messages skipped because their headers or body do not decode.
    pub undecodable: u64,
    /// Messages skipped because their sequence was already written.
    pub backwards: u64,
    /// Messages skipped because their epoch is below the segment's.
    pub bad_epoch: u64,
    /// Feed restarts followed (the epoch went up).
    pub epochs: u64,
    /// Last values filled by a fresh mirror.
    pub filled: u64,
    /// Ticks skipped (and marked lost) because the directory was full.
    pub directory_full: u64,
    /// NATS failures (requests, the consumer), each followed by a resync.
    pub errors: u64,
}

/// The status file and what it says before the mirror exists.
pub(super) struct Report {
    file: Option<StatusFile>,
    pub(super) state: State,
    pub(super) last_error: Option<String>,
    pub(super) errors: u64,
}

impl Report {
    pub(super) fn new(config: &Config) -> Report {
        let file = match StatusFile::new(&config.segment, &config.name) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!("cannot write the status file beside {}: {e}", config.segment.display());
                None
            }
        };
        Report { file, state: State::Connecting, last_error: None, errors: 0 }
    }

    /// Rewrites the file: from the mirror when it exists, else the few keys known so far.
    pub(super) fn write(&self, config: &Config, mirror: Option<&Mirror>) {
        let value = match mirror {
            Some(m) => m.status_json(self),
            None => json!({
                "sidecar": "qilin-mirror",
                "name": config.name,
                "pid": std::process::id(),
                "feed": config.feed,
                "state": self.state.name(),
                "stream": config.stream_name(),
                "updated_ns": now_ns(),
                "connected": false,
                "position": null,
                "read": null,
                "write_cursor": null,
                "lag_sequences": null,
                "lag_ns": null,
                "counters": { "errors": self.errors },
                "last_error": self.last_error,
            }),
        };
        if let Some(file) = &self.file
            && let Err(e) = file.write(&value)
        {
            tracing::error!("status file {}: {e}", file.path().display());
        }
    }
}

impl Mirror {
    /// The status: the common sidecar keys, `position` = the last sequence written,
    /// `write_cursor` = the newest sequence of the stream, lag in sequences and in ns.
    pub(super) fn status_json(&self, report: &Report) -> Value {
        let position = self.position();
        let newest = self.feed_newest.max(position);
        let lag = newest - position;
        let lag_ns = if lag > 0 && self.last_publish_ns > 0 { (now_ns() - self.last_publish_ns).max(0) } else { 0 };
        let mut counters = serde_json::to_value(&self.counters).unwrap_or(Value::Null);
        counters["errors"] = json!(self.counters.errors + report.errors);
        json!({
            "sidecar": "qilin-mirror",
            "name": self.config.name,
            "pid": std::process::id(),
            "feed": self.config.feed,
            "state": report.state.name(),
            "stream": self.config.stream_name(),
            "subject_prefix": self.config.subject_prefix(),
            "updated_ns": now_ns(),
            "connected": self.connected.load(Ordering::Relaxed),
            "epoch": self.writer.epoch(),
            "position": position,
            "read": position,
            "write_cursor": newest,
            "lag_sequences": lag,
            "lag_ns": lag_ns,
            "last_latency_ns": self.last_latency_ns,
            "counters": counters,
            "last_error": self.last_error.as_ref().or(report.last_error.as_ref()),
        })
    }
}

//! The sidecar's counters and its status file (`<segment>.sidecars/<name>.json`).

use std::{sync::atomic::Ordering, time::Instant};

use qilin_shm::now_ns;
use serde_json::json;

use super::{Mode, Sidecar};

/// The sidecar's counters (also in its status file).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Messages handed to the client (ticks and gap events, retransmissions included).
    pub published: u64,
    /// Messages confirmed by the server (acks, or round trips in core mode).
    pub acked: u64,
    /// Messages published again after a failure.
    pub retried: u64,
    /// Gap events confirmed by the server.
    pub gaps: u64,
    /// Sequences covered by confirmed gap events.
    pub gap_sequences: u64,
    /// Body bytes handed to the client.
    pub bytes: u64,
    /// Publish, ack, round-trip and connection failures.
    pub errors: u64,
    /// Acks that said the server had the message already.
    pub duplicates: u64,
    /// Core restarts seen (new segment epochs).
    pub epochs: u64,
    /// Ticks the ring had lost that were published from the recorder's journal.
    pub backfilled: u64,
}

impl Sidecar {
    /// The status object (also written to the status file).
    pub fn status_json(&self) -> serde_json::Value {
        let write_cursor = self.reader.write_cursor();
        let lag = write_cursor.saturating_sub(self.confirmed);
        let lag_ns = if lag > 0 && self.confirmed_ns > 0 { (now_ns() - self.confirmed_ns).max(0) } else { 0 };
        json!({
            "sidecar": "qilin-nats",
            "name": self.config.name,
            "pid": std::process::id(),
            "feed": self.feed,
            "mode": match self.config.nats.mode { Mode::Core => "core", Mode::Jetstream => "jetstream" },
            "stream": if self.js.is_some() { Some(&self.stream_name) } else { None },
            "subject_prefix": self.prefix,
            "updated_ns": now_ns(),
            "connected": self.connected.load(Ordering::Relaxed),
            "position": self.confirmed,
            "read": self.reader.next_sequence() - 1,
            "write_cursor": write_cursor,
            "lag_sequences": lag,
            "lag_ns": lag_ns,
            "in_flight": self.published_seq.saturating_sub(self.confirmed),
            "counters": self.counters,
            "last_error": self.last_error,
        })
    }

    pub(super) fn write_status(&mut self) {
        if let Err(e) = self.status.write(&self.status_json()) {
            tracing::error!("status file {}: {e}", self.status.path().display());
        }
        self.last_status = Instant::now();
    }
}

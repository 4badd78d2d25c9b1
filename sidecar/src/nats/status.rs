//! The sidecar's counters and its status file (`<segment>.sidecars/<name>.json`).

use std::{sync::atomic::Ordering, time::Instant};

use qilin_shm::now_ns;
use serde_json::json;

use super::{Mode, Sidecar, config};

/// What the sidecar is doing: `state` in its status file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The segment does not exist yet, or the core is still creating it.
    WaitingForSegment,
    /// No connection to NATS yet (retried with backoff; `last_error` says why).
    Connecting,
    /// Connected; preparing the stream and finding where to resume.
    Resuming,
    /// Publishing (`connected` says whether NATS is reachable right now).
    Publishing,
    /// A publish, ack or round trip failed: backing off and resynchronising (`last_error`).
    Retrying,
    /// The segment was re-created under the same path and the downstream holds sequences of the
    /// old session: holding, not publishing (`last_error` says what to do).
    SegmentRecreated,
    /// Stopped on request (the last status of a clean stop).
    Stopped,
    /// Gave up: an error retrying cannot fix (`last_error`); the process exited.
    Failed,
}

impl State {
    /// The name in the status file.
    pub fn name(self) -> &'static str {
        match self {
            State::WaitingForSegment => "waiting-for-segment",
            State::Connecting => "connecting",
            State::Resuming => "resuming",
            State::Publishing => "publishing",
            State::Retrying => "retrying",
            State::SegmentRecreated => "segment-recreated",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

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
    /// Core restarts seen (new segment epochs), re-created segments included.
    pub epochs: u64,
    /// Segments re-created under the same path (a new file) seen while running.
    pub recreated: u64,
    /// Ticks the ring had lost that were published from the recorder's journal.
    pub backfilled: u64,
}

impl Sidecar {
    /// The status object (also written to the status file).
    pub fn status_json(&self) -> serde_json::Value {
        let write_cursor = self.reader.write_cursor();
        // Held on a re-created segment, none of the new session is delivered.
        let lag = if self.held.is_some() { write_cursor } else { write_cursor.saturating_sub(self.confirmed) };
        let lag_ns = if lag > 0 && self.confirmed_ns > 0 { (now_ns() - self.confirmed_ns).max(0) } else { 0 };
        json!({
            "sidecar": "qilin-nats",
            "name": self.config.name,
            "pid": std::process::id(),
            "feed": self.feed,
            "state": self.state.name(),
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

    /// Awaits `future`, rewriting the status file (and saving the cursor) whenever they fall due
    /// meanwhile: a wait on the server (an ack, a round trip, a publish permit) can last
    /// `request_timeout_ms`, while the status promises a rewrite every `status_interval_ms`, and
    /// an operator must see `connected: false` rather than a sidecar that looks dead. The future
    /// is polled once first, so a wait that is over at once costs no timer.
    pub(super) async fn keeping_status<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        if let std::task::Poll::Ready(out) = futures::poll!(future.as_mut()) {
            return out;
        }
        let interval = config::ms(self.config.status_interval_ms);
        loop {
            let due = tokio::time::Instant::from_std(self.last_status + interval);
            tokio::select! {
                out = &mut future => return out,
                () = tokio::time::sleep_until(due) => self.maintain(),
            }
        }
    }
}

//! `qilin-nats`: every tick of the segment to NATS.
//!
//! One message per tick on `<prefix>.<EXCHANGE>.<instrument>` (tokens sanitised by
//! [`subject_token`]), body the raw 376-byte record or JSON, headers `Nats-Msg-Id: <feed>-<seq>`,
//! `Qilin-Seq`, `Qilin-Epoch`, `Qilin-Source` (and `Qilin-Layout`, the layout fingerprint, for raw
//! bodies). Ticks the ring no longer holds become one gap event on `<prefix>._gap`. docs/SIDECARS.md
//! describes every message byte by byte for consumers in other languages.
//!
//! **Position.** `confirmed` is the last sequence the server confirmed: a JetStream ack, or in core
//! mode a round trip to the server ([`Prober`]) issued after the publish. It is saved to the
//! cursor file and is where a restart resumes. In JetStream mode the stream itself is the truth: at
//! start and after any failure the sidecar makes a round trip (so what the client still buffered
//! has arrived), reads the stream's last message and continues after the sequence in its
//! `Qilin-Seq` header. Every message carries
//! `Nats-Expected-Last-Sequence` (the stream sequence it must follow), so a message that the
//! server receives out of order (the tail of a dropped connection, a stale retransmission) is
//! refused rather than stored; the refusal triggers the same resynchronisation. Together this gives
//! every sequence once and in order in the stream, without relying on the duplicate window for
//! resuming (the window still drops the client's own retransmissions of a message id).
//!
//! **Failure.** On any publish, ack or round-trip failure the sidecar drops what is in flight, waits
//! (doubling backoff up to `reconnect_max_delay_ms`), resynchronises and republishes from the
//! position, reading the ring again: the ring is the buffer, so nothing is lost while NATS is down
//! unless the core laps the sidecar, which then publishes the exact lost range as a gap event.

//!
//! The parts: `connection` (connect options, TLS and authentication, the connect retry loop),
//! `stream` (the JetStream stream), `start` (opening the sidecar and finding where to resume),
//! `publish` (subjects, headers, messages), `confirm` (acks and round trips moving `confirmed`),
//! `run` (the publish loop), `resync` (failure, backoff and resynchronisation), `backfill`
//! (lost ranges from the recorder's journal or as gap events), `cursor` (the durable cursor),
//! `status` (counters and the status file), `starting` (the status file before the sidecar
//! exists: waiting for the segment or for NATS) and `recreated` (a segment re-created under the
//! same path).

mod backfill;
pub mod config;
mod confirm;
mod connection;
mod cursor;
mod publish;
mod recreated;
mod resync;
mod run;
mod start;
mod starting;
mod status;
mod stream;

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use async_nats::{Client, Subject, jetstream};
use qilin_shm::{Reader, TickRecord};

use self::confirm::{ConfirmFuture, Pending};
pub use self::{
    config::{Config, ConfigError, Mode, Payload, StartAt},
    confirm::Prober,
    connection::{connect_options, is_fatal, tls_error},
    publish::{
        EPOCH_HEADER, GAP_FIRST_HEADER, GAP_LAST_HEADER, LAYOUT_HEADER, SEQ_HEADER, SOURCE_HEADER, subject_token,
    },
    starting::Starting,
    status::{Counters, State},
};
use qilin_market::status::StatusFile;

use crate::cursor::CursorFile;

/// The sidecar: a reader on the segment and a NATS connection.
pub struct Sidecar {
    config: Config,
    reader: Reader,
    feed: String,
    prefix: String,
    /// Shared, so a publish that has to wait can be awaited while the status is kept fresh.
    client: Arc<Client>,
    /// `nats.credentials_file`'s watch: a rotated managed key makes the client reconnect.
    _credentials_watch: Option<connection::CredentialsWatch>,
    prober: Arc<Prober>,
    js: Option<Arc<jetstream::Context>>,
    connected: Arc<AtomicBool>,
    stream_name: String,
    /// Subjects by instrument index (checked against the tick's exchange and id).
    subjects: Vec<Option<(u8, [u8; 32], Subject)>>,
    /// The epoch as header text, rebuilt when the epoch changes.
    epoch_text: (u64, String),
    /// `Qilin-Layout` value: the layout fingerprint as `qilinctl layout --json` writes it.
    layout_text: String,
    /// Capacity of the next JSON body: the longest written so far plus some slack (so a body is
    /// allocated once, not regrown while it is written).
    json_capacity: usize,
    gap_subject: Subject,
    pending: VecDeque<Pending>,
    /// Core mode: the round trip in flight, with the sequence and publish time it confirms.
    confirming: Option<(u64, i64, ConfirmFuture)>,
    last_confirm: Instant,
    /// Next stream sequence the next message must follow (JetStream).
    expected_last: u64,
    published_seq: u64,
    published_ns: i64,
    confirmed: u64,
    confirmed_ns: i64,
    counters: Counters,
    /// Gap events published but not yet confirmed: counted when confirmed, forgotten (and read
    /// again from the ring) after a failure.
    unconfirmed_gaps: VecDeque<(u64, u64)>,
    last_error: Option<String>,
    cursor_file: CursorFile,
    saved: u64,
    /// The cursor save in flight on the blocking pool, returning the sequence it saved.
    saving: Option<tokio::task::JoinHandle<Result<u64, crate::cursor::CursorError>>>,
    last_save: Instant,
    status: StatusFile,
    last_status: Instant,
    state: State,
    /// The file the reader mapped, to notice a segment re-created under the same path.
    segment_file: crate::recorder::SegmentFile,
    last_segment_check: Instant,
    /// Holding after a re-created segment: why (see `recreated`).
    held: Option<String>,
    backoff: Duration,
    tick: TickRecord,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar").field("feed", &self.feed).field("confirmed", &self.confirmed).finish_non_exhaustive()
    }
}

/// Why the sidecar stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop (signal).
    Requested,
    /// The reader reached `until` (benchmarks and tests).
    Reached,
}

impl Sidecar {
    /// The feed name.
    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// Last confirmed sequence.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_nats_server_config_is_valid() {
        let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/nats-server.conf");
        let out = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .arg("-t")
            .output()
            .expect("nats-server must be installed (.ci/run installs Debian's nats-server)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

//! `qilin-mirror`: the feed's JetStream stream (as qilin-nats publishes it) back into a local
//! segment of the same layout on another host, with the feed's sequences and epoch, so strategies
//! there use the unchanged readers (Rust, C, Python).
//!
//! **Position: the segment is the truth.** The mirror keeps no cursor file and no server-side
//! state: on start it opens its segment, and the next sequence to write is its write cursor + 1.
//! It then finds in the stream the first message whose `Qilin-Seq` is at least that (a binary
//! search over stream sequences, `log2(messages)` direct gets: the stream is in feed-sequence
//! order) and follows from there. Whatever was written before a SIGKILL is never written twice,
//! and whatever was not is read again from the stream.
//!
//! **An ordered consumer, not a durable one.** A durable consumer would keep a second copy of the
//! position on the server, acknowledged after the segment write: a crash between the two makes
//! them disagree, and the segment would have to win anyway. It would also cost an ack per message,
//! leave consumer state to clean up when a mirror host is retired, and (on an R3 stream) replicate
//! that state across the cluster. An ordered consumer is an ephemeral, flow-controlled, ack-less
//! R1 consumer that the client recreates on a missed heartbeat or a sequence mismatch; the mirror
//! recreates it too after any error, from its segment's position. Nothing outlives the process.
//! Being R1, it can sit on a node that stalls (SIGSTOP): after `stall_check_ms` without a message
//! the mirror asks the stream's leader whether there is more, and resyncs if so (`run`).
//!
//! **A fresh mirror** (no segment yet) waits for the stream's first message, takes the stream's
//! last message as its starting point (its `Qilin-Seq` and `Qilin-Epoch`), creates the segment
//! with that epoch and with every earlier sequence marked lost (readers starting at the oldest get
//! a gap, not a stall), fills each instrument's last value from the stream's last message of its
//! subject (a `last_per_subject` consumer), and then follows from the message after. With
//! `start = "first"` it starts at the stream's first message instead and replays everything the
//! stream retains through the ring.
//!
//! **Gaps.** A gap event of the stream, a range the stream no longer holds (purged, `max_msgs`,
//! `max_age`), and a message skipped as bad all become sequences marked lost in the segment, which
//! every reader reports as a gap (`qilin_shm::Writer::mark_lost`, LAYOUT.md "Mirrors"). Bad input
//! is in `apply`'s table.
//!
//! The parts: `config`, `apply` (one message into the segment), `start` (open or create the
//! segment, fill, find where to resume), `run` (connection, the follow loop, resync), `status`
//! (counters and the status file).

mod apply;
pub mod config;
mod run;
mod start;
mod status;

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicBool},
};

use qilin_market::products::Instruments;
use qilin_shm::Writer;

pub use self::{
    apply::Refused,
    config::{Config, ConfigError, StartAt},
    run::run,
    status::{Counters, State},
};

/// The mirror once its segment is open.
pub struct Mirror {
    config: Config,
    writer: Writer,
    capacity: u32,
    /// The segment's directory: instrument id → index (the mirror's own, see `apply`).
    directory: HashMap<[u8; 32], u32>,
    instruments: Option<Instruments>,
    /// `Qilin-Layout` this build reads: the layout fingerprint as qilin-nats writes it.
    layout_text: String,
    counters: Counters,
    /// `publish_ns` of the last tick written (the feed host's clock).
    last_publish_ns: i64,
    /// This host's clock when the last tick was written minus its `publish_ns`: feed segment to
    /// mirror segment, across two clocks.
    last_latency_ns: i64,
    last_error: Option<String>,
    /// Newest sequence of the stream as the last message delivered saw it: its position plus
    /// the stream messages still pending after it (exact while those are ticks; 0: not yet).
    feed_newest: u64,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("feed", &self.config.feed).field("writer", &self.writer).finish_non_exhaustive()
    }
}

impl Mirror {
    /// The last sequence written (or marked lost).
    pub fn position(&self) -> u64 {
        self.writer.next_sequence() - 1
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests;

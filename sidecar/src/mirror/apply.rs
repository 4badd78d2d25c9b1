//! One stream message into the local segment, in sequence order or not at all.
//!
//! | the message | what the mirror does |
//! |---|---|
//! | the next tick (`Qilin-Seq` = next) | written at its sequence (ring slot, last value, cursor) |
//! | a tick further on | the sequences between are lost (the stream lacks them: purged, limits) and marked so, then the tick is written |
//! | a gap event (`Qilin-Gap-First/Last`) | its range (from the next sequence on) marked lost |
//! | a sequence already written (it goes backwards) | skipped, counted `backwards`, logged |
//! | a body that does not decode (not 376 bytes, `sequence` ≠ `Qilin-Seq`, an index past the capacity) or headers missing | skipped, counted `undecodable`, logged; its sequence (and any before it not yet written) marked lost |
//! | an epoch below the segment's | skipped as above, counted `bad_epoch` |
//! | an epoch above the segment's | the feed restarted: the segment takes the new epoch (readers see it once), counted `epochs` |
//! | `Qilin-Layout` not this build's fingerprint, or no `Qilin-Layout` (a JSON stream) | refused: [`Refused`], the process stops with the reason |
//! | a new instrument when the directory is full | skipped, counted `directory_full`, logged; its sequence marked lost |
//!
//! **The directory is the mirror's own.** The stream carries each tick's instrument id and exchange
//! but not the feed's directory, and an instrument can first appear in the stream after one with a
//! higher feed index (it had not ticked yet, or its early ticks were purged). Directory entries are
//! immutable once published, so the mirror cannot keep the feed's indexes without leaving entries
//! that no lookup ever finds. It appends an entry the first time an instrument appears (multiplier
//! and tick from the product table when it has one) and writes each record with
//! `instrument_index` set to that entry: every other field is the feed's, byte for byte, and every
//! lookup by id, last value and snapshot on the mirror host works. Strategies resolve an id to an
//! index on their own host (`find_instrument`), as they should anyway.
//!
//! Skips are logged once per kind and then every 1 000th, so a stream full of bad messages cannot
//! flood the log; the counters count every one.

use async_nats::HeaderMap;
use qilin_shm::{DirectoryEntry, Exchange, TickRecord, layout::fixed_id};
use zerocopy::FromBytes;

use super::Mirror;
use crate::nats::{EPOCH_HEADER, GAP_FIRST_HEADER, GAP_LAST_HEADER, LAYOUT_HEADER, SEQ_HEADER};

/// Input the mirror will not write: the process stops with this reason (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The stream carries records of another layout (or JSON bodies).
    #[error(
        "the stream carries records of layout {found}, this build reads {expected} (Qilin-Layout header): \
         run a qilin-mirror built from the feed's version, or have qilin-nats publish payload = \"raw\""
    )]
    Layout {
        /// The header's value (`none` when absent).
        found: String,
        /// This build's fingerprint.
        expected: String,
    },
}

/// Why a message was skipped (each counted and logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Skip {
    Undecodable,
    Backwards,
    BadEpoch,
    DirectoryFull,
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

fn number(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    header(headers, name).and_then(|v| v.parse().ok())
}

impl Mirror {
    /// Applies one message of the stream (see the module table).
    pub fn apply(&mut self, headers: Option<&HeaderMap>, payload: &[u8]) -> Result<(), Refused> {
        let next = self.writer.next_sequence();
        let (Some(seq), Some(epoch)) = (number(headers, SEQ_HEADER), number(headers, EPOCH_HEADER)) else {
            // No sequence: nothing to mark; the next good message's jump marks what it covered.
            self.skip(Skip::Undecodable, 0, "a message without Qilin-Seq or Qilin-Epoch");
            return Ok(());
        };
        if seq < next {
            self.skip(Skip::Backwards, seq, &format!("sequence {seq} is already written (next is {next})"));
            return Ok(());
        }
        if epoch < self.writer.epoch() {
            let why = format!("epoch {epoch} is below the segment's {}", self.writer.epoch());
            self.skip(Skip::BadEpoch, seq, &why);
            self.lose(next, seq);
            return Ok(());
        }
        if let Some(first) = number(headers, GAP_FIRST_HEADER) {
            let Some(last) = number(headers, GAP_LAST_HEADER).filter(|l| *l >= first && *l == seq) else {
                self.skip(Skip::Undecodable, seq, "a gap event whose Qilin-Gap-Last is missing or not its Qilin-Seq");
                self.lose(next, seq);
                return Ok(());
            };
            self.follow_epoch(epoch);
            self.counters.gap_events += 1;
            self.lose(next, last);
            return Ok(());
        }
        match header(headers, LAYOUT_HEADER) {
            Some(layout) if layout == self.layout_text => {}
            other => {
                return Err(Refused::Layout {
                    found: other.unwrap_or("none").to_owned(),
                    expected: self.layout_text.clone(),
                });
            }
        }
        let mut record = match TickRecord::read_from_bytes(payload) {
            Ok(r) if r.sequence == seq && r.instrument_id_str().is_some_and(|id| !id.is_empty()) => r,
            Ok(r) => {
                let why = format!(
                    "body of sequence {seq} says sequence {} and instrument id {:?}",
                    r.sequence,
                    String::from_utf8_lossy(&r.instrument_id)
                );
                self.skip(Skip::Undecodable, seq, &why);
                self.lose(next, seq);
                return Ok(());
            }
            Err(_) => {
                let why = format!(
                    "body of sequence {seq} is {} bytes, a record is {}",
                    payload.len(),
                    size_of::<TickRecord>()
                );
                self.skip(Skip::Undecodable, seq, &why);
                self.lose(next, seq);
                return Ok(());
            }
        };
        let Some(index) = self.local_index(&record) else {
            let why = format!("the directory is full ({} entries): sequence {seq} not written", self.capacity);
            self.skip(Skip::DirectoryFull, seq, &why);
            self.lose(next, seq);
            return Ok(());
        };
        record.instrument_index = index;
        self.follow_epoch(epoch);
        if seq > next {
            self.counters.holes += 1;
            tracing::warn!("sequences {next}..={} are not in the stream; marked lost", seq - 1);
            self.lose(next, seq - 1);
        }
        self.writer.publish_at(&record).expect("in order, instrument in the directory: checked above");
        self.counters.ticks += 1;
        self.last_publish_ns = record.publish_ns;
        self.last_latency_ns = qilin_shm::now_ns() - record.publish_ns;
        Ok(())
    }

    /// Marks `first..=last` lost if it is not empty (`first` is the next sequence).
    fn lose(&mut self, first: u64, last: u64) {
        if last >= first {
            self.writer.mark_lost(first, last).expect("first is the next sequence");
            self.counters.lost_sequences += last - first + 1;
        }
    }

    fn follow_epoch(&mut self, epoch: u64) {
        if epoch > self.writer.epoch() {
            tracing::info!("the feed restarted: epoch {} → {epoch}; sequences continue", self.writer.epoch());
            self.writer.set_epoch(epoch);
            self.counters.epochs += 1;
        }
    }

    fn skip(&mut self, kind: Skip, seq: u64, why: &str) {
        let n = match kind {
            Skip::Undecodable => &mut self.counters.undecodable,
            Skip::Backwards => &mut self.counters.backwards,
            Skip::BadEpoch => &mut self.counters.bad_epoch,
            Skip::DirectoryFull => &mut self.counters.directory_full,
        };
        *n += 1;
        if *n == 1 || n.is_multiple_of(1000) {
            tracing::warn!("skipped a message ({kind:?}, sequence {seq}, {n} so far): {why}");
        }
        self.last_error = Some(format!("skipped ({kind:?}): {why}"));
    }

    /// The mirror's directory index of the record's instrument, appending its entry the first
    /// time; `None` when the directory is full.
    pub(super) fn local_index(&mut self, record: &TickRecord) -> Option<u32> {
        if let Some(index) = self.directory.get(&record.instrument_id) {
            return Some(*index);
        }
        let entry = self.entry_for(record);
        let index = self.writer.add_directory_entry(&entry).ok()?;
        self.directory.insert(record.instrument_id, index);
        Some(index)
    }

    fn entry_for(&self, record: &TickRecord) -> DirectoryEntry {
        let id = record.instrument_id_str().unwrap_or("");
        let spec = self.instruments.as_ref().and_then(|i| i.spec_for(id));
        let exchange = Exchange::from_code(record.exchange);
        DirectoryEntry {
            instrument_id: record.instrument_id,
            exchange_id: exchange.and_then(|e| fixed_id::<8>(e.as_str())).unwrap_or([0; 8]),
            exchange: record.exchange,
            reserved0: [0; 3],
            volume_multiple: spec.map_or(0, |s| s.volume_multiple),
            price_tick: spec.map_or(f64::NAN, |s| s.price_tick),
            reserved1: [0],
        }
    }
}

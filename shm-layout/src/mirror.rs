//! The writer side of a **mirror**: a segment rebuilt on another host from the feed's stream
//! (`qilin-mirror`), read there by the unchanged readers. It differs from the core's writing in
//! four ways, each a method here:
//!
//! - it keeps the feed's epoch and sequences ([`Writer::open_mirror`], [`Writer::set_epoch`],
//!   [`Writer::publish_at`]): a reader sees the same sequence numbers on every host;
//! - a fresh mirror fills the last values before it follows ([`Writer::set_last_value`]);
//! - it builds its directory from the instruments it sees ([`Writer::add_directory_entry`]);
//! - a range the stream no longer has is marked lost ([`Writer::mark_lost`]) so that every reader
//!   reports it as a gap and none stalls.
//!
//! **How a lost range reads.** A reader wanting sequence `s` loads the stamp of slot
//! `s & (ring_slots − 1)`: `2s` is the tick, below `2s` is "not yet", above `2s` is "overwritten"
//! and the reader reports a gap and resumes from the write cursor (LAYOUT.md, "Reading ticks").
//! [`Writer::mark_lost`]`(first, last)` stores the *lost stamp* `2c + 1` in the slot of each of the
//! last `min(ring_slots, last − first + 1)` sequences `c` of the range, then moves the write cursor
//! to `last`. For a reader wanting any `s` in the range, the stamp of its slot is `2c + 1` for the
//! largest lost `c ≡ s` (mod ring_slots), `c ≥ s`: above `2s`, so a gap; for a later sequence of
//! the slot (`s > last`) it is below `2s`, so "not yet" until the mirror writes it. Sequences
//! before the last ring's worth need no store: their slots already hold a later lost stamp, as if
//! the writer had lapped them. The unchanged Rust, C and Python readers therefore report the range
//! as one or more adjacent gaps that cover it exactly (a short range is reported a piece at a time:
//! the resume point is computed from the cursor and the lap headroom, never past `s + 1` while the
//! cursor is behind), and never return anything for it.
//!
//! Why not placeholder records with a quality bit: a reader that does not know the bit (readers
//! must ignore unknown bits) would hand a placeholder to a strategy as a real tick. A lost stamp
//! carries no record at all, needs no new bit, no layout or version change, and costs one store
//! per slot, at most a ring's worth whatever the length of the range.

use std::path::Path;

use crate::{
    error::{DirectoryError, OpenError},
    layout::{DirectoryEntry, RECORD_WORDS, TickRecord},
    region::Word,
    seqlock,
    sync::Ordering,
    writer::{EpochRule, SegmentOptions, Writer},
};

/// Where a fresh mirror starts: the feed's epoch and the first sequence it will write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorStart {
    /// The feed's epoch (the `Qilin-Epoch` of the stream).
    pub epoch: u64,
    /// The first feed sequence the mirror will write (or mark lost); the ones before it are marked
    /// lost, so a reader starting from the oldest gets a gap, not a stall.
    pub next_sequence: u64,
}

/// Why a mirror write was refused (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// The sequence is not the next one: the mirror writes in sequence order only.
    #[error("sequence {got} is not the next one ({expected}): a mirror writes sequences in order")]
    OutOfOrder {
        /// The next sequence of the segment.
        expected: u64,
        /// The sequence offered.
        got: u64,
    },
    /// A lost range whose last sequence is before its first.
    #[error("lost range {first}..={last} is empty")]
    EmptyRange {
        /// First sequence.
        first: u64,
        /// Last sequence.
        last: u64,
    },
    /// `instrument_index` is not below the directory length.
    #[error("instrument index {index} is not in the directory ({len} entries)")]
    UnknownInstrument {
        /// Index in the record.
        index: u32,
        /// Directory length.
        len: u32,
    },
}

impl Writer {
    /// Creates or reopens the segment at `path` as a mirror of a feed and takes its exclusive lock.
    /// A fresh segment takes `start.epoch` and marks every sequence before `start.next_sequence`
    /// lost (before its magic is published); an existing one keeps its epoch and continues after
    /// its write cursor (`start` is ignored: the caller resumes from
    /// [`next_sequence`](Writer::next_sequence)).
    pub fn open_mirror(
        path: impl AsRef<Path>,
        options: &SegmentOptions,
        start: MirrorStart,
    ) -> Result<Writer, OpenError> {
        let path = path.as_ref();
        let (region, backing, fresh, feed_name) = Writer::open_parts(path, options)?;
        let rule = EpochRule::Mirror { epoch: start.epoch, next_sequence: start.next_sequence.max(1) };
        Ok(Writer::start(region, backing, fresh, feed_name, path.to_owned(), rule))
    }

    /// Sets the epoch (the feed restarted: the stream's `Qilin-Epoch` changed). Readers report it
    /// once as a new epoch; sequences continue.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.region.word(Word::Epoch).store(epoch, Ordering::Release);
    }

    /// Publishes a tick at the sequence it carries, which must be [`next_sequence`](Writer::next_sequence)
    /// (a mirror never writes out of order; mark a missing range lost first). Writes the ring slot
    /// and the last value, then advances the write cursor, as [`publish`](Writer::publish) does.
    pub fn publish_at(&mut self, record: &TickRecord) -> Result<u64, MirrorError> {
        if record.sequence != self.next_seq {
            return Err(MirrorError::OutOfOrder { expected: self.next_seq, got: record.sequence });
        }
        if record.instrument_index >= self.directory_len {
            return Err(MirrorError::UnknownInstrument { index: record.instrument_index, len: self.directory_len });
        }
        Ok(self.write_next(record))
    }

    /// Marks `first..=last` lost (`first` must be the next sequence): readers report it as a gap
    /// (see the module documentation); the write cursor moves to `last`.
    pub fn mark_lost(&mut self, first: u64, last: u64) -> Result<(), MirrorError> {
        if first != self.next_seq {
            return Err(MirrorError::OutOfOrder { expected: self.next_seq, got: first });
        }
        if last < first {
            return Err(MirrorError::EmptyRange { first, last });
        }
        self.tombstone(first, last);
        Ok(())
    }
}

impl<R: crate::record::Record> Writer<R> {
    /// Stores the lost stamp in the slots of the last ring's worth of `first..=last`, then the
    /// cursor. A writer killed in between leaves the cursor at `first − 1`: the next one marks the
    /// range again (the stamps are not `done`, so recovery does not adopt them).
    pub(crate) fn tombstone(&mut self, first: u64, last: u64) {
        let ring = self.region.geometry().ring_slots;
        let from = first.max(last.saturating_sub(ring - 1));
        for seq in from..=last {
            // Release: paired with the reader's Acquire stamp load (SYNC S-done); no record word
            // changes, so a reader copying the slot's previous lap still gets a whole record.
            self.region.slot(seq).stamp.store(seqlock::ring_lost(seq), Ordering::Release);
        }
        // SYNC C-cursor: a reader that loads this cursor sees every lost stamp above.
        self.region.word(Word::WriteCursor).store(last, Ordering::Release);
        self.next_seq = last + 1;
    }
}

impl Writer {
    /// Writes `record` as its instrument's last value without a ring slot (a fresh mirror's fill:
    /// the stream's last tick of each instrument, all before the sequence it starts at).
    pub fn set_last_value(&mut self, record: &TickRecord) -> Result<(), MirrorError> {
        if record.instrument_index >= self.directory_len {
            return Err(MirrorError::UnknownInstrument { index: record.instrument_index, len: self.directory_len });
        }
        let words: &[u64; RECORD_WORDS] = zerocopy::transmute_ref!(record);
        let lvc = self.region.lvc(record.instrument_index);
        seqlock::write_versioned(lvc.stamp, lvc.words, words);
        Ok(())
    }

    /// Appends `entry` to the directory as given and returns its index. A mirror builds its own
    /// directory from the instruments it sees in the stream (LAYOUT.md, "Mirrors"); unlike
    /// [`add_instrument`](Writer::add_instrument) this neither looks the id up nor checks it.
    pub fn add_directory_entry(&mut self, entry: &DirectoryEntry) -> Result<u32, DirectoryError> {
        let capacity = self.region.geometry().instrument_capacity;
        if self.directory_len >= capacity {
            return Err(DirectoryError::Full { capacity });
        }
        let index = self.directory_len;
        // SAFETY: `&mut self` makes us the single writer; `index == directory_len` is unpublished.
        #[allow(unsafe_code)]
        unsafe {
            self.region.write_directory_entry(index, entry)
        };
        self.directory_len += 1;
        self.region.word(Word::DirectoryLen).store(u64::from(self.directory_len), Ordering::Release); // SYNC D-len
        Ok(index)
    }

    /// The directory entry at `index`, if there is one.
    pub fn directory_entry(&self, index: u32) -> Option<DirectoryEntry> {
        (index < self.directory_len).then(|| self.region.directory_entry(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Next, Reader, Start, codes::Exchange};

    fn options(ring_slots: u64) -> SegmentOptions {
        SegmentOptions { feed_name: "mirror-unit".into(), ring_slots, instrument_capacity: 4 }
    }

    fn tick(seq: u64) -> TickRecord {
        let mut t = TickRecord::ZERO;
        t.sequence = seq;
        t.last_price = seq as f64;
        t
    }

    /// Every event a reader reports from `from` until it has accounted for `until`.
    fn events(reader: &mut Reader, from: u64, until: u64) -> Vec<Next> {
        reader.seek(Start::Sequence(from));
        let mut out = Vec::new();
        let mut t = TickRecord::ZERO;
        while reader.next_sequence() <= until {
            match reader.try_next(&mut t) {
                Next::Empty => panic!("stalled at {}", reader.next_sequence()),
                Next::Tick => {
                    assert_eq!(t.sequence, reader.next_sequence() - 1);
                    out.push(Next::Tick);
                }
                other => out.push(other),
            }
        }
        out
    }

    fn gap_cover(events: &[Next]) -> Vec<(u64, u64)> {
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for e in events {
            if let Next::Gap { first, last } = *e {
                match merged.last_mut() {
                    Some(m) if m.1 + 1 == first => m.1 = last,
                    _ => merged.push((first, last)),
                }
            }
        }
        merged
    }

    #[test]
    fn lost_ranges_short_and_longer_than_the_ring_read_as_exact_gaps() {
        for (ring, lost) in [(16u64, 3u64), (16, 16), (16, 17), (16, 100), (8, 1)] {
            let (mut w, heap) = Writer::on_heap(&options(ring));
            w.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
            for s in 1..=5 {
                w.publish_at(&tick(s)).unwrap();
            }
            w.mark_lost(6, 5 + lost).unwrap();
            let after = 6 + lost;
            let mut reader = Reader::on_heap(&heap);
            // Mid-range and at the end of the range: a gap, never Empty (events() panics on a stall).
            let seen = events(&mut reader, 6, 5 + lost);
            assert_eq!(gap_cover(&seen), vec![(6, 5 + lost)], "ring {ring} lost {lost}");
            // The next sequence is not there yet, and then it is.
            reader.seek(Start::Sequence(after));
            let mut t = TickRecord::ZERO;
            assert_eq!(reader.try_next(&mut t), Next::Empty);
            w.publish_at(&tick(after)).unwrap();
            assert_eq!(reader.try_next(&mut t), Next::Tick);
            assert_eq!(t.sequence, after);
            // From the oldest: a gap covering what is not there, then the one tick, nothing twice.
            reader.seek(Start::Oldest);
            let start = reader.next_sequence();
            let seen = events(&mut reader, start, after);
            assert_eq!(seen.last(), Some(&Next::Tick));
            let ticks = seen.iter().filter(|e| **e == Next::Tick).count() as u64;
            let lost_seen: u64 = gap_cover(&seen).iter().map(|(f, l)| l - f + 1).sum();
            assert_eq!(ticks + lost_seen, after - start + 1);
        }
    }

    #[test]
    // A segment file (mmap, flock): not under Miri, which runs the heap-segment tests above.
    #[cfg_attr(miri, ignore)]
    fn a_fresh_mirror_starts_at_the_feeds_sequence_and_epoch_and_never_stalls_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let start = MirrorStart { epoch: 7, next_sequence: 1000 };
        let mut w = Writer::open_mirror(&path, &options(64), start).unwrap();
        assert_eq!((w.epoch(), w.next_sequence()), (7, 1000));
        w.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
        let mut last = tick(990);
        last.instrument_index = 0;
        w.set_last_value(&last).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        assert_eq!((reader.epoch(), reader.write_cursor()), (7, 999));
        let mut book = TickRecord::ZERO;
        assert_eq!(reader.latest(0, &mut book), Ok(true));
        assert_eq!(book.sequence, 990);
        reader.seek(Start::Oldest);
        let from = reader.next_sequence();
        assert_eq!(gap_cover(&events(&mut reader, from, 999)), vec![(from, 999)]);
        w.publish_at(&tick(1000)).unwrap();
        let mut t = TickRecord::ZERO;
        assert_eq!(reader.try_next(&mut t), Next::Tick);
        assert_eq!(t.sequence, 1000);
        // Out of order is refused and writes nothing.
        assert_eq!(w.publish_at(&tick(1000)), Err(MirrorError::OutOfOrder { expected: 1001, got: 1000 }));
        assert_eq!(w.publish_at(&tick(1002)), Err(MirrorError::OutOfOrder { expected: 1001, got: 1002 }));
        assert_eq!(w.mark_lost(1002, 1003), Err(MirrorError::OutOfOrder { expected: 1001, got: 1002 }));
        assert_eq!(w.mark_lost(1001, 1000), Err(MirrorError::EmptyRange { first: 1001, last: 1000 }));
        assert_eq!(reader.try_next(&mut t), Next::Empty);
        // Reopening keeps the epoch and continues after the cursor (a mirror restart is invisible).
        drop(w);
        let w = Writer::open_mirror(&path, &options(64), MirrorStart { epoch: 99, next_sequence: 5 }).unwrap();
        assert_eq!((w.epoch(), w.next_sequence()), (7, 1001));
        assert_eq!(reader.try_next(&mut t), Next::Empty);
        assert_eq!(reader.current_epoch(), 7);
    }

    #[test]
    fn a_new_feed_epoch_is_reported_once_and_sequences_continue() {
        let (mut w, heap) = Writer::on_heap(&options(16));
        w.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
        let mut reader = Reader::on_heap(&heap);
        w.publish_at(&tick(1)).unwrap();
        let epoch = w.epoch();
        w.set_epoch(epoch + 3);
        w.publish_at(&tick(2)).unwrap();
        let mut t = TickRecord::ZERO;
        reader.seek(Start::Sequence(1));
        assert_eq!(reader.try_next(&mut t), Next::NewEpoch { previous: epoch, current: epoch + 3 });
        assert_eq!(reader.try_next(&mut t), Next::Tick);
        assert_eq!(reader.try_next(&mut t), Next::Tick);
        assert_eq!(t.sequence, 2);
    }

    #[test]
    fn directory_entries_are_appended_as_given() {
        let (mut w, heap) = Writer::on_heap(&options(16));
        let mut entry = DirectoryEntry {
            instrument_id: crate::layout::fixed_id::<32>("rb2605").unwrap(),
            exchange_id: crate::layout::fixed_id::<8>("SHFE").unwrap(),
            exchange: Exchange::Shfe as u8,
            reserved0: [0; 3],
            volume_multiple: 10,
            price_tick: 1.0,
            reserved1: [0],
        };
        assert_eq!(w.add_directory_entry(&entry), Ok(0));
        entry.instrument_id = [0; 32];
        assert_eq!(w.add_directory_entry(&entry), Ok(1));
        let reader = Reader::on_heap(&heap);
        assert_eq!(reader.directory_len(), 2);
        assert_eq!(reader.find_instrument("rb2605"), Some(0));
        assert_eq!(w.directory_entry(1).unwrap().instrument_id, [0; 32]);
        let mut t = tick(1);
        t.instrument_index = 2;
        assert_eq!(w.publish_at(&t), Err(MirrorError::UnknownInstrument { index: 2, len: 2 }));
        assert_eq!(w.set_last_value(&t), Err(MirrorError::UnknownInstrument { index: 2, len: 2 }));
    }
}

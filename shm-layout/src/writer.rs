//! The single writer. Creating a [`Writer`] takes the segment's exclusive lock, so holding one *is*
//! the right to write; every method that changes shared memory takes `&mut self` or only touches
//! words no reader writes.

use std::path::{Path, PathBuf};

use crate::{
    codes::{Counter, RunState},
    error::{DirectoryError, OpenError, PublishError},
    layout::{DirectoryEntry, STATUS_WORDS, StatusRecord, TickRecord, fixed_id},
    mapping::{self, Backing, Opened},
    record::{Record, Words},
    region::{Geometry, Region, Word},
    seqlock,
    sync::Ordering,
};

/// Capacities and name of a segment, fixed when it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Feed name stored in the header (ASCII, at most 31 bytes).
    pub feed_name: String,
    /// Ring capacity in slots; a power of two.
    pub ring_slots: u64,
    /// Instrument directory and last-value-cache capacity.
    pub instrument_capacity: u32,
}

/// What [`Writer::open`] found and did, for the caller to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The segment was created (or re-created after an interrupted creation).
    pub created: bool,
    /// Epoch now in force.
    pub epoch: u64,
    /// First sequence this writer will publish.
    pub next_sequence: u64,
    /// A slot the previous writer had finished but not yet counted in the cursor was adopted.
    pub adopted_slots: u64,
    /// Last-value-cache entries the previous writer died in the middle of, cleared.
    pub cleared_lvc_entries: u32,
}

/// How [`Writer::start`] sets the epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EpochRule {
    /// The core: every start is a new epoch (the previous one + 1).
    Bump,
    /// A mirror: a fresh segment takes the feed's `epoch` and starts at the feed's
    /// `next_sequence`; an existing one keeps its epoch and cursor.
    Mirror { epoch: u64, next_sequence: u64 },
}

/// The only writer of a segment: of ticks (`Writer`, the default, written by the core) or of bars
/// (`Writer<BarRecord>`, [`crate::BarWriter`], written by `qilin-bars`).
#[derive(Debug)]
pub struct Writer<R: Record = TickRecord> {
    pub(crate) region: Region<R>,
    pub(crate) next_seq: u64,
    pub(crate) directory_len: u32,
    pub(crate) epoch: u64,
    path: PathBuf,
    report: OpenReport,
    /// Mark the segment stopped when dropped (cleared by tests to simulate a crash).
    stop_on_drop: bool,
    // Declared last: dropped after `region`, which points into it.
    _backing: Backing,
}

/// UTC nanoseconds now (CLOCK_REALTIME).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

impl Writer {
    /// Creates the tick segment at `path` (mode 0640) or reopens an existing one of the same layout
    /// and capacities, and takes its exclusive lock. Reopening bumps the epoch and continues the
    /// sequence. ([`Writer::open_segment`] for any record kind.)
    pub fn open(path: impl AsRef<Path>, options: &SegmentOptions) -> Result<Writer, OpenError> {
        Writer::open_segment(path, options)
    }
}

impl<R: Record> Writer<R> {
    /// Creates the segment of `R` records at `path` (mode 0640) or reopens an existing one of the
    /// same kind, layout and capacities, and takes its exclusive lock. Reopening bumps the epoch
    /// and continues the sequence. A segment of the other kind is refused
    /// ([`OpenError::WrongKind`]).
    pub fn open_segment(path: impl AsRef<Path>, options: &SegmentOptions) -> Result<Writer<R>, OpenError> {
        let path = path.as_ref();
        let (region, backing, fresh, feed_name) = Writer::open_parts(path, options)?;
        Ok(Writer::start(region, backing, fresh, feed_name, path.to_owned(), EpochRule::Bump))
    }

    /// Maps and locks a segment for [`Writer::open`] and [`Writer::open_mirror`]: the geometry,
    /// feed name and capacity checks they share.
    pub(crate) fn open_parts(
        path: &Path,
        options: &SegmentOptions,
    ) -> Result<(Region<R>, Backing, bool, [u8; 32]), OpenError> {
        let geometry = Geometry::of::<R>(options.ring_slots, options.instrument_capacity)
            .map_err(|source| OpenError::Geometry { path: path.to_owned(), source })?;
        let feed_name = fixed_id::<32>(&options.feed_name).ok_or_else(|| OpenError::Corrupt {
            path: path.to_owned(),
            detail: format!("feed name {:?} must be ASCII and at most 31 bytes", options.feed_name),
        })?;
        let (region, backing, opened) = mapping::open_writer(path, geometry)?;
        if let Opened::Existing = opened {
            let found = *region.geometry();
            for (key, found, wanted) in [
                ("ring_slots", found.ring_slots, geometry.ring_slots),
                ("instrument_capacity", u64::from(found.instrument_capacity), u64::from(geometry.instrument_capacity)),
            ] {
                if found != wanted {
                    return Err(OpenError::CapacityMismatch { path: path.to_owned(), key, found, wanted });
                }
            }
        }
        Ok((region, backing, matches!(opened, Opened::Fresh), feed_name))
    }

    pub(crate) fn start(
        region: Region<R>,
        backing: Backing,
        fresh: bool,
        feed_name: [u8; 32],
        path: PathBuf,
        rule: EpochRule,
    ) -> Writer<R> {
        let now = now_ns();
        let mut writer = Writer {
            directory_len: 0,
            next_seq: 1,
            epoch: 0,
            path,
            report: OpenReport { created: fresh, epoch: 0, next_sequence: 1, adopted_slots: 0, cleared_lvc_entries: 0 },
            stop_on_drop: true,
            region,
            _backing: backing,
        };
        writer.recover();
        let found = writer.region.word(Word::Epoch).load(Ordering::Relaxed);
        writer.epoch = match rule {
            EpochRule::Bump => found + 1,
            EpochRule::Mirror { epoch, .. } if fresh => epoch,
            EpochRule::Mirror { .. } => found,
        };
        if let EpochRule::Mirror { next_sequence, .. } = rule
            && fresh
            && next_sequence > 1
        {
            // A fresh mirror starts at the feed's next sequence: everything before it is a range
            // this segment never had, marked lost before the magic is published (below), so no
            // reader ever sees cursor 0 or a slot that stalls it (LAYOUT.md, "Mirrors").
            writer.tombstone(1, next_sequence - 1);
        }
        let r = &writer.region;
        r.word(Word::Epoch).store(writer.epoch, Ordering::Release);
        r.word(Word::WriterPid).store(u64::from(std::process::id()), Ordering::Relaxed);
        r.word(Word::StartedNs).store(now as u64, Ordering::Relaxed);
        r.word(Word::Heartbeat).store(now as u64, Ordering::Relaxed);
        r.word(Word::RunState).store(RunState::Starting as u64, Ordering::Release);
        if fresh {
            // Last, so a reader that sees the magic also sees epoch 1 and the session words (a
            // reader never records a phantom epoch 0 → 1 restart).
            let identity = r.geometry().identity::<R>(feed_name, now);
            // SAFETY: we hold the lock and the magic is zero (fresh), so no reader reads the identity.
            #[allow(unsafe_code)]
            unsafe {
                r.write_identity(&identity)
            };
        }
        writer.report.epoch = writer.epoch;
        writer.report.next_sequence = writer.next_seq;
        writer
    }

    /// Makes the state left by a previous writer (possibly killed mid-tick) consistent.
    fn recover(&mut self) {
        let r = &self.region;
        let capacity = r.geometry().instrument_capacity;
        let lvc_entries = r.lvc_entries();
        self.directory_len = (r.word(Word::DirectoryLen).load(Ordering::Acquire) as u32).min(capacity);
        let mut cursor = r.word(Word::WriteCursor).load(Ordering::Acquire);
        // A slot finished after the last cursor store (killed between the two) is published already:
        // readers may have consumed it, so its sequence must not be reused for another tick.
        while r.slot(cursor + 1).stamp.load(Ordering::Acquire) == seqlock::ring_done(cursor + 1) {
            cursor += 1;
            self.report.adopted_slots += 1;
        }
        r.word(Word::WriteCursor).store(cursor, Ordering::Release);
        self.next_seq = cursor + 1;
        // A last-value entry left odd was torn by a dying writer: clear it (version 0 = empty).
        for index in 0..lvc_entries {
            let entry = r.lvc(index);
            let version = entry.stamp.load(Ordering::Relaxed);
            if version % 2 == 1 {
                R::Words::write(entry.stamp, entry.words, version, &R::Words::ZERO, 0);
                self.report.cleared_lvc_entries += 1;
            }
        }
    }

    /// What opening found and did.
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The epoch this writer runs under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence the next [`publish`](Self::publish) will assign.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// Ring capacity in slots.
    pub fn ring_slots(&self) -> u64 {
        self.region.geometry().ring_slots
    }

    /// Number of instruments in the directory.
    pub fn directory_len(&self) -> u32 {
        self.directory_len
    }

    /// Index of an instrument already in the directory (linear scan; for start-up and commands).
    pub fn find_instrument(&self, instrument_id: &str) -> Option<u32> {
        let id = fixed_id::<32>(instrument_id)?;
        (0..self.directory_len).find(|i| self.region.directory_entry(*i).instrument_id == id)
    }

    /// Adds an instrument to the directory and returns its index; returns the existing index if the
    /// InstrumentID is already there (so a restarted core keeps every index).
    pub fn add_instrument(
        &mut self,
        instrument_id: &str,
        exchange: crate::codes::Exchange,
        volume_multiple: u32,
        price_tick: f64,
    ) -> Result<u32, DirectoryError> {
        if instrument_id.is_empty() {
            return Err(DirectoryError::BadId);
        }
        let id = fixed_id::<32>(instrument_id).ok_or(DirectoryError::BadId)?;
        if let Some(index) = self.find_instrument(instrument_id) {
            return Ok(index);
        }
        let capacity = self.region.geometry().instrument_capacity;
        if self.directory_len >= capacity {
            return Err(DirectoryError::Full { capacity });
        }
        let entry = DirectoryEntry {
            instrument_id: id,
            exchange_id: fixed_id::<8>(exchange.as_str()).expect("exchange ids are short ASCII"),
            exchange: exchange as u8,
            reserved0: [0; 3],
            volume_multiple,
            price_tick,
            reserved1: [0],
        };
        let index = self.directory_len;
        // SAFETY: `&mut self` makes us the single writer; `index == directory_len` is unpublished.
        #[allow(unsafe_code)]
        unsafe {
            self.region.write_directory_entry(index, &entry)
        };
        self.directory_len += 1;
        self.region.word(Word::DirectoryLen).store(u64::from(self.directory_len), Ordering::Release); // SYNC D-len
        Ok(index)
    }

    /// Publishes one record: assigns its sequence, writes its ring slot and its last-value entry
    /// (the instrument's; for a bar, the instrument's of the bar's period), then advances the write
    /// cursor. Never waits for a reader.
    ///
    /// Always inlined: as a generic function the compiler left it a call in the core's AVX2 build
    /// (udp 922 -> 934 instructions per tick in qilin-budget), which the non-generic one was not.
    #[inline(always)]
    pub fn publish(&mut self, record: &mut R) -> Result<u64, PublishError> {
        if record.instrument_index() >= self.directory_len {
            return Err(PublishError::UnknownInstrument { index: record.instrument_index(), len: self.directory_len });
        }
        // Constant-folded away for ticks (one entry per instrument, key 0).
        if record.lvc_key() >= R::LVC_PER_INSTRUMENT {
            return Err(PublishError::LastValueKey { key: record.lvc_key(), per_instrument: R::LVC_PER_INSTRUMENT });
        }
        record.set_sequence(self.next_seq);
        Ok(self.write_next(record))
    }

    /// Writes `record` (whose `sequence` is `next_seq`, whose instrument is in the directory and
    /// whose last-value key is in range) into its slot and its last-value entry, then advances the
    /// write cursor.
    #[inline(always)]
    pub(crate) fn write_next(&mut self, record: &R) -> u64 {
        let seq = self.next_seq;
        debug_assert_eq!(record.sequence(), seq);
        let words = record.as_words();
        let slot = self.region.slot(seq);
        R::Words::write(slot.stamp, slot.words, seqlock::ring_busy(seq), words, seqlock::ring_done(seq));
        let lvc = self.region.lvc(record.instrument_index() * R::LVC_PER_INSTRUMENT + record.lvc_key());
        R::Words::write_versioned(lvc.stamp, lvc.words, words);
        self.region.word(Word::WriteCursor).store(seq, Ordering::Release); // SYNC C-cursor
        self.next_seq = seq + 1;
        seq
    }

    /// Refreshes the heartbeat (call about every millisecond while running).
    #[inline]
    pub fn heartbeat(&self, now_ns: i64) {
        self.region.word(Word::Heartbeat).store(now_ns as u64, Ordering::Relaxed);
    }

    /// Sets the run state; `Stopped` also records the stop time.
    pub fn set_run_state(&mut self, state: RunState) {
        if state == RunState::Stopped {
            self.region.word(Word::StoppedNs).store(now_ns() as u64, Ordering::Relaxed);
        }
        self.region.word(Word::RunState).store(state as u64, Ordering::Release);
    }

    /// Adds `n` to a counter (single writer: a load and a store, no locked instruction).
    #[inline]
    pub fn add_counter(&self, counter: Counter, n: u64) {
        let word = self.region.word(Word::Counter(counter as usize));
        word.store(word.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Current value of a counter.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.region.word(Word::Counter(counter as usize)).load(Ordering::Relaxed)
    }

    /// Replaces the link status (seqlock-protected, so readers never see half of it).
    pub fn set_status(&mut self, status: &StatusRecord) {
        let words: [u64; STATUS_WORDS] = zerocopy::transmute!(*status);
        let line = self.region.status();
        seqlock::write_versioned(line.stamp, line.words, &words);
    }
}

impl<R: Record> Drop for Writer<R> {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.set_run_state(RunState::Stopped);
        }
    }
}

#[cfg(test)]
impl<R: Record> Writer<R> {
    /// The region, for tests that forge a crashed writer's leftovers.
    pub(crate) fn region(&self) -> &Region<R> {
        &self.region
    }

    /// Drops the writer as a crash would: without marking the segment stopped.
    pub(crate) fn crash(mut self) {
        self.stop_on_drop = false;
    }
}

#[cfg(test)]
impl Writer {
    /// A writer over a fresh heap segment (tests and Miri: no file, no lock).
    pub(crate) fn on_heap(options: &SegmentOptions) -> (Writer, std::sync::Arc<mapping::heap::HeapSegment>) {
        let geometry = Geometry::new(options.ring_slots, options.instrument_capacity).unwrap();
        let heap = std::sync::Arc::new(mapping::heap::HeapSegment::new(geometry.total_size));
        // SAFETY: the heap segment is zeroed, page aligned and `total_size` long; the Arc in
        // `Backing::Heap` keeps it alive as long as the region.
        #[allow(unsafe_code)]
        let region = unsafe { Region::new(heap.base, geometry) };
        let name = fixed_id::<32>(&options.feed_name).unwrap();
        let writer =
            Writer::start(region, Backing::Heap(heap.clone()), true, name, PathBuf::from("<heap>"), EpochRule::Bump);
        (writer, heap)
    }

    /// A second writer on the same heap segment, as after a crash of the first (tests only).
    pub(crate) fn reopen_heap(heap: &std::sync::Arc<mapping::heap::HeapSegment>) -> Writer {
        // SAFETY: as in `on_heap`; `validate` checks the header the first writer wrote.
        #[allow(unsafe_code)]
        let region = unsafe { mapping::validate(heap.base, u64::MAX, Path::new("<heap>")).unwrap() };
        Writer::start(region, Backing::Heap(heap.clone()), false, [0; 32], PathBuf::from("<heap>"), EpochRule::Bump)
    }
}

impl Writer<crate::layout::BarRecord> {
    /// The last bar the segment holds for instrument `index` and `period` (`None`: none yet). A
    /// restarted bar writer checks a bar against it to write no bar twice.
    pub fn latest_bar(&self, index: u32, period: crate::BarPeriod) -> Option<crate::layout::BarRecord> {
        if index >= self.directory_len {
            return None;
        }
        let key = u32::from(period as u8) - 1;
        let entry = self.region.lvc(index * crate::layout::BAR_LVC_PER_INSTRUMENT + key);
        let mut out = crate::layout::BarRecord::ZERO;
        // This is the only writer: the version is even (recovery cleared a torn one), one attempt.
        match <crate::layout::BarRecord as Record>::Words::read_versioned(
            entry.stamp,
            entry.words,
            out.as_words_mut(),
            1,
        ) {
            Ok(Some(_)) => Some(out),
            _ => None,
        }
    }
}

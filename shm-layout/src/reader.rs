//! A reader: maps the segment read-only, keeps its own cursor, and never writes a byte of shared
//! memory. Reading a tick is a handful of loads and one record copy; no syscall.

use std::path::{Path, PathBuf};

use crate::{
    codes::{Counter, RunState},
    error::OpenError,
    layout::{BarRecord, DirectoryEntry, Identity, STATUS_WORDS, StatusRecord, TickRecord, fixed_id},
    mapping::{self, Backing},
    record::{Record, Words},
    region::{Region, Word, status_from_words},
    seqlock::{self, SlotState},
    sync::Ordering,
};

/// Where a reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest sequence still in the ring. Its slot is the next one the writer overwrites, so a
    /// reader starting here on a busy ring often begins with a [`Next::Gap`] (which, like every lap,
    /// skips the [lap headroom](Reader::set_lap_headroom) too).
    Oldest,
    /// The next sequence the writer will publish (only new ticks).
    Newest,
    /// A given sequence (e.g. a saved cursor + 1). If it is gone, the first read reports the gap.
    Sequence(u64),
}

/// The outcome of [`Reader::try_next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Next {
    /// A whole record was copied into the caller's buffer; its `sequence` is the one expected.
    Tick,
    /// Nothing new yet.
    Empty,
    /// The reader was lapped: sequences `first..=last` are lost to it, the ones overwritten before it
    /// read them and the [lap headroom](Reader::set_lap_headroom) it skipped after them. The next read
    /// continues at `last + 1`.
    Gap {
        /// First lost sequence.
        first: u64,
        /// Last lost sequence.
        last: u64,
    },
    /// The writer restarted (new epoch) since the previous call. Sequences continue; reported once.
    NewEpoch {
        /// Epoch the reader had seen.
        previous: u64,
        /// Epoch now in force.
        current: u64,
    },
}

/// Whether the writer is alive, judged from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heartbeat younger than the threshold.
    Live {
        /// Age of the last heartbeat.
        age_ns: i64,
    },
    /// Running per its state, but the heartbeat is older than the threshold (dead or stalled
    /// writer), or further in the future than the threshold (the wall clock stepped back since it
    /// was written, so its age says nothing: negative).
    Stale {
        /// Age of the last heartbeat (negative: from the future).
        age_ns: i64,
    },
    /// The writer shut down cleanly.
    Stopped {
        /// When, UTC ns.
        at_ns: i64,
    },
}

/// Why a last-value read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LatestError {
    /// No such instrument index or InstrumentID in the directory.
    #[error("instrument not in the directory")]
    UnknownInstrument,
    /// Every attempt raced with the writer (a writer hammering one instrument, or one that died
    /// mid-write, which the next writer start repairs). Try again.
    #[error("last value kept changing while being read")]
    Contended,
}

/// How many times a last-value or status read retries before reporting contention.
const VERSIONED_ATTEMPTS: u32 = 1024;

/// A lapped reader's default [headroom](Reader::set_lap_headroom): `ring_slots / 8` slots.
///
/// Why an eighth: a reader that was lapped is, for now, slower than the writer. Resuming at the
/// oldest slot (headroom 0) hands it the slot the writer overwrites next, so it is lapped again at
/// the writer's next tick and loses the ring one small gap at a time. With `ring_slots / 8` it has
/// that many writer ticks before the next lap, while it gives up at most an eighth of a ring of
/// ticks that were still readable and keeps seven eighths to catch up through. Every ring size is a
/// power of two, so the headroom is exact (0 for rings under 8 slots). The C header
/// (`QILIN_LAP_HEADROOM_DIVISOR`), `qilinctl layout --json` (`reader.lap_headroom_divisor`) and the
/// Python reader use the same default under the same name.
pub const fn default_lap_headroom(ring_slots: u64) -> u64 {
    ring_slots / LAP_HEADROOM_DIVISOR
}

/// `ring_slots / LAP_HEADROOM_DIVISOR` is the default lap headroom ([`default_lap_headroom`]).
pub const LAP_HEADROOM_DIVISOR: u64 = 8;

/// Where a reader lapped while wanting `want` resumes: `oldest + headroom`, never past `cursor + 1`
/// (the next sequence to be published) and never before `want + 1`, so the gap `want..=resume − 1`
/// is never empty and never re-reports a sequence. (`want + 1` can exceed `cursor + 1` when the
/// overwriting stamp the reader saw was a `busy` store whose cursor is not visible yet.)
#[inline]
pub(crate) const fn lap_resume(want: u64, oldest: u64, cursor: u64, headroom: u64) -> u64 {
    let ahead = oldest.saturating_add(headroom);
    let newest = cursor.saturating_add(1);
    let resume = if ahead < newest { ahead } else { newest };
    let after_want = want.saturating_add(1);
    if resume > after_want { resume } else { after_want }
}

/// A read-only view of a segment with its own cursor: of ticks (`Reader`, the default) or of bars
/// (`Reader<BarRecord>`, [`crate::BarReader`]). Everything but the last values and the strategy
/// helpers (tick segments only) is the same for both.
#[derive(Debug)]
pub struct Reader<R: Record = TickRecord> {
    region: Region<R>,
    next: u64,
    epoch: u64,
    mask: u64,
    lap_headroom: u64,
    /// Instrument filter and late-join skip list; `None` on the plain path (one branch per tick).
    pub(crate) select: Option<Box<crate::strategy::Select>>,
    path: PathBuf,
    // Declared last: dropped after `region`, which points into it.
    _backing: Backing,
}

impl Reader {
    /// Opens the segment read-only and validates its header (magic, layout version, fingerprint,
    /// geometry, file size). Starts at [`Start::Newest`]. Errors name the file and the mismatch.
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-open-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = 3100.0; writer.publish(&mut t)?;
    /// # writer.heartbeat(now_ns());
    /// let reader = Reader::open(&path)?;
    /// assert_eq!(reader.write_cursor(), 1);
    /// assert!(Reader::open("/dev/shm/no-such-feed").unwrap_err().to_string().contains("no-such-feed"));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The mapping is pre-faulted (`MAP_POPULATE`): every page of the segment is mapped before
    /// `open` returns, so the reader's first lap of the ring takes no page fault (one every 11 to
    /// 170 slots otherwise, as the kernel maps 1 to 16 pages per fault). That costs time once, on
    /// open; [`open_unpopulated`](Self::open_unpopulated) skips it for a short look at a segment.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, OpenError> {
        Reader::open_segment(path)
    }

    /// [`open`](Self::open) without the pre-fault: pages are mapped one by one as they are first
    /// touched, by minor page faults over the first lap. For a tool that reads the header or a few
    /// entries of a large segment and exits, and for measuring what the pre-fault saves
    /// (benches/benches/first_lap.rs); a reader that follows the ring wants `open`.
    pub fn open_unpopulated(path: impl AsRef<Path>) -> Result<Reader, OpenError> {
        Reader::open_segment_unpopulated(path)
    }

    /// Copies the last value of instrument `index` into `out`. `Ok(false)` if it has no tick yet.
    pub fn latest(&self, index: u32, out: &mut TickRecord) -> Result<bool, LatestError> {
        self.latest_entry(index, 0, out)
    }
}

impl Reader<BarRecord> {
    /// Copies the last closed bar of instrument `index` and `period` into `out`. `Ok(false)` if it
    /// has none yet.
    pub fn latest_bar(&self, index: u32, period: crate::BarPeriod, out: &mut BarRecord) -> Result<bool, LatestError> {
        self.latest_entry(index, u32::from(period as u8) - 1, out)
    }

    /// [`latest_bar`](Self::latest_bar) by InstrumentID.
    pub fn latest_bar_by_id(
        &self,
        instrument_id: &str,
        period: crate::BarPeriod,
        out: &mut BarRecord,
    ) -> Result<bool, LatestError> {
        let index = self.find_instrument(instrument_id).ok_or(LatestError::UnknownInstrument)?;
        self.latest_bar(index, period, out)
    }
}

impl<R: Record> Reader<R> {
    /// Opens a segment of `R` records read-only and validates its header (magic, layout version,
    /// fingerprint, geometry, file size), pre-faulted as [`Reader::open`]. A segment of the other
    /// kind is refused with [`OpenError::WrongKind`]. Starts at [`Start::Newest`].
    pub fn open_segment(path: impl AsRef<Path>) -> Result<Reader<R>, OpenError> {
        let path = path.as_ref();
        let (region, backing) = mapping::open_read_only(path)?;
        Ok(Reader::attach(region, backing, path.to_owned()))
    }

    /// [`open_segment`](Self::open_segment) without the pre-fault ([`Reader::open_unpopulated`]).
    pub fn open_segment_unpopulated(path: impl AsRef<Path>) -> Result<Reader<R>, OpenError> {
        let path = path.as_ref();
        let (region, backing) = mapping::open_read_only_with(path, false)?;
        Ok(Reader::attach(region, backing, path.to_owned()))
    }

    fn attach(region: Region<R>, backing: Backing, path: PathBuf) -> Reader<R> {
        let mask = region.geometry().ring_slots - 1;
        let epoch = region.word(Word::Epoch).load(Ordering::Acquire);
        let lap_headroom = default_lap_headroom(mask + 1);
        let mut reader = Reader { region, next: 1, epoch, mask, lap_headroom, select: None, path, _backing: backing };
        reader.seek(Start::Newest);
        reader
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the cursor.
    pub fn seek(&mut self, start: Start) {
        let cursor = self.write_cursor();
        self.next = match start {
            // Saturating: only a corrupt segment has a cursor near u64::MAX (fuzzed, see fuzz/).
            Start::Newest => cursor.saturating_add(1),
            Start::Oldest => self.oldest_available(cursor),
            Start::Sequence(seq) => seq.max(1),
        };
    }

    fn oldest_available(&self, cursor: u64) -> u64 {
        cursor.saturating_add(1).saturating_sub(self.mask + 1).max(1)
    }

    /// After being lapped, resume `slots` past the oldest sequence still in the ring instead of at
    /// it: the oldest slot is the one the writer overwrites next, so a reader resuming there is
    /// lapped again after a single tick. The skipped sequences are part of the reported
    /// [`Next::Gap`]. Clamped to `ring_slots − 1` (resume at the newest published tick); 0 gives the
    /// bare resume at the oldest. Default [`default_lap_headroom`]: `ring_slots / 8`.
    pub fn set_lap_headroom(&mut self, slots: u64) {
        self.lap_headroom = slots.min(self.mask);
    }

    /// [`set_lap_headroom`](Self::set_lap_headroom), as a builder.
    #[must_use]
    pub fn with_lap_headroom(mut self, slots: u64) -> Reader<R> {
        self.set_lap_headroom(slots);
        self
    }

    /// Slots past the oldest that a lapped reader skips (see [`set_lap_headroom`](Self::set_lap_headroom)).
    pub fn lap_headroom(&self) -> u64 {
        self.lap_headroom
    }

    /// The sequence the next successful [`try_next`](Self::try_next) returns.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Reads the next tick into `out` if there is one. Never blocks, never returns a torn record.
    /// With [`only`](Self::only) or after [`join`](Self::join), ticks of other instruments (or
    /// already in the snapshot) are passed over: they advance the cursor but are not returned.
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-try-next-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = 3100.0;
    /// # writer.publish(&mut t)?;
    /// let mut reader = Reader::open(&path)?;
    /// reader.seek(Start::Oldest);
    /// let mut tick = TickRecord::ZERO;
    /// match reader.try_next(&mut tick) {
    ///     Next::Tick => assert_eq!(tick.last_price, 3100.0),
    ///     Next::Gap { first, last } => println!("lost {first}..={last}"),
    ///     Next::NewEpoch { .. } => println!("the core restarted; sequences continue"),
    ///     Next::Empty => println!("nothing new"),
    /// }
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_next(&mut self, out: &mut R) -> Next {
        loop {
            let next = self.next_any(out);
            if next == Next::Tick
                && let Some(select) = &mut self.select
                && !select.admits(out)
            {
                continue;
            }
            return next;
        }
    }

    #[inline(always)]
    fn next_any(&mut self, out: &mut R) -> Next {
        let epoch = self.region.word(Word::Epoch).load(Ordering::Acquire);
        if epoch != self.epoch {
            let previous = self.epoch;
            self.epoch = epoch;
            return Next::NewEpoch { previous, current: epoch };
        }
        let want = self.next;
        let slot = self.region.slot(want);
        let seen = seqlock::load_stamp(slot.stamp);
        match seqlock::classify(seen, want) {
            SlotState::NotYet => Next::Empty,
            SlotState::Ready => {
                if R::Words::copy_validated(slot.stamp, seen, slot.words, out.as_words_mut()) {
                    self.next = want.saturating_add(1);
                    Next::Tick
                } else {
                    self.lapped(want)
                }
            }
            SlotState::Overwritten => self.lapped(want),
        }
    }

    #[cold]
    fn lapped(&mut self, want: u64) -> Next {
        // SYNC C-cursor (reader side). If the overwriting stamp we saw was a `done` (Release) store,
        // the cursor is at least that sequence minus the writes in flight. If it was a `busy`
        // (Relaxed) store, the model gives no lower bound on the cursor; `resume >= want + 1` keeps
        // the result exact anyway (the loss is then reported as several exact gaps, not one).
        let cursor = self.write_cursor();
        let resume = lap_resume(want, self.oldest_available(cursor), cursor, self.lap_headroom);
        self.next = resume;
        Next::Gap { first: want, last: resume - 1 }
    }

    /// Spins until the next event that is not [`Next::Empty`]. For strategies that own a core.
    pub fn next_blocking(&mut self, out: &mut R) -> Next {
        loop {
            match self.try_next(out) {
                Next::Empty => core::hint::spin_loop(),
                other => return other,
            }
        }
    }

    /// Epoch the reader last saw (updated when [`Next::NewEpoch`] is returned).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Epoch in the header now.
    pub fn current_epoch(&self) -> u64 {
        self.region.word(Word::Epoch).load(Ordering::Acquire)
    }

    /// Last published sequence (0 if none).
    pub fn write_cursor(&self) -> u64 {
        self.region.word(Word::WriteCursor).load(Ordering::Acquire) // SYNC C-cursor
    }

    /// The identity line: capacities, feed name, fingerprint, creation time.
    pub fn identity(&self) -> Identity {
        self.region.identity()
    }

    /// Feed name from the header.
    pub fn feed_name(&self) -> String {
        crate::layout::id_str(&self.identity().feed_name).unwrap_or("?").to_owned()
    }

    /// Pid of the current (or last) writer.
    pub fn writer_pid(&self) -> u64 {
        self.region.word(Word::WriterPid).load(Ordering::Relaxed)
    }

    /// The writer's run state (`None` if never started or unknown).
    pub fn run_state(&self) -> Option<RunState> {
        RunState::from_code(self.region.word(Word::RunState).load(Ordering::Acquire))
    }

    /// Last heartbeat, UTC ns.
    pub fn heartbeat_ns(&self) -> i64 {
        self.region.word(Word::Heartbeat).load(Ordering::Relaxed) as i64
    }

    /// Judges the writer alive, stale or stopped. `now_ns` is UTC ns (see [`crate::now_ns`]). A
    /// heartbeat further ahead of `now_ns` than `stale_after_ns` is stale too, not live: the clock
    /// was stepped back after it was written, and until the writer stores one of the new time
    /// nothing shows it alive. (A small negative age is normal for a caller that read its clock
    /// before the heartbeat.)
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-liveness-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = 3100.0; writer.publish(&mut t)?;
    /// # writer.heartbeat(now_ns());
    /// let reader = Reader::open(&path)?;
    /// assert!(matches!(reader.liveness(now_ns(), 1_000_000_000), Liveness::Live { .. }));
    /// drop(writer); // a clean stop
    /// assert!(matches!(reader.liveness(now_ns(), 1_000_000_000), Liveness::Stopped { .. }));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn liveness(&self, now_ns: i64, stale_after_ns: i64) -> Liveness {
        if self.run_state() == Some(RunState::Stopped) {
            return Liveness::Stopped { at_ns: self.region.word(Word::StoppedNs).load(Ordering::Relaxed) as i64 };
        }
        let age_ns = now_ns.saturating_sub(self.heartbeat_ns());
        if age_ns > stale_after_ns || age_ns < -stale_after_ns {
            Liveness::Stale { age_ns }
        } else {
            Liveness::Live { age_ns }
        }
    }

    /// A counter's current value.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.region.word(Word::Counter(counter as usize)).load(Ordering::Relaxed)
    }

    /// The link status, consistent (never half-updated).
    pub fn status(&self) -> Result<StatusRecord, LatestError> {
        let line = self.region.status();
        let mut words = [0u64; STATUS_WORDS];
        match seqlock::read_versioned(line.stamp, line.words, &mut words, VERSIONED_ATTEMPTS) {
            Ok(_) => Ok(status_from_words(words)),
            Err(()) => Err(LatestError::Contended),
        }
    }

    /// Number of instruments in the directory.
    pub fn directory_len(&self) -> u32 {
        let len = self.region.word(Word::DirectoryLen).load(Ordering::Acquire); // SYNC D-len
        (len as u32).min(self.region.geometry().instrument_capacity)
    }

    /// Directory entry `index`, if published.
    pub fn instrument(&self, index: u32) -> Option<DirectoryEntry> {
        (index < self.directory_len()).then(|| self.region.directory_entry(index))
    }

    /// Index of an InstrumentID (linear scan: resolve once, then use the index).
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-find-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = 3100.0; writer.publish(&mut t)?;
    /// # writer.heartbeat(now_ns());
    /// let reader = Reader::open(&path)?;
    /// assert_eq!(reader.find_instrument("rb2605"), Some(0));
    /// assert_eq!(reader.instrument(0).unwrap().volume_multiple, 10);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn find_instrument(&self, instrument_id: &str) -> Option<u32> {
        let id = fixed_id::<32>(instrument_id)?;
        (0..self.directory_len()).find(|i| self.region.directory_entry(*i).instrument_id == id)
    }

    /// Every directory entry, in index order.
    pub fn instruments(&self) -> Vec<DirectoryEntry> {
        (0..self.directory_len()).map(|i| self.region.directory_entry(i)).collect()
    }

    /// Copies last-value entry `key` of instrument `index` into `out` (`key < R::LVC_PER_INSTRUMENT`).
    fn latest_entry(&self, index: u32, key: u32, out: &mut R) -> Result<bool, LatestError> {
        if index >= self.directory_len() || key >= R::LVC_PER_INSTRUMENT {
            return Err(LatestError::UnknownInstrument);
        }
        let entry = self.region.lvc(index * R::LVC_PER_INSTRUMENT + key);
        match R::Words::read_versioned(entry.stamp, entry.words, out.as_words_mut(), VERSIONED_ATTEMPTS) {
            Ok(found) => Ok(found.is_some()),
            Err(()) => Err(LatestError::Contended),
        }
    }
}

impl Reader {
    /// [`latest`](Self::latest) by InstrumentID: the instrument's book now, whole.
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-latest-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = 3100.0; writer.publish(&mut t)?;
    /// # writer.heartbeat(now_ns());
    /// let reader = Reader::open(&path)?;
    /// let mut book = TickRecord::ZERO;
    /// assert_eq!(reader.latest_by_id("rb2605", &mut book), Ok(true));
    /// assert_eq!(book.last_price, 3100.0);
    /// assert_eq!(reader.latest_by_id("zz9999", &mut book), Err(LatestError::UnknownInstrument));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn latest_by_id(&self, instrument_id: &str, out: &mut TickRecord) -> Result<bool, LatestError> {
        let index = self.find_instrument(instrument_id).ok_or(LatestError::UnknownInstrument)?;
        self.latest(index, out)
    }
}

#[cfg(test)]
impl Reader {
    /// A reader over a heap segment shared with a [`crate::Writer::on_heap`] writer (tests, Miri).
    pub(crate) fn on_heap(heap: &std::sync::Arc<mapping::heap::HeapSegment>) -> Reader {
        // SAFETY: the heap segment outlives the region (the Arc is kept in `Backing::Heap`) and was
        // initialised by a writer; `validate` checks its header.
        #[allow(unsafe_code)]
        let region = unsafe { mapping::validate(heap.base, u64::MAX, Path::new("<heap>")).unwrap() };
        Reader::attach(region, Backing::Heap(heap.clone()), PathBuf::from("<heap>"))
    }
}

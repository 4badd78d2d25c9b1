//! What a strategy needs on top of [`Reader::try_next`]: a blocking-spin iterator, a view filtered
//! to some instruments (names resolved once through the directory), a consistent snapshot of every
//! instrument's last value, and the late-joiner path that continues from the ring after that
//! snapshot with nothing missed and nothing doubled.

use crate::{
    layout::TickRecord,
    reader::{LatestError, Next, Reader, Start},
};

/// One event of [`Reader::ticks`]: a tick (by value), a gap or a restart.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // yields the record by value; boxing would allocate per tick
pub enum Event {
    /// A whole record.
    Tick(TickRecord),
    /// Sequences `first..=last` were overwritten before this reader got to them.
    Gap {
        /// First lost sequence.
        first: u64,
        /// Last lost sequence.
        last: u64,
    },
    /// The core restarted; sequences continue.
    NewEpoch {
        /// Epoch seen before.
        previous: u64,
        /// Epoch now.
        current: u64,
    },
}

/// The blocking-spin iterator of [`Reader::ticks`]. It never ends: it spins while nothing is new.
#[derive(Debug)]
pub struct Events<'a> {
    reader: &'a mut Reader,
}

impl Iterator for Events<'_> {
    type Item = Event;

    #[inline]
    fn next(&mut self) -> Option<Event> {
        let mut out = TickRecord::ZERO;
        Some(match self.reader.next_blocking(&mut out) {
            Next::Tick => Event::Tick(out),
            Next::Gap { first, last } => Event::Gap { first, last },
            Next::NewEpoch { previous, current } => Event::NewEpoch { previous, current },
            Next::Empty => unreachable!("next_blocking spins past Empty"),
        })
    }
}

/// Every instrument's last value, as taken by [`Reader::snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The write cursor when the snapshot began: ring reading continues at `as_of + 1`.
    pub as_of: u64,
    /// The last value of every instrument that has one, in directory order. Each is whole; an
    /// instrument that ticked while the snapshot was taken may hold a sequence above `as_of`.
    pub ticks: Vec<TickRecord>,
}

/// The instrument filter and late-join skip list a [`Reader`] applies in `try_next`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Select {
    /// Bit per directory index; `None` = every instrument.
    only: Option<Vec<u64>>,
    /// Per directory index, the sequence its snapshot value had; ring ticks at or below it are
    /// already in the snapshot. Dropped once the ring passes `skip_until`.
    skip_through: Option<Vec<u64>>,
    skip_until: u64,
}

impl Select {
    /// Whether `tick` is returned to the caller.
    #[inline]
    pub(crate) fn admits<R: crate::record::Record>(&mut self, record: &R) -> bool {
        let index = record.instrument_index() as usize;
        if let Some(skip) = &self.skip_through {
            if record.sequence() > self.skip_until {
                self.skip_through = None;
            } else if skip.get(index).is_some_and(|through| record.sequence() <= *through) {
                return false;
            }
        }
        match &self.only {
            Some(bits) => bits.get(index / 64).is_some_and(|word| word >> (index % 64) & 1 == 1),
            None => true,
        }
    }
}

/// An InstrumentID that is not in the directory.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("instrument {0:?} is not in the segment's directory")]
pub struct UnknownInstrument(pub String);

/// How many times [`Reader::snapshot`] retries one instrument whose value keeps changing.
const SNAPSHOT_ATTEMPTS: u32 = 64;

impl Reader {
    /// A blocking-spin iterator over ticks, gaps and restarts (for a strategy that owns a core).
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-ticks-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # for price in [3100.0, 3101.0] { let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = price; writer.publish(&mut t)?; }
    /// let mut reader = Reader::open(&path)?;
    /// reader.seek(Start::Oldest);
    /// for event in reader.ticks().take(2) {
    ///     if let Event::Tick(tick) = event {
    ///         println!("{} {}", tick.sequence, tick.last_price);
    ///     }
    /// }
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ticks(&mut self) -> Events<'_> {
        Events { reader: self }
    }

    /// Returns only these instruments' ticks from now on (names resolved once, here). Ticks of
    /// other instruments still advance the cursor; gaps are reported whatever they held.
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-only-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # for id in ["rb2605", "m2605"] { let i = writer.add_instrument(id, Exchange::Shfe, 10, 1.0)?; let mut t = TickRecord::ZERO; t.instrument_index = i; writer.publish(&mut t)?; }
    /// let mut reader = Reader::open(&path)?;
    /// reader.only(&["m2605"])?;
    /// reader.seek(Start::Oldest);
    /// let mut tick = TickRecord::ZERO;
    /// assert_eq!(reader.try_next(&mut tick), Next::Tick);
    /// assert_eq!(tick.sequence, 2, "rb2605's tick (sequence 1) was passed over");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn only(&mut self, instrument_ids: &[&str]) -> Result<(), UnknownInstrument> {
        let mut bits = vec![0u64; (self.directory_len() as usize).div_ceil(64).max(1)];
        for id in instrument_ids {
            let index = self.find_instrument(id).ok_or_else(|| UnknownInstrument((*id).to_string()))? as usize;
            bits[index / 64] |= 1 << (index % 64);
        }
        self.select.get_or_insert_with(Default::default).only = Some(bits);
        Ok(())
    }

    /// Every instrument's last value, each one whole (seqlock-consistent), with the write cursor
    /// read before the first of them.
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-snapshot-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; t.last_price = 3100.0; writer.publish(&mut t)?;
    /// let reader = Reader::open(&path)?;
    /// let snapshot = reader.snapshot()?;
    /// assert_eq!(snapshot.as_of, 1);
    /// assert_eq!(snapshot.ticks[0].last_price, 3100.0);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Result<Snapshot, LatestError> {
        let as_of = self.write_cursor();
        let len = self.directory_len();
        let mut ticks = Vec::with_capacity(len as usize);
        let mut out = TickRecord::ZERO;
        for index in 0..len {
            let mut attempts = 0;
            loop {
                match self.latest(index, &mut out) {
                    Ok(true) => ticks.push(out),
                    Ok(false) => {}
                    Err(LatestError::Contended) if attempts < SNAPSHOT_ATTEMPTS => {
                        attempts += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                break;
            }
        }
        Ok(Snapshot { as_of, ticks })
    }

    /// The late-joiner path: takes a [`snapshot`](Self::snapshot), moves the cursor to the first
    /// sequence after it, and from then on passes over ring ticks the snapshot already reflects.
    /// Snapshot plus the ticks `try_next` returns afterwards hold each instrument's history after
    /// its snapshot value exactly once: nothing missed, nothing doubled (unless the ring laps the
    /// reader, which `try_next` reports as a gap as usual).
    ///
    /// ```
    /// # use qilin_shm::*;
    /// # let path = std::env::temp_dir().join(format!("qilin-doc-join-{}", std::process::id()));
    /// # let mut writer = Writer::open(&path, &SegmentOptions { feed_name: "doc".into(), ring_slots: 64, instrument_capacity: 4 })?;
    /// # let index = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0)?;
    /// # let mut t = TickRecord::ZERO; t.instrument_index = index; writer.publish(&mut t)?;
    /// let mut reader = Reader::open(&path)?;
    /// let snapshot = reader.join()?;            // the book now
    /// # writer.publish(&mut t)?;
    /// let mut tick = TickRecord::ZERO;
    /// assert_eq!(reader.try_next(&mut tick), Next::Tick); // then every tick after it
    /// assert_eq!(tick.sequence, snapshot.as_of + 1);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&mut self) -> Result<Snapshot, LatestError> {
        let snapshot = self.snapshot()?;
        self.seek(Start::Sequence(snapshot.as_of + 1));
        let mut skip = vec![0u64; self.directory_len() as usize];
        let mut skip_until = 0;
        for tick in &snapshot.ticks {
            if let Some(slot) = skip.get_mut(tick.instrument_index as usize) {
                *slot = tick.sequence;
                skip_until = skip_until.max(tick.sequence);
            }
        }
        let select = self.select.get_or_insert_with(Default::default);
        if skip_until > snapshot.as_of {
            select.skip_through = Some(skip);
            select.skip_until = skip_until;
        } else {
            select.skip_through = None;
        }
        Ok(snapshot)
    }
}

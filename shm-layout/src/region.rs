//! Typed access to a mapped segment: the geometry (where each region starts) and the only code that
//! turns addresses into references. Writer and reader are built on [`Region`]; it does no I/O, so
//! Miri can run the whole writer/reader logic over an ordinary heap buffer.
#![allow(unsafe_code)] // turns validated offsets into references to atomic words; each block argued below

use core::{marker::PhantomData, mem::offset_of, ptr::NonNull};

use crate::{
    codes::COUNTER_SLOTS,
    error::GeometryError,
    layout::{CACHE_LINE, Cursor, DirectoryEntry, Header, Heartbeat, Identity, STATUS_WORDS, Session, StatusRecord},
    record::{Record, Words},
    sync::AtomicU64,
};

/// Largest ring the feed accepts (2^26 slots = 24 GiB of slots; far beyond a trading day at full rate).
pub const MAX_RING_SLOTS: u64 = 1 << 26;
/// Largest instrument directory the feed accepts.
pub const MAX_INSTRUMENTS: u32 = 1 << 20;
const PAGE: u64 = 4096;

/// Where everything lives in a segment of given capacities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Ring capacity in slots (power of two).
    pub ring_slots: u64,
    /// Directory and last-value-cache capacity.
    pub instrument_capacity: u32,
    /// Byte offset of the directory.
    pub directory_offset: u64,
    /// Byte offset of the last-value cache.
    pub lvc_offset: u64,
    /// Byte offset of the ring.
    pub ring_offset: u64,
    /// Total size of the segment, a whole number of pages.
    pub total_size: u64,
}

const fn align_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

impl Geometry {
    /// Computes the geometry of a tick segment for the given capacities, refusing ones that are not usable.
    pub fn new(ring_slots: u64, instrument_capacity: u32) -> Result<Geometry, GeometryError> {
        Geometry::of::<crate::TickRecord>(ring_slots, instrument_capacity)
    }

    /// Computes the geometry of a segment of `R` records (ticks or bars): a slot and a last-value
    /// entry are a stamp word and a record each, and a bar segment has one last-value entry per
    /// instrument and period ([`Record::LVC_PER_INSTRUMENT`]).
    pub fn of<R: Record>(ring_slots: u64, instrument_capacity: u32) -> Result<Geometry, GeometryError> {
        if !ring_slots.is_power_of_two() || !(2..=MAX_RING_SLOTS).contains(&ring_slots) {
            return Err(GeometryError::RingSlots { ring_slots, max: MAX_RING_SLOTS });
        }
        if !(1..=MAX_INSTRUMENTS).contains(&instrument_capacity) {
            return Err(GeometryError::InstrumentCapacity { instrument_capacity, max: MAX_INSTRUMENTS });
        }
        let line = CACHE_LINE as u64;
        let directory_offset = align_up(size_of::<Header>() as u64, line);
        let lvc_offset =
            align_up(directory_offset + u64::from(instrument_capacity) * size_of::<DirectoryEntry>() as u64, line);
        let lvc_entries = u64::from(instrument_capacity) * u64::from(R::LVC_PER_INSTRUMENT);
        let ring_offset = align_up(lvc_offset + lvc_entries * stamped_size::<R>(), PAGE);
        let total_size = align_up(ring_offset + ring_slots * stamped_size::<R>(), PAGE);
        Ok(Geometry { ring_slots, instrument_capacity, directory_offset, lvc_offset, ring_offset, total_size })
    }

    /// The identity line a segment of this geometry carries.
    pub(crate) fn identity<R: Record>(&self, feed_name: [u8; 32], created_ns: i64) -> Identity {
        Identity {
            magic: R::MAGIC,
            layout_version: R::LAYOUT_VERSION,
            header_size: size_of::<Header>() as u32,
            fingerprint: R::FINGERPRINT,
            total_size: self.total_size,
            created_ns,
            ring_slots: self.ring_slots,
            slot_size: stamped_size::<R>() as u32,
            record_size: size_of::<R>() as u32,
            instrument_capacity: self.instrument_capacity,
            directory_entry_size: size_of::<DirectoryEntry>() as u32,
            lvc_entry_size: stamped_size::<R>() as u32,
            reserved0: 0,
            directory_offset: self.directory_offset,
            lvc_offset: self.lvc_offset,
            ring_offset: self.ring_offset,
            feed_name,
        }
    }
}

/// Size of a ring slot and of a last-value entry of `R` records: a stamp word and the record
/// (384 for ticks, 192 for bars).
#[inline(always)]
pub(crate) const fn stamped_size<R: Record>() -> u64 {
    8 + size_of::<R>() as u64
}

/// A word of the header that is read or written atomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    Epoch,
    WriterPid,
    RunState,
    StartedNs,
    StoppedNs,
    DirectoryLen,
    Heartbeat,
    WriteCursor,
    Counter(usize),
}

impl Word {
    const fn offset(self) -> usize {
        let session = offset_of!(Header, session);
        match self {
            Word::Epoch => session + offset_of!(Session, epoch),
            Word::WriterPid => session + offset_of!(Session, writer_pid),
            Word::RunState => session + offset_of!(Session, run_state),
            Word::StartedNs => session + offset_of!(Session, started_ns),
            Word::StoppedNs => session + offset_of!(Session, stopped_ns),
            Word::DirectoryLen => session + offset_of!(Session, directory_len),
            Word::Heartbeat => offset_of!(Header, heartbeat) + offset_of!(Heartbeat, heartbeat_ns),
            Word::WriteCursor => offset_of!(Header, cursor) + offset_of!(Cursor, write_cursor),
            Word::Counter(i) => offset_of!(Header, counters) + 8 * i,
        }
    }
}

/// A stamped record in the segment: its stamp word and its `N` data words (a fixed-size array, so
/// the protocol's copy loops have a known trip count and compile to straight-line stores/loads).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamped<'a, A> {
    pub(crate) stamp: &'a AtomicU64,
    pub(crate) words: &'a A,
}

/// A mapped segment of known geometry. Does not own the memory: the writer or reader that created it
/// keeps the mapping alive for at least as long as the `Region` (they hold both in one struct).
pub(crate) struct Region<R: Record = crate::TickRecord> {
    base: NonNull<u8>,
    geometry: Geometry,
    record: PhantomData<fn() -> R>,
}

impl<R: Record> core::fmt::Debug for Region<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("geometry", &self.geometry)
            .field("record", &R::NAME)
            .finish()
    }
}

// SAFETY: `Region` is a pointer into a shared mapping whose mutable words are only touched through
// atomics; the single non-atomic writer path (directory entries, identity at creation) is reachable
// only through `&mut Writer`, which is not `Sync`, so moving a `Region` to another thread is sound.
unsafe impl<R: Record> Send for Region<R> {}

impl<R: Record> Region<R> {
    /// # Safety
    /// `base` must be 8-byte aligned (in practice page aligned), valid for reads of
    /// `geometry.total_size` bytes (and for writes too, if any writer method is called) for the
    /// whole life of the `Region`, and every byte range it names must only ever be changed through
    /// this module's accessors (atomically), except the non-atomic writes documented on
    /// [`Region::write_identity`] and [`Region::write_directory_entry`].
    pub(crate) unsafe fn new(base: NonNull<u8>, geometry: Geometry) -> Region<R> {
        debug_assert_eq!(base.as_ptr() as usize % 8, 0);
        Region { base, geometry, record: PhantomData }
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// # Safety
    /// `offset` must be 8-aligned and `offset + 8 * len <= total_size`.
    #[inline(always)]
    unsafe fn words(&self, offset: u64, len: usize) -> &[AtomicU64] {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 * len as u64 <= self.geometry.total_size);
        // SAFETY: in bounds and aligned by the caller's contract; `AtomicU64` has the size and
        // alignment of `u64`, the memory lives as long as `self` (contract of `new`), and it is only
        // ever changed atomically. Atomic loads on read-only (PROT_READ) memory are sound for
        // lock-free 8-byte Relaxed/Acquire loads (std::sync::atomic, "Atomic accesses to read-only
        // memory"); readers never store.
        unsafe {
            core::slice::from_raw_parts(self.base.as_ptr().wrapping_add(offset as usize).cast::<AtomicU64>(), len)
        }
    }

    #[inline(always)]
    pub(crate) fn word(&self, word: Word) -> &AtomicU64 {
        if let Word::Counter(i) = word {
            assert!(i < COUNTER_SLOTS);
        }
        // SAFETY: every `Word` offset is a compile-time 8-aligned offset inside the header, and the
        // header lies inside the segment (`Geometry::new` puts the directory after it).
        unsafe { &self.words(word.offset() as u64, 1)[0] }
    }

    #[inline(always)]
    fn stamped<W: Words>(&self, offset: u64) -> Stamped<'_, W::Atomic> {
        // SAFETY: callers pass the offset of a slot, a last-value entry or `Status` inside the
        // segment; all of them are 8-aligned (struct sizes and region offsets are multiples of 8)
        // and hold `1 + N` words, `W = [u64; N]`.
        let all = unsafe { self.words(offset, 1 + size_of::<W>() / 8) };
        let (stamp, words) = all.split_first().expect("1 + N words");
        Stamped { stamp, words: W::atomics(words) }
    }

    /// The ring slot that holds sequence `seq`.
    #[inline(always)]
    pub(crate) fn slot(&self, seq: u64) -> Stamped<'_, <R::Words as Words>::Atomic> {
        let index = seq & (self.geometry.ring_slots - 1);
        self.stamped::<R::Words>(self.geometry.ring_offset + index * stamped_size::<R>())
    }

    /// Last-value entries in the segment: `instrument_capacity × R::LVC_PER_INSTRUMENT`.
    pub(crate) fn lvc_entries(&self) -> u32 {
        self.geometry.instrument_capacity * R::LVC_PER_INSTRUMENT
    }

    /// The last-value-cache entry `index` (`index < lvc_entries()`, checked): the instrument's for
    /// ticks, `instrument × 6 + period − 1` for bars.
    #[inline(always)]
    pub(crate) fn lvc(&self, index: u32) -> Stamped<'_, <R::Words as Words>::Atomic> {
        assert!(index < self.lvc_entries());
        self.stamped::<R::Words>(self.geometry.lvc_offset + u64::from(index) * stamped_size::<R>())
    }

    /// The status line.
    pub(crate) fn status(&self) -> Stamped<'_, [AtomicU64; STATUS_WORDS]> {
        self.stamped::<[u64; STATUS_WORDS]>(offset_of!(Header, status) as u64)
    }

    /// Reads the identity line (immutable once the magic is published).
    pub(crate) fn identity(&self) -> Identity {
        // SAFETY: the identity line is at offset 0, inside the segment; it is written only by
        // `write_identity` before the magic is published (and before any reader validates it), so
        // this read does not race with a write. `Identity` is valid for any bit pattern.
        unsafe { self.base.as_ptr().cast::<Identity>().read() }
    }

    /// Directory entry `index` (`index < directory_len` as loaded with Acquire, checked by callers).
    pub(crate) fn directory_entry(&self, index: u32) -> DirectoryEntry {
        assert!(index < self.geometry.instrument_capacity);
        let offset = self.geometry.directory_offset + u64::from(index) * size_of::<DirectoryEntry>() as u64;
        // SAFETY: in bounds (checked above); entries below `directory_len` are never written again,
        // and the caller loaded `directory_len` with Acquire after the writer's Release store
        // [SYNC D-len], so the entry's bytes happen-before this read. Any bit pattern is valid.
        unsafe { self.base.as_ptr().wrapping_add(offset as usize).cast::<DirectoryEntry>().read() }
    }

    /// Writes the identity line except the magic, then the magic with Release [SYNC M-magic].
    ///
    /// # Safety
    /// The caller is the only writer (holds the segment lock) and the segment is not yet initialised
    /// (magic is zero), so no reader reads the identity line concurrently: readers refuse a segment
    /// until they load the magic with Acquire.
    pub(crate) unsafe fn write_identity(&self, identity: &Identity) {
        use zerocopy::IntoBytes;
        // Everything after the magic; the magic word itself is only ever accessed atomically.
        let rest = &identity.as_bytes()[size_of::<[u8; 8]>()..];
        // SAFETY: bytes 8..128 are inside the segment and writable (contract of `new` for writers),
        // `rest` is a separate local buffer (no overlap), and per this function's contract no reader
        // reads the identity line before the magic below is published.
        unsafe { core::ptr::copy_nonoverlapping(rest.as_ptr(), self.base.as_ptr().wrapping_add(8), rest.len()) };
        // SAFETY: offset 0 (the magic) is 8-aligned and inside the header.
        let magic = unsafe { &self.words(0, 1)[0] };
        magic.store(u64::from_ne_bytes(identity.magic), crate::sync::Ordering::Release); // SYNC M-magic
    }

    /// Loads the magic word with Acquire [SYNC M-magic].
    pub(crate) fn magic(&self) -> [u8; 8] {
        // SAFETY: offset 0 is 8-aligned and inside the segment.
        let magic = unsafe { &self.words(0, 1)[0] };
        magic.load(crate::sync::Ordering::Acquire).to_ne_bytes()
    }

    /// Writes directory entry `index`.
    ///
    /// # Safety
    /// Caller is the single writer and `index` is not yet published (`index >= directory_len`), so no
    /// reader reads it; the caller publishes it afterwards with a Release store of `directory_len`.
    pub(crate) unsafe fn write_directory_entry(&self, index: u32, entry: &DirectoryEntry) {
        assert!(index < self.geometry.instrument_capacity);
        let offset = self.geometry.directory_offset + u64::from(index) * size_of::<DirectoryEntry>() as u64;
        // SAFETY: in bounds (checked above) and writable; unpublished, so not read concurrently.
        unsafe { self.base.as_ptr().wrapping_add(offset as usize).cast::<DirectoryEntry>().write(*entry) }
    }
}

/// Decodes a status record from its words.
pub(crate) fn status_from_words(words: [u64; STATUS_WORDS]) -> StatusRecord {
    zerocopy::transmute!(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_places_regions_in_order_and_aligned() {
        let g = Geometry::new(1024, 100).unwrap();
        assert_eq!(g.directory_offset, size_of::<Header>() as u64);
        assert!(g.lvc_offset >= g.directory_offset + 100 * 64);
        assert!(g.ring_offset >= g.lvc_offset + 100 * 384);
        assert_eq!(g.ring_offset % PAGE, 0);
        assert_eq!(g.total_size, g.ring_offset + 1024 * 384);
        assert_eq!(g.lvc_offset % CACHE_LINE as u64, 0);
    }

    #[test]
    fn geometry_refuses_unusable_capacities() {
        assert!(matches!(Geometry::new(1000, 10), Err(GeometryError::RingSlots { .. })));
        assert!(matches!(Geometry::new(1, 10), Err(GeometryError::RingSlots { .. })));
        assert!(matches!(Geometry::new(MAX_RING_SLOTS * 2, 10), Err(GeometryError::RingSlots { .. })));
        assert!(matches!(Geometry::new(1024, 0), Err(GeometryError::InstrumentCapacity { .. })));
    }
}

//! The record a segment carries: ticks ([`TickRecord`], written by the core) or bars
//! ([`BarRecord`], written by `qilin-bars`). One writer, one reader and one seqlock protocol serve
//! both: they are generic over the sealed [`Record`] trait, whose constants (magic, layout version,
//! fingerprint, sizes) are compile-time values, so a `Writer<TickRecord>` compiles to exactly the
//! code a tick-only writer would (the core's instruction budget holds it to that).
//!
//! A segment says which record it carries by its magic (`QILINSHM` ticks, `QILINBAR` bars) and its
//! fingerprint; a reader of one kind refuses the other with [`crate::OpenError::WrongKind`].

use crate::{
    layout::{
        BAR_FINGERPRINT, BAR_LAYOUT_VERSION, BAR_LVC_PER_INSTRUMENT, BAR_MAGIC, BAR_RECORD_WORDS, BAR_STRUCTS,
        BarRecord, FINGERPRINT, LAYOUT_VERSION, MAGIC, RECORD_WORDS, STRUCTS, TickRecord,
    },
    seqlock,
    sync::AtomicU64,
};

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::layout::TickRecord {}
    impl Sealed for crate::layout::BarRecord {}
    impl<const N: usize> Sealed for [u64; N] {}
}

/// A record's data words, `[u64; N]`: the seqlock protocol's copy loops run over a fixed-size
/// array, so they have a known trip count whatever the record.
pub trait Words: sealed::Sealed + Sized + 'static {
    /// The words in shared memory, `[AtomicU64; N]`.
    #[doc(hidden)]
    type Atomic: 'static;
    /// All zero.
    #[doc(hidden)]
    const ZERO: Self;
    /// The atomic words starting a slice of exactly `N` words.
    #[doc(hidden)]
    fn atomics(words: &[AtomicU64]) -> &Self::Atomic;
    /// [`seqlock::write`].
    #[doc(hidden)]
    fn write(stamp: &AtomicU64, words: &Self::Atomic, busy: u64, data: &Self, done: u64);
    /// [`seqlock::write_versioned`].
    #[doc(hidden)]
    fn write_versioned(stamp: &AtomicU64, words: &Self::Atomic, data: &Self) -> u64;
    /// [`seqlock::copy_validated`].
    #[doc(hidden)]
    fn copy_validated(stamp: &AtomicU64, seen: u64, words: &Self::Atomic, out: &mut Self) -> bool;
    /// [`seqlock::read_versioned`].
    #[doc(hidden)]
    #[allow(clippy::result_unit_err)]
    fn read_versioned(
        stamp: &AtomicU64,
        words: &Self::Atomic,
        out: &mut Self,
        attempts: u32,
    ) -> Result<Option<u64>, ()>;
}

impl<const N: usize> Words for [u64; N] {
    type Atomic = [AtomicU64; N];
    const ZERO: Self = [0; N];

    #[inline(always)]
    fn atomics(words: &[AtomicU64]) -> &[AtomicU64; N] {
        words.try_into().expect("exactly N words")
    }

    #[inline(always)]
    fn write(stamp: &AtomicU64, words: &[AtomicU64; N], busy: u64, data: &[u64; N], done: u64) {
        seqlock::write(stamp, words, busy, data, done)
    }

    #[inline(always)]
    fn write_versioned(stamp: &AtomicU64, words: &[AtomicU64; N], data: &[u64; N]) -> u64 {
        seqlock::write_versioned(stamp, words, data)
    }

    #[inline(always)]
    fn copy_validated(stamp: &AtomicU64, seen: u64, words: &[AtomicU64; N], out: &mut [u64; N]) -> bool {
        seqlock::copy_validated(stamp, seen, words, out)
    }

    #[inline]
    fn read_versioned(
        stamp: &AtomicU64,
        words: &[AtomicU64; N],
        out: &mut [u64; N],
        attempts: u32,
    ) -> Result<Option<u64>, ()> {
        seqlock::read_versioned(stamp, words, out, attempts)
    }
}

/// A record a segment can carry: [`TickRecord`] or [`BarRecord`] (sealed).
pub trait Record: sealed::Sealed + Copy + core::fmt::Debug + Send + Sync + 'static {
    /// The record's data words, `[u64; size / 8]`.
    type Words: Words;
    /// The record's name (`TickRecord`, `BarRecord`).
    const NAME: &'static str;
    /// What a segment of these records is called in messages: `tick`, `bar`.
    const KIND: &'static str;
    /// The segment's magic.
    const MAGIC: [u8; 8];
    /// The segment's layout version.
    const LAYOUT_VERSION: u32;
    /// The segment's layout fingerprint.
    const FINGERPRINT: u64;
    /// Every struct of the segment (for tools).
    const STRUCTS: &'static [crate::descriptor::StructDesc];
    /// Last-value entries per directory entry (1 for ticks; one per period for bars).
    const LVC_PER_INSTRUMENT: u32;
    /// An all-zero record.
    const ZERO: Self;

    /// The record's sequence in its segment.
    fn sequence(&self) -> u64;
    /// Sets the record's sequence (the writer assigns it).
    fn set_sequence(&mut self, sequence: u64);
    /// The directory index of the record's instrument.
    fn instrument_index(&self) -> u32;
    /// Which of the instrument's last-value entries the record goes to (`< LVC_PER_INSTRUMENT`;
    /// checked by the writer).
    fn lvc_key(&self) -> u32;
    /// The record as its words.
    fn as_words(&self) -> &Self::Words;
    /// The record as its words, to copy into.
    fn as_words_mut(&mut self) -> &mut Self::Words;
}

impl Record for TickRecord {
    type Words = [u64; RECORD_WORDS];
    const NAME: &'static str = "TickRecord";
    const KIND: &'static str = "tick";
    const MAGIC: [u8; 8] = MAGIC;
    const LAYOUT_VERSION: u32 = LAYOUT_VERSION;
    const FINGERPRINT: u64 = FINGERPRINT;
    const STRUCTS: &'static [crate::descriptor::StructDesc] = STRUCTS;
    const LVC_PER_INSTRUMENT: u32 = 1;
    const ZERO: Self = TickRecord::ZERO;

    #[inline(always)]
    fn sequence(&self) -> u64 {
        self.sequence
    }
    #[inline(always)]
    fn set_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }
    #[inline(always)]
    fn instrument_index(&self) -> u32 {
        self.instrument_index
    }
    #[inline(always)]
    fn lvc_key(&self) -> u32 {
        0
    }
    #[inline(always)]
    fn as_words(&self) -> &[u64; RECORD_WORDS] {
        zerocopy::transmute_ref!(self)
    }
    #[inline(always)]
    fn as_words_mut(&mut self) -> &mut [u64; RECORD_WORDS] {
        zerocopy::transmute_mut!(self)
    }
}

impl Record for BarRecord {
    type Words = [u64; BAR_RECORD_WORDS];
    const NAME: &'static str = "BarRecord";
    const KIND: &'static str = "bar";
    const MAGIC: [u8; 8] = BAR_MAGIC;
    const LAYOUT_VERSION: u32 = BAR_LAYOUT_VERSION;
    const FINGERPRINT: u64 = BAR_FINGERPRINT;
    const STRUCTS: &'static [crate::descriptor::StructDesc] = BAR_STRUCTS;
    const LVC_PER_INSTRUMENT: u32 = BAR_LVC_PER_INSTRUMENT;
    const ZERO: Self = BarRecord::ZERO;

    #[inline(always)]
    fn sequence(&self) -> u64 {
        self.sequence
    }
    #[inline(always)]
    fn set_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }
    #[inline(always)]
    fn instrument_index(&self) -> u32 {
        self.instrument_index
    }
    /// The period code − 1 (a code outside 1..=6 gives a key the writer refuses).
    #[inline(always)]
    fn lvc_key(&self) -> u32 {
        u32::from(self.period).wrapping_sub(1)
    }
    #[inline(always)]
    fn as_words(&self) -> &[u64; BAR_RECORD_WORDS] {
        zerocopy::transmute_ref!(self)
    }
    #[inline(always)]
    fn as_words_mut(&mut self) -> &mut [u64; BAR_RECORD_WORDS] {
        zerocopy::transmute_mut!(self)
    }
}

/// The record kind a magic names (`tick`, `bar`), for the wrong-kind message.
pub(crate) fn kind_of_magic(magic: [u8; 8]) -> Option<&'static str> {
    if magic == MAGIC {
        Some(TickRecord::KIND)
    } else if magic == BAR_MAGIC {
        Some(BarRecord::KIND)
    } else {
        None
    }
}

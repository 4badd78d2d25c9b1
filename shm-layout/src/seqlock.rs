//! The stamped-record protocol shared by ring slots, last-value-cache entries and the status line.
//!
//! A *stamped record* is one `u64` stamp word followed by `N` data words. Exactly one writer changes
//! it; any number of readers copy it, possibly while it is being overwritten, and use the stamp to
//! learn whether their copy is whole. Every access to the data words is an atomic word access
//! (`Relaxed`), so a racing copy is a well-defined (if useless) value under Rust's memory model
//! rather than undefined behaviour; the fences and the stamp turn "useless" into "detected".
//!
//! ```text
//!   writer                                      reader
//!   ------                                      ------
//!   stamp.store(busy, Relaxed)                  s1 = stamp.load(Acquire)            [SYNC S-done]
//!   fence(Release)               [SYNC F-rel]   (caller checks s1 is the value it wants)
//!   data[i].store(w[i], Relaxed) for all i      out[i] = data[i].load(Relaxed) for all i
//!   stamp.store(done, Release)   [SYNC S-done]  fence(Acquire)                      [SYNC F-rel]
//!                                               s2 = stamp.load(Relaxed); whole iff s2 == s1
//! ```
//!
//! Pairs:
//! - **S-done**: the reader's `Acquire` load of the stamp that reads `done` synchronises with the
//!   writer's `Release` store of `done`, so every data word of that write is visible to the copy.
//! - **F-rel**: if any word the reader copied came from a *later* write, the reader's `Acquire`
//!   fence synchronises with that later write's `Release` fence, so the later write's `busy` store
//!   (sequenced before that fence) happens-before the reader's second stamp load, which therefore
//!   cannot return `s1` again: the torn copy is rejected.
//!
//! The stamp values are chosen by the caller: the ring uses `2·seq − 1` (busy) and `2·seq` (done) so a
//! reader can tell "not yet written" from "already overwritten"; versioned records (last-value
//! cache, status line) use an even/odd counter.

use crate::sync::{AtomicU64, Ordering, fence};

/// Writes `data` into `words` under `stamp`: `busy` is visible before any data word changes, `done`
/// only after every data word has been written. Single writer only (callers hold `&mut Writer`).
#[inline(always)]
pub(crate) fn write<const N: usize>(stamp: &AtomicU64, words: &[AtomicU64; N], busy: u64, data: &[u64; N], done: u64) {
    stamp.store(busy, Ordering::Relaxed);
    fence(Ordering::Release); // SYNC F-rel (writer side)
    store_words(words, data);
    stamp.store(done, Ordering::Release); // SYNC S-done (writer side)
}

/// The data-word stores of [`write`]: `words[i] = data[i]` for every `i`, each as a relaxed store.
///
/// A tick record's 47 words go out in one `asm!` block instead of 47 word stores, each with its
/// load: 11 unaligned 32-byte stores, one of 16 and one word on a CPU with AVX
/// ([`store_tick_words_avx`]), else 23 of 16 bytes (SSE2) and one word ([`store_tick_words`]). The
/// two copies a tick costs (the slot and the last-value entry) went from 194 instructions to 54
/// (qilin-budget). Any other record, and every build under loom or Miri, stores word by word.
#[inline(always)]
fn store_words<const N: usize>(words: &[AtomicU64; N], data: &[u64; N]) {
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    if N == crate::layout::RECORD_WORDS {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked just above), all `store_tick_words_avx` needs
            // besides what `store_tick_words` needs, which holds as there.
            #[allow(unsafe_code)]
            return unsafe { store_tick_words_avx(words.as_ptr(), data.as_ptr()) };
        }
        return store_tick_words(words.as_ptr(), data.as_ptr());
    }
    for (word, value) in words.iter().zip(data) {
        word.store(*value, Ordering::Relaxed);
    }
}

/// The `asm!` block of [`store_tick_words`] and [`store_tick_words_avx`]: `$mov` ("movdqu" or
/// "vmovdqu") of `$width` bytes (a "xmmword" or "ymmword" through `$reg`) from `data` to `words` at
/// each offset, then the words left: `$tail` (template lines), and the last word.
macro_rules! store_record_asm {
    ($words:expr, $data:expr, $reg:ident, $mov:literal, $width:literal; $($at:literal)*; $($tail:literal),*) => {
        core::arch::asm!(
            concat!($($mov, " {v}, ", $width, " ptr [{data} + ", $at, "]\n", $mov, " ", $width, " ptr [{words} + ", $at, "], {v}\n",)*),
            $($tail,)*
            "mov {w}, qword ptr [{data} + 368]",
            "mov qword ptr [{words} + 368], {w}",
            words = in(reg) $words,
            data = in(reg) $data,
            v = out($reg) _,
            w = out(reg) _,
            options(nostack, preserves_flags),
        )
    };
}

/// [`store_tick_words`] 32 bytes at a time (11 stores of 32 bytes, one of 16, one word), for a CPU
/// with AVX. Inlined into the engine's AVX2 build; a call from baseline code, after which the
/// compiler clears the upper halves (`vzeroupper`), so no SSE code runs with them dirty.
///
/// # Safety
/// The CPU has AVX, and `words` and `data` are as [`store_tick_words`] requires.
#[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
#[target_feature(enable = "avx")]
#[inline]
#[allow(unsafe_code)]
unsafe fn store_tick_words_avx(words: *const AtomicU64, data: *const u64) {
    // SAFETY: as in `store_tick_words` (the same bytes, the same order of stores for the protocol:
    // all of them between the two stamp stores); the caller guarantees AVX.
    unsafe {
        store_record_asm!(words, data, ymm_reg, "vmovdqu", "ymmword"; 0 32 64 96 128 160 192 224 256 288 320;
            "vmovdqu {v:x}, xmmword ptr [{data} + 352]", "vmovdqu xmmword ptr [{words} + 352], {v:x}");
    }
}

/// Stores the [`RECORD_WORDS`](crate::layout::RECORD_WORDS) words at `data` into the atomic words at
/// `words`, 16 bytes at a time.
#[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
#[inline(always)]
#[allow(unsafe_code)]
fn store_tick_words(words: *const AtomicU64, data: *const u64) {
    const _: () =
        assert!(crate::layout::RECORD_WORDS == 47, "the offsets copy 23 × 16 bytes (or 11 × 32 and 16) and one word");
    // SAFETY: `words` points at `RECORD_WORDS` atomic words (a slot or last-value entry of the
    // mapped segment, 8-byte aligned) that only this writer stores (the callers hold the writer), and
    // `data` at as many initialized `u64`s; the block reads and writes those 376 bytes and nothing
    // else, touches no stack and no flags. Why these stores keep the protocol: an `asm!` block is
    // outside the language's memory model, and on x86-64 it is exactly what it says, plain stores
    // in program order (TSO), each 16-byte store at least as atomic as its two aligned 8-byte halves
    // need be for the protocol, which never trusts a racing copy: the busy stamp before (and the
    // release fence, for the compiler) and the done stamp after order the block for readers exactly
    // as they order the relaxed word stores it replaces (module doc). Loom and Miri check the word
    // by word form (`store_words`), which is the same protocol.
    unsafe {
        store_record_asm!(words, data, xmm_reg, "movdqu", "xmmword";
            0 16 32 48 64 80 96 112 128 144 160 176 192 208 224 240 256 272 288 304 320 336 352;);
    }
}

/// Loads the stamp for a read that will follow with [`copy_validated`].
#[inline(always)]
pub(crate) fn load_stamp(stamp: &AtomicU64) -> u64 {
    stamp.load(Ordering::Acquire) // SYNC S-done (reader side)
}

/// Copies `words` into `out` and reports whether the copy is whole, i.e. whether the stamp still
/// reads `seen` (the value the caller loaded with [`load_stamp`] just before).
#[inline(always)]
pub(crate) fn copy_validated<const N: usize>(
    stamp: &AtomicU64,
    seen: u64,
    words: &[AtomicU64; N],
    out: &mut [u64; N],
) -> bool {
    for (value, word) in out.iter_mut().zip(words) {
        *value = word.load(Ordering::Relaxed);
    }
    fence(Ordering::Acquire); // SYNC F-rel (reader side)
    stamp.load(Ordering::Relaxed) == seen
}

/// Stamp of ring sequence `seq` (≥ 1) while its slot is being written. Wrapping: a real sequence
/// never reaches 2^63 (centuries at 10^8 ticks/s), but a reader of a corrupt segment can be handed
/// any cursor, and must misclassify a slot rather than panic (found by fuzz/segment_open).
#[inline(always)]
pub(crate) const fn ring_busy(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_sub(1)
}

/// Stamp of ring sequence `seq` (≥ 1) once its slot is whole (wrapping, as [`ring_busy`]).
#[inline(always)]
pub(crate) const fn ring_done(seq: u64) -> u64 {
    seq.wrapping_mul(2)
}

/// Stamp of ring sequence `seq` (≥ 1) that will never be written: a mirror's lost sequence (the
/// stream it copies no longer has it). `2·seq + 1` is above `ring_done(seq)` and below
/// `ring_done(seq + k·ring_slots)` for every `k ≥ 1`, so [`classify`] calls it `Overwritten` for
/// `seq` and every earlier sequence of the slot, and `NotYet` for every later one, with no change
/// to any reader (LAYOUT.md, "Mirrors"). Never equal to a `ring_done` value (it is odd), so a
/// restarted writer never adopts it.
#[inline(always)]
#[cfg_attr(loom, allow(dead_code))] // only the mirror writer (not built under loom) stores it
pub(crate) const fn ring_lost(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(1)
}

/// What a ring slot's stamp says about the sequence a reader wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// The slot holds the wanted sequence, whole (as of the stamp load).
    Ready,
    /// The wanted sequence has not been written yet (or is being written right now).
    NotYet,
    /// The slot already holds a later sequence: the wanted one has been overwritten.
    Overwritten,
}

/// Classifies a ring stamp against the wanted sequence.
#[inline(always)]
pub(crate) const fn classify(stamp: u64, want: u64) -> SlotState {
    let done = ring_done(want);
    if stamp == done {
        SlotState::Ready
    } else if stamp < done {
        SlotState::NotYet
    } else {
        SlotState::Overwritten
    }
}

/// Reads a versioned record (even = whole, odd = being written, 0 = never written) with bounded
/// retries. Returns `Some(version)` with `out` filled, `None` if never written, `Err(())` if every
/// attempt raced with the writer (or a writer died mid-write).
#[inline]
pub(crate) fn read_versioned<const N: usize>(
    stamp: &AtomicU64,
    words: &[AtomicU64; N],
    out: &mut [u64; N],
    attempts: u32,
) -> Result<Option<u64>, ()> {
    for _ in 0..attempts {
        let seen = load_stamp(stamp);
        if seen == 0 {
            return Ok(None);
        }
        if seen.is_multiple_of(2) && copy_validated(stamp, seen, words, out) {
            return Ok(Some(seen));
        }
        core::hint::spin_loop();
    }
    Err(())
}

/// Writes a versioned record: the version goes odd, the data is written, the version goes to the
/// next even value. Returns the new version.
#[inline(always)]
pub(crate) fn write_versioned<const N: usize>(stamp: &AtomicU64, words: &[AtomicU64; N], data: &[u64; N]) -> u64 {
    // Only this (single) writer stores the stamp, so a Relaxed load reads its own last store.
    let current = stamp.load(Ordering::Relaxed);
    let even = current + (current & 1); // an odd value left by a writer that died mid-write
    write(stamp, words, even + 1, data, even + 2);
    even + 2
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn classify_orders_stamps() {
        assert_eq!(classify(0, 1), SlotState::NotYet);
        assert_eq!(classify(ring_busy(1), 1), SlotState::NotYet);
        assert_eq!(classify(ring_done(1), 1), SlotState::Ready);
        assert_eq!(classify(ring_busy(2), 1), SlotState::Overwritten);
        assert_eq!(classify(ring_done(9), 5), SlotState::Overwritten);
        assert_eq!(classify(ring_done(4), 5), SlotState::NotYet);
        // A lost sequence: gone for itself and its slot's earlier laps, not yet for later laps.
        assert_eq!(classify(ring_lost(5), 5), SlotState::Overwritten);
        assert_eq!(classify(ring_lost(5), 5 - 4), SlotState::Overwritten);
        assert_eq!(classify(ring_lost(5), 5 + 4), SlotState::NotYet);
        assert_eq!(classify(ring_lost(5), 6), SlotState::NotYet);
    }

    #[test]
    fn versioned_round_trip_and_dead_writer() {
        let stamp = AtomicU64::new(0);
        let words: [AtomicU64; 4] = std::array::from_fn(|_| AtomicU64::new(0));
        let mut out = [0u64; 4];
        assert_eq!(read_versioned(&stamp, &words, &mut out, 3), Ok(None));
        assert_eq!(write_versioned(&stamp, &words, &[1, 2, 3, 4]), 2);
        assert_eq!(read_versioned(&stamp, &words, &mut out, 3), Ok(Some(2)));
        assert_eq!(out, [1, 2, 3, 4]);
        // A writer that died mid-write leaves an odd version: readers give up instead of spinning
        // forever, and the next writer moves past it.
        stamp.store(3, Ordering::Relaxed);
        assert_eq!(read_versioned(&stamp, &words, &mut out, 3), Err(()));
        assert_eq!(write_versioned(&stamp, &words, &[5, 6, 7, 8]), 6);
        assert_eq!(read_versioned(&stamp, &words, &mut out, 3), Ok(Some(6)));
        assert_eq!(out, [5, 6, 7, 8]);
    }

    #[test]
    fn a_tick_record_is_stored_whole_and_nothing_beside_it() {
        // One word of guard each side: the wide stores must write the 47 words and no more. Each
        // form on its own (`store_words` picks one by the CPU), and the word-by-word form of Miri.
        const N: usize = crate::layout::RECORD_WORDS;
        type Store = fn(&[AtomicU64; N], &[u64; N]);
        let mut forms: Vec<(&str, Store)> = vec![("store_words", store_words::<N>)];
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            forms.push(("16-byte", |w, d| store_tick_words(w.as_ptr(), d.as_ptr())));
            if std::arch::is_x86_feature_detected!("avx") {
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX (checked above); `w` and `d` are 47 words each.
                forms.push(("32-byte", |w, d| unsafe { store_tick_words_avx(w.as_ptr(), d.as_ptr()) }));
            }
        }
        for (form, store) in forms {
            let guarded: [AtomicU64; N + 2] = std::array::from_fn(|_| AtomicU64::new(u64::MAX));
            let words: &[AtomicU64; N] = guarded[1..=N].try_into().unwrap();
            let data: [u64; N] = std::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1));
            store(words, &data);
            assert_eq!(guarded[0].load(Ordering::Relaxed), u64::MAX, "{form}");
            assert_eq!(guarded[N + 1].load(Ordering::Relaxed), u64::MAX, "{form}");
            let stored: [u64; N] = std::array::from_fn(|i| words[i].load(Ordering::Relaxed));
            assert_eq!(stored, data, "{form}");
        }
    }

    #[test]
    fn copy_validated_detects_a_changed_stamp() {
        let stamp = AtomicU64::new(ring_done(1));
        let words: [AtomicU64; 2] = std::array::from_fn(|i| AtomicU64::new(i as u64));
        let mut out = [9u64; 2];
        assert!(copy_validated(&stamp, ring_done(1), &words, &mut out));
        assert_eq!(out, [0, 1]);
        assert!(!copy_validated(&stamp, ring_done(2), &words, &mut out));
    }
}

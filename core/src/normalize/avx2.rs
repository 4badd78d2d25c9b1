//! The price section of [`super::normalize`] written for AVX2: the 28 doubles and 10 book
//! volumes of a raw struct into the record, as [`super::Portable`] does it, in fewer than half its
//! instructions (`qilin-budget` udp 716.7 → 643.3 a tick).
//!
//! The raw body keeps LastPrice…CurrDelta in the record's order and spacing (Volume's word among
//! them) and interleaves each book level's prices with its volumes; the record wants the bid and
//! the ask prices and volumes each in a run. So: the 16-word run is loaded and stored as four
//! vectors; levels 1–4 are loaded as four vectors and de-interleaved with two unpacks and two
//! lane permutes into the bid and the ask prices (two more unpacks and one shuffle give their eight
//! volumes as one vector of 32-bit lanes, the record's form); level 5 is cleaned as loaded, and
//! AveragePrice with the banding prices as one more vector. Every vector is cleaned with the same
//! four operations: the magnitude (sign cleared), `< ABSENT_FROM` (ordered: false for NaN) picks
//! the double or NaN, `!(< ∞)` marks a bad one; lanes that hold volume words are masked out of the
//! verdicts. Exactly the portable form's results, bit for bit (compares and selects, no
//! arithmetic): `tests::the_avx2_price_section_is_the_portable_one` compares them on random bodies.
//!
//! Every intrinsic is a method of the [`Avx2`] token, which exists only where the CPU has AVX2:
//! each method's one `unsafe` call rests on that (and, for loads and stores, on the array it is
//! given). The methods are `#[inline(always)]` and carry no `#[target_feature]` (stable Rust
//! cannot have both), so the section inlines whole into the engine's AVX2 build, where the
//! intrinsics then inline too. As one `#[target_feature]` function it stayed a call, whose
//! arguments and spilled vectors cost 25 instructions a tick.

#![allow(unsafe_code)] // the intrinsic calls of the `Avx2` methods below, each argued where it is

use core::{
    arch::x86_64::{
        __m128d, __m128i, __m256, __m256d, __m256i, _CMP_LT_OQ, _CMP_NLT_UQ, _mm_store_sd, _mm_storeu_si128,
        _mm256_and_pd, _mm256_blend_pd, _mm256_blendv_pd, _mm256_castpd_ps, _mm256_castpd_si256,
        _mm256_castpd256_pd128, _mm256_castps_si256, _mm256_castsi256_pd, _mm256_castsi256_si128, _mm256_cmp_pd,
        _mm256_cmpeq_epi32, _mm256_cvtepi32_epi64, _mm256_extractf128_pd, _mm256_extracti128_si256, _mm256_loadu_pd,
        _mm256_movemask_pd, _mm256_or_pd, _mm256_permute2f128_pd, _mm256_set1_pd, _mm256_setr_pd, _mm256_setzero_pd,
        _mm256_shuffle_epi32, _mm256_shuffle_ps, _mm256_storeu_pd, _mm256_testz_pd, _mm256_unpackhi_pd,
        _mm256_unpacklo_pd,
    },
    mem::{offset_of, size_of},
};

use qilin_shm::TickRecord;
use zerocopy::IntoBytes;

use super::{ABSENT_FROM, Avx2};
use crate::ctp::{BookLevel, DepthBody};

/// The record's price run starts here: LastPrice…CurrDelta (Volume the 8th word), AveragePrice,
/// the banding prices, BidPrice1..5, AskPrice1..5, BidVolume1..5, AskVolume1..5.
const P: usize = offset_of!(TickRecord, last_price);
const LEVEL: usize = size_of::<BookLevel>();
const LEVELS: usize = offset_of!(DepthBody, levels);
const _: () = {
    assert!(offset_of!(TickRecord, volume) == P + 56 && offset_of!(TickRecord, curr_delta) == P + 120);
    assert!(offset_of!(TickRecord, average_price) == P + 128);
    assert!(offset_of!(TickRecord, banding_upper_price) == P + 136);
    assert!(offset_of!(TickRecord, banding_lower_price) == P + 144);
    assert!(offset_of!(TickRecord, bid_price) == P + 152 && offset_of!(TickRecord, ask_price) == P + 192);
    assert!(offset_of!(TickRecord, bid_volume) == P + 232 && offset_of!(TickRecord, ask_volume) == P + 252);
    assert!(offset_of!(DepthBody, last_price) == 0 && offset_of!(DepthBody, volume) == 56);
    assert!(offset_of!(DepthBody, turnover) == 64 && offset_of!(DepthBody, curr_delta) == 120);
    assert!(LEVEL == 32 && LEVELS == 144 && offset_of!(DepthBody, average_price) == LEVELS + 5 * LEVEL);
    assert!(offset_of!(BookLevel, bid_price) == 0 && offset_of!(BookLevel, bid_volume) == 8);
    assert!(offset_of!(BookLevel, ask_price) == 16 && offset_of!(BookLevel, ask_volume) == 24);
};

/// Methods of [`Avx2`], one intrinsic each, that take no pointer: all they need is AVX2.
macro_rules! register_ops {
    ($( $(#[$doc:meta])* fn $name:ident $(<const $c:ident: i32>)? ($($arg:ident: $ty:ty),*) -> $ret:ty = $intrinsic:ident $(::<$k:tt>)?; )*) => {
        impl Avx2 {
            $(
                $(#[$doc])*
                #[inline(always)]
                fn $name $(<const $c: i32>)? (self, $($arg: $ty),*) -> $ret {
                    // SAFETY: an `Avx2` exists only where the CPU has AVX2 (`Avx2::detect`), the one
                    // thing this intrinsic needs (it takes no pointer).
                    unsafe { $intrinsic $(::<$k>)? ($($arg),*) }
                }
            )*
        }
    };
}

register_ops! {
    fn and(a: __m256d, b: __m256d) -> __m256d = _mm256_and_pd;
    fn or(a: __m256d, b: __m256d) -> __m256d = _mm256_or_pd;
    /// `a < b` lane by lane, ordered (false with a NaN): all ones or zero.
    fn below(a: __m256d, b: __m256d) -> __m256d = _mm256_cmp_pd::<_CMP_LT_OQ>;
    /// `!(a < b)` lane by lane (true with a NaN).
    fn not_below(a: __m256d, b: __m256d) -> __m256d = _mm256_cmp_pd::<_CMP_NLT_UQ>;
    /// `b` where `mask`'s lane has its sign bit set, else `a`.
    fn select(a: __m256d, b: __m256d, mask: __m256d) -> __m256d = _mm256_blendv_pd;
    /// Lanes of `b` where `MASK` has a bit, else of `a`.
    fn blend<const MASK: i32>(a: __m256d, b: __m256d) -> __m256d = _mm256_blend_pd::<MASK>;
    fn splat(x: f64) -> __m256d = _mm256_set1_pd;
    fn zero() -> __m256d = _mm256_setzero_pd;
    fn four(a: f64, b: f64, c: f64, d: f64) -> __m256d = _mm256_setr_pd;
    /// The sign bits of the four lanes.
    fn signs(x: __m256d) -> i32 = _mm256_movemask_pd;
    /// 1 when no lane of `a & b` has its sign bit set.
    fn no_sign(a: __m256d, b: __m256d) -> i32 = _mm256_testz_pd;
    /// `[a0 b0 | a2 b2]`.
    fn unpack_low(a: __m256d, b: __m256d) -> __m256d = _mm256_unpacklo_pd;
    /// `[a1 b1 | a3 b3]`.
    fn unpack_high(a: __m256d, b: __m256d) -> __m256d = _mm256_unpackhi_pd;
    /// 128-bit halves of `a` and `b` picked by `SELECT`.
    fn halves<const SELECT: i32>(a: __m256d, b: __m256d) -> __m256d = _mm256_permute2f128_pd::<SELECT>;
    fn upper_pair(x: __m256d) -> __m128d = _mm256_extractf128_pd::<1>;
    fn low_pair(x: __m256d) -> __m128d = _mm256_castpd256_pd128;
    fn as_ints(x: __m256d) -> __m256i = _mm256_castpd_si256;
    fn as_doubles(x: __m256i) -> __m256d = _mm256_castsi256_pd;
    /// 32-bit lanes equal, all ones or zero.
    fn equal32(a: __m256i, b: __m256i) -> __m256i = _mm256_cmpeq_epi32;
    /// Lanes 0–3 of 32 bits, sign-extended to four of 64.
    fn widen(x: __m128i) -> __m256i = _mm256_cvtepi32_epi64;
    fn low_quad(x: __m256i) -> __m128i = _mm256_castsi256_si128;
    fn upper_quad(x: __m256i) -> __m128i = _mm256_extracti128_si256::<1>;
    /// Every 32-bit lane of each 128-bit half from lane 2 of that half.
    fn spread_lane2(x: __m256i) -> __m256i = _mm256_shuffle_epi32::<0b1010_1010>;
    /// `[a0 a2 b0 b2 | a4 a6 b4 b6]` of 32-bit lanes (as floats: moved, never computed).
    fn even_lanes(a: __m256, b: __m256) -> __m256 = _mm256_shuffle_ps::<0b10_00_10_00>;
    fn as_floats(x: __m256d) -> __m256 = _mm256_castpd_ps;
    fn floats_as_ints(x: __m256) -> __m256i = _mm256_castps_si256;
}

impl Avx2 {
    /// Four doubles from 32 bytes.
    #[inline(always)]
    fn load(self, bytes: &[u8; 32]) -> __m256d {
        // SAFETY: AVX2 is there (`self`), and `bytes` is 32 readable bytes, exactly what
        // `_mm256_loadu_pd` reads (unaligned).
        unsafe { _mm256_loadu_pd(bytes.as_ptr().cast()) }
    }

    /// Four doubles into 32 bytes.
    #[inline(always)]
    fn store(self, bytes: &mut [u8; 32], x: __m256d) {
        // SAFETY: AVX2 is there (`self`), and `bytes` is 32 writable bytes, exactly what
        // `_mm256_storeu_pd` writes (unaligned).
        unsafe { _mm256_storeu_pd(bytes.as_mut_ptr().cast(), x) }
    }

    /// Four 32-bit lanes into 16 bytes.
    #[inline(always)]
    fn store_quad(self, bytes: &mut [u8; 16], x: __m128i) {
        // SAFETY: AVX2 is there (`self`), and `bytes` is 16 writable bytes, exactly what
        // `_mm_storeu_si128` writes (unaligned).
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), x) }
    }

    /// The lower double of a pair into 8 bytes.
    #[inline(always)]
    fn store_one(self, bytes: &mut [u8; 8], x: __m128d) {
        // SAFETY: AVX2 is there (`self`), and `bytes` is 8 writable bytes, exactly what
        // `_mm_store_sd` writes (no alignment needed).
        unsafe { _mm_store_sd(bytes.as_mut_ptr().cast(), x) }
    }

    /// One vector cleaned: (the doubles with absent ones as NaN, lanes kept (all ones where
    /// |x| < `ABSENT_FROM`), lanes bad (all ones where infinite or NaN)).
    #[inline(always)]
    fn clean(self, x: __m256d) -> (__m256d, __m256d, __m256d) {
        let magnitude = self.and(x, self.splat(f64::from_bits(!(1 << 63))));
        let kept = self.below(magnitude, self.splat(ABSENT_FROM));
        let bad = self.not_below(magnitude, self.splat(f64::INFINITY));
        (self.select(self.splat(f64::NAN), x, kept), kept, bad)
    }

    /// Lanes whose bit is set in `MASK` all ones, the others zero.
    #[inline(always)]
    fn lanes<const MASK: i32>(self) -> __m256d {
        self.blend::<MASK>(self.zero(), self.splat(f64::from_bits(u64::MAX)))
    }
}

/// `N` bytes of `bytes` from `at` (constant offsets: the checks fold away).
#[inline(always)]
fn chunk<const N: usize>(bytes: &[u8], at: usize) -> &[u8; N] {
    bytes[at..at + N].try_into().expect("inside the struct")
}

/// [`chunk`], writable.
#[inline(always)]
fn chunk_mut<const N: usize>(bytes: &mut [u8], at: usize) -> &mut [u8; N] {
    (&mut bytes[at..at + N]).try_into().expect("inside the record")
}

/// The price section: cleans `body`'s 26 prices, AveragePrice and `banding` (the struct's banding
/// prices, 0.0 where it has none) into `out`'s price fields, and stores the ten book volumes; with
/// `has_banding` false the banding prices are stored as NaN. Returns (a price absent where one was
/// expected: LastPrice with `volume` > 0, a book price with its volume not 0; any double infinite
/// or NaN). AveragePrice is stored as cleaned, not yet per unit; Volume's word is left for the
/// caller.
#[inline(always)]
pub(super) fn clean_prices(
    v: Avx2,
    body: &DepthBody,
    banding: [f64; 2],
    has_banding: bool,
    volume: i64,
    out: &mut TickRecord,
) -> (bool, bool) {
    let b = body.as_bytes();
    let r = out.as_mut_bytes();
    // Written so that each cleaned vector is stored and its verdicts folded in before the next one
    // is loaded: a few vectors live at a time (all loads first spilled a dozen to the stack).

    // LastPrice…CurrDelta as laid out in both: four vectors, Volume's word (lane 3 of the second)
    // left out of the verdicts and overwritten by the caller.
    let (run0, kept0, mut bad) = v.clean(v.load(chunk(b, 0)));
    v.store(chunk_mut(r, P), run0);
    let last_price_missing = volume > 0 && v.signs(kept0) & 1 == 0;
    let (run1, _, bad1) = v.clean(v.load(chunk(b, 32)));
    v.store(chunk_mut(r, P + 32), run1);
    bad = v.or(bad, v.and(bad1, v.lanes::<0b0111>()));
    for at in [64, 96] {
        let (run, _, run_bad) = v.clean(v.load(chunk(b, at)));
        v.store(chunk_mut(r, P + at), run);
        bad = v.or(bad, run_bad);
    }

    // AveragePrice and the banding prices, the lower one twice (lane 3 changes no verdict and is
    // stored over by BidPrice1: a zero there was built with an instruction valgrind 3.19 cannot run).
    let average = body.average_price.get();
    let (tail, _, tail_bad) = v.clean(v.four(average, banding[0], banding[1], banding[1]));
    let tail = if has_banding { tail } else { v.blend::<0b0110>(tail, v.splat(f64::NAN)) };
    v.store(chunk_mut(r, P + 128), tail);
    bad = v.or(bad, tail_bad);

    // Levels 1–4, de-interleaved: [bp0 bv0 ap0 av0] … → [bp0 bp1 bp2 bp3], [ap0 ap1 ap2 ap3] and the
    // volumes [bv0 bv1 bv2 bv3 | av0 av1 av2 av3] as 32-bit lanes (each volume word's low half). A
    // book lane is fine when its price was kept or its volume is 0.
    let level = |i: usize| v.load(chunk(b, LEVELS + i * LEVEL));
    let (l0, l1, l2, l3) = (level(0), level(1), level(2), level(3));
    let (low01, low23) = (v.unpack_low(l0, l1), v.unpack_low(l2, l3));
    let (high01, high23) = (v.as_floats(v.unpack_high(l0, l1)), v.as_floats(v.unpack_high(l2, l3)));
    let volumes = v.floats_as_ints(v.even_lanes(high01, high23));
    v.store_quad(chunk_mut(r, P + 232), v.low_quad(volumes));
    v.store_quad(chunk_mut(r, P + 252), v.upper_quad(volumes));
    let empty = v.equal32(volumes, v.as_ints(v.zero()));
    let (bids, bid_kept, bid_bad) = v.clean(v.halves::<0x20>(low01, low23));
    v.store(chunk_mut(r, P + 152), bids);
    let mut fine = v.or(bid_kept, v.as_doubles(v.widen(v.low_quad(empty))));
    bad = v.or(bad, bid_bad);
    let (asks, ask_kept, ask_bad) = v.clean(v.halves::<0x31>(low01, low23));
    v.store(chunk_mut(r, P + 192), asks);
    fine = v.and(fine, v.or(ask_kept, v.as_doubles(v.widen(v.upper_quad(empty)))));
    bad = v.or(bad, ask_bad);

    // Level 5 as loaded: prices in lanes 0 and 2, volume words in 1 and 3 (their low halves tested
    // for 0 and spread over the whole lane of the price beside them; their own lanes always fine).
    let l4 = level(4);
    let (last, last_kept, last_bad) = v.clean(l4);
    v.store_one(chunk_mut(r, P + 184), v.low_pair(last));
    v.store_one(chunk_mut(r, P + 224), v.upper_pair(last));
    let level5 = &body.levels[4];
    r[P + 248..P + 252].copy_from_slice(level5.bid_volume.as_bytes());
    r[P + 268..P + 272].copy_from_slice(level5.ask_volume.as_bytes());
    let last_empty = v.as_doubles(v.spread_lane2(v.equal32(v.as_ints(l4), v.as_ints(v.zero()))));
    fine = v.and(fine, v.or(v.or(last_kept, last_empty), v.lanes::<0b1010>()));
    bad = v.or(bad, v.and(last_bad, v.lanes::<0b0101>()));

    (last_price_missing || v.signs(fine) != 0b1111, v.no_sign(bad, bad) == 0)
}

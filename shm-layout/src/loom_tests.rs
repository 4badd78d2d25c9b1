//! Loom models of the stamped-record protocol (`RUSTFLAGS="--cfg loom" cargo test -p qilin-shm
//! --release --lib loom`; the integration tests do not build under `cfg(loom)`). Loom explores the
//! interleavings (and the weak-memory reorderings it models) of a writer and a reader on the very
//! `seqlock` functions production uses, through `crate::sync`.
//!
//! Preemptions are bounded (`LOOM_MAX_PREEMPTIONS`, default 3 here): the protocol's races need at
//! most two preemptions (reader between its two stamp loads, writer between stamp and data), and an
//! unbounded search over three writes does not finish in CI time.

use loom::{sync::Arc, thread};

use crate::{
    seqlock::{self, SlotState},
    sync::{AtomicU64, Ordering},
};

const WORDS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Every word of the record for `seq` is derived from `seq`; a torn copy mixes two sequences.
fn data(seq: u64) -> [u64; WORDS] {
    [seq, seq * 10, seq * 100]
}

struct Ring {
    stamp: AtomicU64,
    words: [AtomicU64; WORDS],
    cursor: AtomicU64,
}

impl Ring {
    fn new() -> Ring {
        Ring { stamp: AtomicU64::new(0), words: std::array::from_fn(|_| AtomicU64::new(0)), cursor: AtomicU64::new(0) }
    }
}

/// A one-slot ring: the writer publishes 1, 2, 3 (each overwriting the last); the reader tries to
/// read 1 then whatever follows. Any record it accepts must be whole and be the one it asked for.
#[test]
fn loom_ring_slot_never_returns_a_torn_record() {
    model(|| {
        let ring = Arc::new(Ring::new());
        let w = Arc::clone(&ring);
        let writer = thread::spawn(move || {
            for seq in 1..=3u64 {
                seqlock::write(&w.stamp, &w.words, seqlock::ring_busy(seq), &data(seq), seqlock::ring_done(seq));
                w.cursor.store(seq, Ordering::Release);
            }
        });
        let mut want = 1u64;
        for _ in 0..3 {
            let seen = seqlock::load_stamp(&ring.stamp);
            match seqlock::classify(seen, want) {
                SlotState::NotYet => thread::yield_now(),
                SlotState::Ready => {
                    let mut out = [0u64; WORDS];
                    if seqlock::copy_validated(&ring.stamp, seen, &ring.words, &mut out) {
                        assert_eq!(out, data(want), "accepted a torn or foreign record");
                        want += 1;
                    } else {
                        want = ring.cursor.load(Ordering::Acquire).max(want) + 1;
                    }
                }
                SlotState::Overwritten => want = ring.cursor.load(Ordering::Acquire).max(want) + 1,
            }
        }
        writer.join().unwrap();
    });
}

/// Versioned record (last-value cache): the writer replaces the value twice; the reader's accepted
/// copies are whole and never go back in time.
#[test]
fn loom_last_value_is_consistent_and_monotonic() {
    model(|| {
        let ring = Arc::new(Ring::new());
        let w = Arc::clone(&ring);
        let writer = thread::spawn(move || {
            for seq in 1..=2u64 {
                seqlock::write_versioned(&w.stamp, &w.words, &data(seq));
            }
        });
        let mut last = 0;
        for _ in 0..2 {
            let mut out = [0u64; WORDS];
            if let Ok(Some(_)) = seqlock::read_versioned(&ring.stamp, &ring.words, &mut out, 2) {
                assert_eq!(out, data(out[0]), "torn last value");
                assert!(out[0] >= last, "last value went back");
                last = out[0];
            }
        }
        writer.join().unwrap();
    });
}

//! The set of recently published tick fingerprints that deduplicates the two sessions' ticks
//! during a switch (see [`crate::engine`]): a fixed-capacity, insertion-ordered set. Remembering
//! the last `capacity` fingerprints whatever their instrument makes deduplication independent of
//! how far one session's hand-off lags the other's, as long as the lag is below `capacity` ticks;
//! the engine sizes it at twice a hand-off's capacity, more than one session can be behind.
//!
//! Open addressing with linear probing (load factor at most ½) and backward-shift deletion, plus a
//! ring of fingerprints in insertion order for eviction (an identical tick inserted twice is
//! counted, so it is forgotten with its last insertion). The arrays are allocated once, at start;
//! `insert` and `contains` never allocate. Fingerprint 0 is the empty marker, so a fingerprint of
//! 0 is stored as 1 (one more chance in 2^64 of a false duplicate).

/// A set of the last `capacity` fingerprints inserted.
#[derive(Debug)]
pub struct RecentSet {
    table: Box<[u64]>,
    /// How many times each table entry is in `order` (an identical tick can come twice).
    counts: Box<[u32]>,
    mask: usize,
    shift: u32,
    order: Box<[u64]>,
    next: usize,
    len: usize,
}

const EMPTY: u64 = 0;

impl RecentSet {
    /// Remembers up to `capacity` (≥ 1) fingerprints.
    pub fn new(capacity: usize) -> RecentSet {
        let capacity = capacity.max(1);
        let size = (capacity * 2).next_power_of_two();
        RecentSet {
            table: vec![EMPTY; size].into_boxed_slice(),
            counts: vec![0; size].into_boxed_slice(),
            mask: size - 1,
            shift: 64 - size.trailing_zeros(),
            order: vec![EMPTY; capacity].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    /// How many fingerprints are remembered at most.
    pub fn capacity(&self) -> usize {
        self.order.len()
    }

    #[inline]
    fn home(&self, fp: u64) -> usize {
        // Fibonacci hashing: the high bits of the product are well mixed whatever the input.
        if self.shift >= 64 { 0 } else { (fp.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize }
    }

    #[inline]
    fn key(fp: u64) -> u64 {
        if fp == EMPTY { 1 } else { fp }
    }

    /// Whether `fp` is among the remembered fingerprints.
    #[inline]
    pub fn contains(&self, fp: u64) -> bool {
        let fp = Self::key(fp);
        let mut i = self.home(fp);
        loop {
            match self.table[i] {
                EMPTY => return false,
                x if x == fp => return true,
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Remembers `fp`, forgetting the oldest fingerprint when full.
    #[inline]
    pub fn insert(&mut self, fp: u64) {
        let fp = Self::key(fp);
        if self.len == self.order.len() {
            let oldest = self.order[self.next];
            self.remove(oldest);
        } else {
            self.len += 1;
        }
        self.order[self.next] = fp;
        self.next = (self.next + 1) % self.order.len();
        let mut i = self.home(fp);
        loop {
            match self.table[i] {
                EMPTY => {
                    self.table[i] = fp;
                    self.counts[i] = 1;
                    return;
                }
                x if x == fp => {
                    self.counts[i] += 1;
                    return;
                }
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Forgets one insertion of `fp` (the entry goes when its last insertion does).
    fn remove(&mut self, fp: u64) {
        let mut i = self.home(fp);
        loop {
            match self.table[i] {
                EMPTY => return,
                x if x == fp => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        self.counts[i] -= 1;
        if self.counts[i] > 0 {
            return;
        }
        // Backward-shift deletion: pull later entries of the probe run into the hole when their
        // home position does not lie cyclically in (hole, position].
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let x = self.table[j];
            if x == EMPTY {
                break;
            }
            let k = self.home(x);
            let stays = if i <= j { i < k && k <= j } else { i < k || k <= j };
            if !stays {
                self.table[i] = x;
                self.counts[i] = self.counts[j];
                i = j;
            }
        }
        self.table[i] = EMPTY;
        self.counts[i] = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn remembers_the_last_capacity_fingerprints() {
        let mut s = RecentSet::new(3);
        for fp in [10, 20, 30] {
            s.insert(fp);
        }
        assert!(s.contains(10) && s.contains(20) && s.contains(30));
        s.insert(40);
        assert!(!s.contains(10), "the oldest is forgotten");
        assert!(s.contains(20) && s.contains(30) && s.contains(40));
        s.insert(0);
        assert!(s.contains(0) && !s.contains(20));
    }

    proptest! {
        /// Against a model (a queue of the last `capacity` insertions): the same answers, whatever
        /// the collisions (a small key space forces long probe runs and wrap-around).
        #[test]
        fn behaves_like_a_bounded_queue(capacity in 1usize..40, ops in proptest::collection::vec((0u64..64, any::<bool>()), 1..600)) {
            let mut set = RecentSet::new(capacity);
            let mut model: VecDeque<u64> = VecDeque::new();
            for (fp, insert) in ops {
                if insert {
                    if model.len() == capacity {
                        model.pop_front();
                    }
                    model.push_back(RecentSet::key(fp));
                    set.insert(fp);
                }
                let expected: HashSet<u64> = model.iter().copied().collect();
                for probe in 0u64..64 {
                    prop_assert_eq!(set.contains(probe), expected.contains(&RecentSet::key(probe)), "fingerprint {}", probe);
                }
            }
        }
    }
}

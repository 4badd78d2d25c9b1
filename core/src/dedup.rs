//! The set of recently published ticks that deduplicates the two sessions' ticks during a switch
//! (see [`crate::engine`]): a fixed-capacity, insertion-ordered set of [`TickKey`]s. Remembering
//! the last `capacity` ticks whatever their instrument makes deduplication independent of how far
//! one session's hand-off lags the other's, as long as the lag is below `capacity` ticks; the
//! engine sizes it at twice a hand-off's capacity, more than one session can be behind.
//!
//! A hit is exact: the 64-bit fingerprint only finds candidates, and a tick is a duplicate only if
//! every field of its key equals a remembered one's, so a fingerprint collision cannot drop a real
//! tick. The price is memory: 280 bytes a remembered tick (about 35 MiB with the default hand-off
//! capacity of 65 536, next to the two hand-offs' 77 MiB), allocated once at start.
//!
//! Open addressing with linear probing (load factor at most ½) and backward-shift deletion, plus a
//! ring of keys in insertion order for eviction (an identical tick inserted twice is counted, so
//! it is forgotten with its last insertion). The arrays are allocated once, at start; `insert` and
//! `contains` never allocate.

use std::hash::Hasher;

use rustc_hash::FxHasher;

use crate::ctp::{LEVELS, RawTick};

/// Words of a [`TickKey`]: the instrument (4), trading day, update time, millisecond, volume, six
/// prices and the book (4 per level).
const KEY_WORDS: usize = 14 + 4 * LEVELS;

/// What identifies one exchange tick whichever session delivered it, from the raw struct: the
/// instrument, trading day, update time and millisecond, cumulative volume and turnover, open
/// interest, prices and the five-level book, plus their 64-bit fingerprint. Padding bytes are left
/// out (an SDK may not clear them). Two keys are equal when every field is.
#[derive(Clone, Copy, Debug)]
pub struct TickKey {
    words: [u64; KEY_WORDS],
    fingerprint: u64,
}

impl PartialEq for TickKey {
    #[inline]
    fn eq(&self, other: &TickKey) -> bool {
        self.fingerprint == other.fingerprint && self.words == other.words
    }
}

impl Eq for TickKey {}

impl TickKey {
    /// The key of a parsed struct.
    #[inline]
    pub fn of(raw: &RawTick<'_>) -> TickKey {
        let b = raw.body;
        let mut words = [0u64; KEY_WORDS];
        words[..4].copy_from_slice(&raw.id_words());
        words[4] = raw.trading_day.word();
        words[5] = raw.update_time.word();
        words[6] = u64::from(b.update_millisec.get() as u32);
        words[7] = u64::from(b.volume.get() as u32);
        for (w, x) in words[8..14].iter_mut().zip([
            b.last_price,
            b.turnover,
            b.open_interest,
            b.highest_price,
            b.lowest_price,
            b.average_price,
        ]) {
            *w = x.get().to_bits();
        }
        for (w, level) in words[14..].chunks_exact_mut(4).zip(&b.levels) {
            w[0] = level.bid_price.get().to_bits();
            w[1] = u64::from(level.bid_volume.get() as u32);
            w[2] = level.ask_price.get().to_bits();
            w[3] = u64::from(level.ask_volume.get() as u32);
        }
        TickKey::from_words(words)
    }

    #[inline(always)]
    fn from_words(words: [u64; KEY_WORDS]) -> TickKey {
        let mut h = FxHasher::default();
        for w in words {
            h.write_u64(w);
        }
        TickKey { words, fingerprint: h.finish() }
    }

    /// The 64-bit fingerprint that places the key in the set (distinct ticks can share one).
    #[inline(always)]
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// One table entry: where in `order` the newest insertion of its key is, and how many insertions
/// of that key `order` holds (0: empty entry).
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    fingerprint: u64,
    at: u32,
    count: u32,
}

/// A set of the last `capacity` ticks inserted.
#[derive(Debug)]
pub struct RecentSet {
    table: Box<[Entry]>,
    mask: usize,
    shift: u32,
    order: Box<[TickKey]>,
    next: usize,
    len: usize,
}

impl RecentSet {
    /// Remembers up to `capacity` (≥ 1, < 2^31) ticks.
    pub fn new(capacity: usize) -> RecentSet {
        let capacity = capacity.clamp(1, 1 << 31);
        let size = (capacity * 2).next_power_of_two();
        RecentSet {
            table: vec![Entry::default(); size].into_boxed_slice(),
            mask: size - 1,
            shift: 64 - size.trailing_zeros(),
            order: vec![TickKey { words: [0; KEY_WORDS], fingerprint: 0 }; capacity].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    /// How many ticks are remembered at most.
    pub fn capacity(&self) -> usize {
        self.order.len()
    }

    #[inline]
    fn home(&self, fp: u64) -> usize {
        // Fibonacci hashing: the high bits of the product are well mixed whatever the input.
        if self.shift >= 64 { 0 } else { (fp.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize }
    }

    /// The table position of `key`'s entry, if it has one.
    #[inline]
    fn find(&self, key: &TickKey) -> Option<usize> {
        let mut i = self.home(key.fingerprint);
        loop {
            let e = &self.table[i];
            if e.count == 0 {
                return None;
            }
            // A fingerprint match is only a candidate: compare the whole key.
            if e.fingerprint == key.fingerprint && self.order[e.at as usize] == *key {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Whether `key` is among the remembered ticks.
    #[inline]
    pub fn contains(&self, key: &TickKey) -> bool {
        self.find(key).is_some()
    }

    /// Remembers `key`, forgetting the oldest tick when full.
    #[inline]
    pub fn insert(&mut self, key: &TickKey) {
        if self.len == self.order.len() {
            let oldest = self.order[self.next];
            self.remove(&oldest);
        } else {
            self.len += 1;
        }
        let at = self.next;
        self.order[at] = *key;
        self.next = (at + 1) % self.order.len();
        let mut i = self.home(key.fingerprint);
        loop {
            let e = self.table[i];
            if e.count == 0 {
                self.table[i] = Entry { fingerprint: key.fingerprint, at: at as u32, count: 1 };
                return;
            }
            // (No entry points at `at` any more: the oldest insertion there was just removed.)
            if e.fingerprint == key.fingerprint && self.order[e.at as usize] == *key {
                // The newest insertion outlives the older ones.
                self.table[i] = Entry { at: at as u32, count: e.count + 1, ..e };
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Forgets one insertion of `key` (the entry goes when its last insertion does).
    fn remove(&mut self, key: &TickKey) {
        let Some(mut i) = self.find(key) else { return };
        self.table[i].count -= 1;
        if self.table[i].count > 0 {
            return;
        }
        // Backward-shift deletion: pull later entries of the probe run into the hole when their
        // home position does not lie cyclically in (hole, position].
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let x = self.table[j];
            if x.count == 0 {
                break;
            }
            let k = self.home(x.fingerprint);
            let stays = if i <= j { i < k && k <= j } else { i < k || k <= j };
            if !stays {
                self.table[i] = x;
                i = j;
            }
        }
        self.table[i] = Entry::default();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    /// A key whose fields are `n` and whose fingerprint is forced to `fingerprint`, so that
    /// distinct keys collide at will.
    fn key(n: u64, fingerprint: u64) -> TickKey {
        let mut words = [0; KEY_WORDS];
        words[0] = n;
        TickKey { words, fingerprint }
    }

    #[test]
    fn remembers_the_last_capacity_ticks() {
        let mut s = RecentSet::new(3);
        for n in [10, 20, 30] {
            s.insert(&key(n, n));
        }
        assert!(s.contains(&key(10, 10)) && s.contains(&key(20, 20)) && s.contains(&key(30, 30)));
        s.insert(&key(40, 40));
        assert!(!s.contains(&key(10, 10)), "the oldest is forgotten");
        assert!(s.contains(&key(20, 20)) && s.contains(&key(30, 30)) && s.contains(&key(40, 40)));
    }

    #[test]
    fn a_fingerprint_collision_is_not_a_hit() {
        let mut s = RecentSet::new(8);
        s.insert(&key(1, 77));
        assert!(s.contains(&key(1, 77)));
        assert!(!s.contains(&key(2, 77)), "a different tick with the same fingerprint taken for a duplicate");
        s.insert(&key(2, 77));
        assert!(s.contains(&key(1, 77)) && s.contains(&key(2, 77)));
    }

    #[test]
    fn the_key_covers_every_identifying_field() {
        use crate::ctp::RawFields;
        let base = RawFields {
            trading_day: "20260302".into(),
            action_day: "20260302".into(),
            instrument_id: "rb2605".into(),
            exchange_id: "SHFE".into(),
            update_time: "10:00:01".into(),
            ..RawFields::default()
        };
        let of = |f: &RawFields| {
            let bytes = f.to_v67_bytes();
            TickKey::of(&RawTick::parse(&bytes).expect("a valid struct"))
        };
        type Change = Box<dyn Fn(&mut RawFields)>;
        let changes: Vec<(&str, Change)> = vec![
            ("instrument", Box::new(|f| f.instrument_id = "rb2610".into())),
            ("trading day", Box::new(|f| f.trading_day = "20260303".into())),
            ("update time", Box::new(|f| f.update_time = "10:00:02".into())),
            ("millisecond", Box::new(|f| f.update_millisec = 500)),
            ("volume", Box::new(|f| f.volume = 1)),
            ("last price", Box::new(|f| f.last_price = 1.0)),
            ("turnover", Box::new(|f| f.turnover = 1.0)),
            ("open interest", Box::new(|f| f.open_interest = 1.0)),
            ("highest", Box::new(|f| f.highest_price = 1.0)),
            ("lowest", Box::new(|f| f.lowest_price = 1.0)),
            ("average", Box::new(|f| f.average_price = 1.0)),
            ("bid 5", Box::new(|f| f.bid_price[4] = 1.0)),
            ("bid volume 5", Box::new(|f| f.bid_volume[4] = 1)),
            ("ask 5", Box::new(|f| f.ask_price[4] = 1.0)),
            ("ask volume 5", Box::new(|f| f.ask_volume[4] = 1)),
        ];
        let k0 = of(&base);
        assert_eq!(k0, of(&base));
        for (what, change) in changes {
            let mut f = base.clone();
            change(&mut f);
            assert_ne!(of(&f), k0, "{what} not in the key");
        }
    }

    proptest! {
        /// Against a model (a queue of the last `capacity` insertions): the same answers, whatever
        /// the collisions (16 fingerprints for 64 keys force long probe runs, wrap-around and
        /// distinct keys sharing a fingerprint).
        #[test]
        fn behaves_like_a_bounded_queue(capacity in 1usize..40, ops in proptest::collection::vec((0u64..64, any::<bool>()), 1..600)) {
            let k = |n: u64| key(n, n % 16);
            let mut set = RecentSet::new(capacity);
            let mut model: VecDeque<u64> = VecDeque::new();
            for (n, insert) in ops {
                if insert {
                    if model.len() == capacity {
                        model.pop_front();
                    }
                    model.push_back(n);
                    set.insert(&k(n));
                }
                let expected: HashSet<u64> = model.iter().copied().collect();
                for probe in 0u64..64 {
                    prop_assert_eq!(set.contains(&k(probe)), expected.contains(&probe), "key {}", probe);
                }
            }
        }
    }
}

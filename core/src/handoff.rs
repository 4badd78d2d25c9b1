//! The SDK → core hand-off: a bounded, preallocated single-producer single-consumer queue of raw
//! CTP structs (rtrb). The producer is whatever thread calls back with market data (the vendor SDK's,
//! or the simulator's, which calls the same [`HandoffTx::push`]); the consumer is the pinned hot
//! thread. A full queue drops the struct and counts it; the producer never blocks and never
//! allocates.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use qilin_shm::Source;

/// Largest raw struct carried (6.7.x, 584 bytes). Anything longer is a malformed record: its
/// length is kept so the core rejects it by size, its bytes are cut to this.
pub const RAW_MAX: usize = 584;

/// One raw struct as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct RawMsg {
    /// CLOCK_REALTIME, UTC ns, taken by the producer when the callback ran.
    pub receive_ns: i64,
    /// Length the producer was given (may exceed [`RAW_MAX`]).
    pub len: u32,
    /// Which session or source produced it.
    pub source: Source,
    /// The first `min(len, RAW_MAX)` bytes.
    pub bytes: [u8; RAW_MAX],
}

impl RawMsg {
    /// The bytes carried, or `None` if the original was longer than [`RAW_MAX`] (bad size).
    pub fn payload(&self) -> Option<&[u8]> {
        let len = self.len as usize;
        (len <= RAW_MAX).then(|| &self.bytes[..len])
    }
}

/// Producer end, owned by the callback thread.
#[derive(Debug)]
pub struct HandoffTx {
    producer: rtrb::Producer<RawMsg>,
    dropped: Arc<AtomicUsize>,
}

/// Consumer end, owned by the hot thread.
#[derive(Debug)]
pub struct HandoffRx {
    consumer: rtrb::Consumer<RawMsg>,
    dropped: Arc<AtomicUsize>,
}

/// Creates a hand-off holding `capacity` structs (allocated now, never again).
pub fn handoff(capacity: usize) -> (HandoffTx, HandoffRx) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    let dropped = Arc::new(AtomicUsize::new(0));
    (HandoffTx { producer, dropped: Arc::clone(&dropped) }, HandoffRx { consumer, dropped })
}

impl HandoffTx {
    /// Copies `bytes` into the queue. Returns `false` (and counts a drop) if the queue is full.
    #[inline]
    pub fn push(&mut self, bytes: &[u8], receive_ns: i64, source: Source) -> bool {
        let mut msg = RawMsg { receive_ns, len: bytes.len() as u32, source, bytes: [0; RAW_MAX] };
        let keep = bytes.len().min(RAW_MAX);
        msg.bytes[..keep].copy_from_slice(&bytes[..keep]);
        if self.producer.push(msg).is_ok() {
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Whether the consumer has gone (the core stopped).
    pub fn is_abandoned(&self) -> bool {
        self.producer.is_abandoned()
    }
}

impl HandoffRx {
    /// Hands every queued struct (up to `max`) to `f`, oldest first; returns how many.
    #[inline]
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&RawMsg)) -> usize {
        let n = self.consumer.slots().min(max);
        if n == 0 {
            return 0;
        }
        let Ok(chunk) = self.consumer.read_chunk(n) else { return 0 };
        let (first, second) = chunk.as_slices();
        first.iter().chain(second).for_each(&mut f);
        chunk.commit_all();
        n
    }

    /// How many structs the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.consumer.buffer().capacity()
    }

    /// Structs dropped because the queue was full, since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_handoff_drops_and_counts_without_blocking() {
        let (mut tx, mut rx) = handoff(2);
        assert!(tx.push(&[1; 584], 10, Source::Sim));
        assert!(tx.push(&[2; 408], 11, Source::Sim));
        assert!(!tx.push(&[3; 568], 12, Source::Sim));
        assert_eq!(rx.dropped(), 1);
        let mut seen = Vec::new();
        assert_eq!(rx.drain(16, |m| seen.push((m.receive_ns, m.payload().map(<[u8]>::len), m.bytes[0]))), 2);
        assert_eq!(seen, [(10, Some(584), 1), (11, Some(408), 2)]);
        assert_eq!(rx.drain(16, |_| unreachable!()), 0);
    }

    #[test]
    fn oversized_structs_keep_their_length_for_rejection() {
        let (mut tx, mut rx) = handoff(4);
        assert!(tx.push(&[7; 700], 1, Source::Udp));
        rx.drain(1, |m| {
            assert_eq!(m.len, 700);
            assert_eq!(m.payload(), None);
        });
    }
}

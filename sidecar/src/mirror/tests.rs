//! [`Mirror::apply`] on a real segment file, message by message: every row of its table.

use std::sync::{Arc, atomic::AtomicBool};

use async_nats::HeaderMap;
use qilin_shm::{Exchange, MirrorStart, Next, Reader, Start, TickRecord, Writer};

use super::{Config, Mirror, Refused};

fn mirror(dir: &std::path::Path) -> Mirror {
    let config = Config {
        feed: "unit".into(),
        segment: dir.join("seg"),
        ring_slots: 64,
        instrument_capacity: 8,
        ..Config::default()
    };
    let writer =
        Writer::open_mirror(&config.segment, &config.segment_options(), MirrorStart { epoch: 5, next_sequence: 1 })
            .unwrap();
    Mirror::new(&config, writer, None, Arc::new(AtomicBool::new(true)))
}

fn tick(seq: u64, index: u32, id: &str) -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = seq;
    t.instrument_index = index;
    t.instrument_id = qilin_shm::layout::fixed_id::<32>(id).unwrap();
    t.exchange = Exchange::Shfe as u8;
    t.last_price = seq as f64;
    t
}

fn headers(seq: u64, epoch: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Qilin-Seq", seq.to_string());
    h.insert("Qilin-Epoch", epoch.to_string());
    h.insert("Qilin-Layout", qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT));
    h
}

fn send(m: &mut Mirror, t: &TickRecord, epoch: u64) -> Result<(), Refused> {
    m.apply(Some(&headers(t.sequence, epoch)), zerocopy::IntoBytes::as_bytes(t))
}

/// Ticks and gaps as a reader from 1 sees them (merged gaps).
fn read_all(mut r: Reader, until: u64) -> (Vec<u64>, Vec<(u64, u64)>, Vec<u64>) {
    // Headroom 0: a reader meeting a lost range within `lap_headroom` of the oldest sequence jumps
    // to oldest + headroom, as on a lap (LAYOUT.md, "Mirrors"); this ring is not full, so the oldest
    // is 1 and the default would skip tick 7 (reported in the gap, exactly, but not read).
    r.set_lap_headroom(0);
    r.seek(Start::Sequence(1));
    let (mut ticks, mut gaps, mut epochs) = (Vec::new(), Vec::<(u64, u64)>::new(), Vec::new());
    let mut t = TickRecord::ZERO;
    while r.next_sequence() <= until {
        match r.try_next(&mut t) {
            Next::Tick => ticks.push(t.sequence),
            Next::Gap { first, last } => match gaps.last_mut() {
                Some(g) if g.1 + 1 == first => g.1 = last,
                _ => gaps.push((first, last)),
            },
            Next::NewEpoch { current, .. } => epochs.push(current),
            Next::Empty => panic!("stalled at {}", r.next_sequence()),
        }
    }
    (ticks, gaps, epochs)
}

#[test]
fn good_ticks_gaps_holes_and_every_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = mirror(dir.path());
    let path = dir.path().join("seg");
    let early = Reader::open(&path).unwrap(); // attached at epoch 5, sees the change to 6
    send(&mut m, &tick(1, 0, "rb2605"), 5).unwrap();
    send(&mut m, &tick(2, 1, "cu2605"), 5).unwrap();
    // A gap event 3..=4.
    let mut gap = headers(4, 5);
    gap.insert("Qilin-Gap-First", "3");
    gap.insert("Qilin-Gap-Last", "4");
    m.apply(Some(&gap), b"{}").unwrap();
    // A hole: 5..=6 are not in the stream.
    send(&mut m, &tick(7, 0, "rb2605"), 5).unwrap();
    // Backwards: skipped, nothing written.
    send(&mut m, &tick(7, 0, "rb2605"), 5).unwrap();
    send(&mut m, &tick(2, 1, "cu2605"), 5).unwrap();
    // A body that does not decode: its sequence becomes a gap.
    m.apply(Some(&headers(8, 5)), &[1, 2, 3]).unwrap();
    // A body whose sequence disagrees with the header.
    m.apply(Some(&headers(9, 5)), zerocopy::IntoBytes::as_bytes(&tick(10, 0, "rb2605"))).unwrap();
    // Headers missing: skipped; the next tick's jump marks nothing new (10 follows 9).
    m.apply(None, b"").unwrap();
    // An epoch below the segment's: skipped with a gap.
    send(&mut m, &tick(10, 0, "rb2605"), 4).unwrap();
    // A new epoch (the feed restarted): followed.
    send(&mut m, &tick(11, 0, "rb2605"), 6).unwrap();
    // The mirror's own directory: a new instrument takes the next entry whatever its feed index,
    // a known one keeps its entry.
    send(&mut m, &tick(12, 7, "ag2606"), 6).unwrap();
    let c = m.counters().clone();
    assert_eq!(
        (c.ticks, c.gap_events, c.holes, c.backwards, c.undecodable, c.bad_epoch, c.epochs),
        (5, 1, 1, 2, 3, 1, 1),
        "{c:?}"
    );
    assert_eq!(c.lost_sequences, 2 + 2 + 1 + 1 + 1);
    assert_eq!(m.position(), 12);

    let (ticks, gaps, epochs) = read_all(early, 12);
    assert_eq!(ticks, vec![1, 2, 7, 11, 12]);
    assert_eq!(gaps, vec![(3, 6), (8, 10)]);
    assert_eq!(epochs, vec![6]);
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.find_instrument("ag2606"), Some(2));
    let mut last = TickRecord::ZERO;
    assert_eq!(r.latest(2, &mut last), Ok(true));
    assert_eq!((last.sequence, last.instrument_index), (12, 2), "written with the mirror's index");

    // Refused, nothing written: another layout, a JSON stream.
    let mut other = headers(13, 6);
    other.insert("Qilin-Layout", "0x0123456789abcdef");
    let e = m.apply(Some(&other), zerocopy::IntoBytes::as_bytes(&tick(13, 0, "rb2605"))).unwrap_err();
    assert!(e.to_string().contains("0x0123456789abcdef"), "{e}");
    let mut json = HeaderMap::new();
    json.insert("Qilin-Seq", "13");
    json.insert("Qilin-Epoch", "6");
    assert!(matches!(m.apply(Some(&json), b"{}"), Err(Refused::Layout { .. })));
    assert_eq!(m.position(), 12);
    // A full directory: the new instrument's tick is skipped and its sequence marked lost.
    for (seq, id) in (13..).zip(["a1", "a2", "a3", "a4", "a5", "a6"]) {
        send(&mut m, &tick(seq, 0, id), 6).unwrap();
    }
    assert_eq!(m.counters().directory_full, 1, "{:?}", m.counters());
    assert_eq!(m.position(), 18);
    assert_eq!(Reader::open(&path).unwrap().directory_len(), 8);
}

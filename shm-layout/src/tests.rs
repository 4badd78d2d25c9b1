//! Writer and reader logic over a heap segment: runs under `cargo test` and under Miri
//! (`cargo +nightly miri test -p qilin-shm --lib`), which checks every access for UB and data races.

use std::sync::Arc;

use crate::{
    Counter, Exchange, LatestError, Liveness, Next, PublishError, Reader, RunState, SegmentOptions, Start,
    StatusRecord, TickRecord, Writer, layout::fixed_id,
};

fn options(ring_slots: u64, instruments: u32) -> SegmentOptions {
    SegmentOptions { feed_name: "test".into(), ring_slots, instrument_capacity: instruments }
}

/// A record whose every word is a function of `seq` (and `salt`), so a torn mix of two records
/// cannot pass [`check`].
fn record(seq: u64, instrument: u32, salt: u64) -> TickRecord {
    let mut r = TickRecord::ZERO;
    r.instrument_index = instrument;
    r.exchange_time_ns = mix(seq ^ salt) as i64;
    r.receive_ns = mix(seq ^ salt ^ 1) as i64;
    r.last_price = (mix(seq ^ salt ^ 2) % 100_000) as f64 / 4.0;
    r.volume = (seq * 3) as i64;
    r.bid_price = [r.last_price - 1.0, r.last_price - 2.0, f64::NAN, 0.0, r.last_price];
    r.ask_volume = [seq as i32, 2, 3, 4, -(seq as i32)];
    r.reserved1[0] = salt;
    r.reserved1[1] = checksum(&r);
    r
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn checksum(r: &TickRecord) -> u64 {
    use zerocopy::IntoBytes;
    let mut copy = *r;
    copy.sequence = 0;
    copy.reserved1[1] = 0;
    copy.as_bytes().chunks(8).fold(0u64, |h, w| mix(h ^ u64::from_le_bytes(w.try_into().unwrap())))
}

fn check(r: &TickRecord, seq: u64) {
    assert_eq!(r.sequence, seq);
    assert_eq!(r.reserved1[1], checksum(r), "torn record at {seq}");
    let expected = record(seq, r.instrument_index, r.reserved1[0]);
    assert_eq!(r.exchange_time_ns, expected.exchange_time_ns, "record {seq} carries another record's data");
}

fn two_instruments(writer: &mut Writer) {
    assert_eq!(writer.add_instrument("rb2505", Exchange::Shfe, 10, 1.0), Ok(0));
    assert_eq!(writer.add_instrument("m2509", Exchange::Dce, 10, 1.0), Ok(1));
}

#[test]
fn ticks_come_back_in_order_with_every_field() {
    let (mut writer, heap) = Writer::on_heap(&options(8, 4));
    two_instruments(&mut writer);
    let mut reader = Reader::on_heap(&heap);
    reader.seek(Start::Oldest);
    let mut out = TickRecord::ZERO;
    assert_eq!(reader.try_next(&mut out), Next::Empty);
    for seq in 1..=5 {
        let mut r = record(seq, (seq % 2) as u32, 7);
        assert_eq!(writer.publish(&mut r), Ok(seq));
        assert_eq!(reader.try_next(&mut out), Next::Tick);
        check(&out, seq);
        assert!(out.bid_price[2].is_nan(), "NaN survives the copy");
        assert_eq!(out.bid_price[..2], r.bid_price[..2]);
        assert_eq!(out.ask_volume, r.ask_volume);
    }
    assert_eq!(reader.try_next(&mut out), Next::Empty);
    assert_eq!(reader.write_cursor(), 5);
}

#[test]
fn start_positions() {
    let (mut writer, heap) = Writer::on_heap(&options(4, 1));
    writer.add_instrument("IF2506", Exchange::Cffex, 300, 0.2).unwrap();
    for seq in 1..=6 {
        writer.publish(&mut record(seq, 0, 1)).unwrap();
    }
    let mut reader = Reader::on_heap(&heap);
    let mut out = TickRecord::ZERO;
    assert_eq!(reader.next_sequence(), 7, "a new reader starts at the newest");
    reader.seek(Start::Oldest);
    assert_eq!(reader.next_sequence(), 3);
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 3);
    reader.seek(Start::Sequence(5));
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 5);
    reader.seek(Start::Sequence(1));
    assert_eq!(reader.try_next(&mut out), Next::Gap { first: 1, last: 2 });
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 3);
}

#[test]
fn a_lapped_reader_gets_the_exact_gap_then_continues() {
    let (mut writer, heap) = Writer::on_heap(&options(8, 1));
    writer.add_instrument("ag2506", Exchange::Shfe, 15, 1.0).unwrap();
    let mut reader = Reader::on_heap(&heap);
    let mut out = TickRecord::ZERO;
    assert_eq!(reader.lap_headroom(), 1, "default: ring_slots / 8");
    for seq in 1..=3 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 1);
    for seq in 4..=30 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    // Ring of 8 holds 23..=30; 2..=22 are gone, and the default headroom of 1 skips 23 too.
    assert_eq!(reader.try_next(&mut out), Next::Gap { first: 2, last: 23 });
    for seq in 24..=30 {
        assert_eq!(reader.try_next(&mut out), Next::Tick);
        check(&out, seq);
    }
    assert_eq!(reader.try_next(&mut out), Next::Empty);

    // With more headroom the reader skips further ahead and says so.
    for seq in 31..=60 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    reader.set_lap_headroom(2);
    assert_eq!(reader.try_next(&mut out), Next::Gap { first: 31, last: 54 });
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 55);

    // Headroom 0: the bare resume at the oldest sequence still in the ring.
    for seq in 61..=90 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    reader.set_lap_headroom(0);
    assert_eq!(reader.try_next(&mut out), Next::Gap { first: 56, last: 82 });
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 83);
}

/// The point of the headroom: a reader lapped on a busy ring and resumed at the oldest slot (the
/// one the writer overwrites next) is lapped again by the writer's very next tick; resumed
/// `ring_slots / 8` past it, it has that many writer ticks before the next lap.
#[test]
fn a_reader_lapped_with_headroom_resumes_past_the_oldest_and_is_not_lapped_again_at_once() {
    let (mut writer, heap) = Writer::on_heap(&options(64, 1));
    writer.add_instrument("ag2506", Exchange::Shfe, 15, 1.0).unwrap();
    let mut headroom = Reader::on_heap(&heap);
    let mut bare = Reader::on_heap(&heap).with_lap_headroom(0);
    assert_eq!((headroom.lap_headroom(), bare.lap_headroom()), (8, 0));
    let mut out = TickRecord::ZERO;
    for seq in 1..=100 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    // Both want 1; the ring holds 37..=100.
    headroom.seek(Start::Sequence(1));
    bare.seek(Start::Sequence(1));
    assert_eq!(headroom.try_next(&mut out), Next::Gap { first: 1, last: 44 }, "oldest 37 + headroom 8");
    assert_eq!(bare.try_next(&mut out), Next::Gap { first: 1, last: 36 }, "headroom 0: at the oldest");
    // The writer goes on before either reads: its next tick (101) overwrites 37's slot.
    for seq in 101..=108 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    assert_eq!(bare.try_next(&mut out), Next::Gap { first: 37, last: 44 }, "lapped again");
    assert_eq!(headroom.try_next(&mut out), Next::Tick, "8 writer ticks later, still in the ring");
    check(&out, 45);
    for seq in 46..=108 {
        assert_eq!(headroom.try_next(&mut out), Next::Tick);
        check(&out, seq);
    }

    // Clamped to ring_slots - 1: resume at the newest published tick, the gap ends just before it.
    headroom.set_lap_headroom(1_000);
    assert_eq!(headroom.lap_headroom(), 63);
    for seq in 109..=300 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    assert_eq!(headroom.try_next(&mut out), Next::Gap { first: 109, last: 299 });
    assert_eq!(headroom.try_next(&mut out), Next::Tick);
    check(&out, 300);
}

#[test]
fn lap_resume_is_oldest_plus_headroom_within_want_and_the_cursor() {
    use crate::reader::lap_resume;
    // (want, oldest, cursor, headroom) -> resume
    assert_eq!(lap_resume(1, 37, 100, 8), 45);
    assert_eq!(lap_resume(1, 37, 100, 0), 37);
    assert_eq!(lap_resume(1, 37, 100, 63), 100, "headroom ring - 1: the newest published");
    assert_eq!(lap_resume(1, 37, 100, 500), 101, "never past cursor + 1");
    assert_eq!(lap_resume(50, 37, 100, 8), 51, "never before want + 1");
    // The overwriting stamp was a busy store the cursor does not show yet: still past want.
    assert_eq!(lap_resume(5, 1, 3, 7), 6);
    assert_eq!(lap_resume(u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX), u64::MAX, "saturating");
    assert_eq!(crate::default_lap_headroom(1 << 20), 1 << 17);
    assert_eq!(crate::default_lap_headroom(4), 0);
}

#[test]
fn unknown_instrument_is_refused_not_written() {
    let (mut writer, heap) = Writer::on_heap(&options(4, 2));
    writer.add_instrument("a", Exchange::Shfe, 1, 1.0).unwrap();
    let mut r = record(1, 1, 0);
    assert_eq!(writer.publish(&mut r), Err(PublishError::UnknownInstrument { index: 1, len: 1 }));
    assert_eq!(writer.next_sequence(), 1);
    assert_eq!(Reader::on_heap(&heap).write_cursor(), 0);
}

#[test]
fn directory_is_idempotent_bounded_and_visible() {
    let (mut writer, heap) = Writer::on_heap(&options(4, 2));
    two_instruments(&mut writer);
    assert_eq!(writer.add_instrument("rb2505", Exchange::Shfe, 10, 1.0), Ok(0), "same id, same index");
    assert_eq!(
        writer.add_instrument("c2509", Exchange::Dce, 10, 1.0),
        Err(crate::DirectoryError::Full { capacity: 2 })
    );
    assert_eq!(writer.add_instrument("", Exchange::Dce, 10, 1.0), Err(crate::DirectoryError::BadId));
    assert_eq!(writer.add_instrument(&"x".repeat(32), Exchange::Dce, 10, 1.0), Err(crate::DirectoryError::BadId));
    let reader = Reader::on_heap(&heap);
    assert_eq!(reader.directory_len(), 2);
    assert_eq!(reader.find_instrument("m2509"), Some(1));
    assert_eq!(reader.find_instrument("m2510"), None);
    let entry = reader.instrument(1).unwrap();
    assert_eq!(entry.instrument_id_str(), Some("m2509"));
    assert_eq!(entry.exchange, Exchange::Dce as u8);
    assert_eq!(crate::layout::id_str(&entry.exchange_id), Some("DCE"));
    assert!(reader.instrument(2).is_none());
}

#[test]
fn last_value_cache_holds_the_latest_tick_per_instrument() {
    let (mut writer, heap) = Writer::on_heap(&options(4, 4));
    two_instruments(&mut writer);
    let reader = Reader::on_heap(&heap);
    let mut out = TickRecord::ZERO;
    assert_eq!(reader.latest(0, &mut out), Ok(false), "no tick yet");
    assert_eq!(reader.latest(2, &mut out), Err(LatestError::UnknownInstrument));
    for seq in 1..=9 {
        writer.publish(&mut record(seq, (seq % 2) as u32, 3)).unwrap();
    }
    assert_eq!(reader.latest(0, &mut out), Ok(true));
    check(&out, 8);
    assert_eq!(reader.latest_by_id("m2509", &mut out), Ok(true));
    check(&out, 9);
    assert_eq!(reader.latest_by_id("zz", &mut out), Err(LatestError::UnknownInstrument));
}

#[test]
fn reopening_bumps_the_epoch_and_continues_the_sequence() {
    let (mut first, heap) = Writer::on_heap(&options(8, 2));
    two_instruments(&mut first);
    for seq in 1..=3 {
        first.publish(&mut record(seq, 0, 0)).unwrap();
    }
    let epoch = first.epoch();
    let mut reader = Reader::on_heap(&heap);
    reader.seek(Start::Oldest);
    // The first writer "dies" having finished slot 4 but before storing the cursor, and in the
    // middle of a last-value write of instrument 1.
    let slot = first.region().slot(4);
    let mut fourth = record(4, 0, 0);
    fourth.sequence = 4;
    let words: [u64; 47] = zerocopy::transmute!(fourth);
    crate::seqlock::write(slot.stamp, slot.words, crate::seqlock::ring_busy(4), &words, crate::seqlock::ring_done(4));
    first.region().lvc(1).stamp.store(5, crate::sync::Ordering::Relaxed);
    first.crash();

    let mut second = Writer::reopen_heap(&heap);
    let report = second.open_report();
    assert_eq!(report.epoch, epoch + 1);
    assert_eq!(report.adopted_slots, 1);
    assert_eq!(report.cleared_lvc_entries, 1);
    assert_eq!(second.next_sequence(), 5, "slot 4 was visible to readers, so 4 is not reused");
    assert_eq!(second.directory_len(), 2);
    assert_eq!(second.add_instrument("m2509", Exchange::Dce, 10, 1.0), Ok(1), "indexes survive");
    let mut out = TickRecord::ZERO;
    assert_eq!(reader.latest(1, &mut out), Ok(false), "torn last value cleared, not served");
    assert_eq!(reader.try_next(&mut out), Next::NewEpoch { previous: epoch, current: epoch + 1 });
    for seq in 1..=4 {
        assert_eq!(reader.try_next(&mut out), Next::Tick);
        check(&out, seq);
    }
    assert_eq!(second.publish(&mut record(5, 0, 0)), Ok(5));
    assert_eq!(reader.try_next(&mut out), Next::Tick);
    check(&out, 5);
    drop(second);
    assert_eq!(reader.run_state(), Some(RunState::Stopped));
}

#[test]
fn liveness_counters_and_status() {
    let (mut writer, heap) = Writer::on_heap(&options(4, 1));
    let reader = Reader::on_heap(&heap);
    writer.heartbeat(1_000_000_000);
    assert_eq!(reader.heartbeat_ns(), 1_000_000_000);
    assert_eq!(reader.liveness(1_000_500_000, 1_000_000), Liveness::Live { age_ns: 500_000 });
    assert_eq!(reader.liveness(1_003_000_000, 1_000_000), Liveness::Stale { age_ns: 3_000_000 });
    // A heartbeat from the future (the clock stepped back): stale past the threshold.
    assert_eq!(reader.liveness(999_500_000, 1_000_000), Liveness::Live { age_ns: -500_000 });
    assert_eq!(reader.liveness(990_000_000, 1_000_000), Liveness::Stale { age_ns: -10_000_000 });
    writer.add_counter(Counter::RejectPrice, 2);
    writer.add_counter(Counter::RejectPrice, 3);
    assert_eq!(reader.counter(Counter::RejectPrice), 5);
    assert_eq!(reader.counter(Counter::RejectTime), 0);
    let mut status = StatusRecord {
        link_state: crate::LinkState::LoggedIn as u32,
        active_source: crate::Source::Primary as u32,
        trading_day: 20250512,
        failovers: 1,
        api_version: [0; 40],
        front: fixed_id("tcp://180.168.146.187:10211").unwrap(),
    };
    status.api_version[..6].copy_from_slice(b"v6.7.2");
    writer.set_status(&status);
    assert_eq!(reader.status(), Ok(status));
    assert_eq!(reader.run_state(), Some(RunState::Starting));
    writer.set_run_state(RunState::Running);
    assert_eq!(reader.run_state(), Some(RunState::Running));
    writer.set_run_state(RunState::Stopped);
    assert!(matches!(reader.liveness(i64::MAX, 1), Liveness::Stopped { .. }));
    assert_eq!(reader.feed_name(), "test");
}

/// A writer thread laps a reader thread on a small ring; every record the reader accepts is whole
/// and every sequence is either read or inside a reported gap, exactly once. Under Miri this also
/// checks the protocol for data races.
#[test]
fn concurrent_reader_never_sees_a_torn_record() {
    let total: u64 = if cfg!(miri) { 200 } else { 200_000 };
    let (mut writer, heap) = Writer::on_heap(&options(8, 1));
    writer.add_instrument("rb2505", Exchange::Shfe, 10, 1.0).unwrap();
    let heap2 = Arc::clone(&heap);
    let reader = std::thread::spawn(move || {
        let mut reader = Reader::on_heap(&heap2);
        reader.seek(Start::Sequence(1));
        let (mut expected, mut ticks, mut lost) = (1u64, 0u64, 0u64);
        let mut out = TickRecord::ZERO;
        while expected <= total {
            match reader.try_next(&mut out) {
                Next::Tick => {
                    check(&out, expected);
                    expected += 1;
                    ticks += 1;
                }
                Next::Gap { first, last } => {
                    assert_eq!(first, expected, "gaps start where reading stopped");
                    assert!(last >= first);
                    lost += last - first + 1;
                    expected = last + 1;
                }
                Next::Empty => std::thread::yield_now(),
                Next::NewEpoch { .. } => panic!("no restart in this test"),
            }
        }
        (ticks, lost)
    });
    for seq in 1..=total {
        writer.publish(&mut record(seq, 0, 42)).unwrap();
    }
    let (ticks, lost) = reader.join().unwrap();
    assert_eq!(ticks + lost, total);
    assert!(ticks > 0);
}

#[test]
fn concurrent_last_value_reads_are_consistent() {
    let total: u64 = if cfg!(miri) { 100 } else { 100_000 };
    let (mut writer, heap) = Writer::on_heap(&options(4, 1));
    writer.add_instrument("rb2505", Exchange::Shfe, 10, 1.0).unwrap();
    let heap2 = Arc::clone(&heap);
    let reader = std::thread::spawn(move || {
        let reader = Reader::on_heap(&heap2);
        let mut out = TickRecord::ZERO;
        let (mut last, mut reads) = (0u64, 0u64);
        while last < total {
            match reader.latest(0, &mut out) {
                Ok(true) => {
                    check(&out, out.sequence);
                    assert!(out.sequence >= last, "last value never goes back");
                    last = out.sequence;
                    reads += 1;
                }
                Ok(false) | Err(LatestError::Contended) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        reads
    });
    for seq in 1..=total {
        writer.publish(&mut record(seq, 0, 9)).unwrap();
    }
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn only_returns_the_chosen_instruments_and_refuses_unknown_ones() {
    let (mut writer, heap) = Writer::on_heap(&options(16, 4));
    two_instruments(&mut writer);
    for seq in 1..=6 {
        writer.publish(&mut record(seq, (seq % 2) as u32, 0)).unwrap();
    }
    let mut reader = Reader::on_heap(&heap);
    assert_eq!(reader.only(&["m2509", "zz"]), Err(crate::UnknownInstrument("zz".into())));
    reader.only(&["m2509"]).unwrap();
    reader.seek(Start::Oldest);
    let mut out = TickRecord::ZERO;
    let mut seen = Vec::new();
    while reader.try_next(&mut out) == Next::Tick {
        seen.push(out.sequence);
    }
    assert_eq!(seen, [1, 3, 5], "instrument 1 ticks at odd sequences");
    assert_eq!(reader.next_sequence(), 7, "filtered ticks still advance the cursor");
}

#[test]
fn ticks_iterator_yields_ticks_gaps_and_restarts() {
    let (mut writer, heap) = Writer::on_heap(&options(4, 1));
    writer.add_instrument("rb2505", Exchange::Shfe, 10, 1.0).unwrap();
    let mut reader = Reader::on_heap(&heap);
    reader.seek(Start::Sequence(1));
    for seq in 1..=6 {
        writer.publish(&mut record(seq, 0, 0)).unwrap();
    }
    let events: Vec<crate::Event> = reader.ticks().take(3).collect();
    assert_eq!(events[0], crate::Event::Gap { first: 1, last: 2 });
    assert!(matches!(events[1], crate::Event::Tick(t) if t.sequence == 3));
    assert!(matches!(events[2], crate::Event::Tick(t) if t.sequence == 4));
}

/// A late joiner takes the snapshot while the writer keeps publishing; snapshot values plus the
/// ticks read afterwards give every instrument's history after its snapshot value exactly once.
#[test]
fn late_joiner_misses_nothing_and_doubles_nothing() {
    let total: u64 = if cfg!(miri) { 300 } else { 100_000 };
    let instruments = 4u32;
    let (mut writer, heap) = Writer::on_heap(&options(if cfg!(miri) { 64 } else { 1 << 16 }, instruments));
    for i in 0..instruments {
        writer.add_instrument(&format!("i{i}"), Exchange::Shfe, 1, 1.0).unwrap();
    }
    for seq in 1..=total / 4 {
        writer.publish(&mut record(seq, (seq % 4) as u32, 5)).unwrap();
    }
    let heap2 = Arc::clone(&heap);
    let joiner = std::thread::spawn(move || {
        let mut reader = Reader::on_heap(&heap2);
        let snapshot = reader.join().unwrap();
        let mut last: Vec<u64> = vec![0; 4];
        for t in &snapshot.ticks {
            check(t, t.sequence);
            last[t.instrument_index as usize] = t.sequence;
        }
        let mut out = TickRecord::ZERO;
        let mut next = snapshot.as_of + 1;
        let (mut delivered, mut lost_through) = (0u64, 0u64);
        while next <= total {
            match reader.try_next(&mut out) {
                Next::Tick => {
                    check(&out, out.sequence);
                    let i = out.instrument_index as usize;
                    assert!(out.sequence > last[i], "tick {} already in the snapshot (instrument {i})", out.sequence);
                    // Sequence s belongs to instrument s % 4: none of its ticks may be skipped.
                    let mut s = last[i] + 1;
                    while s < out.sequence {
                        assert!(
                            s % 4 != i as u64 || s <= snapshot.as_of || s <= lost_through,
                            "missed {s} of instrument {i}"
                        );
                        s += 1;
                    }
                    last[i] = out.sequence;
                    next = out.sequence + 1;
                    delivered += 1;
                }
                Next::Gap { first, last } => {
                    assert_eq!(first, next, "a gap starts where reading stopped");
                    lost_through = last;
                    next = last + 1;
                }
                Next::Empty => std::thread::yield_now(),
                Next::NewEpoch { .. } => panic!("no restart in this test"),
            }
        }
        (snapshot.as_of, delivered)
    });
    for seq in total / 4 + 1..=total {
        writer.publish(&mut record(seq, (seq % 4) as u32, 5)).unwrap();
        if seq % 1024 == 0 {
            std::thread::yield_now(); // keep a 2-core machine from lapping the joiner
        }
    }
    let (as_of, delivered) = joiner.join().unwrap();
    assert!(as_of >= total / 4);
    assert!(delivered > 0 || as_of == total);
}

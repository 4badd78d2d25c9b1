//! A writer killed with SIGKILL: readers see it stale (not stopped), a new writer takes the segment
//! over (the `flock` died with the old one) under the next epoch and continues the sequence, and a
//! reader open across the restart is told once. Also: repeated kills in the middle of publishing
//! never lead a new writer to reuse a sequence whose slot was already whole.
//!
//! The writers are child processes started by re-executing this binary (`child_*` tests, which
//! return at once unless `QILIN_STRESS_ROLE` is set). `QILIN_LONG=1` runs 100 kill rounds instead of 8.

mod common;

use std::{
    os::unix::process::ExitStatusExt,
    time::{Duration, Instant},
};

use common::{ChildProc, PATH, TempSegment, child_role, env, fields, is_record, options, salted_record, say};
use qilin_shm::{Exchange, Liveness, Next, Reader, RunState, Start, TickRecord, Writer, now_ns};

const RING: u64 = 64;
const INSTRUMENTS: u32 = 4;
const TICKS: &str = "QILIN_DEATH_TICKS";
const MS: i64 = 1_000_000;

fn open_writer(path: &str) -> Writer {
    let mut writer = Writer::open(path, &options(RING, INSTRUMENTS)).expect("writer opens the segment");
    for i in 0..INSTRUMENTS {
        assert_eq!(writer.add_instrument(&format!("ins{i}"), Exchange::Dce, 10, 1.0), Ok(i), "indices kept");
    }
    writer.set_run_state(RunState::Running);
    writer
}

fn publish(writer: &mut Writer) -> u64 {
    let seq = writer.next_sequence();
    assert_eq!(writer.publish(&mut salted_record(seq, INSTRUMENTS, writer.epoch())), Ok(seq));
    seq
}

/// Child: opens (or reopens) the segment, publishes `TICKS` ticks (0 = without end), says `ready`
/// after the first ones, and heartbeats about every millisecond until it is killed.
#[test]
fn child_writer_until_killed() {
    if child_role("doomed-writer").is_none() {
        return;
    }
    let mut writer = open_writer(&env(PATH));
    let (ticks, report) = (common::env_u64(TICKS), writer.open_report());
    let endless = ticks == 0;
    let first = writer.next_sequence();
    for i in 0.. {
        if i == ticks.max(1) {
            say(&format!("ready epoch={} first={first} last={}", writer.epoch(), writer.next_sequence() - 1));
            say(&format!("report adopted={} cleared={}", report.adopted_slots, report.cleared_lvc_entries));
        }
        if endless || i < ticks {
            publish(&mut writer);
        } else {
            std::thread::sleep(Duration::from_millis(1)); // the heartbeat period, not a synchronization
        }
        if i % 256 == 0 || !endless {
            writer.heartbeat(now_ns());
        }
    }
}

fn spawn(segment: &TempSegment, ticks: u64) -> ChildProc {
    ChildProc::spawn(
        "child_writer_until_killed",
        "doomed-writer",
        &[(PATH, segment.text()), (TICKS, ticks.to_string())],
    )
}

#[test]
fn killed_writer_is_stale_and_a_new_writer_takes_over() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let segment = TempSegment::new("death");
    let mut child = spawn(&segment, 40);
    let ready = fields(&child.expect("ready", deadline));
    let (epoch, last) = (ready["epoch"], ready["last"]);
    assert_eq!((epoch, last), (1, 40), "fewer ticks than slots: all still readable");

    let mut reader = Reader::open(segment.path()).unwrap();
    reader.seek(Start::Sequence(1));
    let mut r = TickRecord::ZERO;
    for seq in 1..=last {
        assert_eq!(reader.try_next(&mut r), Next::Tick);
        assert!(r.sequence == seq && is_record(&r, seq, INSTRUMENTS), "record {seq}: {r:?}");
    }
    assert_eq!(reader.try_next(&mut r), Next::Empty);
    assert_eq!(reader.writer_pid(), u64::from(child.id()));
    let beat = reader.heartbeat_ns();
    while reader.heartbeat_ns() == beat {
        assert!(Instant::now() < deadline, "watchdog: the child never heartbeat");
        std::thread::yield_now();
    }

    let status = child.kill();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    std::thread::sleep(Duration::from_millis(200)); // lets the heartbeat age; asserts staleness, not speed
    for (who, view) in [("open across the kill", &reader), ("opened after it", &Reader::open(segment.path()).unwrap())]
    {
        match view.liveness(now_ns(), 20 * MS) {
            Liveness::Stale { age_ns } => assert!(age_ns >= 200 * MS, "{who}: age {age_ns} ns"),
            other => panic!("{who}: a SIGKILLed writer must look stale, got {other:?}"),
        }
        assert!(matches!(view.run_state(), Some(RunState::Running | RunState::Starting)), "{who}: not stopped");
    }

    let mut writer = open_writer(segment.text().as_str());
    let report = writer.open_report();
    assert!(!report.created);
    assert_eq!((report.epoch, report.next_sequence, writer.epoch()), (epoch + 1, last + 1, epoch + 1));
    assert_eq!(reader.try_next(&mut r), Next::NewEpoch { previous: epoch, current: epoch + 1 });
    assert_eq!(reader.try_next(&mut r), Next::Empty, "the new epoch is reported once");
    for _ in 0..5 {
        let seq = publish(&mut writer);
        assert_eq!(reader.try_next(&mut r), Next::Tick);
        assert!(r.sequence == seq && r.reserved1[0] == epoch + 1 && is_record(&r, seq, INSTRUMENTS));
    }
    writer.heartbeat(now_ns());
    assert!(matches!(reader.liveness(now_ns(), 60_000 * MS), Liveness::Live { .. }));
    let before_drop = now_ns();
    drop(writer);
    match reader.liveness(now_ns(), 20 * MS) {
        Liveness::Stopped { at_ns } => assert!(at_ns >= before_drop, "stopped at {at_ns}, dropped at {before_drop}"),
        other => panic!("a cleanly dropped writer must look stopped, got {other:?}"),
    }
}

#[test]
fn writers_killed_mid_publish_never_reuse_a_published_sequence() {
    let rounds = if common::long() { 100 } else { 8 };
    let deadline = Instant::now() + Duration::from_secs(if common::long() { 1800 } else { 120 });
    let segment = TempSegment::new("deaths");
    let (mut expected_first, mut adopted, mut cleared, mut torn_lvc) = (1, 0, 0, 0);
    let mut r = TickRecord::ZERO;
    for round in 1..=rounds {
        let mut child = spawn(&segment, 0);
        let ready = fields(&child.expect("ready", deadline));
        let report = fields(&child.expect("report", deadline));
        (adopted, cleared) = (adopted + report["adopted"], cleared + report["cleared"]);
        assert_eq!(report["cleared"], torn_lvc, "round {round}: the new writer clears exactly the torn last values");
        assert_eq!((ready["epoch"], ready["first"]), (round, expected_first), "round {round}");
        let reader = Reader::open(segment.path()).unwrap();
        let target = reader.write_cursor() + 1000 + 97 * round;
        while reader.write_cursor() < target {
            assert!(Instant::now() < deadline, "watchdog: the child stopped publishing");
            std::thread::yield_now();
        }
        child.kill();

        // Every slot after the cursor that is whole must be adopted by the next writer.
        let cursor = reader.write_cursor();
        let mut probe = Reader::open(segment.path()).unwrap();
        probe.seek(Start::Sequence(cursor + 1));
        let whole = probe.try_next(&mut r) == Next::Tick;
        assert!(!whole || is_record(&r, cursor + 1, INSTRUMENTS), "torn slot after the cursor");
        expected_first = cursor + 1 + u64::from(whole);
        // Everything still in the ring up to there reads back whole, from the killed writer. The
        // oldest slot by the cursor may hold the half-written or uncounted `cursor + 1`: then it is
        // reported as a gap of exactly that one sequence.
        // Headroom 0: a lap here must skip only the one sequence that is gone.
        let mut oldest = Reader::open(segment.path()).unwrap().with_lap_headroom(0);
        oldest.seek(Start::Oldest);
        let mut seq = oldest.next_sequence();
        assert_eq!(seq, cursor + 1 - RING);
        if let Next::Gap { first, last } = oldest.try_next(&mut r) {
            assert_eq!((first, last), (seq, seq), "only the slot of cursor + 1 can be gone");
            seq += 1;
        } else {
            oldest.seek(Start::Sequence(seq));
        }
        while seq < expected_first {
            assert_eq!(oldest.try_next(&mut r), Next::Tick, "sequence {seq} after the kill");
            assert!(r.sequence == seq && r.reserved1[0] == round && is_record(&r, seq, INSTRUMENTS));
            seq += 1;
        }
        torn_lvc = torn_last_values(&oldest, expected_first);
        assert!(torn_lvc <= 1, "one last value at most is being written when the writer dies");
    }
    let writer = open_writer(segment.text().as_str());
    assert_eq!((writer.epoch(), writer.next_sequence()), (rounds + 1, expected_first));
    assert_eq!(u64::from(writer.open_report().cleared_lvc_entries), torn_lvc);
    assert_eq!(torn_last_values(&Reader::open(segment.path()).unwrap(), expected_first), 0, "repaired");
    println!(
        "{rounds} kills mid-publish: {adopted} slots adopted, {cleared} last values cleared, next {expected_first}"
    );
}

/// Checks every instrument's last value after a writer died: whole and published before `next`,
/// empty, or torn (the entry it died writing: `Contended`). Returns how many are torn.
fn torn_last_values(reader: &Reader, next: u64) -> u64 {
    let mut r = TickRecord::ZERO;
    let mut torn = 0;
    for index in 0..INSTRUMENTS {
        match reader.latest(index, &mut r) {
            Ok(true) => assert!(
                r.instrument_index == index && r.sequence < next && is_record(&r, r.sequence, INSTRUMENTS),
                "last value of {index}: {r:?}"
            ),
            Ok(false) => {}
            Err(_) => torn += 1,
        }
    }
    torn
}

//! Cross-process stress test of the ring protocol: one writer process and three reader processes on
//! one segment file in `/dev/shm`, all started by re-executing this test binary.
//!
//! The writer publishes `N` records into a 64-slot ring as fast as it can. Every record is derived
//! from its sequence by a PRNG and carries a checksum over its other words in `reserved1[1]`. Readers
//! are paced differently (one flat out, one spinning, one sleeping) so the slow ones are lapped on
//! purpose. Each reader checks that every `Next::Tick` is whole and bit-for-bit the record of the
//! sequence it expected, that every `Next::Gap { first, last }` starts exactly where it was and is
//! followed by `last + 1`, and that ticks + lost sequences cover its range exactly. Readers report
//! counts on stdout; the parent asserts on them and prints a summary line.
//!
//! The children are the `child_*` tests: they return at once unless `QILIN_STRESS_ROLE` is set, so
//! they pass trivially in a normal run; the `stress_*` tests are the ones that assert.
//!
//! Loop counts are short by default (a few seconds on two cores). `QILIN_LONG=1` makes them 50×
//! longer, e.g. `QILIN_LONG=1 cargo test -p qilin-shm --release --test cross_process -- --nocapture`.
//! A watchdog kills children that outlive a generous deadline and fails the test; nothing here
//! asserts a wall-clock maximum.

mod common;

use std::time::{Duration, Instant};

use common::{
    ChildProc, PATH, TempSegment, checksum, child_role, env, env_u64, fields, hear, is_record, options, record, say,
};
use qilin_shm::{Exchange, Liveness, Next, Reader, RunState, Start, TickRecord, Writer, now_ns};

const RING: u64 = 64;
const INSTRUMENTS: u32 = 4;
const N: &str = "QILIN_STRESS_N";
const PAUSE_AT: &str = "QILIN_STRESS_PAUSE_AT";
const START: &str = "QILIN_STRESS_START";
const PACE: &str = "QILIN_STRESS_PACE";

fn total() -> u64 {
    if common::long() { 10_000_000 } else { 200_000 }
}

fn watchdog() -> Duration {
    Duration::from_secs(if common::long() { 3600 } else { 180 })
}

/// Child: opens the segment, publishes up to `PAUSE_AT`, says `ready`, waits for `go`, publishes
/// the rest up to `N` and drops the writer cleanly.
#[test]
fn child_writer() {
    if child_role("writer").is_none() {
        return;
    }
    let (n, pause) = (env_u64(N), env_u64(PAUSE_AT));
    let mut writer = Writer::open(env(PATH), &options(RING, INSTRUMENTS)).expect("writer opens the segment");
    for i in 0..INSTRUMENTS {
        writer.add_instrument(&format!("ins{i}"), Exchange::Shfe, 10, 1.0).expect("room in the directory");
    }
    writer.set_run_state(RunState::Running);
    let publish = |writer: &mut Writer, upto: u64| {
        while writer.next_sequence() <= upto {
            let seq = writer.next_sequence();
            assert_eq!(writer.publish(&mut record(seq, INSTRUMENTS)), Ok(seq));
            if seq.is_multiple_of(1024) {
                writer.heartbeat(now_ns());
            }
        }
    };
    publish(&mut writer, pause);
    say(&format!("ready cursor={pause}"));
    assert_eq!(hear().as_deref(), Some("go"), "parent's go");
    publish(&mut writer, n);
    say(&format!("done last={n}"));
}

/// What one reader saw.
#[derive(Default)]
struct Tally {
    expected: u64,
    ticks: u64,
    gaps: u64,
    lost: u64,
    torn: u64,
}

impl Tally {
    /// Checks one event against the sequence expected and counts it.
    fn take(&mut self, event: Next, r: &TickRecord, n: u64) {
        match event {
            Next::Tick => {
                // The checksum covers the sequence and catches any mix of two records; the full
                // comparison with the regenerated record costs twice as much, so it is sampled.
                let whole = r.reserved1[1] == checksum(r);
                if !whole || (self.ticks.is_multiple_of(16) && !is_record(r, self.expected, INSTRUMENTS)) {
                    self.torn += 1;
                    eprintln!("torn or foreign record where {} was expected: {r:?}", self.expected);
                }
                assert_eq!(r.sequence, self.expected, "a tick out of sequence");
                self.ticks += 1;
                self.expected += 1;
            }
            Next::Gap { first, last } => {
                assert_eq!(first, self.expected, "a gap must start at the sequence expected");
                assert!(first <= last && last <= n, "gap {first}..={last} with {n} published");
                self.gaps += 1;
                self.lost += last - first + 1;
                self.expected = last + 1;
            }
            Next::Empty => std::thread::yield_now(),
            Next::NewEpoch { previous, current } => panic!("no restart here, got epoch {previous} -> {current}"),
        }
    }
}

/// Child: opens the segment, seeks to `START`, makes a first read while the writer is paused and
/// says `ready` with it, then reads up to `N` paced by `PACE` (`none`, `spin:K:I` = spin I times
/// every K ticks, `sleep:K:US`) and says `result`.
#[test]
fn child_reader() {
    if child_role("reader").is_none() {
        return;
    }
    let n = env_u64(N);
    let mut reader = Reader::open(env(PATH)).expect("reader opens the segment");
    reader.seek(match env(START).as_str() {
        "newest" => Start::Newest,
        "oldest" => Start::Oldest,
        seq => Start::Sequence(seq.parse().expect("START is newest, oldest or a sequence")),
    });
    let pace: Vec<u64> = env(PACE).split(':').skip(1).map(|v| v.parse().expect("PACE numbers")).collect();
    let start = reader.next_sequence();
    let mut tally = Tally { expected: start, ..Tally::default() };
    let mut r = TickRecord::ZERO;
    let first = reader.try_next(&mut r);
    let first_text = match first {
        Next::Tick => format!("first_tick={}", r.sequence),
        Next::Gap { first, last } => format!("gap_first={first} gap_last={last}"),
        _ => "empty=1".to_owned(),
    };
    tally.take(first, &r, n);
    say(&format!("ready start={start} {first_text}"));
    while tally.expected <= n {
        let event = reader.try_next(&mut r);
        tally.take(event, &r, n);
        assert_eq!(reader.next_sequence(), tally.expected, "reader cursor and our count disagree");
        if event == Next::Tick && !pace.is_empty() && tally.ticks.is_multiple_of(pace[0]) {
            if env(PACE).starts_with("spin") {
                (0..pace[1]).for_each(|_| std::hint::spin_loop());
            } else {
                std::thread::sleep(Duration::from_micros(pace[1]));
            }
        }
    }
    let Tally { ticks, gaps, lost, torn, .. } = tally;
    say(&format!("result start={start} ticks={ticks} gaps={gaps} lost={lost} torn={torn}"));
}

/// Starts the writer (paused after `pause` records) and one reader per `(start, pace)`, lets them
/// run, asserts on every reader's report and returns the reports (`ready` and `result` merged).
fn run(tag: &str, pause: u64, readers: &[(String, &str)]) -> Vec<std::collections::HashMap<String, u64>> {
    let began = Instant::now();
    let deadline = began + watchdog();
    let n = total();
    let segment = TempSegment::new(tag);
    let path = (PATH, segment.text());
    let mut writer =
        ChildProc::spawn("child_writer", "writer", &[path.clone(), (N, n.to_string()), (PAUSE_AT, pause.to_string())]);
    assert_eq!(fields(&writer.expect("ready", deadline))["cursor"], pause);
    let mut children = Vec::new();
    for (start, pace) in readers {
        let envs = [path.clone(), (N, n.to_string()), (START, start.clone()), (PACE, pace.to_string())];
        let mut child = ChildProc::spawn("child_reader", "reader", &envs);
        let ready = fields(&child.expect("ready", deadline));
        children.push((child, ready));
    }
    writer.send("go");
    let mut reports = Vec::new();
    for (child, mut report) in children {
        let done = child.finish_ok(deadline);
        let result = done.lines.iter().find(|l| l.starts_with("result")).expect("reader's result line");
        report.extend(fields(result));
        reports.push(report);
    }
    let done = writer.finish_ok(deadline);
    assert!(done.lines.iter().any(|l| l == &format!("done last={n}")), "writer lines: {:?}", done.lines);

    let (mut ticks, mut gaps, mut lost, mut torn) = (0, 0, 0, 0);
    for (report, (start, pace)) in reports.iter().zip(readers) {
        let covered = report["ticks"] + report["lost"];
        assert_eq!(report["torn"], 0, "reader {start}/{pace} was handed torn records: {report:?}");
        assert_eq!(covered, n - report["start"] + 1, "reader {start}/{pace} lost count: {report:?}");
        assert_eq!(report["gaps"] == 0, report["lost"] == 0, "gaps without loss or loss without gaps");
        (ticks, gaps, lost, torn) =
            (ticks + report["ticks"], gaps + report["gaps"], lost + report["lost"], torn + report["torn"]);
    }
    let after = Reader::open(segment.path()).expect("segment still readable");
    assert_eq!(after.write_cursor(), n);
    assert!(matches!(after.liveness(now_ns(), 1_000_000_000), Liveness::Stopped { .. }));
    println!(
        "{tag}: checked {ticks} records, {gaps} gaps, {lost} lost, {torn} torn ({n} published, {} readers, {:.1} s)",
        readers.len(),
        began.elapsed().as_secs_f64()
    );
    reports
}

#[test]
fn stress_lapped_readers_never_see_a_torn_record() {
    let readers =
        [("newest".to_owned(), "none"), ("1".to_owned(), "spin:64:20000"), ("1".to_owned(), "sleep:500:2000")];
    let reports = run("stress", 0, &readers);
    for report in &reports {
        assert_eq!(report["start"], 1);
    }
    assert!(reports[2]["gaps"] > 0, "the sleeping reader was never lapped: the test exercised no gap");
}

#[test]
fn stress_readers_joining_mid_stream() {
    let pause = 1000;
    let (kept, gone) = (pause - 10, 5);
    let readers =
        [("oldest".to_owned(), "none"), (kept.to_string(), "spin:64:20000"), (gone.to_string(), "sleep:500:2000")];
    let reports = run("midstream", pause, &readers);
    let oldest = pause - RING + 1;
    assert_eq!((reports[0]["start"], reports[0]["first_tick"]), (oldest, oldest), "Start::Oldest: {:?}", reports[0]);
    assert_eq!((reports[1]["start"], reports[1]["first_tick"]), (kept, kept), "saved, still in the ring");
    // The lost sequences and the default lap headroom after them (the reader resumes there).
    let gap = (reports[2]["start"], reports[2]["gap_first"], reports[2]["gap_last"]);
    let resume = oldest + qilin_shm::default_lap_headroom(RING);
    assert_eq!(gap, (gone, gone, resume - 1), "saved, overwritten: the first read reports exactly what it skips");
}

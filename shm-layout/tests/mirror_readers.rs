//! A mirror's segment read by the unchanged readers in three languages: ticks at the feed's
//! sequences, and every range marked lost (short, longer than the ring, and the fresh mirror's
//! "before my start") reported as gaps covering it exactly — no stall, nothing twice, no
//! placeholder tick. The Rust reader in-process, the C reader (`examples/c/qilin_tail.c`) and the
//! Python reader (`python/tests/dump_events.py`) as separate processes.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use qilin_shm::{Exchange, MirrorStart, Next, Reader, SegmentOptions, Start, TickRecord, Writer};

const RING: u64 = 32;
/// The feed's sequences the mirror writes: ticks and lost ranges, in order, starting at 41 (a fresh
/// mirror of a stream whose first message is 41: 1..=40 are lost to it). The range longer than the
/// ring laps the first ticks too (they are gone as on any lapped ring); the short range sits among
/// readable ticks.
const PLAN: &[(u64, u64, bool)] =
    &[(41, 45, true), (46, 145, false), (146, 150, true), (151, 153, false), (154, 170, true)];
const LAST: u64 = 170;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write_mirror(path: &Path) {
    let options = SegmentOptions { feed_name: "mirror-readers".into(), ring_slots: RING, instrument_capacity: 4 };
    let mut w = Writer::open_mirror(path, &options, MirrorStart { epoch: 3, next_sequence: 41 }).unwrap();
    w.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
    for &(first, last, ticks) in PLAN {
        if ticks {
            for seq in first..=last {
                let mut t = TickRecord::ZERO;
                t.sequence = seq;
                t.last_price = seq as f64;
                t.exchange = Exchange::Shfe as u8;
                w.publish_at(&t).unwrap();
            }
        } else {
            w.mark_lost(first, last).unwrap();
        }
    }
    w.heartbeat(qilin_shm::now_ns());
    std::mem::forget(w); // keep "running" (no stop), as a live mirror would be
}

/// Lines `tick SEQ …` and `gap FIRST LAST` (the compare format of the C and Python readers).
fn check_lines(name: &str, text: &str) {
    let mut expected = 1u64;
    let mut ticks = Vec::new();
    let mut lost = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("tick") => {
                let seq: u64 = w[1].parse().unwrap();
                assert_eq!(seq, expected, "{name}: {line}");
                ticks.push(seq);
                expected += 1;
            }
            Some("gap") => {
                let (first, last): (u64, u64) = (w[1].parse().unwrap(), w[2].parse().unwrap());
                assert_eq!(first, expected, "{name}: a gap not where the reader stood: {line}");
                lost.extend(first..=last);
                expected = last + 1;
            }
            Some("epoch") | None => {}
            Some(other) => panic!("{name}: unexpected {other}: {line}"),
        }
    }
    assert_eq!(expected, LAST + 1, "{name} stopped at {}", expected - 1);
    // Read from 1 after everything was written: the ticks still in the ring (the last RING
    // sequences) are read; every other sequence, written then lapped, or lost, is in a gap.
    let want_ticks: Vec<u64> =
        PLAN.iter().filter(|p| p.2).flat_map(|&(f, l, _)| f..=l).filter(|s| *s > LAST - RING).collect();
    assert_eq!(ticks, want_ticks, "{name}: the ticks are the written ones still in the ring, each once");
    let want_lost: Vec<u64> = (1..=LAST).filter(|s| !want_ticks.contains(s)).collect();
    assert_eq!(lost, want_lost, "{name}: the gaps cover exactly the rest");
}

#[test]
fn rust_c_and_python_readers_report_lost_ranges_as_exact_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror");
    write_mirror(&path);

    // Rust, from sequence 1 (the fresh mirror never had it).
    let mut reader = Reader::open(&path).unwrap();
    assert_eq!(reader.current_epoch(), 3);
    reader.seek(Start::Sequence(1));
    let mut out = String::new();
    let mut t = TickRecord::ZERO;
    while reader.next_sequence() <= LAST {
        match reader.try_next(&mut t) {
            Next::Tick => {
                assert_eq!(t.last_price, t.sequence as f64);
                out.push_str(&format!("tick {}\n", t.sequence));
            }
            Next::Gap { first, last } => out.push_str(&format!("gap {first} {last}\n")),
            Next::NewEpoch { .. } => {}
            Next::Empty => panic!("the Rust reader stalled at {}", reader.next_sequence()),
        }
    }
    assert_eq!(reader.try_next(&mut t), Next::Empty, "nothing after the last sequence");
    check_lines("Rust", &out);

    // C.
    let tail = dir.path().join("qilin_tail");
    let built = Command::new("gcc")
        .args(["-std=c11", "-O2", "-Wall", "-Werror", "-I"])
        .arg(repo().join("shm-layout/include"))
        .arg(repo().join("examples/c/qilin_tail.c"))
        .arg("-o")
        .arg(&tail)
        .output()
        .expect("gcc is installed by .ci/run");
    assert!(built.status.success(), "building qilin_tail: {}", String::from_utf8_lossy(&built.stderr));
    let c = Command::new(&tail)
        .arg(&path)
        .args(["--from", "1", "--until", &LAST.to_string(), "--format", "compare"])
        .output()
        .unwrap();
    assert!(c.status.success(), "C reader: {}", String::from_utf8_lossy(&c.stderr));
    check_lines("C", &String::from_utf8(c.stdout).unwrap());

    // Python.
    let py = Command::new("python3")
        .arg(repo().join("python/tests/dump_events.py"))
        .arg("dump")
        .arg(&path)
        .args(["--start", "1", "--until", &LAST.to_string(), "--timeout", "60"])
        .output()
        .unwrap();
    assert!(py.status.success(), "Python reader: {}", String::from_utf8_lossy(&py.stderr));
    check_lines("Python", &String::from_utf8(py.stdout).unwrap());
}

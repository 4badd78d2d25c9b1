//! `qilin-bench blast`, the keep-up producer: it runs the real binary for a moment and reads the
//! segment it leaves with the real reader. Everything it reports must be what a reader finds:
//! the write cursor, the ticks the ring still holds (consecutive, the last one the last published),
//! the instruments they cycle through, the stopped run state. No rate is judged: a test never
//! asserts a wall-clock threshold.

use std::process::Command;

use qilin_benches::TempSegment;
use qilin_shm::{Next, Reader, RunState, Start, TickRecord};
use serde_json::Value;

const RING_SLOTS: u64 = 1024;
const INSTRUMENTS: u64 = 3;

#[test]
fn blast_publishes_what_it_reports_and_a_reader_reads_it_in_order() {
    let segment = TempSegment::new("blast");
    let out = Command::new(env!("CARGO_BIN_EXE_qilin-bench"))
        .args(["blast", "--rate", "0", "--seconds", "0.2", "--cpu", "0"])
        .arg("--ring-slots")
        .arg(RING_SLOTS.to_string())
        .arg("--instruments")
        .arg(INSTRUMENTS.to_string())
        .arg("--segment")
        .arg(segment.path())
        .output()
        .expect("running qilin-bench blast");
    assert!(out.status.success(), "blast failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("blast prints one JSON object");
    let published = summary["published"].as_u64().expect("published");
    assert_eq!(summary["first_sequence"].as_u64(), Some(1), "a fresh segment starts at sequence 1");
    // Unpaced for 0.2 s: far more than a lap even in a debug build on a busy machine (bursts of
    // 16 between clock reads), so the ring holds the last RING_SLOTS of them.
    assert!(published > RING_SLOTS, "published only {published} ticks");

    let mut reader = Reader::open(segment.path()).expect("opening the blasted segment");
    assert_eq!(reader.write_cursor(), published, "the cursor is the last sequence published");
    assert_eq!(reader.run_state(), Some(RunState::Stopped));
    reader.seek(Start::Oldest);
    let mut tick = TickRecord::ZERO;
    let mut read = Vec::new();
    loop {
        match reader.try_next(&mut tick) {
            Next::Tick => read.push(tick),
            Next::Empty => break,
            other => panic!("a stopped segment read from its oldest tick gave {other:?}"),
        }
    }
    assert_eq!(read.len() as u64, RING_SLOTS, "the ring holds exactly one lap");
    let first = published - RING_SLOTS + 1;
    for (k, tick) in read.iter().enumerate() {
        let seq = first + k as u64;
        assert_eq!(tick.sequence, seq);
        // Tick n (from 0) is instrument n mod INSTRUMENTS, its volume the pool's plus n.
        assert_eq!(u64::from(tick.instrument_index), (seq - 1) % INSTRUMENTS, "sequence {seq}");
        assert_eq!(tick.instrument_id_str(), Some(format!("bl{:04}", (seq - 1) % INSTRUMENTS).as_str()));
        assert_eq!(tick.volume - read[0].volume, k as i64, "volume grows by the tick number");
    }
}

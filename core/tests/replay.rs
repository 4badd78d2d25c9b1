//! The `replay` source as a real process: a journal written from what a simulator core published
//! (with a gap record in the middle) is replayed by a second core into its own segment; every
//! replayed record equals the original in every market field, timestamp and quality flag, in the
//! same order, with the second segment's own sequences and source `replay`.

mod common;

use common::unique;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use qilin_journal::{GapReason, JournalWriter, WriterOptions, file_path};
use qilin_shm::{Reader, Source, TickRecord};
use qilin_testkit::read_ring;
use zerocopy::IntoBytes;

struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        qilin_testkit::remove_segment(&self.1);
    }
}

fn core(segment: &Path, args: &[&str]) -> Proc {
    let socket = std::env::temp_dir().join(format!("{}.sock", unique("replay-ctl")));
    let child = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
        .arg("--segment")
        .arg(segment)
        .arg("--control-socket")
        .arg(&socket)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child, segment.to_owned())
}

/// The record with the fields replay re-assigns set to the original's, so the rest compares
/// byte for byte.
fn normalized(mut replayed: TickRecord, original: &TickRecord) -> TickRecord {
    replayed.sequence = original.sequence;
    replayed.instrument_index = original.instrument_index;
    replayed.publish_ns = original.publish_ns;
    replayed.source = original.source;
    replayed
}

#[test]
fn a_replayed_journal_reproduces_every_record_in_order() {
    const TICKS: u64 = 6000;
    let dir = tempfile::tempdir().unwrap();
    let seg_a = PathBuf::from(format!("/dev/shm/{}", unique("replay-a")));
    let seg_b = PathBuf::from(format!("/dev/shm/{}", unique("replay-b")));
    let sim = core(&seg_a, &["--feed", "replay-a", "--sim-rate", "50000", "--sim-max-ticks", &TICKS.to_string()]);
    let original = read_ring(&seg_a, TICKS);
    drop(sim);

    // Journal: 1..=2000, a gap record for 2001..=2100 (those ticks are left out), 2101..=6000.
    let day = original[0].trading_day;
    assert!(original.iter().all(|t| t.trading_day == day), "the simulated span stays in one trading day");
    let (mut journal, _) = JournalWriter::open(dir.path(), "replay-a", day, 0, WriterOptions::default()).unwrap();
    for t in &original {
        match t.sequence {
            2001 => journal.append_gap(2001, 2100, GapReason::Lapped).unwrap(),
            2002..=2100 => {}
            _ => journal.append_tick(t).unwrap(),
        }
    }
    journal.finish().unwrap();
    let kept: Vec<&TickRecord> = original.iter().filter(|t| !(2001..=2100).contains(&t.sequence)).collect();

    let file = file_path(dir.path(), "replay-a", day);
    let _replay = core(&seg_b, &["--feed", "replay-b", "--replay", file.to_str().unwrap()]);
    let replayed = read_ring(&seg_b, kept.len() as u64);
    for (i, (r, o)) in replayed.iter().zip(&kept).enumerate() {
        assert_eq!(r.sequence, i as u64 + 1, "the second segment numbers its own ticks");
        assert_eq!(r.source, Source::Replay as u8);
        assert_eq!(r.instrument_id_str(), o.instrument_id_str(), "tick {i}: order differs");
        assert_eq!(normalized(*r, o).as_bytes(), o.as_bytes(), "tick {i} ({:?}) differs", o.instrument_id_str());
    }
    let reader = Reader::open(&seg_b).unwrap();
    assert_eq!(reader.write_cursor(), kept.len() as u64, "nothing more than the journal's ticks");
}

#[test]
fn a_directory_of_several_feeds_needs_a_feed_name_and_a_missing_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for feed in ["alpha", "beta"] {
        let (w, _) = JournalWriter::open(dir.path(), feed, 20260302, 0, WriterOptions::default()).unwrap();
        w.finish().unwrap();
    }
    let seg = PathBuf::from(format!("/dev/shm/{}", unique("replay-c")));
    let out = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
        .arg("--segment")
        .arg(&seg)
        .arg("--replay")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("several feeds (alpha, beta)") && err.contains("source.replay.feed"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_qilin-core"))
        .arg("--segment")
        .arg(&seg)
        .arg("--replay")
        .arg(dir.path().join("nope.qj"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("source.replay.path") && err.contains("nope.qj"), "{err}");
    qilin_testkit::remove_segment(&seg);
}

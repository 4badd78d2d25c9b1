//! Tests of the log as a whole: appends through [`AuditLog`] checked by [`verify`], and the tampering
//! each kind of [`ProblemKind`] names.

use std::{
    collections::BTreeSet,
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::json;

use crate::*;

fn entry(command: &str, exit_code: i32) -> Entry {
    Entry {
        command: command.into(),
        args: vec![command.into(), "rb2605".into()],
        exit_code,
        actions: vec![json!({"request": format!("{command} rb2605"), "reply": {"ok": true}})],
    }
}

/// A log of `n` entries in a fresh directory.
fn log_of(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        log.append(&entry(&format!("op{}", i + 1), i as i32 % 3)).unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn problems(path: &Path) -> Vec<(u64, ProblemKind)> {
    verify(path).unwrap().problems.iter().map(|p| (p.line, p.kind)).collect()
}

#[test]
fn a_chain_of_five_verifies_and_carries_who_when_and_what() {
    let (_dir, path) = log_of(5);
    let report = verify(&path).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.lines, report.last_seq), (5, 5));
    let text = lines(&path);
    let records: Vec<Record> = text.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records[0].prev, GENESIS);
    for i in 1..5 {
        assert_eq!(records[i].prev, sha256_hex(text[i - 1].as_bytes()), "line {}", i + 1);
    }
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(report.head, Some(Head { seq: 5, hash: sha256_hex(text[4].as_bytes()) }));
    let r = &records[2];
    assert_eq!((r.command.as_str(), r.exit_code, r.pid), ("op3", 2, std::process::id()));
    assert_eq!(r.args, ["op3", "rb2605"]);
    assert_eq!(r.actions, [json!({"request": "op3 rb2605", "reply": {"ok": true}})]);
    assert_eq!(r.operator.uid, nix::unistd::getuid().as_raw());
    assert!(!r.operator.user.is_empty() && !r.host.is_empty());
    assert_eq!(r.ts, rfc3339_ns(r.ts_ns));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(now - r.ts_ns < 600_000_000_000 && r.ts_ns <= now, "ts_ns {} vs now {now}", r.ts_ns);
    assert!(records.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    // Field order is part of the format.
    assert!(text[0].starts_with(r#"{"seq":1,"prev":"0000"#), "{}", text[0]);
}

#[test]
fn arguments_are_masked_when_written() {
    let (_dir, path) = log_of(0);
    let log = AuditLog::open(&path).unwrap();
    let e = Entry { args: vec!["validate-env".into(), "CTP_PRIMARY_PASSWORD=hunter2".into()], ..entry("x", 0) };
    let record = log.append(&e).unwrap();
    assert_eq!(record.args, ["validate-env", "CTP_PRIMARY_PASSWORD=***"]);
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2") && text.contains("CTP_PRIMARY_PASSWORD=***"), "{text}");
}

#[test]
fn files_are_created_0640_with_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/audit.jsonl");
    AuditLog::open(&path).unwrap().append(&entry("op", 0)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&path), 0o640);
    assert_eq!(mode(&head_path(&path)), 0o640);
    assert_eq!(mode(path.parent().unwrap()) & 0o7027, 0o0000, "directory is not group-writable or world-usable");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let report = verify(&path).unwrap();
    assert!(report.is_clean() && report.notes.iter().any(|n| n.contains("0666")), "{report:?}");
}

#[test]
fn an_edited_field_in_line_3_is_named() {
    let (_dir, path) = log_of(5);
    let mut text = lines(&path);
    assert!(text[2].contains(r#""exit_code":2"#));
    text[2] = text[2].replace(r#""exit_code":2"#, r#""exit_code":0"#);
    write_lines(&path, &text);
    let report = verify(&path).unwrap();
    assert_eq!(problems(&path), [(4, ProblemKind::PrevMismatch)], "{report:?}");
    assert!(report.problems[0].detail.contains("line 3 was edited"), "{}", report.problems[0].detail);
}

#[test]
fn an_edited_last_line_is_caught_by_the_head() {
    let (_dir, path) = log_of(5);
    let mut text = lines(&path);
    text[4] = text[4].replace("op5", "op6");
    write_lines(&path, &text);
    assert_eq!(problems(&path), [(5, ProblemKind::HeadMismatch)]);
}

#[test]
fn an_inserted_line_is_named() {
    // A naive forgery: a copy of line 2 with another command, put after it.
    let (_dir, path) = log_of(5);
    let mut text = lines(&path);
    text.insert(2, text[1].replace("op2", "shutdown"));
    write_lines(&path, &text);
    let report = verify(&path).unwrap();
    assert_eq!(
        problems(&path),
        [(3, ProblemKind::SeqBack), (3, ProblemKind::PrevMismatch), (4, ProblemKind::PrevMismatch)]
    );
    assert!(report.problems[2].detail.contains("line 3 or line 4 was inserted"), "{report:?}");

    // A careful one: right seq and prev, so the line after it is what breaks.
    let (_dir, path) = log_of(5);
    let mut text = lines(&path);
    let mut forged: Record = serde_json::from_str(&text[2]).unwrap();
    forged.command = "shutdown".into();
    forged.prev = sha256_hex(text[1].as_bytes());
    text.insert(2, serde_json::to_string(&forged).unwrap());
    write_lines(&path, &text);
    let report = verify(&path).unwrap();
    assert_eq!(problems(&path), [(4, ProblemKind::SeqBack), (4, ProblemKind::PrevMismatch)], "{report:?}");
    assert!(report.problems[1].detail.contains("line 3 or line 4 was inserted"), "{report:?}");
    // The head still matches the last line: the end of the log was not touched.
    assert_eq!(report.head.map(|h| h.seq), Some(5));
}

#[test]
fn a_deleted_middle_line_is_named() {
    let (_dir, path) = log_of(5);
    let mut text = lines(&path);
    text.remove(2);
    write_lines(&path, &text);
    let report = verify(&path).unwrap();
    assert_eq!(problems(&path), [(3, ProblemKind::SeqGap), (3, ProblemKind::PrevMismatch)]);
    assert!(report.problems[0].detail.contains("seq 3..=3"), "{}", report.problems[0].detail);

    // The first line too.
    let (_dir, path) = log_of(3);
    let text = lines(&path);
    write_lines(&path, &text[1..]);
    assert_eq!(problems(&path), [(1, ProblemKind::SeqGap), (1, ProblemKind::PrevMismatch)]);
}

#[test]
fn a_deleted_last_line_is_caught_by_the_head() {
    let (_dir, path) = log_of(5);
    let text = lines(&path);
    write_lines(&path, &text[..4]);
    let report = verify(&path).unwrap();
    assert_eq!(problems(&path), [(5, ProblemKind::TailDeleted)], "{report:?}");
    assert!(report.problems[0].detail.contains("head file records seq 5 but the log ends at seq 4"));

    // An append afterwards keeps the evidence: it continues at seq 6, leaving a gap.
    AuditLog::open(&path).unwrap().append(&entry("after", 0)).unwrap();
    assert_eq!(problems(&path), [(5, ProblemKind::SeqGap)]);

    // What the chain cannot do alone: without the head file, a cut tail looks like a shorter log.
    let (_dir, path) = log_of(5);
    let text = lines(&path);
    write_lines(&path, &text[..4]);
    fs::remove_file(head_path(&path)).unwrap();
    assert_eq!(problems(&path), [(5, ProblemKind::HeadMissing)]);
}

#[test]
fn a_head_one_behind_is_an_interrupted_append_not_tampering() {
    let (_dir, path) = log_of(3);
    let text = lines(&path);
    let behind = Head { seq: 2, hash: sha256_hex(text[1].as_bytes()) };
    fs::write(head_path(&path), serde_json::to_vec(&behind).unwrap()).unwrap();
    let report = verify(&path).unwrap();
    assert!(report.is_clean() && report.notes.iter().any(|n| n.contains("one entry behind")), "{report:?}");
    // Two behind is not a crash window.
    let behind = Head { seq: 1, hash: sha256_hex(text[0].as_bytes()) };
    fs::write(head_path(&path), serde_json::to_vec(&behind).unwrap()).unwrap();
    assert_eq!(problems(&path), [(3, ProblemKind::HeadMismatch)]);
}

#[test]
fn a_torn_tail_is_reported_and_the_next_append_chains_after_it() {
    let (_dir, path) = log_of(2);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"seq":3,"prev":"ab"#).unwrap();
    drop(f);
    assert!(problems(&path).contains(&(3, ProblemKind::Torn)));
    AuditLog::open(&path).unwrap().append(&entry("next", 0)).unwrap();
    let text = lines(&path);
    assert_eq!(text.len(), 4);
    let next: Record = serde_json::from_str(&text[3]).unwrap();
    assert_eq!((next.seq, next.prev), (4, sha256_hex(text[2].as_bytes())));
    assert_eq!(problems(&path), [(3, ProblemKind::Malformed)]);
}

#[test]
fn an_empty_log_is_clean_and_a_missing_one_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    assert!(verify(&path).is_err());
    AuditLog::open(&path).unwrap();
    let report = verify(&path).unwrap();
    assert!(report.is_clean() && report.lines == 0, "{report:?}");
}

#[test]
fn concurrent_appends_from_threads_make_one_chain() {
    let (_dir, path) = log_of(0);
    let (threads, per_thread) = (8, 25);
    std::thread::scope(|s| {
        for t in 0..threads {
            let path = &path;
            s.spawn(move || {
                let log = AuditLog::open(path).unwrap();
                for i in 0..per_thread {
                    log.append(&entry(&format!("t{t}-{i}"), 0)).unwrap();
                }
            });
        }
    });
    let report = verify(&path).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.lines, threads * per_thread);
    let commands: BTreeSet<String> = read_lines(&path).unwrap().into_iter().map(|(_, r)| r.unwrap().command).collect();
    assert_eq!(commands.len() as u64, threads * per_thread, "every append once");
    // One AuditLog shared by threads works too (each append has its own descriptor and lock).
    let log = AuditLog::open(&path).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    log.append(&entry("shared", 0)).unwrap();
                }
            });
        }
    });
    let report = verify(&path).unwrap();
    assert!(report.is_clean() && report.last_seq == threads * per_thread + 40, "{report:?}");
}

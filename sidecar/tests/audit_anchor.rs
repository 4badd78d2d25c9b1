//! The audit anchor end to end: a real `qilin-recorder` witnessing an audit log
//! (`[[audit_anchor]]`) while this test appends to it through `qilin_audit::AuditLog` (the writer
//! the core, qilin-secrets and qilinctl use), then tampers with it the way an attacker who owns
//! the log would (the file and its head rewritten by hand), and `qilinctl audit verify` run as a
//! process, with and without `--anchor`.
//!
//! The segment is one this test creates with `qilin_shm::Writer` in a temporary directory (no
//! core: the recorder journals nothing here, and the anchoring does not depend on it). All
//! processes run as the test's uid, so the recorder warns that the log is its own uid's: the
//! deployment runs it under another (docs/SIDECARS.md).

mod common;

use std::{
    fs::{self, OpenOptions},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use common::*;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_audit::{AuditLog, Entry, head_path, sha256_hex};
use qilin_shm::{SegmentOptions, Writer};
use serde_json::Value;

/// A recorder anchoring one or more audit logs, and the segment it reads. Every wait fails at
/// once, with the recorder's log, if the recorder exits.
struct Witnessed {
    dir: tempfile::TempDir,
    segment: PathBuf,
    _writer: Writer,
    recorder: Option<Child>,
}

impl Witnessed {
    /// A recorder witnessing `anchors` (log, anchor file), looking every 50 ms.
    fn start(dir: tempfile::TempDir, anchors: &[(&Path, &Path)]) -> Witnessed {
        Self::start_keyed(dir, anchors, None)
    }

    /// [`Witnessed::start`], every anchor keyed with `key_file` when given.
    fn start_keyed(dir: tempfile::TempDir, anchors: &[(&Path, &Path)], key_file: Option<&Path>) -> Witnessed {
        let segment = dir.path().join("segment");
        let options = SegmentOptions { feed_name: "anchor-test".into(), ring_slots: 64, instrument_capacity: 4 };
        let writer = Writer::open(&segment, &options).unwrap();
        let mut config = format!(
            "name = \"recorder\"\nsegment = {:?}\njournal_dir = {:?}\nstatus_interval_ms = 50\n\
             audit_anchor_interval_ms = 50\n[metrics]\nenabled = false\n",
            segment.display().to_string(),
            dir.path().join("journal").display().to_string(),
        );
        for (log, anchor) in anchors {
            config.push_str(&format!(
                "[[audit_anchor]]\nlog = {:?}\nanchor = {:?}\n",
                log.display().to_string(),
                anchor.display().to_string()
            ));
            if let Some(key) = key_file {
                config.push_str(&format!("key_file = {:?}\n", key.display().to_string()));
            }
        }
        let path = dir.path().join("recorder.toml");
        fs::write(&path, config).unwrap();
        let log = fs::File::create(dir.path().join("recorder.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_qilin-recorder"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Witnessed { segment, _writer: writer, recorder: Some(child), dir }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("recorder.log")).unwrap_or_default()
    }

    /// Waits for `f`, failing at once with the recorder's log if it has exited.
    fn wait<T>(&mut self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        wait_for(what, || {
            if let Some(child) = self.recorder.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!("qilin-recorder exited ({status}) while waiting for {what}:\n{}", self.log());
            }
            f()
        })
    }

    /// Waits for an anchor of `seq` in `anchor`.
    fn wait_anchored(&mut self, anchor: &Path, seq: u64) {
        self.wait(&format!("an anchor of seq {seq} in {}", anchor.display()), || {
            anchored(anchor).contains(&seq).then_some(())
        });
    }

    /// Waits for the recorder's status to satisfy `f`.
    fn wait_status(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let segment = self.segment.clone();
        self.wait(what, || status(&segment, "recorder").filter(|s| f(s)))
    }

    /// SIGTERM, and the exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.recorder.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        wait_for("qilin-recorder to exit", || child.try_wait().unwrap())
    }
}

impl Drop for Witnessed {
    fn drop(&mut self) {
        if let Some(mut child) = self.recorder.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn entry(i: u64) -> Entry {
    Entry { command: format!("op{i}"), args: vec![format!("op{i}")], exit_code: 0, actions: Vec::new() }
}

fn append(log: &AuditLog, n: u64) {
    for i in 0..n {
        log.append(&entry(i)).unwrap();
    }
}

/// The seqs in the anchor file (read as JSON: the format is the contract, not the crate's types).
fn anchored(anchor: &Path) -> Vec<u64> {
    let text = fs::read_to_string(anchor).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seq"].as_u64()).collect()
}

fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log).unwrap().lines().map(str::to_owned).collect()
}

/// What an attacker who can write the log does: cut the file after line `keep` in place, and
/// replace the head file with one that matches the new last line (as the writer writes it).
fn cut_and_rewrite_head(log: &Path, keep: usize) {
    let all = lines(log);
    let len: usize = all[..keep].iter().map(|l| l.len() + 1).sum();
    OpenOptions::new().write(true).open(log).unwrap().set_len(len as u64).unwrap();
    write_head(log, &all[keep - 1]);
}

fn write_head(log: &Path, last: &str) {
    let seq = serde_json::from_str::<Value>(last).unwrap()["seq"].as_u64().unwrap();
    let tmp = head_path(log).with_extension("head.forged");
    fs::write(&tmp, format!("{{\"seq\":{seq},\"hash\":\"{}\"}}\n", sha256_hex(last.as_bytes()))).unwrap();
    fs::rename(&tmp, head_path(log)).unwrap();
}

/// Edits the line with seq `at` (its exit code), re-chains every line after it and rewrites the
/// head: a full rewrite from an edit point.
fn rewrite_from(log: &Path, original: &[String], at: u64) {
    let mut out: Vec<String> = Vec::new();
    for line in original {
        let mut record: Value = serde_json::from_str(line).unwrap();
        let seq = record["seq"].as_u64().unwrap();
        if seq < at {
            out.push(line.clone());
            continue;
        }
        if seq == at {
            record["exit_code"] = Value::from(0);
            record["command"] = Value::from("nothing-to-see");
        }
        record["prev"] = Value::from(sha256_hex(out.last().unwrap().as_bytes()));
        out.push(serde_json::to_string(&record).unwrap());
    }
    fs::write(log, out.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    write_head(log, out.last().unwrap());
}

fn qilinctl(args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = Command::new(workspace_bin("qilinctl"))
        .args(args)
        .env_remove("QILIN_AUDIT_LOG")
        .output()
        .expect("running qilinctl");
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

fn verify(log: &Path, anchor: Option<&Path>) -> (Option<i32>, String, String) {
    let mut args = vec!["audit", "verify", "--log", log.to_str().unwrap()];
    if let Some(anchor) = anchor {
        args.extend(["--anchor", anchor.to_str().unwrap()]);
    }
    qilinctl(&args)
}

#[test]
fn a_cut_tail_with_a_rewritten_head_is_caught_by_the_anchor_and_only_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log/audit.jsonl");
    let anchor = dir.path().join("anchor/core.jsonl");
    let mut w = Witnessed::start(dir, &[(&log, &anchor)]);
    let writer = AuditLog::open(&log).unwrap();
    append(&writer, 8);
    w.wait_anchored(&anchor, 8);

    cut_and_rewrite_head(&log, 5);
    // Without the anchor the forgery verifies clean: the head file is the writer's to rewrite.
    let (code, out, err) = verify(&log, None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("5 entries, chain intact, head at seq 5"), "{out}");
    // With it: exit 1, naming the anchored seq, its hash and time, and where the log ends now.
    let (code, out, err) = verify(&log, Some(&anchor));
    println!("verify --anchor after the cut:\n{out}");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("seq 8 was anchored at") && out.contains("the log now ends at seq 5"), "{out}");
    assert!(out.contains("at least 3 line(s) were cut off the end") && out.contains("TAMPERED"), "{out}");
    let (code, out, _) =
        qilinctl(&["audit", "verify", "--log", log.to_str().unwrap(), "--anchor", anchor.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["problems"][0]["kind"], "anchor_beyond_end", "{report}");
    // (The recorder may already have anchored the cut log's seq 5 as well: the anchor's last line is
    // then 5, and its seq 8 still tells.)
    assert_eq!(report["problems"][0]["line"].as_u64(), Some(6), "{report}");
    assert!(report["problems"][0]["detail"].as_str().unwrap_or("").contains("seq 8 was anchored"), "{report}");

    // The recorder sees the log go back, says so, counts it, and anchors what it sees now; the
    // earlier anchor keeps telling.
    w.wait_anchored(&anchor, 5);
    let status = w.wait_status("the regression counted", |s| s["counters"]["audit_anchor_regressions"] == 1);
    assert_eq!(status["audit_anchor"][0]["seq"], 5, "{status}");
    assert_eq!(status["state"], "recording", "{status}");
    let log_text = w.log();
    assert!(log_text.contains("went back: seq 8 was anchored at"), "{log_text}");
    assert!(log_text.contains("is owned by this witness's own uid"), "{log_text}");
    assert_eq!(verify(&log, Some(&anchor)).0, Some(1));

    // An anchor file that is not there is an error, never a pass.
    let missing = anchor.with_file_name("missing.jsonl");
    let (code, out, err) = verify(&log, Some(&missing));
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("missing.jsonl") && err.contains("(not a pass)"), "{err}");
    let _ = &w.dir;
}

#[test]
fn a_rewrite_from_an_edited_line_is_caught_when_an_anchor_is_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let anchor = dir.path().join("anchor.jsonl");
    let mut w = Witnessed::start(dir, &[(&log, &anchor)]);
    let writer = AuditLog::open(&log).unwrap();
    append(&writer, 4);
    w.wait_anchored(&anchor, 4);
    append(&writer, 3);
    w.wait_anchored(&anchor, 7);
    assert_eq!(w.stop().code(), Some(0), "{}", w.log());
    append(&writer, 3); // seq 8..=10: never anchored
    // 4 and 7 for sure; on a slow machine a round may also have caught the log mid-append (seq 1..3,
    // 5, 6): the expectations below follow what the anchor file holds.
    let anchors = anchored(&anchor);
    assert!(anchors.contains(&4) && anchors.contains(&7) && anchors.iter().all(|&s| s <= 7), "{anchors:?}");
    let original = lines(&log);
    assert_eq!(verify(&log, Some(&anchor)).0, Some(0));

    // Edited at seq 3, the rest re-chained: the anchors at 4 and 7 no longer match.
    rewrite_from(&log, &original, 3);
    assert_eq!(verify(&log, None).0, Some(0), "the chain and head were rewritten consistently");
    let (code, out, _) = verify(&log, Some(&anchor));
    assert_eq!(code, Some(1), "{out}");
    let hit: Vec<u64> = anchors.iter().copied().filter(|&s| s >= 3).collect();
    assert!(out.contains(&format!("seq {} was anchored at", hit[0])), "{out}");
    assert!(out.contains(&format!("the log's line {0} (seq {0}) now hashes to", hit[0])), "{out}");
    let more = format!("({} more anchor(s), up to seq 7, do not match either)", hit.len() - 1);
    assert!(out.contains(&more), "{out}");

    // Edited at seq 7, an anchored line itself: caught.
    rewrite_from(&log, &original, 7);
    let (code, out, _) = verify(&log, Some(&anchor));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("seq 7 was anchored at") && out.contains("at or before seq 7"), "{out}");

    // Edited at seq 9, after the last anchor: not caught (the window between two rounds); the
    // report says which seqs only the chain covers.
    rewrite_from(&log, &original, 9);
    let (code, out, _) = verify(&log, Some(&anchor));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("seq 8..=10 came after the last anchor (seq 7"), "{out}");
}

#[test]
fn an_untouched_log_verifies_against_its_anchor_while_the_writer_keeps_appending() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let anchor = dir.path().join("anchor.jsonl");
    // The log exists before the recorder's first round, so no round can find it missing.
    drop(AuditLog::open(&log).unwrap());
    let mut w = Witnessed::start(dir, &[(&log, &anchor)]);
    // The writer appends until told to stop; it is told only once verify has run against the
    // anchor five times while appends went on and the recorder has anchored three heads.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let writer = AuditLog::open(&log).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writer.append(&entry(n)).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut runs = 0;
    w.wait("five verify runs against an anchor during appends, and three anchors", || {
        if anchor.exists() {
            let (code, out, err) = verify(&log, Some(&anchor));
            assert_eq!(code, Some(0), "run {runs}: {out}{err}");
            runs += 1;
        }
        (runs >= 5 && anchored(&anchor).len() >= 3).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let n = writer.join().unwrap();
    w.wait_anchored(&anchor, n);
    let (code, out, err) = verify(&log, Some(&anchor));
    assert_eq!(code, Some(0), "{out}{err}");
    let seqs = anchored(&anchor);
    let k = seqs.len();
    assert!(out.contains(&format!("all {k} anchor(s) match, the last seq {n} at")), "{out}");
    println!("{runs} verify runs during {n} appends, {k} anchors");
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "an anchor per change, increasing: {seqs:?}");
    let status = w.wait_status("the last anchor in the status", |s| s["audit_anchor"][0]["seq"] == n);
    assert_eq!(status["counters"]["audit_anchors"], k as u64, "{status}");
    assert_eq!(status["audit_anchor"][0]["last_error"], Value::Null, "{status}");
    // A writer that never pauses can hold the log's lock through a whole round (1 s of tries) on a
    // loaded machine: such a round is logged and counted, and anchoring goes on (the last anchor
    // above). It is the only read error there may be.
    if status["counters"]["audit_anchor_read_errors"].as_u64().unwrap() > 0 {
        let log = w.log();
        // (The test runs the recorder as the log's own uid, which it reports at ERROR level too.)
        let errors: Vec<&str> =
            log.lines().filter(|l| l.contains("ERROR") && !l.contains("is owned by this witness's own uid")).collect();
        assert!(
            !errors.is_empty() && errors.iter().all(|l| l.contains("locked by a writer for more than")),
            "read errors other than a held lock:\n{log}"
        );
    }
}

#[test]
fn a_log_that_cannot_be_read_and_an_anchor_that_cannot_be_written_are_logged_counted_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    let good_anchor = dir.path().join("anchors/good.jsonl");
    let missing = dir.path().join("later/missing.jsonl");
    let missing_anchor = dir.path().join("anchors/missing.jsonl");
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, "").unwrap();
    let bad_anchor = not_a_dir.join("anchor.jsonl");
    let third = dir.path().join("third.jsonl");
    append(&AuditLog::open(&third).unwrap(), 2);
    let mut w = Witnessed::start(dir, &[(&missing, &missing_anchor), (&third, &bad_anchor), (&good, &good_anchor)]);
    let writer = AuditLog::open(&good).unwrap();
    append(&writer, 3);
    w.wait_anchored(&good_anchor, 3);
    let status = w.wait_status("repeated read and write errors", |s| {
        s["counters"]["audit_anchor_read_errors"].as_u64() >= Some(3)
            && s["counters"]["audit_anchor_write_errors"].as_u64() >= Some(3)
    });
    assert_eq!(status["state"], "recording", "{status}");
    let errors: Vec<&str> =
        status["audit_anchor"].as_array().unwrap().iter().map(|a| a["last_error"].as_str().unwrap_or("")).collect();
    assert!(errors[0].contains("missing.jsonl: opening: No such file or directory"), "{status}");
    assert!(
        errors[1].contains("audit anchor") && errors[1].contains("anchor.jsonl: reading: Not a directory"),
        "{status}"
    );
    assert_eq!(errors[2], "", "{status}");
    let log_text = w.log();
    assert_eq!(log_text.matches("missing.jsonl: opening").count(), 1, "logged once, not every round:\n{log_text}");

    // The log appears: anchored from the next round, the recovery said.
    append(&AuditLog::open(&missing).unwrap(), 1);
    w.wait_anchored(&missing_anchor, 1);
    w.wait_status("the missing log's error cleared", |s| s["audit_anchor"][0]["last_error"].is_null());
    assert!(w.log().contains("missing.jsonl is anchored again"), "{}", w.log());
}

/// `qilinctl keys …` and `audit verify` with the test's key store, master key and key audit log.
fn keys_ctl(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = Command::new(workspace_bin("qilinctl"))
        .args(args)
        .env("QILIN_KEY_STORE", dir.join("keys.json"))
        .env("QILIN_AUDIT_LOG", dir.join("keys-audit.jsonl"))
        .env("QILIN_MASTER_KEY", "zq8-master-key-for-anchor-tests-0123456789")
        .env("QILIN_KEYS_TEST_KDF_M_COST_KIB", "64")
        .output()
        .expect("running qilinctl");
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// The anchors of `anchor` as (seq, key_version).
fn keyed(anchor: &Path) -> Vec<(u64, Option<u64>)> {
    let text = fs::read_to_string(anchor).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["seq"].as_u64().unwrap(), v["key_version"].as_u64()))
        .collect()
}

#[test]
fn anchors_keyed_with_the_managed_signing_key_survive_a_rotation_and_catch_a_forged_anchor_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let ok = |args: &[&str]| {
        let (code, out, err) = keys_ctl(&d, args);
        assert_eq!(code, Some(0), "qilinctl {args:?}: {out}{err}");
        out
    };
    // The witnessed log is the key commands' own audit log: the rotation itself gets anchored.
    let log = d.join("keys-audit.jsonl");
    let anchor = d.join("anchor/keys.jsonl");
    let key_file = d.join("recorder/audit-signing.key");
    ok(&["keys", "add", "audit-signing", "--type", "signing"]);
    ok(&["keys", "render-key", "audit-signing", "--out", key_file.to_str().unwrap()]);
    let mut w = Witnessed::start_keyed(dir, &[(&log, &anchor)], Some(&key_file));
    let rendered_seq = lines(&log).len() as u64;
    w.wait("an anchor keyed with version 1", || keyed(&anchor).contains(&(rendered_seq, Some(1))).then_some(()));
    let verify_keyed = || {
        keys_ctl(
            &d,
            &["audit", "verify", "--log", log.to_str().unwrap(), "--anchor", anchor.to_str().unwrap(), "--keys"],
        )
    };
    let (code, out, _) = verify_keyed();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("keyed anchor(s) verified with the audit-signing key"), "{out}");

    // Rotation: audited in the witnessed log, rendered; the recorder starts version 2's chain and
    // anchors the rotation's own entries with it.
    let out = ok(&["keys", "rotate", "audit-signing"]);
    assert!(out.contains("version 1 -> version 2"), "{out}");
    ok(&["keys", "render-key", "audit-signing", "--out", key_file.to_str().unwrap()]);
    let rotated_seq = lines(&log).len() as u64;
    w.wait("the rotation anchored with version 2", || keyed(&anchor).contains(&(rotated_seq, Some(2))).then_some(()));
    let status = w.wait_status("the status to show version 2", |s| s["audit_anchor"][0]["key_version"] == 2);
    assert_eq!(status["counters"]["audit_anchor_key_errors"], 0, "{status}");
    let (code, out, _) = verify_keyed();
    assert_eq!(code, Some(0), "version 1 is in grace, version 2 active: {out}");

    // The attacker: the log cut back to before the rotation with a matching head, and the anchor
    // file rewritten to match it (the plain anchor check then agrees), but without the key.
    assert!(w.stop().success(), "{}", w.log());
    let keep = rendered_seq as usize;
    cut_and_rewrite_head(&log, keep);
    let mut anchors: Vec<Value> =
        fs::read_to_string(&anchor).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    anchors.retain(|a| a["seq"].as_u64().unwrap() < rendered_seq);
    let last = lines(&log)[keep - 1].clone();
    anchors.push(
        serde_json::json!({"seq": rendered_seq, "hash": sha256_hex(last.as_bytes()), "ts": "2026-12-04T00:00:00Z",
        "ts_ns": 0, "log": log.display().to_string(), "key_version": 1, "mac": "00".repeat(32)}),
    );
    fs::write(&anchor, anchors.iter().map(|a| format!("{a}\n")).collect::<String>()).unwrap();
    let (code, out, _) = verify(&log, Some(&anchor));
    assert_eq!(code, Some(0), "without keys the forgery is consistent: {out}");
    let (code, out, _) = verify_keyed();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("(seq {rendered_seq}")) && out.contains("does not verify with audit-signing version 1"),
        "{out}"
    );
}

/// The recorder may hold the audit-signing key: it is not dumpable. The kernel shows that in /proc:
/// the files of a non-dumpable process belong to root, not to its uid. So it runs here as uid 65534
/// (`setpriv`, root needed, as CI has), and once it has logged (it makes itself non-dumpable
/// before its first line) /proc/<pid>/status must belong to uid 0.
#[test]
fn the_recorder_is_not_dumpable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs the recorder as uid 65534 with setpriv and must run as root"
    );
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.path().join("recorder.toml");
    fs::write(
        &config,
        format!(
            "name = \"recorder\"\nsegment = {:?}\njournal_dir = {:?}\n[metrics]\nenabled = false\n",
            dir.path().join("no-segment-yet").display().to_string(),
            dir.path().join("journal").display().to_string()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.path().join("recorder.log");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_qilin-recorder"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&log).unwrap()))
        .spawn()
        .expect("setpriv (util-linux)");
    let pid = child.id();
    wait_for("the recorder's first log line", || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("qilin-recorder exited ({status}): {}", fs::read_to_string(&log).unwrap_or_default());
        }
        (!fs::read_to_string(&log).unwrap_or_default().is_empty()).then_some(())
    });
    let owner = fs::metadata(format!("/proc/{pid}/status")).map(|m| m.uid());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(owner.unwrap(), 0, "/proc/<recorder>/status belongs to its uid: the recorder is dumpable");
}

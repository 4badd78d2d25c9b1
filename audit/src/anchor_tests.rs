//! Tests of the anchor: a [`Witness`] anchoring a log written through [`AuditLog`], and
//! [`verify_anchored`] against the tampering the head file alone cannot see.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::*;

fn entry(i: usize) -> Entry {
    Entry { command: format!("op{i}"), args: vec![format!("op{i}")], exit_code: 0, actions: Vec::new() }
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: PathBuf,
    anchor: PathBuf,
    writer: AuditLog,
    witness: Witness,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let anchor = dir.path().join("anchor/core.jsonl");
        let writer = AuditLog::open(&log).unwrap();
        let witness = Witness::new(&log, &anchor);
        Fixture { _dir: dir, log, anchor, writer, witness }
    }

    fn append(&self, n: usize) {
        for i in 0..n {
            self.writer.append(&entry(i)).unwrap();
        }
    }

    fn kinds(&self) -> Vec<ProblemKind> {
        verify_anchored(&self.log, &self.anchor).unwrap().problems.iter().map(|p| p.kind).collect()
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

/// What an attacker who owns the log does: write the lines back and a head that matches the last.
fn forge(log: &Path, lines: &[String]) {
    fs::write(log, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let last = lines.last().unwrap();
    let seq = serde_json::from_str::<Record>(last).unwrap().seq;
    fs::write(head_path(log), format!("{{\"seq\":{seq},\"hash\":\"{}\"}}\n", sha256_hex(last.as_bytes()))).unwrap();
}

/// Rewrites line `at` (0-based) and re-chains every later line.
fn rewrite_from(lines: &[String], at: usize) -> Vec<String> {
    let mut out: Vec<String> = lines[..at].to_vec();
    for (i, line) in lines.iter().enumerate().skip(at) {
        let mut record: Record = serde_json::from_str(line).unwrap();
        if i == at {
            record.exit_code = 99;
        }
        record.prev = out.last().map_or(GENESIS.to_owned(), |l| sha256_hex(l.as_bytes()));
        out.push(serde_json::to_string(&record).unwrap());
    }
    out
}

#[test]
fn the_witness_anchors_a_changed_head_once_and_resumes_after_a_restart() {
    let mut f = Fixture::new();
    let empty = f.witness.observe().unwrap();
    assert_eq!((empty.anchored, empty.head_seq), (None, None), "an empty log: nothing to anchor");
    assert!(!f.anchor.exists());
    // This test's process writes the log and witnesses it: said once.
    assert!(empty.warnings.iter().any(|w| w.contains("owned by this witness's own uid")), "{:?}", empty.warnings);
    f.append(3);
    let first = f.witness.observe().unwrap();
    let anchored = first.anchored.unwrap();
    assert_eq!(anchored.seq, 3);
    assert_eq!(anchored.hash, sha256_hex(lines(&f.log)[2].as_bytes()));
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    assert_eq!(f.witness.observe().unwrap(), Observation { head_seq: Some(3), ..Observation::default() });
    f.append(2);
    assert_eq!(f.witness.observe().unwrap().anchored.map(|a| a.seq), Some(5));
    // A new witness (a restart) reads the last anchor back and writes nothing for the same head.
    let mut again = Witness::new(&f.log, &f.anchor);
    assert_eq!(again.observe().unwrap().anchored, None);
    assert_eq!(again.last().map(|a| a.seq), Some(5));
    let file = read_anchor_file(&f.anchor).unwrap();
    assert_eq!(file.anchors.iter().map(|a| a.seq).collect::<Vec<_>>(), [3, 5]);
    assert_eq!(
        fs::metadata(&f.anchor).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(),
        0o640
    );
    let report = verify_anchored(&f.log, &f.anchor).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.anchor.as_ref().map(|a| (a.anchors, a.matched, a.last_seq)), Some((2, 2, Some(5))));
}

#[test]
fn a_cut_tail_with_a_rewritten_head_verifies_clean_but_not_against_the_anchor() {
    let mut f = Fixture::new();
    f.append(6);
    f.witness.observe().unwrap();
    let all = lines(&f.log);
    forge(&f.log, &all[..4]);
    assert!(verify(&f.log).unwrap().is_clean(), "the head file alone cannot see it");
    let report = verify_anchored(&f.log, &f.anchor).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let p = &report.problems[0];
    assert_eq!((p.line, p.kind), (5, ProblemKind::AnchorBeyondEnd));
    assert!(
        p.detail.contains("seq 6 was anchored at") && p.detail.contains("the log now ends at seq 4"),
        "{}",
        p.detail
    );
    // The witness notices at its next round, says so, and anchors what it sees (evidence, not judgement).
    let seen = f.witness.observe().unwrap();
    assert_eq!(seen.anchored.map(|a| a.seq), Some(4));
    assert!(seen.warnings.iter().any(|w| w.contains("went back")), "{:?}", seen.warnings);
    assert_eq!(f.kinds(), [ProblemKind::AnchorBeyondEnd], "the old anchor still tells");
}

#[test]
fn a_rewrite_from_an_edit_is_caught_only_if_an_anchor_is_at_or_after_it() {
    let mut f = Fixture::new();
    f.append(3);
    f.witness.observe().unwrap(); // anchors seq 3
    f.append(3); // seq 4..=6, not anchored yet
    let all = lines(&f.log);
    // An edit at seq 2, everything after re-chained: line 3 no longer has its anchored hash.
    forge(&f.log, &rewrite_from(&all, 1));
    assert!(verify(&f.log).unwrap().is_clean());
    let report = verify_anchored(&f.log, &f.anchor).unwrap();
    assert_eq!(
        report.problems.iter().map(|p| (p.line, p.kind)).collect::<Vec<_>>(),
        [(3, ProblemKind::AnchorMismatch)]
    );
    assert!(report.problems[0].detail.contains("seq 3 was anchored at"), "{}", report.problems[0].detail);
    // An edit at seq 5, after the last anchor: not detected (the window between two rounds).
    forge(&f.log, &rewrite_from(&all, 4));
    let report = verify_anchored(&f.log, &f.anchor).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.notes.iter().any(|n| n.contains("seq 4..=6 came after the last anchor")), "{:?}", report.notes);
}

#[test]
fn a_missing_anchor_is_an_error_and_damage_in_it_is_named() {
    let mut f = Fixture::new();
    f.append(2);
    let err = verify_anchored(&f.log, &f.anchor).unwrap_err();
    assert_eq!(err.path, f.anchor);
    f.witness.observe().unwrap();
    let mut text = fs::read_to_string(&f.anchor).unwrap();
    text.push_str("not an anchor\n{\"seq\":9");
    fs::write(&f.anchor, &text).unwrap();
    let report = verify_anchored(&f.log, &f.anchor).unwrap();
    assert_eq!(report.problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [ProblemKind::AnchorMalformed]);
    assert!(report.problems[0].detail.contains("line 2 is not an anchor"), "{:?}", report.problems);
    assert!(report.notes.iter().any(|n| n.contains("interrupted write")), "{:?}", report.notes);
    // The witness ends the torn line before it appends.
    f.append(1);
    f.witness.observe().unwrap();
    let file = read_anchor_file(&f.anchor).unwrap();
    assert_eq!(file.anchors.iter().map(|a| a.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(!file.torn);
}

#[test]
fn a_torn_last_line_is_not_anchored_and_a_log_that_is_not_there_is_an_error() {
    let mut f = Fixture::new();
    f.append(2);
    let mut text = fs::read_to_string(&f.log).unwrap();
    text.push_str("{\"seq\":3,\"prev\":\"ab");
    fs::write(&f.log, text).unwrap();
    assert_eq!(f.witness.observe().unwrap().anchored.map(|a| a.seq), Some(2));
    let mut gone = Witness::new(f.log.with_file_name("gone.jsonl"), &f.anchor);
    let err = gone.observe().unwrap_err();
    assert!(matches!(err, WitnessError::ReadLog { .. }) && !err.is_anchor_error(), "{err}");
    assert!(err.to_string().contains("gone.jsonl: opening"), "{err}");
}

const K1: &[u8] = b"audit-signing version 1 key bytes";
const K2: &[u8] = b"audit-signing version 2 key bytes";

fn keyed_kinds(f: &Fixture, keys: &[(u32, &[u8])]) -> (Vec<ProblemKind>, Vec<String>) {
    let lookup = |v: u32| keys.iter().find(|(k, _)| *k == v).map(|(_, key)| key.to_vec());
    let report = verify_anchored_keyed(&f.log, &f.anchor, &lookup).unwrap();
    (report.problems.iter().map(|p| p.kind).collect(), report.notes)
}

/// A keyed witness over three rounds with version 1, then two with version 2.
fn keyed_fixture() -> Fixture {
    let mut f = Fixture::new();
    for round in 0..5 {
        f.append(1);
        let key = if round < 3 { (1, K1) } else { (2, K2) };
        f.witness.observe_keyed(Some(key)).unwrap().anchored.expect("the head moved");
    }
    f
}

#[test]
fn keyed_anchors_verify_and_a_new_version_starts_a_new_chain() {
    let f = keyed_fixture();
    let anchors = read_anchor_file(&f.anchor).unwrap().anchors;
    assert_eq!(
        anchors.iter().map(|a| a.key_version).collect::<Vec<_>>(),
        [Some(1), Some(1), Some(1), Some(2), Some(2)]
    );
    // Chains: each version's first anchor chains to nothing, the others to the one before.
    assert_eq!(anchors[0].mac, Some(anchor_mac(K1, &anchors[0], "")));
    assert_eq!(anchors[1].mac, Some(anchor_mac(K1, &anchors[1], anchors[0].mac.as_deref().unwrap())));
    assert_eq!(anchors[3].mac, Some(anchor_mac(K2, &anchors[3], "")));
    let (problems, notes) = keyed_kinds(&f, &[(1, K1), (2, K2)]);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(notes.iter().any(|n| n.contains("5 keyed anchor(s) verified")), "{notes:?}");
    // Version 1 retired: its anchors are named as not checked, version 2's still verify.
    let (problems, notes) = keyed_kinds(&f, &[(2, K2)]);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(notes.iter().any(|n| n.contains("3 anchor(s) keyed with audit-signing version 1")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("2 keyed anchor(s) verified")), "{notes:?}");
}

#[test]
fn a_truncated_log_with_a_rewritten_head_and_anchors_forged_to_match_is_caught_by_the_mac() {
    let f = keyed_fixture();
    // The attacker owns the log and, somehow, the anchor file, but not the key: cut the log to its
    // first 3 lines, rewrite the head, and rewrite the anchors to end at seq 3 with the right hash.
    let kept: Vec<String> = lines(&f.log)[..3].to_vec();
    forge(&f.log, &kept);
    let mut anchors = read_anchor_file(&f.anchor).unwrap().anchors;
    anchors.truncate(3);
    anchors[2].seq = 3;
    anchors[2].hash = sha256_hex(kept[2].as_bytes());
    anchors[2].mac = Some(anchor_mac(b"a key the attacker made up", &anchors[2], anchors[1].mac.as_deref().unwrap()));
    let text: String = anchors.iter().map(|a| format!("{}\n", serde_json::to_string(a).unwrap())).collect();
    fs::write(&f.anchor, text).unwrap();
    // Without keys the forged file is consistent with the forged log: nothing is found.
    assert!(f.kinds().is_empty(), "{:?}", f.kinds());
    // With the key the forged anchor is caught.
    let (problems, _) = keyed_kinds(&f, &[(1, K1), (2, K2)]);
    assert_eq!(problems, [ProblemKind::AnchorForged]);
}

#[test]
fn a_removed_anchor_breaks_its_chain_and_an_unkeyed_one_after_keyed_ones_is_caught() {
    let f = keyed_fixture();
    let original = lines(&f.anchor);
    // Drop anchor #2 (version 1's second): #3 no longer chains.
    let without: String = original.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| format!("{l}\n")).collect();
    fs::write(&f.anchor, without).unwrap();
    let report =
        verify_anchored_keyed(&f.log, &f.anchor, &|v| (v == 1).then(|| K1.to_vec()).or((v == 2).then(|| K2.to_vec())))
            .unwrap();
    let forged: Vec<&Problem> = report.problems.iter().filter(|p| p.kind == ProblemKind::AnchorForged).collect();
    assert_eq!(forged.len(), 1, "{:?}", report.problems);
    assert!(forged[0].detail.contains("anchor #2 (seq 3"), "{}", forged[0].detail);
    // An unkeyed anchor appended after keyed ones.
    let mut anchors = read_anchor_file(&f.anchor).unwrap().anchors;
    let mut plain = anchors.last().unwrap().clone();
    (plain.key_version, plain.mac) = (None, None);
    anchors.push(plain);
    let text: String = anchors.iter().map(|a| format!("{}\n", serde_json::to_string(a).unwrap())).collect();
    fs::write(&f.anchor, text).unwrap();
    let (problems, _) = keyed_kinds(&f, &[(1, K1), (2, K2)]);
    assert_eq!(problems.iter().filter(|k| **k == ProblemKind::AnchorForged).count(), 2, "{problems:?}");
}

#[test]
fn a_new_key_version_is_anchored_at_once_even_when_the_head_did_not_move() {
    let mut f = Fixture::new();
    f.append(2);
    f.witness.observe_keyed(Some((1, K1))).unwrap().anchored.expect("first anchor");
    assert!(f.witness.observe_keyed(Some((1, K1))).unwrap().anchored.is_none(), "same head, same key");
    let a = f.witness.observe_keyed(Some((2, K2))).unwrap().anchored.expect("a new chain at once");
    assert_eq!((a.seq, a.key_version), (2, Some(2)));
}

//! [`verify_anchored`]: the chain and head check of [`verify`](crate::verify), plus every anchor
//! of an anchor file compared with the log as it is now.

use std::{collections::HashMap, fs, os::unix::fs::MetadataExt, path::Path};

use crate::{
    anchor::{AnchorFile, read_anchor_file},
    verify::{AnchorSummary, LineHash, Problem, ProblemKind, Report, VerifyError, verify_lines},
};

/// Checks the log at `log` as [`verify`](crate::verify) does, and that every anchor in the file at
/// `anchor` still holds: the log has a line with the anchored `seq` and that line's hash is the
/// anchored one, and the log does not end before the last anchored `seq`. `Err` when either file
/// cannot be read; a missing anchor file is such an error, never a pass.
///
/// The anchor file is read before the log: the log only grows in between, so an anchor written
/// meanwhile is never ahead of an untouched log.
pub fn verify_anchored(log: &Path, anchor: &Path) -> Result<Report, VerifyError> {
    let file = read_anchor_file(anchor).map_err(|source| VerifyError { path: anchor.to_owned(), source })?;
    let (mut report, lines) = verify_lines(log)?;
    let log_uid = fs::metadata(log).ok().map(|m| m.uid());
    compare(&mut report, &lines, &file, anchor, log_uid);
    report.problems.sort_by_key(|p| p.line);
    Ok(report)
}

/// [`verify_anchored`], and every keyed anchor's MAC checked with `key(version)`: the bytes of
/// that version of the `audit-signing` key, or `None` when it no longer verifies (retired, or not
/// in the store), in which case that version's anchors are counted in a note, not checked.
pub fn verify_anchored_keyed(
    log: &Path,
    anchor: &Path,
    key: &dyn Fn(u32) -> Option<Vec<u8>>,
) -> Result<Report, VerifyError> {
    let file = read_anchor_file(anchor).map_err(|source| VerifyError { path: anchor.to_owned(), source })?;
    let (mut report, lines) = verify_lines(log)?;
    let log_uid = fs::metadata(log).ok().map(|m| m.uid());
    compare(&mut report, &lines, &file, anchor, log_uid);
    check_macs(&mut report, &file, anchor, key);
    report.problems.sort_by_key(|p| p.line);
    Ok(report)
}

fn check_macs(report: &mut Report, file: &AnchorFile, path: &Path, key: &dyn Fn(u32) -> Option<Vec<u8>>) {
    let name = path.display();
    let end = report.lines + 1;
    let mut keys: HashMap<u32, Option<Vec<u8>>> = HashMap::new();
    let (mut checked, mut unchecked): (u64, HashMap<u32, u64>) = (0, HashMap::new());
    let mut keyed_seen = false;
    let mut prev: Option<&crate::Anchor> = None;
    for (i, a) in file.anchors.iter().enumerate() {
        let number = i + 1;
        match (a.key_version, &a.mac) {
            (Some(version), Some(mac)) => {
                keyed_seen = true;
                let prev_mac = match prev {
                    Some(p) if p.key_version == Some(version) => p.mac.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                match keys.entry(version).or_insert_with(|| key(version)) {
                    Some(k) if crate::anchor::anchor_mac(k, a, &prev_mac) == *mac => checked += 1,
                    Some(_) => report.problems.push(Problem {
                        line: end,
                        kind: ProblemKind::AnchorForged,
                        detail: format!(
                            "anchor {name}: anchor #{number} (seq {}, at {}) does not verify with audit-signing \
                             version {version}: written or edited without the key, or an anchor before it in \
                             its chain was removed",
                            a.seq, a.ts
                        ),
                    }),
                    None => *unchecked.entry(version).or_default() += 1,
                }
            }
            (None, None) if keyed_seen => report.problems.push(Problem {
                line: end,
                kind: ProblemKind::AnchorForged,
                detail: format!(
                    "anchor {name}: anchor #{number} (seq {}, at {}) carries no MAC after keyed anchors: added \
                     without the key",
                    a.seq, a.ts
                ),
            }),
            (None, None) => {}
            _ => report.problems.push(Problem {
                line: end,
                kind: ProblemKind::AnchorForged,
                detail: format!("anchor {name}: anchor #{number} (seq {}) has a key version or a MAC, not both", a.seq),
            }),
        }
        prev = Some(a);
    }
    let mut versions: Vec<_> = unchecked.into_iter().collect();
    versions.sort_unstable();
    for (version, n) in versions {
        report.notes.push(format!(
            "anchor {name}: {n} anchor(s) keyed with audit-signing version {version}, which no longer verifies \
             (retired, or not in the key store): not checked"
        ));
    }
    if checked > 0 {
        report.notes.push(format!("anchor {name}: {checked} keyed anchor(s) verified with the audit-signing key"));
    }
}

fn compare(report: &mut Report, lines: &[LineHash], file: &AnchorFile, path: &Path, log_uid: Option<u32>) {
    let name = path.display();
    let end = report.lines + 1;
    let mut by_seq: HashMap<u64, Vec<(u64, &str)>> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(seq) = line.seq {
            by_seq.entry(seq).or_default().push((i as u64 + 1, line.hash.as_str()));
        }
    }
    let max_seq = by_seq.keys().copied().max().unwrap_or(0);
    let (mut matched, mut mismatched, mut beyond) = (0u64, Vec::new(), Vec::new());
    for anchor in &file.anchors {
        match by_seq.get(&anchor.seq) {
            Some(found) if found.iter().any(|(_, hash)| *hash == anchor.hash) => matched += 1,
            Some(found) => mismatched.push((anchor, Some(found[0]))),
            None if anchor.seq > max_seq => beyond.push(anchor),
            None => mismatched.push((anchor, None)),
        }
    }
    if let Some(&(first, now)) = mismatched.iter().min_by_key(|(a, _)| a.seq) {
        let (line, has) = match now {
            Some((line, hash)) => (line, format!("the log's line {line} (seq {}) now hashes to {hash}", first.seq)),
            None => (end, format!("the log has no line with seq {} now", first.seq)),
        };
        let mut detail = format!(
            "anchor {name}: seq {} was anchored at {} with hash {}, but {has}: the log was rewritten at or before seq {}",
            first.seq, first.ts, first.hash, first.seq
        );
        if mismatched.len() > 1 {
            let last = mismatched.iter().map(|(a, _)| a.seq).max().unwrap_or(first.seq);
            detail.push_str(&format!(
                " ({} more anchor(s), up to seq {last}, do not match either)",
                mismatched.len() - 1
            ));
        }
        report.problems.push(Problem { line, kind: ProblemKind::AnchorMismatch, detail });
    }
    if let Some(last) = beyond.iter().max_by_key(|a| a.seq) {
        report.problems.push(Problem {
            line: end,
            kind: ProblemKind::AnchorBeyondEnd,
            detail: format!(
                "anchor {name}: seq {} was anchored at {} with hash {}, but the log now ends at seq {}: at least {} \
                 line(s) were cut off the end (the head file was rewritten to match, or it would say so too)",
                last.seq,
                last.ts,
                last.hash,
                report.last_seq,
                last.seq - report.last_seq
            ),
        });
    }
    for (line, why) in &file.malformed {
        report.problems.push(Problem {
            line: end,
            kind: ProblemKind::AnchorMalformed,
            detail: format!("anchor {name}: line {line} is not an anchor ({why})"),
        });
    }
    if file.torn {
        report.notes.push(format!("anchor {name}: its last line has no newline (an interrupted write); left out"));
    }
    match file.last() {
        None => report.notes.push(format!("anchor {name} holds no anchor yet: nothing was checked against it")),
        Some(last) if report.last_seq > last.seq => report.notes.push(format!(
            "seq {}..={} came after the last anchor (seq {} at {}): only the chain and the head file cover them",
            last.seq + 1,
            report.last_seq,
            last.seq,
            last.ts
        )),
        Some(_) => {}
    }
    if log_uid == Some(file.uid) {
        report.notes.push(format!(
            "anchor {name} has the same owner (uid {}) as the log: whoever writes the log can rewrite the anchor too",
            file.uid
        ));
    }
    report.anchor = Some(AnchorSummary {
        file: path.to_owned(),
        anchors: file.anchors.len() as u64,
        matched,
        last_seq: file.last().map(|a| a.seq),
        last_ts: file.last().map(|a| a.ts.clone()),
    });
}
